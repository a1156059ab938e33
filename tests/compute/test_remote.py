"""Tracking runs of the web app on a Ray cluster (SAM2WEB_RAY_ADDRESS).

The module starts its own one-node cluster on 127.0.0.1 (a ``ray start --head --block``
process group, with its own port and temp folder) and stops exactly that group; the last
test kills it mid-run to check that a cluster going away keeps what was tracked. The
cluster declares one GPU it does not have, so that a run with SAM2WEB_DEVICE=auto asks
for it (the other tests track on the CPU and leave it free)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("ray")

from sam2web.compute import remote  # noqa: E402
from sam2web.errors import TrackingError  # noqa: E402
from sam2web.session.engine import Engine  # noqa: E402
from sam2web.session.user import UserSession  # noqa: E402
from sam2web.settings import Settings  # noqa: E402
from tests import synth  # noqa: E402
from tests.masks import assert_nontrivial, stored_masks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")  # installed with ray, beside this Python
FRAMES = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@dataclasses.dataclass
class Head:
    address: str
    process: subprocess.Popen
    scratch: Path  # the workers' temporary folder

    def kill(self) -> None:
        """Kill this cluster's processes, nothing else: the head's process group and the
        workers its raylet started (each in a session of its own)."""
        try:
            started = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for process in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    log = (temp / "head.log").open("wb")
    command = [
        str(RAY),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=1",
        "--object-store-memory=100000000",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    scratch = temp / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, TMPDIR=str(scratch)),
    )
    started = Head(f"127.0.0.1:{port}", process, scratch)
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert process.poll() is None, (temp / "head.log").read_text()
            assert time.monotonic() < deadline, "the Ray head did not start within 60 s"
            time.sleep(0.2)
        yield started
    finally:
        remote.connect(started.address).lost() if _answers(port) else None
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        started.kill()
        log.close()
        patch.undo()


def _engine(
    tmp_path, checkpoint, address: str = "", fallback: str = "local", device: str = "cpu"
) -> Engine:
    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=128,
        device=device,
        checkpoint=checkpoint,
        offline=True,
        data_dir=tmp_path / "sessions",
        ray_address=address,
        ray_fallback=fallback,
        bf16_probe="no",
    )
    return Engine(settings)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    return synth.write_video(folder / "c.mp4", synth.make_frames(FRAMES, 120, 160), fps=8)


def _prompted(engine: Engine, clip: Path) -> UserSession:
    user = UserSession(engine)
    user.upload(clip)
    user.add_object("a")
    user.click(0, 40, 60)
    user.add_object("b")
    user.click(0, 120, 40)
    return user


def _masks(user: UserSession) -> dict:
    store = user.tracking.store
    return {f: {k: v.tolist() for k, v in store.read(f).masks.items()} for f in store.frames()}


def _two_runs(user: UserSession) -> list[list[int]]:
    first = [s.done for s in user.propagate("forward")]
    user.click(3, 60, 90, "negative", obj_id=1)  # a correction on a tracked frame
    second = [s.done for s in user.propagate("both", start_frame=3)]
    return [first, second]


# ------------------------------------------------------------------ without a cluster
def test_an_unreachable_cluster_tracks_here_and_says_so(tmp_path, random_checkpoint, clip):
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    user = _prompted(_engine(tmp_path, random_checkpoint, address), clip)
    steps = list(user.propagate("forward", end_frame=2))
    assert [s.done for s in steps] == [1, 2, 3]
    assert user.last_run.notes == [
        f"The Ray cluster at {address} cannot be reached; tracking runs on this server instead."
    ]
    assert_nontrivial(stored_masks(user.tracking.store))

    refusing = _prompted(_engine(tmp_path / "r", random_checkpoint, address, "refuse"), clip)
    with pytest.raises(TrackingError, match="tracks only there; try again later"):
        list(refusing.propagate("forward"))
    assert refusing.tracking.store.frames() == [0]  # the clicked frame only
    assert "propagate" not in [a.op for a in refusing.tracking.history]


def test_without_ray_installed_it_says_how_to_install_it(
    tmp_path, random_checkpoint, clip, monkeypatch
):
    monkeypatch.setattr(remote, "ray_installed", lambda: False)
    user = _prompted(_engine(tmp_path, random_checkpoint, "127.0.0.1:1"), clip)
    assert len(list(user.propagate("forward", end_frame=2))) == 3
    (note,) = user.last_run.notes
    assert "(pip install -r requirements-ray.txt)" in note and note.count("; ") == 1


def test_ray_is_imported_only_when_a_run_asks_for_the_cluster():
    check = (
        "import sys, sam2web.compute.remote, sam2web.session.user, sam2web.session.engine\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


def test_the_page_shows_the_sentence_while_tracking_and_after(tmp_path, random_checkpoint, clip):
    gr = pytest.importorskip("gradio")
    from sam2web.ui import SessionRegistry, UploadGuard
    from sam2web.ui import handlers as h
    from sam2web.ui.layout import build_layout

    address = f"127.0.0.1:{_free_port()}"
    engine = _engine(tmp_path, random_checkpoint, address)
    with gr.Blocks():
        page = build_layout(engine)
    guard = UploadGuard(tmp_path / "gradio-cache", engine.settings.data_dir)
    ctx = h.Context(engine=engine, page=page, registry=SessionRegistry(), guard=guard)
    user = _prompted(engine, clip)
    sentence = f"The Ray cluster at {address} cannot be reached; tracking runs on this server"
    *during, final = h.track(ctx, user, "forward", "", "2", 0, 0.5, True, True, 0, "", "mm", "")
    assert during and all(sentence in step[page.status] for step in during)
    assert final[page.status].startswith("Tracked 3 frames in ") and sentence in final[page.status]
    user.close()


# ------------------------------------------------------------------ on the cluster
def test_a_run_on_the_cluster_gives_the_masks_of_a_local_run(
    tmp_path, random_checkpoint, clip, head
):
    local = _prompted(_engine(tmp_path / "local", random_checkpoint), clip)
    expected_steps = _two_runs(local)
    expected = _masks(local)
    assert_nontrivial(stored_masks(local.tracking.store))

    user = _prompted(_engine(tmp_path / "remote", random_checkpoint, head.address), clip)
    assert _two_runs(user) == expected_steps  # progress reaches the caller frame by frame
    assert user.last_run.notes == [] and not user.tracking.propagating
    cluster = remote.connect(head.address)
    import ray

    (worker,) = cluster.workers().values()  # one worker, kept loaded between the two runs
    assert ray.get(worker.pid.remote()) != os.getpid()
    assert _masks(user) == expected
    ops = [a.op for a in user.tracking.history]
    assert ops == [a.op for a in local.tracking.history] and ops.count("propagate") == 2
    exports = user.export()  # the overlay video and tables read the cluster's masks
    assert exports.video.exists() and exports.csv.exists()
    assert cluster.held_jobs() == []


def test_cancel_stops_the_worker_within_a_frame(tmp_path, random_checkpoint, clip, head):
    user = _prompted(_engine(tmp_path, random_checkpoint, head.address), clip)
    seen = []
    for step in user.propagate("forward"):
        seen.append(step.done)
        user.cancel()
    tracked = user.tracking.history[-1].passes[0].frames
    assert user.last_run.cancelled and seen == list(range(1, tracked + 1)) and tracked < FRAMES
    assert user.tracking.store.frames() == list(range(tracked))
    cluster = remote.connect(head.address)
    import ray

    (worker,) = cluster.workers().values()
    assert ray.get(worker.frames_after_cancel.remote())[-1] <= 1
    assert cluster.held_jobs() == []


def test_closing_the_session_frees_the_worker(tmp_path, random_checkpoint, clip, head):
    user = _prompted(_engine(tmp_path, random_checkpoint, head.address), clip)
    run = user.propagate("forward")
    next(run)
    cluster = remote.connect(head.address)
    assert len(cluster.held_jobs(timeout_s=0)) == 1
    user.close()  # the tab closed; nobody follows the run any more
    assert cluster.held_jobs() == []
    run.close()


# ------------------------------------------------------------------ one user's failure
def _fresh_cluster(address: str) -> remote.Cluster:
    """This process's connection made anew: the workers of earlier tests end with the
    old connection, and the cluster's 2 CPUs and its GPU are free again."""
    import ray

    remote.connect(address).lost()
    cluster = remote.connect(address)
    deadline = time.monotonic() + 60
    while True:
        free = ray.available_resources()
        if free.get("CPU", 0) >= 2 and free.get("GPU", 0) >= 1:
            return cluster
        assert time.monotonic() < deadline, f"the cluster's resources stay taken: {free}"
        time.sleep(0.2)


