"""Several users on one running app (real server on loopback) and on one in-process engine.

Users share only the model, in small units: each tracks with their own SAM2 state, so masks
tracked at the same time as others equal masks tracked alone; an upload never waits for
anyone's model work; a click waits at most about one tracked frame of another user; users
tracking at once share the frames about equally; cancelling or closing a session, queued or
running, leaves no thread and no file behind. Figures are printed (run with ``-s``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from sam2web.errors import SessionClosedError
from sam2web.session.engine import Engine
from sam2web.session.user import UserSession
from sam2web.settings import Settings
from sam2web.tracking.scheduler import UnitKind
from tests import loadrun
from tests.appserver import RunGate, start_app, wait_until
from tests.masks import assert_nontrivial

pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

RESOLUTION = 128
LONG = 40  # frames of the long clips: ~0.1 s a frame at 128 px on 2 idle cores
HELD = 24  # the first long run waits after this many frames until the second one starts


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    """The app; its runs can be held part-way (``app.gate``)."""
    workdir = tmp_path_factory.mktemp("load")
    server = start_app(
        workdir, random_checkpoint, resolution=RESOLUTION, gate=RunGate(workdir / "gate")
    )
    yield server
    server.stop()


def _prepared(app, clip: loadrun.UserClip, folder_of: dict, timing=None) -> Client:
    client = Client(app.url, verbose=False)
    folder_of[clip.key] = loadrun.upload(client, clip.write(app.data_dir.parent), app.data_dir)
    loadrun.prompt(client, clip, timing)
    return client


def test_three_users_at_once_get_the_masks_they_get_alone(app):
    clips = loadrun.user_clips(3, 10, objects=2, vary=True)
    alone, together, expected_masks = {}, {}, {}
    for clip in clips:
        client = _prepared(app, clip, alone)
        assert f"{clip.frames} of {clip.frames} frames have masks" in loadrun.track(client, clip)
        # Read now: a client dropped ends its session, and the server removes its files.
        expected_masks[clip.key] = loadrun.read_masks(alone[clip.key], clip)
    clients = [_prepared(app, clip, together) for clip in clips]
    with ThreadPoolExecutor(len(clips)) as pool:
        statuses = list(pool.map(loadrun.track, clients, clips))
    for clip, status in zip(clips, statuses, strict=True):
        assert f"{clip.frames} of {clip.frames} frames have masks" in status, (clip.key, status)
        expected = expected_masks[clip.key]
        got = loadrun.read_masks(together[clip.key], clip)
        assert sorted(got) == sorted(expected) == list(range(clip.frames)), clip.key
        masks = [m for frame in expected.values() for m in frame.values()]
        assert_nontrivial(masks, f"{clip.key}'s masks")
        for frame, objects in expected.items():
            assert sorted(got[frame]) == sorted(objects) == [1, 2]
            for obj_id, mask in objects.items():
                assert np.array_equal(got[frame][obj_id], mask), (clip.key, frame, obj_id)
    print(f"\n[equal] {', '.join(f'{c.key} {c.direction} {c.frames} frames' for c in clips)}")


def test_a_second_user_is_served_while_a_long_run_tracks(app):
    """B uploads and clicks while A's run of 40 frames goes on: A tracks until frame 24 and
    then waits, held by the server, until B starts tracking, so A is still running by
    construction while B is served, whatever the machine's speed; then both track."""
    a_clip = loadrun.UserClip("long-a", LONG, 160, 120, ("a",))
    b_clip = loadrun.UserClip("long-b", LONG + 2, 128, 96, ("b",))
    folder_of: dict = {}
    a = _prepared(app, a_clip, folder_of)
    alone = loadrun.Timing()
    b = Client(app.url, verbose=False)
    b_path = b_clip.write(app.data_dir.parent)
    alone.time("upload", lambda: loadrun.upload(b, b_path, app.data_dir))
    loadrun.prompt(b, b_clip, alone)

    with loadrun.FrameWatcher() as watcher:
        watcher.watch(folder_of["long-a"])
        app.gate.hold(folder_of["long-a"], after=HELD)
        job = a.submit("forward", *loadrun.TRACK_ARGS, api_name="/propagate")
        try:
            assert wait_until(lambda: loadrun.tracked_files(folder_of["long-a"]) >= 4, 60, 0.02)
            busy = loadrun.Timing()
            folder_of["long-b"] = busy.time(
                "upload", lambda: loadrun.upload(b, b_path, app.data_dir)
            )
            loadrun.prompt(b, b_clip, busy)
            a_running = not job.done() and not app.gate.has(folder_of["long-a"], "ended")
            watcher.watch(folder_of["long-b"])
            b_job = b.submit("forward", *loadrun.TRACK_ARGS, api_name="/propagate")
        finally:
            app.gate.release(folder_of["long-a"])
        b_status = b_job.result(timeout=300)[1]
        a_status = job.result(timeout=300)[1]
    assert f"Tracked {LONG} frames" in a_status and f"Tracked {LONG + 2} frames" in b_status
    start, end, got = watcher.split([folder_of["long-a"], folder_of["long-b"]])
    frame_s = (end - start) / max(1, sum(got))  # while both shared the model
    shares = [n / max(1, sum(got)) for n in got]
    print(
        f"\n[second user] upload alone {alone.seconds['upload']:.2f} s, while A tracks "
        f"{busy.seconds['upload']:.2f} s; first mask alone {alone.seconds['first_mask']:.2f} s, "
        f"while A tracks {busy.seconds['first_mask']:.2f} s; ~{frame_s:.2f} s a frame; "
        f"overlap {end - start:.1f} s, frames A {got[0]} / B {got[1]} "
        f"({100 * shares[0]:.0f}% / {100 * shares[1]:.0f}%)"
    )
    assert a_running, "A's run ended before B was served"
    assert busy.seconds["upload"] < 3 * alone.seconds["upload"] + 2.0
    # add_object and the click: each may wait for the frame of A in progress.
    assert busy.seconds["first_mask"] < alone.seconds["first_mask"] + 2 * frame_s + 1.5
    assert sum(got) >= 20, (start, end, got)
    assert all(0.35 <= share <= 0.65 for share in shares), got


