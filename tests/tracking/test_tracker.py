"""The tracking session: prompts, undo, propagation directions, cancel, bounded memory."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import torch

from sam2web.errors import PromptError, TrackingError
from sam2web.tracking.frames import LazyFrameSource
from sam2web.tracking.maskstore import MaskStore
from sam2web.tracking.tracker import new_inference_state
from sam2web.types import Box, Click
from tests import synth
from tests.masks import assert_nontrivial


def test_inference_state_has_the_fields_init_state_makes(clip_mp4, make_session):
    session = make_session(clip_mp4)
    frames_dir = session.frames._paths[0].parent
    with torch.inference_mode():
        reference = session.predictor.init_state(video_path=str(frames_dir))
    ours = new_inference_state(session.predictor, session.frames, 120, 160)
    assert ours.keys() == reference.keys()
    assert ours["num_frames"] == reference["num_frames"] == 8
    assert (ours["video_height"], ours["video_width"]) == (120, 160)


@pytest.mark.parametrize("frame_format", ["jpeg", "png"])
def test_lazy_frames_are_bit_identical_to_sam2_loader(frame_format, clip_zip, make_session):
    from sam2.utils.misc import _load_img_as_tensor

    session = make_session(clip_zip, frame_format=frame_format)
    paths = session.frames._paths
    source = LazyFrameSource(paths, 256, cache_size=2)
    mean = torch.tensor((0.485, 0.456, 0.406))[:, None, None]
    std = torch.tensor((0.229, 0.224, 0.225))[:, None, None]
    images = torch.zeros(len(paths), 3, 256, 256)  # what init_state builds
    for i, p in enumerate(paths):
        images[i], _, _ = _load_img_as_tensor(str(p), 256)
    images -= mean
    images /= std
    for i in range(len(paths)):
        assert torch.equal(source[i], images[i])
    assert source.cached_bytes() == 2 * 3 * 256 * 256 * 4  # LRU holds two frames only


def test_frames_asked_for_in_order_are_read_ahead_on_the_reader_thread(
    clip_zip, make_session, monkeypatch
):
    """A sweep either way reads the next frame on the reader thread, gives the tensors the
    caller would have read, and a read ahead that failed is read again by the caller."""
    from sam2web.tracking import frames

    paths = make_session(clip_zip).frames._paths
    n = len(paths)
    expected = [frames.load_model_input(p, 256) for p in paths]
    readers: dict[int, list[str]] = {}
    real = frames.read_frame
    broken = {5}  # the reader fails on this frame once

    def recording(path, size):
        index = paths.index(path)
        thread = threading.current_thread().name
        readers.setdefault(index, []).append(thread)
        if index in broken and thread.startswith("sam2web-read-ahead"):
            broken.discard(index)
            raise OSError("simulated read failure")
        return real(path, size)

    monkeypatch.setattr(frames, "read_frame", recording)
    source = LazyFrameSource(paths, 256, cache_size=1)
    caller = threading.current_thread().name
    for i in [*range(n), *range(n - 2, -1, -1)]:  # forward, then back
        assert torch.equal(source[i], expected[i])
    reader = "sam2web-read-ahead_0"
    # forward: frames 0 and 1 by the caller (no order yet), then ahead; frame 5's read
    # ahead fails and the caller reads it; back: n - 2 by the caller (the turn), then ahead
    expected_readers = {i: [reader, reader] for i in range(n)}
    expected_readers.update({0: [caller, reader], 1: [caller, reader], 5: [reader, caller, reader]})
    expected_readers.update({n - 2: [reader, caller], n - 1: [reader]})
    assert readers == expected_readers
    off = LazyFrameSource(paths, 256, cache_size=1, read_ahead=False)
    readers.clear()
    for i in range(n):
        off[i]
    assert {name for names in readers.values() for name in names} == {caller}


def test_click_returns_mask_at_once_and_stores_it(clip_mp4, make_session):
    session = make_session(clip_mp4)
    obj = session.add_object("mouse")
    result = session.add_click(0, obj.obj_id, Click(40, 60))
    assert result.frame_idx == 0
    mask = result.masks[obj.obj_id]
    assert mask.shape == (120, 160) and mask.dtype == bool
    assert np.array_equal(session.result(0).masks[obj.obj_id], mask)
    assert session.result(3) is None  # nothing tracked yet


def test_undo_restores_the_previous_mask_exactly(clip_mp4, make_session):
    """The first prompt is disc 0's true mask (a mask prompt's mask is the prompt, up to a
    few edge pixels lost to the model's resolution), so the mask an undo must restore is
    known; each click changes it, and each undo brings back the one before bit for bit.

    Recorded run of a wrong variant: an undo that dropped the prompt without sending the
    remaining ones again (``session._replay`` returning the stored mask) failed at the first
    undo, which still showed the third mask.
    """
    session = make_session(clip_mp4)
    obj = session.add_object().obj_id
    truth = synth.disc_mask(120, 160, synth.DEFAULT_DISCS[0], 0)
    first = session.add_mask(0, obj, truth).masks[obj]
    assert (first ^ truth).sum() <= 0.02 * truth.sum()
    second = session.add_click(0, obj, Click(120, 40)).masks[obj]
    third = session.add_click(0, obj, Click(100, 100, positive=False)).masks[obj]
    assert (first ^ second).sum() > truth.sum()  # the click changed far more than the edge
    assert not np.array_equal(second, third)
    assert np.array_equal(session.undo(0, obj).masks[obj], second)
    assert np.array_equal(session.result(0).masks[obj], second)
    assert np.array_equal(session.undo(0, obj).masks[obj], first)
    assert np.array_equal(session.result(0).masks[obj], first)
    cleared = session.undo(0, obj)
    assert obj not in cleared.masks
    with pytest.raises(PromptError, match="nothing to undo"):
        session.undo(0, obj)


def test_box_then_clicks_and_clear(clip_mp4, make_session):
    session = make_session(clip_mp4)
    obj = session.add_object().obj_id
    boxed = session.set_box(0, obj, Box(55, 75, 25, 45))  # corners in any order
    assert boxed.masks[obj].shape == (120, 160)
    session.add_click(0, obj, Click(40, 60))
    assert session.prompts[(0, obj)].box == Box(25, 45, 55, 75)
    cleared = session.clear_frame(0, obj)
    assert obj not in cleared.masks and (0, obj) not in session.prompts


@pytest.mark.parametrize(
    "payload, message",
    [
        (dict(frame=0, click=Click(500, 10)), "outside"),
        (dict(frame=0, click=Click(-1, 10)), "outside"),
        (dict(frame=0, click=Click(float("nan"), 10)), "no valid position"),
        (dict(frame=0, click=Click(None, 10)), "no valid position"),  # type: ignore[arg-type]
        (dict(frame=99, click=Click(10, 10)), "Frame 99 does not exist"),
        (dict(frame=-1, click=Click(10, 10)), "does not exist"),
        (dict(frame="3", click=Click(10, 10)), "whole number"),
    ],
)
def test_bad_clicks_are_refused_with_a_sentence(payload, message, clip_mp4, make_session):
    session = make_session(clip_mp4)
    obj = session.add_object().obj_id
    with pytest.raises(PromptError, match=message):
        session.add_click(payload["frame"], obj, payload["click"])
    assert session.prompts.get((0, obj)) is None or session.prompts[(0, obj)].is_empty()


def test_prompt_for_removed_object_and_tracking_preconditions(clip_mp4, make_session):
    session = make_session(clip_mp4)
    with pytest.raises(TrackingError, match="Add an object"):
        list(session.propagate())
    a = session.add_object("a").obj_id
    b = session.add_object("b").obj_id
    session.add_click(0, a, Click(40, 60))
    with pytest.raises(TrackingError, match="b has no clicks"):
        list(session.propagate())
    session.remove_object(b)
    with pytest.raises(PromptError, match="does not exist"):
        session.add_click(0, b, Click(40, 60))
    steps = list(session.propagate())
    assert [s.result.frame_idx for s in steps] == list(range(8))
    assert all(set(s.result.masks) == {a} for s in steps)


def test_directions_ranges_and_cancel(clip_mp4, make_session):
    """Directions and ranges give the frames planned; a cancel event set while frame 1 is
    shown stops the run there: frames 0-1 stored, the run recorded as two frames.

    Recorded run of a wrong variant: the same loop without ``cancel=cancel`` passed to
    ``propagate`` tracked all eight frames and failed ``seen == [0, 1]``.
    """
    from sam2web.history import Pass, Propagate

    session = make_session(clip_mp4)
    obj = session.add_object().obj_id
    session.add_click(4, obj, Click(52, 62))
    back = [s.result.frame_idx for s in session.propagate("backward")]
    assert back == [4, 3, 2, 1, 0]
    fwd = list(session.propagate("forward", start_frame=4, end_frame=6))
    assert [s.result.frame_idx for s in fwd] == [4, 5, 6]
    assert (fwd[-1].done, fwd[-1].total) == (3, 3)
    both = [s.result.frame_idx for s in session.propagate("both")]
    assert both == [4, 5, 6, 7, 4, 3, 2, 1, 0]
    assert session.store.frames() == list(range(8))

    fresh = make_session(clip_mp4)
    obj = fresh.add_object().obj_id
    fresh.add_click(0, obj, Click(40, 60))
    assert fresh.store.frames() == [0]
    cancel = threading.Event()
    seen = []
    for step in fresh.propagate("forward", cancel=cancel):  # the loop runs to the end
        seen.append(step.result.frame_idx)
        if len(seen) == 2:
            cancel.set()
    assert seen == [0, 1]
    assert fresh.store.frames() == [0, 1]  # nothing tracked after the cancel
    assert fresh.history[-1] == Propagate((Pass(0, False, 2),))
    assert not fresh.propagating  # the session is usable again

    seen = []
    for step in fresh.propagate("forward", start_frame=0):
        seen.append(step.result.frame_idx)
        if len(seen) == 2:
            break  # a caller dropping the generator also stops the run
    assert seen == [0, 1]
    assert not fresh.propagating


def test_busy_session_refuses_edits_while_tracking(clip_mp4, make_session):
    session = make_session(clip_mp4)
    obj = session.add_object().obj_id
    session.add_click(0, obj, Click(40, 60))
    gen = session.propagate()
    next(gen)
    with pytest.raises(TrackingError, match="Tracking is running"):
        session.add_click(2, obj, Click(40, 60))
    gen.close()
    session.add_click(2, obj, Click(40, 60))


def _long_clip(tmp_path, n):
    frames = synth.make_frames(
        num_frames=n,
        height=48,
        width=64,
        discs=(synth.Disc(x0=12, y0=24, vx=0.3, vy=0.0, radius=7, color=(230, 60, 40)),),
    )
    return synth.write_image_zip(tmp_path / f"long{n}.zip", frames, shuffle_names=False)


def _track_and_measure(session):
    obj = session.add_object().obj_id
    session.add_click(0, obj, Click(12, 24))
    peak = 0
    for _ in session.propagate():
        peak = max(peak, session.held_bytes()["state"])
    return peak, session.held_bytes()


@pytest.mark.slow
def test_memory_is_bounded_as_the_video_grows(tmp_path, make_session):
    """Held model state and frame cache stay flat from 30 to 120 frames once outputs that
    SAM2 no longer reads are released; keeping every output grows with the video."""
    peaks = {}
    for full in (False, True):
        for n in (30, 120):
            session = make_session(
                _long_clip(tmp_path, n), image_size=128, full_memory_frames=10_000 if full else 0
            )
            peaks[full, n], held = _track_and_measure(session)
            assert held["frame_cache"] <= 4 * 3 * 128 * 128 * 4  # 4 frames at most
            assert len(session.store.frames()) == n  # every result is on disk
    bounded_growth = peaks[False, 120] - peaks[False, 30]
    full_growth = peaks[True, 120] - peaks[True, 30]
    assert peaks[False, 120] <= peaks[False, 30] * 1.05, peaks
    assert full_growth > 10 * max(bounded_growth, 1), peaks
    # What is kept per frame when nothing is released (90 more frames' outputs).
    assert full_growth / 90 > 10_000, peaks


@pytest.mark.slow
def test_refining_a_released_frame_matches_full_memory(tmp_path, make_session):
    """A frame whose outputs were released is re-tracked before a correction, so the
    correction and the next propagation equal the run that kept everything."""
    clip = _long_clip(tmp_path, 60)
    outcomes = []
    for full in (10_000, 0):
        session = make_session(clip, image_size=128, full_memory_frames=full)
        obj = session.add_object().obj_id
        session.add_click(0, obj, Click(12, 24))
        list(session.propagate())
        if full == 0:
            assert 25 in session.released[obj]  # far from the prompt and the last frame
        refined = session.add_click(25, obj, Click(30, 20, positive=False)).masks[obj]
        after = {s.result.frame_idx: s.result.masks[obj] for s in session.propagate()}
        outcomes.append((refined, after))
    (ref_a, after_a), (ref_b, after_b) = outcomes
    assert_nontrivial([ref_a, *after_a.values()])
    assert np.array_equal(ref_a, ref_b)
    assert after_a.keys() == after_b.keys()
    for f in after_a:
        assert np.array_equal(after_a[f], after_b[f]), f


@pytest.mark.parametrize("num_objects", [1, 3])
def test_the_image_encoder_runs_once_per_frame_whatever_the_number_of_objects(
    num_objects, clip_mp4, make_session, monkeypatch
):
    """SAM2 encodes each frame once and shares the features between objects (the objects
    are one batch in the memory attention and mask decoder); only those stages grow with
    the number of objects."""
    session = make_session(clip_mp4)
    points = [(40, 60), (120, 40), (80, 100)]
    for x, y in points[:num_objects]:
        obj = session.add_object()
        session.add_click(0, obj.obj_id, Click(x, y))
    encoded: list[int] = []
    forward_image = session.predictor.forward_image

    def counting(img_batch):
        encoded.append(img_batch.shape[0])
        return forward_image(img_batch)

    monkeypatch.setattr(session.predictor, "forward_image", counting)
    steps = list(session.propagate("forward"))
    assert len(steps) == 8
    # Frame 0's features are cached from the clicks; frames 1..7 are encoded once each,
    # one image per call.
    assert encoded == [1] * 7
    assert all(set(s.result.masks) == set(range(1, num_objects + 1)) for s in steps)


@pytest.fixture
def slow_mask_files(monkeypatch):
    """The store's writer thread takes 50 ms more per file (a slow disk), so frames of a run
    certainly wait for their files while the test looks."""
    real = MaskStore._save_file

    def slow(self, frame_idx, packed, scores):
        if threading.current_thread().name.startswith("mask-writer"):
            time.sleep(0.05)
        real(self, frame_idx, packed, scores)

    monkeypatch.setattr(MaskStore, "_save_file", slow)


def _clicked_run(make_session, clip):
    """A session with one object clicked on frame 0, and its propagation (not started)."""
    session = make_session(clip)
    obj = session.add_object().obj_id
    session.add_click(0, obj, Click(40, 60))
    return session, obj, session.propagate()


def test_a_runs_masks_are_written_behind_and_all_on_disk_when_it_ends(
    clip_mp4, make_session, slow_mask_files
):
    session, obj, steps = _clicked_run(make_session, clip_mp4)
    first = next(steps).result
    assert not session.store.on_disk(first.frame_idx)  # the model went on without the file
    assert np.array_equal(session.result(first.frame_idx).masks[obj], first.masks[obj])
    results = [first] + [s.result for s in steps]
    files = MaskStore(session.store.root, session.info.height, session.info.width)
    assert files.frames() == list(range(8))  # what another process reads, once it ended
    for result in results:
        assert np.array_equal(files.mask(result.frame_idx, obj), result.masks[obj])
        assert files.score(result.frame_idx, obj) == result.scores[obj]


def test_closing_a_session_mid_run_puts_its_masks_on_disk_and_nothing_writes_after(
    clip_mp4, make_session, slow_mask_files
):
    session, obj, steps = _clicked_run(make_session, clip_mp4)
    seen = [next(steps).result for _ in range(3)]
    assert not session.store.on_disk(seen[-1].frame_idx)
    session.close()  # as a closed tab does, the run suspended after frame 2
    root = session.store.root
    files = MaskStore(root, session.info.height, session.info.width)
    assert files.frames() == [0, 1, 2]
    assert all(np.array_equal(files.mask(r.frame_idx, obj), r.masks[obj]) for r in seen)
    shutil.rmtree(root)
    assert list(steps) == []  # a closed session tracks no frame more
    time.sleep(0.8)  # longer than an idle writer waits for more
    assert not root.exists()