def _other_checkpoint(checkpoint: Path, tmp_path: Path) -> Path:
    """The same weights at another path: runs with it get a worker of their own."""
    copy = tmp_path / "other" / checkpoint.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, copy)
    return copy


def _kept(frames: int) -> str:
    return (
        "the frame tracked before is kept"
        if frames == 1
        else (f"the {frames} frames tracked before are kept")
    )


def test_with_device_auto_the_worker_asks_for_the_clusters_gpu(
    tmp_path, random_checkpoint, clip, head
):
    """SAM2WEB_DEVICE=auto on a cluster with a GPU: the web app's worker takes it, as the
    batch planner plans. The test cluster's GPU is declared only, so PyTorch finds no CUDA
    in the worker and the run ends with the failure's sentence."""
    import ray

    from sam2web.cli.cluster import RayOptions, plan_workers

    _fresh_cluster(head.address)
    user = _prompted(_engine(tmp_path, random_checkpoint, head.address, device="auto"), clip)
    with pytest.raises(TrackingError, match="^Tracking on the Ray cluster failed; the reason"):
        list(user.propagate("forward"))
    assert ray.available_resources().get("GPU", 0) == 0  # the worker holds the GPU
    assert not user.tracking.propagating
    sizing = plan_workers(RayOptions(address=head.address), ray.cluster_resources(), 1, "auto")
    assert sizing.gpus == 1.0


