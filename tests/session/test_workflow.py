"""UserSession: the per-user layer under the page. Cleanup, display mapping, exports."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from sam2web.errors import MediaError, SessionClosedError, TrackingError
from sam2web.outputs.display import display_scale
from sam2web.session.user import UserSession
from tests import synth


def test_close_removes_every_file_of_the_session(engine, tmp_path):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(4, 120, 160))
    user = UserSession(engine)
    user.upload(clip, source_name="c.mp4")
    user.click(0, 40, 60)  # adds an object, runs the model, stores a mask
    root = user.workspace.root
    assert root.exists() and any(root.rglob("*.npz"))
    user.close()
    assert not root.exists()
    assert list((tmp_path / "sessions").iterdir()) == []


def test_registry_closes_a_tab_that_unloads(engine, tmp_path):
    from sam2web.ui import SessionRegistry

    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(3, 120, 160))
    registry = SessionRegistry()
    user = UserSession(engine)
    user.upload(clip)
    request = SimpleNamespace(session_hash="abc123")
    registry.remember(request, user)
    assert registry.live() == [user]
    registry.close(request)
    assert registry.live() == [] and user.closed and user.workspace is None


def test_a_failed_upload_keeps_the_previous_video(engine, tmp_path):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(3, 120, 160))
    user = UserSession(engine)
    info = user.upload(clip)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2000)
    with pytest.raises(MediaError):
        user.upload(bad)
    assert user.info == info and user.frame_rgb(2).shape == (120, 160, 3)
    assert len(list((tmp_path / "sessions").iterdir())) == 1  # no folder of the failed try


def test_display_mapping_round_trips_original_pixels(engine, tmp_path):
    assert display_scale(160, 120) == 6.0 and display_scale(1920, 1080) == 0.5
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(2, 120, 160))
    user = UserSession(engine)
    user.upload(clip)
    shown = user.view_frame(0)
    assert shown.shape == (720, 960, 3)
    k = user.display_scale
    assert user.to_original(40 * k, 60 * k) == (40.0, 60.0)
    assert user.to_original(-5, 10_000) == (0.0, 120.0)  # clamped into the frame


def test_export_before_tracking_is_refused(engine, tmp_path):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(2, 120, 160))
    user = UserSession(engine)
    user.upload(clip)
    with pytest.raises(TrackingError, match="Nothing is tracked yet"):
        user.export()
    from sam2web.outputs.display import render_frame

    assert np.array_equal(
        render_frame(user.frame_rgb, user.tracking, user.style, 1), user.frame_rgb(1)
    )


def _decoded(path) -> list[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    w, h = next(reader)["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3).copy() for f in reader]


def _rendered_afterwards(user: UserSession, tmp_path, name: str) -> list[np.ndarray]:
    from sam2web.outputs.video import render_overlay_video

    info = user.info
    frames = ((i, user.frame_rgb(i)) for i in range(info.num_frames))
    path = render_overlay_video(
        frames, user.tracking.store, user.tracking.objects, user.style, tmp_path / name, info.fps
    )
    return _decoded(path)


def _tracked_user(engine, tmp_path, frames: int = 4) -> UserSession:
    """A session with one object clicked on frame 0 and tracked forward."""
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(frames, 120, 160))
    user = UserSession(engine)
    user.upload(clip)
    user.click(0, 40, 60)
    list(user.propagate())
    return user


def test_the_video_written_beside_tracking_equals_one_rendered_afterwards(engine, tmp_path):
    from sam2web.outputs.render import OverlayStyle

    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(7, 120, 160), fps=7)
    user = UserSession(engine)
    user.upload(clip)
    user.style = OverlayStyle(trails=3)
    user.click(0, 40, 60)
    user.add_object("b")
    user.click(0, 120, 40)
    steps = list(user.propagate("forward"))
    assert user.output.live is not None and len(steps) == 7
    live = _decoded(user.export().video)
    assert user.output.live is None  # used once
    expected = _rendered_afterwards(user, tmp_path, "after1.mp4")
    assert len(live) == 7 and all(np.array_equal(a, b) for a, b in zip(live, expected, strict=True))

    # A refinement in the middle, then both directions from there: frames before the start
    # wait for the backward pass, and each frame shows its final masks.
    user.click(4, 60, 90, "negative")
    list(user.propagate("both", start_frame=4))
    live = _decoded(user.export().video)
    expected = _rendered_afterwards(user, tmp_path, "after2.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(live, expected, strict=True))

    # Cancelled after two frames: the rest of the video shows what was stored before.
    user.click(2, 50, 70)
    for step in user.propagate("forward", start_frame=2):
        if step.done == 2:
            user.cancel()
    assert user.last_run.cancelled and user.last_run.frames == 2
    live = _decoded(user.export().video)
    expected = _rendered_afterwards(user, tmp_path, "after3.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(live, expected, strict=True))


def test_a_change_after_tracking_renders_the_video_again(engine, tmp_path):
    from sam2web.outputs.render import OverlayStyle

    user = _tracked_user(engine, tmp_path)
    user.rename_object(user.active_object, "renamed")  # labels are drawn in the video
    user.style = OverlayStyle(opacity=0.8)
    video = user.export().video
    assert _decoded(video)[1].tolist() == _rendered_afterwards(user, tmp_path, "r.mp4")[1].tolist()
    exports_dir = user.workspace.exports_dir
    assert not list(exports_dir.glob("*.part"))  # the aborted live writer left nothing

    list(user.propagate())
    user.close()  # closing while the live video waits for export leaves nothing behind
    assert not exports_dir.exists()


def test_fast_preview_keeps_the_clicks_and_measures_its_agreement(engine, tmp_path):
    import dataclasses as dc

    engine.settings = dc.replace(engine.settings, resolution=256, fast_resolution=128)
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(5, 120, 160))
    user = UserSession(engine)
    user.upload(clip)
    user.click(0, 40, 60)
    user.add_object("b")
    user.click(0, 120, 40)
    user.click(0, 80, 100, "negative")
    list(user.propagate())
    assert user.resolution == 256

    assert user.set_quality("fast") is True  # the clicks are given to the 128 px model
    assert user.resolution == 128 and user.tracking.predictor.image_size == 128
    assert [o.name for o in user.objects] == ["object 1", "b"]
    assert len(user.tracking.prompts[(0, 2)].clicks) == 2
    assert user.tracking.store.frames() == [0]  # tracked frames are not kept; track again
    fast = [s.result for s in user.propagate()]
    assert len(fast) == 5

    report = user.compare_qualities(frames=3)
    assert (report.first_frame, report.last_frame) == (0, 2)
    assert set(report.iou) == {1, 2}
    assert all(0.0 <= lo <= mean <= 1.0 for mean, lo in report.iou.values())
    assert report.reference_s_per_frame > 0 and report.candidate_s_per_frame > 0
    words = {"close": "agrees closely", "rough": "agrees only roughly", "differs": "differs"}
    assert words[report.verdict()] in report.sentence()
    # The comparison left the session's own results and files alone.
    assert [user.tracking.store.read(i).masks[1].tolist() for i in range(5)] == [
        r.masks[1].tolist() for r in fast
    ]
    assert not list(user.workspace.root.glob("compare-*"))

    # The project remembers the quality: loading it replays at 128 px again.
    project = user.save_project()
    other = UserSession(engine)
    other.upload(clip)
    other.load_project(project)
    assert other.quality == "fast" and other.tracking.predictor.image_size == 128
    assert [other.tracking.store.read(i).masks[2].tolist() for i in range(5)] == [
        r.masks[2].tolist() for r in fast
    ]


def test_mask_iou():
    from sam2web.session.quality import mask_iou

    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert mask_iou(a, b) == 1.0 and mask_iou(None, b) == 1.0
    a[:2] = True
    assert mask_iou(a, b) == 0.0
    b[1:3] = True
    assert mask_iou(a, b) == pytest.approx(4 / 12)


def test_close_during_propagation_stops_it_and_leaves_nothing(engine, tmp_path):
    """The page's unload closes the session while its propagation is suspended between
    frames: the run ends at the next frame, nothing is written into the removed folder."""
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(6, 120, 160))
    user = UserSession(engine)
    user.upload(clip)
    user.click(0, 40, 60)
    root = user.workspace.root
    steps = user.propagate()
    assert next(steps).done == 1
    user.close()
    assert not root.exists()
    assert list(steps) == []  # cancelled: no further frame is tracked
    assert user.last_run.cancelled and user.last_run.frames == 1
    with pytest.raises(SessionClosedError):
        user.export()
    assert not root.exists() and list((tmp_path / "sessions").iterdir()) == []


def test_close_during_an_export_removes_the_folder_when_it_ends(engine, tmp_path):
    user = _tracked_user(engine, tmp_path)
    root = user.workspace.root
    rendering, go_on = threading.Event(), threading.Event()

    def progress(done, total):
        rendering.set()
        assert go_on.wait(30)

    worker = threading.Thread(target=user.export, kwargs={"progress": progress})
    worker.start()
    assert rendering.wait(60)
    user.close()  # returns at once; the export is still writing
    assert user.closed and root.exists()
    go_on.set()
    worker.join(60)
    assert not root.exists() and list((tmp_path / "sessions").iterdir()) == []


def _snapshot(user: UserSession) -> tuple:
    """Everything a refused request could break: every file of the session (by content),
    the recorded history, the prompts, the objects and the active object."""
    root = user.workspace.root
    files = {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
    tracking = user.tracking
    objects = [(o.obj_id, o.name, o.color) for o in user.objects]
    return files, list(tracking.history), dict(tracking.prompts), objects, user.active_object


def test_refused_requests_leave_the_session_as_it_was(engine, tmp_path):
    from sam2web.errors import UserError

    user = _tracked_user(engine, tmp_path)
    try:
        user.export()
        before = _snapshot(user)
        bogus = tmp_path / "holiday.mp4"
        bogus.write_bytes(b"not a video at all" * 50)
        refused = {
            "click outside": lambda: user.click(0, 500, 10),
            "click without position": lambda: user.click(0, float("nan"), 10),
            "frame past the end": lambda: user.click(99, 40, 60),
            "negative frame": lambda: user.undo(-1),
            "removed object": lambda: user.click(0, 40, 60, obj_id=7),
            "nothing to undo": lambda: user.undo(2),
            "unknown direction": lambda: list(user.propagate("sideways")),
            "tiny box": lambda: user.add_box(0, 10, 10, 11, 11),
            "unknown click mode": lambda: user.click(0, 40, 60, mode="lasso"),
            "unknown quality": lambda: user.set_quality("ultra"),
            "not a video": lambda: user.upload(bogus),
        }
        for what, request in refused.items():
            with pytest.raises(UserError):
                request()
            assert _snapshot(user) == before, what
        assert_nontrivial_masks(user)
    finally:
        user.close()


def assert_nontrivial_masks(user: UserSession) -> None:
    from tests.masks import assert_nontrivial, stored_masks

    assert_nontrivial(stored_masks(user.tracking.store))
