"""UserSession: the per-user layer under the page. Cleanup, display mapping, exports."""

from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from sam2web.engine import Engine
from sam2web.errors import MediaError, SessionClosedError, TrackingError
from sam2web.settings import Settings
from sam2web.workflow import UserSession, display_scale
from tests import synth


@pytest.fixture
def engine(tmp_path, random_checkpoint):
    settings = dataclasses.replace(Settings.from_env({}), resolution=256,
                                   checkpoint=random_checkpoint, offline=True,
                                   data_dir=tmp_path / "sessions")
    return Engine(settings)


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
    assert np.array_equal(user.render_frame(1), user.frame_rgb(1))


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
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(4, 120, 160))
    user = UserSession(engine)
    user.upload(clip)
    user.click(0, 40, 60)
    list(user.propagate())
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