def test_a_worker_that_cannot_start_in_time_ends_only_that_run(
    tmp_path, random_checkpoint, clip, head, monkeypatch
):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    _fresh_cluster(head.address)
    other = _prompted(_engine(tmp_path / "o", random_checkpoint, head.address), clip)
    running = other.propagate("forward")
    seen = [next(running).done]  # the other user's run goes on its worker (1 CPU)
    # Only the second worker's start is bounded short: the first one's start (a model load on
    # a busy machine) may take longer than that and is not what this test is about.
    monkeypatch.setattr(remote, "START_TIMEOUT_S", 5.0)
    hold = placement_group([{"CPU": 1}])  # the cluster's last CPU: no worker can start
    ray.get(hold.ready(), timeout=60)
    try:
        checkpoint = _other_checkpoint(random_checkpoint, tmp_path)
        user = _prompted(_engine(tmp_path / "u", checkpoint, head.address), clip)
        assert list(user.propagate("forward")) == []
        assert user.last_run.notes == [
            "The Ray cluster did not start a tracking worker within 5 s, perhaps because "
            "none of its GPUs or CPUs is free; press Track again later."
        ]
        assert not user.tracking.propagating
        seen += [s.done for s in running]
    finally:
        remove_placement_group(hold)
    assert seen == list(range(1, FRAMES + 1)) and other.last_run.notes == []