# ------------------------------------------------------------------ in-process: leaks


@pytest.fixture
def engine(tmp_path, random_checkpoint):
    settings = Settings.from_env(
        {
            "SAM2WEB_CHECKPOINT": str(random_checkpoint),
            "SAM2WEB_OFFLINE": "1",
            "SAM2WEB_RESOLUTION": str(RESOLUTION),
            "SAM2WEB_DATA_DIR": str(tmp_path / "sessions"),
            "SAM2WEB_CACHE_DIR": str(tmp_path / "cache"),
        }
    )
    engine = Engine(settings, gpu_jobs=False)
    yield engine
    assert engine.close()


def _user(engine: Engine, clip: loadrun.UserClip, folder) -> UserSession:
    user = UserSession(engine)
    user.upload(clip.write(folder))
    disc = clip.discs()[0]
    user.click(0, disc.x0, disc.y0)
    return user


def _track_in_thread(user: UserSession, outcome: dict) -> threading.Thread:
    def run() -> None:
        try:
            outcome["frames"] = sum(1 for _ in user.propagate())
        except SessionClosedError as err:
            outcome["closed"] = str(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_cancel_and_close_queued_and_running_leak_nothing(engine, tmp_path):
    clip = loadrun.UserClip("leak", 24, 160, 120, ("disc",))
    users = [_user(engine, clip, tmp_path) for _ in range(4)]
    scheduler = engine.schedulers.get("cpu")
    baseline = set(threading.enumerate())
    outcomes = [{} for _ in users]

    # Queued: a unit holds the model, so both runs wait for their first frame.
    hold = threading.Event()
    blocker = scheduler.submit(hold.wait, "blocker", UnitKind.INTERACTIVE)
    queued = [_track_in_thread(u, o) for u, o in zip(users[:2], outcomes[:2], strict=True)]
    assert wait_until(
        lambda: all(scheduler.snapshot(u.owner).queued == 1 for u in users[:2]), 10, 0.01
    )
    users[0].cancel()
    users[1].close()
    hold.set()
    blocker.result(10)

    # Running: two runs share the model; one is cancelled, the other's tab closes.
    running = [_track_in_thread(u, o) for u, o in zip(users[2:], outcomes[2:], strict=True)]
    assert wait_until(lambda: len(users[3].tracking.store.frames()) >= 4, 60, 0.01)
    users[2].cancel()
    users[3].close()
    for thread in queued + running:
        thread.join(60)
        assert not thread.is_alive()

    print(f"\n[leaks] outcomes {outcomes}")
    # A closed session's run ends quietly, as a cancelled one does.
    assert outcomes[0]["frames"] <= 1 and users[0].last_run.cancelled
    assert outcomes[1]["frames"] == 0 and users[1].last_run.cancelled
    for running_user, outcome in zip(users[2:], outcomes[2:], strict=True):
        assert 1 <= outcome["frames"] < clip.frames and running_user.last_run.cancelled
    for closed in (users[1], users[3]):
        assert closed.workspace is None
    assert len(list((tmp_path / "sessions").iterdir())) == 2  # the cancelled users' folders
    for cancelled in (users[0], users[2]):  # as the page does after a run
        assert cancelled.export().csv.is_file()

    def new_threads() -> set[threading.Thread]:
        # tqdm's monitor is one per process, started by the first progress bar.
        return {t for t in threading.enumerate() if t.name != "tqdm_monitor"} - baseline

    assert wait_until(lambda: not new_threads(), 10, 0.05), new_threads()
    snapshot = scheduler.snapshot("anyone")
    assert snapshot.units_ahead == 0 and snapshot.other_tracking_owners == 0
