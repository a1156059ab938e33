"""Session folders on disk: removed when a session expires (in the process, on the test's
clock), and through the running app swept while the server runs when nothing owns them,
and capped in total (SAM2WEB_MAX_DISK_MB)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from tests import synth
from tests.appserver import session_folders, start_app, wait_until

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

HOUR = 3600.0


def age(path: Path, seconds: float) -> None:
    """Set a folder's modification time ``seconds`` into the past."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def upload(client: Client, clip: Path, data_dir: Path) -> Path:
    """Upload a clip and return the session folder it made."""
    before = session_folders(data_dir)
    client.predict(handle_file(str(clip)), api_name="/upload")
    (folder,) = session_folders(data_dir) - before
    return folder


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    """A server that sweeps every second and allows 1 MB of session folders in all."""
    server = start_app(
        tmp_path_factory.mktemp("disk-app"),
        random_checkpoint,
        extra_env={"SAM2WEB_SWEEP_INTERVAL_S": "1", "SAM2WEB_MAX_DISK_MB": "1"},
    )
    yield server
    server.stop()


def test_orphan_folders_are_swept_while_the_server_runs(app, tmp_path):
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(4, 120, 160))
    client = Client(app.url, verbose=False)
    live = upload(client, clip, app.data_dir)
    age(live, 3 * HOUR)  # older than the session TTL (2 h), but its session is open

    orphan = app.data_dir / uuid.uuid4().hex  # as an earlier run would have left it
    (orphan / "frames").mkdir(parents=True)
    (orphan / "frames" / "00000.jpg").write_bytes(b"\xff" * 1000)
    age(orphan, 3 * HOUR)
    recent = app.data_dir / uuid.uuid4().hex  # younger than the TTL: maybe just created
    recent.mkdir()
    not_ours = app.data_dir / "notes"  # not a server-made name: never touched
    not_ours.mkdir()
    age(not_ours, 3 * HOUR)
    try:
        assert wait_until(lambda: not orphan.exists(), timeout=20), "orphan not swept"
        time.sleep(1.5)  # at least one more pass, which must spare the rest
        assert live.is_dir() and (live / "frames").is_dir()
        assert recent.is_dir() and not_ours.is_dir()
        assert "housekeeping removed 1 stale session folder" in app.log()
        # The open session still works on its files.
        assert Path(client.predict(3, api_name="/frame")[0]).exists()
    finally:
        shutil.rmtree(recent, ignore_errors=True)
        shutil.rmtree(not_ours, ignore_errors=True)


def test_uploads_are_refused_when_session_storage_is_full(app, tmp_path):
    client = Client(app.url, verbose=False)
    # 60 frames of 320x240 take 36 KB as MP4 but about 1.7 MB as decoded frames.
    long_clip = synth.write_video(tmp_path / "long.mp4", synth.make_frames(60, 240, 320))
    small_clip = synth.write_video(tmp_path / "small.mp4", synth.make_frames(4, 120, 160))
    before = session_folders(app.data_dir)

    # Decoding goes beyond the 1 MB limit part-way: refused, and nothing stays behind.
    with pytest.raises(Exception, match="storage for sessions is full") as err:
        client.predict(handle_file(str(long_clip)), api_name="/upload")
    assert "upload a shorter video" in str(err.value) and "Traceback" not in str(err.value)
    assert session_folders(app.data_dir) == before

    # Other files already fill the sessions folder: refused before decoding.
    filler = app.data_dir / "filler"
    filler.mkdir()
    try:
        (filler / "blob").write_bytes(b"\0" * (1024 * 1024 - 4096))
        with pytest.raises(Exception, match="storage for sessions is full; try again later"):
            client.predict(handle_file(str(small_clip)), api_name="/upload")
        assert session_folders(app.data_dir) == before
        assert "refusing an upload: session folders use" in app.log()
    finally:
        shutil.rmtree(filler)

    # With the space free again the same small clip is accepted.
    info = client.predict(handle_file(str(small_clip)), api_name="/upload")[-1]
    assert info["num_frames"] == 4
    assert len(session_folders(app.data_dir) - before) == 1


class Clock:
    """The time as the test sets it, in the shape of the ``time`` module's ``time()``."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


def test_an_idle_session_expires_and_a_busy_one_does_not(ctx, tmp_path, monkeypatch):
    """SAM2WEB_SESSION_TTL_S counts from a session's last action (viewing a frame counts):
    an idle session is closed with its files once it has been idle for longer than the
    TTL, one in use is kept however long it lives. The clock is the test's: sessions note
    their last action on it and the expiry pass is given its time, so nothing waits.

    Recorded runs of wrong variants: sessions whose frame views did not count as use
    (``view_frame`` without its ``touch``) closed the active session with the idle one
    and failed the check at TTL + 1 s; an expiry at the TTL itself (``>=`` in
    ``idle_past``) closed the idle session early and failed the check at the TTL.
    """
    from types import SimpleNamespace

    from sam2web.session import lifecycle
    from sam2web.ui import SessionRegistry
    from sam2web.ui import handlers as h
    from sam2web.ui.user import UserSession

    ttl = 3.0
    clock = Clock(time.time())
    monkeypatch.setattr(lifecycle, "time", clock)  # what a session's last action reads
    registry = SessionRegistry(idle_ttl_s=ttl)
    clip = synth.write_video(tmp_path / "c.mp4", synth.make_frames(3, 120, 160))
    active, idle = UserSession(ctx.engine), UserSession(ctx.engine)
    try:
        for tab, user in (("active", active), ("idle", idle)):
            h.upload(ctx, user, str(clip))
            registry.remember(SimpleNamespace(session_hash=tab), user)
        folders = {"active": active.workspace.root, "idle": idle.workspace.root}
        ids = {"active": active.workspace.id, "idle": idle.workspace.id}
        assert all((f / "frames").is_dir() for f in folders.values())
        start = clock.now

        def at(seconds: float) -> set[str]:
            """The active tab views a frame at ``start + seconds``, then the pass runs."""
            clock.now = start + seconds
            h.show_frame(ctx, active, 1)
            return registry.workspace_ids(now=clock.now)

        assert at(ttl) == {ids["active"], ids["idle"]}  # idle for the TTL: kept
        assert at(ttl + 1) == {ids["active"]}  # idle for longer: closed
        assert idle.closed and not folders["idle"].exists()
        for seconds in range(5, 9):  # well past the TTL, and in use all along
            assert at(seconds) == {ids["active"]}
        last = clock.now
        assert registry.workspace_ids(now=last + ttl) == {ids["active"]}
        assert registry.workspace_ids(now=last + ttl + 0.001) == set()  # once it idles too
        assert active.closed and not folders["active"].exists()
        assert session_folders(ctx.engine.settings.data_dir) == set()
    finally:
        active.close()
        idle.close()