def test_a_worker_that_dies_ends_only_its_run_and_is_replaced(
    tmp_path, random_checkpoint, clip, head
):
    import ray

    cluster = _fresh_cluster(head.address)
    other = _prompted(_engine(tmp_path / "o", random_checkpoint, head.address), clip)
    running = other.propagate("forward")
    seen_other = [next(running).done]
    checkpoint = _other_checkpoint(random_checkpoint, tmp_path)
    user = _prompted(_engine(tmp_path / "u", checkpoint, head.address), clip)
    run = user.propagate("forward")
    seen = [next(run).done]
    _, worker = cluster.workers().values()  # the second: this user's
    scratch = Path(ray.get(worker.scratch.remote()))
    os.kill(ray.get(worker.pid.remote()), signal.SIGKILL)
    seen += [s.done for s in run]
    kept = len(seen)
    assert user.last_run.notes == [
        f"The tracking worker on the Ray cluster stopped during tracking; {_kept(kept)}, "
        "and pressing Track again tracks from the first prompted frame."
    ]
    assert user.tracking.store.frames() == list(range(kept)) and not user.tracking.propagating
    seen_other += [s.done for s in running]
    assert seen_other == list(range(1, FRAMES + 1)) and other.last_run.notes == []
    # Track again: a new worker takes the dead one's place and removes its scratch folder.
    assert [s.done for s in user.propagate("forward")] == list(range(1, FRAMES + 1))
    assert user.last_run.notes == []
    assert not scratch.exists() and scratch.parent == head.scratch


def test_a_worker_that_fails_to_start_says_so(tmp_path, random_checkpoint, clip, head, monkeypatch):
    cluster = _fresh_cluster(head.address)

    class Broken:
        def __init__(self):
            raise RuntimeError("this worker cannot start")

        def start(self, *args):
            pass

        def cancel(self, *args):
            pass

    monkeypatch.setattr(remote, "TrackerWorker", Broken)
    user = _prompted(_engine(tmp_path, random_checkpoint, head.address), clip)
    assert list(user.propagate("forward")) == []
    assert user.last_run.notes == [
        "The tracking worker could not start on the Ray cluster (the server log says why); "
        "press Track to try again."
    ]
    monkeypatch.undo()
    generation = cluster.generation
    assert [s.done for s in user.propagate("forward")] == list(range(1, FRAMES + 1))
    assert user.last_run.notes == [] and cluster.generation == generation


def test_a_run_nobody_polls_gives_the_worker_back(
    tmp_path, random_checkpoint, clip, head, monkeypatch
):
    """A caller that stops asking for frames (its process hangs or died) does not keep
    the worker's model: the worker stops that job, and the next run gets the model."""
    cluster = _fresh_cluster(head.address)
    monkeypatch.setattr(remote, "ABANDON_S", 2.0, raising=False)
    user = _prompted(_engine(tmp_path / "u", random_checkpoint, head.address), clip)
    run = user.propagate("forward")
    seen = [next(run).done]  # then this caller stops polling
    assert cluster.held_jobs(timeout_s=30) == []
    other = _prompted(_engine(tmp_path / "o", random_checkpoint, head.address), clip)
    assert [s.done for s in other.propagate("forward")] == list(range(1, FRAMES + 1))
    seen += [s.done for s in run]  # the caller comes back: the frames it had, then the end
    kept = len(seen)
    assert kept < FRAMES and user.last_run.notes == [
        "The Ray cluster stopped this run because this server had not collected its frames "
        f"for 2 s; {_kept(kept)}, and pressing Track again tracks from the first prompted "
        "frame."
    ]
    assert user.tracking.store.frames() == list(range(kept))


# ------------------------------------------------------------------ here after the cluster
def _after_a_cluster_run(engine: Engine, clip: Path) -> UserSession:
    """A user who tracked on the cluster, whose next runs find it unreachable."""
    user = _prompted(engine, clip)
    assert len(list(user.propagate("forward"))) == FRAMES
    assert user.last_run.notes == []
    _away(engine)
    return user


def _away(engine: Engine) -> None:
    address = f"127.0.0.1:{_free_port()}"
    engine.settings = dataclasses.replace(engine.settings, ray_address=address)


