"""The on-disk mask store: exact round trips, partial updates, overlap rule, concurrent use."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sam2web.tracking.maskstore import MaskStore
from tests import synth

H, W = 120, 160


def gt(t: int) -> dict[int, np.ndarray]:
    return {i + 1: synth.disc_mask(H, W, d, t) for i, d in enumerate(synth.DEFAULT_DISCS)}


@pytest.fixture
def store(tmp_path) -> MaskStore:
    return MaskStore(tmp_path / "masks", H, W)


def test_round_trip_is_exact(store):
    rng = np.random.default_rng(1)
    noise = rng.random((H, W)) > 0.5  # incompressible, odd bit patterns
    store.write(3, {1: gt(3)[1], 7: noise}, {1: 4.25, 7: -0.5})
    result = store.read(3)
    assert result.frame_idx == 3
    assert set(result.masks) == {1, 7}
    assert result.masks[1].dtype == bool and result.masks[1].shape == (H, W)
    np.testing.assert_array_equal(result.masks[1], gt(3)[1])
    np.testing.assert_array_equal(result.masks[7], noise)
    assert result.scores == {1: 4.25, 7: -0.5}
    assert result.present(1) and not result.present(7)
    np.testing.assert_array_equal(store.mask(3, 7), noise)
    assert store.score(3, 1) == 4.25
    assert store.mask(3, 2) is None and store.score(3, 2) is None
    assert store.read(4) is None and store.mask(4, 1) is None
    assert store.frames() == [3]


def test_nan_score_survives(store):
    store.write(0, {1: gt(0)[1]}, {1: float("nan")})
    assert np.isnan(store.score(0, 1))


def test_writing_some_objects_keeps_the_others(store):
    masks = gt(0)
    store.write(0, masks, {1: 1.0, 2: 2.0})
    moved = synth.disc_mask(H, W, synth.DEFAULT_DISCS[0], 5)
    store.write(0, {1: moved}, {1: 3.0})
    result = store.read(0)
    np.testing.assert_array_equal(result.masks[1], moved)
    np.testing.assert_array_equal(result.masks[2], masks[2])
    assert result.scores == {1: 3.0, 2: 2.0}


def test_a_write_answers_what_a_read_then_gives(store):
    rng = np.random.default_rng(4)
    noise = rng.random((H, W)) > 0.5
    one, two = gt(2)[1], gt(2)[2]
    # A new frame; an object replaced while the other is kept; a third beside them; all
    # three replaced at once (nothing kept).
    steps = [({3: one, 1: two}, {3: 0.5, 1: -2.0}), ({1: noise}, {1: 1.5})]
    steps += [({2: two}, {2: np.nan}), ({3: noise, 1: one, 2: ~noise}, {3: 0.25, 1: 7, 2: -1})]
    for masks, scores in steps:
        answer = store.write(2, masks, scores)
        read = store.read(2)
        assert answer.frame_idx == read.frame_idx == 2
        assert list(answer.masks) == list(read.masks) == sorted(read.masks)
        assert list(answer.scores) == list(read.scores)
        for obj_id in read.masks:
            assert answer.masks[obj_id].dtype == bool
            np.testing.assert_array_equal(answer.masks[obj_id], read.masks[obj_id])
        np.testing.assert_array_equal(list(answer.scores.values()), list(read.scores.values()))
    assert set(read.masks) == {1, 2, 3}
    np.testing.assert_array_equal(read.masks[3], noise)
    assert store.write(2, {}, {}) is None


def test_drop_and_remove_object(store):
    for t in range(4):
        store.write(t, gt(t), {1: 1.0, 2: 1.0})
    store.write(4, {2: gt(4)[2]}, {2: 1.0})
    store.drop(1, 2)
    assert set(store.read(1).masks) == {1}
    store.remove_object(1)
    assert store.frames() == [0, 2, 3, 4]  # frame 1 held only object 1 after the drop
    for t in store.frames():
        assert set(store.read(t).masks) == {2}
        np.testing.assert_array_equal(store.mask(t, 2), gt(t)[2])
    store.drop(0)
    assert store.frames() == [2, 3, 4]
    store.clear()
    assert store.frames() == [] and store.nbytes_on_disk() == 0
    assert list(store.root.iterdir()) == []


def test_iter_frames_in_order_and_range(store):
    for t in (5, 1, 3, 0):
        store.write(t, gt(t), {1: 1.0, 2: 1.0})
    assert [r.frame_idx for r in store.iter_frames()] == [0, 1, 3, 5]
    assert [r.frame_idx for r in store.iter_frames(1, 5)] == [1, 3]


def test_a_new_store_on_the_same_folder_sees_the_results(store):
    store.write(2, gt(2), {1: 1.0, 2: 1.0})
    again = MaskStore(store.root, H, W)
    assert again.frames() == [2]
    np.testing.assert_array_equal(again.mask(2, 2), gt(2)[2])


def test_label_image_later_object_wins(store):
    a = np.zeros((H, W), bool)
    a[10:50, 10:50] = True
    b = np.zeros((H, W), bool)
    b[30:70, 30:70] = True
    store.write(0, {1: a, 2: b}, {1: 1.0, 2: 1.0})
    overlap = a & b

    labels = store.label_image(0)  # ascending ids: 2 drawn last
    assert labels.dtype == np.uint16 and labels.shape == (H, W)
    assert (labels[overlap] == 2).all()
    assert (labels[a & ~b] == 1).all() and (labels[b & ~a] == 2).all()
    assert (labels[~(a | b)] == 0).all()

    labels = store.label_image(0, obj_order=[2, 1])
    assert (labels[overlap] == 1).all() and (labels[b & ~a] == 2).all()

    labels = store.label_image(0, obj_order=[1])  # unlisted objects are not drawn
    assert set(np.unique(labels)) == {0, 1}
    assert not store.label_image(9).any()


def test_bad_writes_are_refused(store):
    with pytest.raises(ValueError, match="shape"):
        store.write(0, {1: np.zeros((W, H), bool)}, {1: 1.0})
    with pytest.raises(ValueError, match="score"):
        store.write(0, {1: np.zeros((H, W), bool)}, {})
    with pytest.raises(ValueError):
        store.write(-1, {1: np.zeros((H, W), bool)}, {1: 1.0})
    assert store.frames() == []


def test_reader_never_sees_a_half_written_frame(store):
    """A tracking thread rewrites frames while the UI reads them: every read must be one
    complete version (the mask matching its score), never an error or a mix."""
    versions = [
        synth.disc_mask(H, W, synth.Disc(20 + 12 * k, 60, 0, 0, 10 + k, (0, 0, 0)), 0)
        for k in range(8)
    ]
    frames = range(3)
    for f in frames:
        store.write(f, {1: versions[0], 2: versions[0]}, {1: 0.0, 2: 0.0})
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = 0

    def writer():
        k = 0
        try:
            while not stop.is_set():
                k = (k + 1) % len(versions)
                for f in frames:
                    store.write(f, {1: versions[k]}, {1: float(k)})
                    store.write(f, {2: versions[k]}, {2: float(k)})
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for f in frames:
                result = store.read(f)
                assert result is not None and set(result.masks) == {1, 2}
                for obj_id in (1, 2):
                    k = int(result.scores[obj_id])
                    np.testing.assert_array_equal(result.masks[obj_id], versions[k])
                reads += 1
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert reads > 20
    assert not [p for p in store.root.iterdir() if p.suffix == ".tmp"]


def test_results_are_small_on_disk(store):
    for t in range(100):
        store.write(t, gt(t % 30), {1: 1.0, 2: 1.0})
    raw = 100 * 2 * H * W  # one byte per pixel per object
    assert store.nbytes_on_disk() < 100_000  # about 0.7 KB per frame
    assert store.nbytes_on_disk() < raw / 20