def test_the_replay_here_after_cluster_runs_is_a_run_like_others(
    tmp_path, random_checkpoint, clip, head, monkeypatch
):
    """The first run here after runs on the cluster replays them on this server's model
    first: a click meanwhile is refused, Cancel stops it, and its progress is reported."""
    _fresh_cluster(head.address)
    engine = _engine(tmp_path, random_checkpoint, head.address)
    user = _after_a_cluster_run(engine, clip)
    expected = _masks(user)
    real, refused = engine.start_session, []

    def start_session(*args, **kwargs):
        session = real(*args, **kwargs)
        if kwargs.get("masks_dir") is not None:  # the replay's session: the replay begins
            try:
                user.click(2, 50, 50)
            except TrackingError as err:
                refused.append(err.message)
            user.cancel()
        return session

    monkeypatch.setattr(engine, "start_session", start_session)
    assert list(user.propagate("forward")) == []
    assert refused == ["Tracking is running; wait for it to finish or press Cancel first."]
    assert user.last_run.cancelled and user.last_run.frames == 0
    assert _masks(user) == expected and not user.tracking.propagating
    monkeypatch.setattr(engine, "start_session", real)
    progress = []

    def report():
        progress.append((user.last_run.replayed, user.last_run.to_replay))

    steps = [s.done for s in user.propagate("forward", on_wait=report)]
    assert steps == list(range(1, FRAMES + 1)) and not user.last_run.cancelled
    # 2 objects, 2 clicks and the 6 frames tracked on the cluster, one step at a time
    assert {(done, 10) for done in range(1, 11)} <= set(progress)
    assert _masks(user) == expected


def test_closing_the_tab_stops_the_replay_here(
    tmp_path, random_checkpoint, clip, head, monkeypatch
):
    _fresh_cluster(head.address)
    engine = _engine(tmp_path, random_checkpoint, head.address)
    user = _after_a_cluster_run(engine, clip)
    real = engine.start_session

    def start_session(*args, **kwargs):
        session = real(*args, **kwargs)
        if kwargs.get("masks_dir") is not None:  # the replay begins: the tab closes
            user.close()
        return session

    monkeypatch.setattr(engine, "start_session", start_session)
    workspace = user.workspace.root
    with user.busy():  # as the page holds it while tracking
        assert list(user.propagate("forward")) == []
    assert user.workspace is None and not workspace.exists()


def test_reset_and_project_load_leave_nothing_to_replay(tmp_path, random_checkpoint, clip, head):
    _fresh_cluster(head.address)
    engine = _engine(tmp_path, random_checkpoint, head.address)
    user = _after_a_cluster_run(engine, clip)
    project = tmp_path / "p.json"
    project.write_bytes(user.save_project().read_bytes())
    user.reset()
    user.add_object("c")
    user.click(0, 40, 60)
    assert len(list(user.propagate("forward", end_frame=1))) == 2
    assert user.last_run.to_replay == 0  # nothing of the cluster's runs was replayed
    engine.settings = dataclasses.replace(engine.settings, ray_address=head.address)
    assert len(list(user.propagate("forward"))) == FRAMES and user.last_run.notes == []
    _away(engine)
    user.load_project(project)
    assert len(list(user.propagate("forward", end_frame=1))) == 2
    assert user.last_run.to_replay == 0


def test_a_cluster_gone_mid_run_keeps_the_tracked_frames(tmp_path, random_checkpoint, clip, head):
    """Last in the module: it kills the cluster."""
    user = _prompted(_engine(tmp_path, random_checkpoint, head.address), clip)
    seen = []
    for step in user.propagate("forward"):
        seen.append(step.done)
        if step.done == 2:
            head.kill()
    kept = len(seen)  # the frames received before the cluster went away
    assert 2 <= kept <= 1 + remote.QUEUE_FRAMES and seen == list(range(1, kept + 1))
    (note,) = user.last_run.notes
    assert note.startswith("The Ray cluster went away during tracking;") and note.count(";") == 1
    assert f"the {kept} frames tracked before are kept" in note
    assert user.tracking.store.frames() == list(range(kept))
    assert_nontrivial(stored_masks(user.tracking.store))
    assert user.tracking.history[-1].passes[0].frames == kept and not user.tracking.propagating
    exports = user.export()
    assert exports.csv.exists()
    # Tracking again runs here: the session's state is rebuilt from its history first.
    again = [s.done for s in user.propagate("forward", end_frame=kept)]
    assert again == list(range(1, kept + 2))
    assert "cannot be reached" in user.last_run.notes[0]
    assert user.tracking.store.frames() == list(range(kept + 1))
