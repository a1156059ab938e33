"""Tracking runs of the web app on a Ray cluster (``SAM2WEB_RAY_ADDRESS``).

The unit sent to the cluster is the self-contained :class:`~sam2web.compute.zerogpu.TrackingJob`
that ZeroGPU also runs. No disk is shared with the cluster: the bytes of the session's
frame files go to Ray's object store once per video (:meth:`Cluster.put_frames`), and the
worker writes them into a folder of its own. A :class:`TrackerWorker` actor per model keeps
that model loaded between jobs; it replays the job's history, propagates, and keeps each
tracked frame's masks in a queue that the web process empties with :meth:`TrackerWorker.poll`
(a long poll: the call returns as soon as a frame is ready). The web process writes those
masks into the session's own :class:`~sam2web.tracking.maskstore.MaskStore`, so the progress bar,
the live overlay video and the exports work as with local tracking; Cancel reaches the
worker with :meth:`TrackerWorker.cancel` and stops it between two frames.

Clicks stay in the web process. When the cluster cannot be reached (or Ray is not
installed) :func:`connect` says so in one sentence and the caller tracks locally, or
refuses (``SAM2WEB_RAY_FALLBACK``). When the cluster goes away during a run,
:func:`propagate_remote` ends the run with one sentence in ``notes``; the frames tracked so
far stay in the store and in the session's history.

Ray is optional: nothing here imports it until a propagation asks for the cluster.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import TrackingError
from ..history import Propagate
from ..tracking.tracker import PropagationStep, TrackingSession
from ..types import FrameResult
from .zerogpu import TrackingJob, rebuild_session

log = logging.getLogger(__name__)

NAMESPACE = "sam2web"
CONNECT_TIMEOUT_S = 3.0  # for the cluster's head port to answer
START_TIMEOUT_S = 300.0  # for a new worker to start (its first job also loads the model)
POLL_WAIT_S = 0.25  # longest a poll waits on the worker for a new frame
POLL_TIMEOUT_S = 30.0  # a poll unanswered this long means the cluster is gone
QUEUE_FRAMES = 4  # a worker runs at most this many frames ahead of the web process
_FRAME_NAME = re.compile(r"^\d{5,}\.(jpg|png)$|^video\.json$")

RAY_MISSING = (
    "Tracking on the Ray cluster needs Ray in this server (pip install -r requirements-ray.txt)"
)


class ClusterUnavailable(Exception):
    """The cluster cannot be used now; ``str(err)`` is a clause saying why."""


# ------------------------------------------------------------------ the worker side
@dataclass
class _Job:
    """One job in a worker: its frames queue, cancel flag and end."""

    cancel: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)
    frames: deque = field(default_factory=deque)
    finished: bool = False
    error: str | None = None
    abandoned: bool = False  # nobody polls any more: forget it when it ends
    done: int = 0  # frames tracked
    done_at_cancel: int | None = None  # frames tracked when the cancel arrived


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1))


def _write_frames(frames: dict[str, bytes], folder: Path) -> None:
    """The frame files shipped with a job, written into ``folder``. Names are those the
    web process gave its own frame files; anything else is refused."""
    folder.mkdir(parents=True)
    for name, data in frames.items():
        if not _FRAME_NAME.match(name):
            raise ValueError(f"unexpected file name {name!r} among a job's frames")
        (folder / name).write_bytes(data)


def _checkpoint_here(job: TrackingJob) -> Path | None:
    """The job's checkpoint on this node: the same path where it exists here, else the
    official file of the job's model found or downloaded into this node's cache; a file of
    another name (one's own weights) must be at the same path on every node."""
    from ..settings import Settings
    from ..tracking.checkpoints import get_spec, resolve_checkpoint

    if job.checkpoint is None or Path(job.checkpoint).is_file():
        return None if job.checkpoint is None else Path(job.checkpoint)
    spec = get_spec(job.model_key)
    if Path(job.checkpoint).name != spec.filename:
        raise FileNotFoundError(f"checkpoint {job.checkpoint} is not on this node")
    settings = Settings.from_env()
    return resolve_checkpoint(
        spec, checkpoint=None, cache_dir=settings.cache_dir, offline=settings.offline
    )


class TrackerWorker:
    """A Ray actor (threaded) that tracks jobs on its cached model, one at a time, while
    answering polls and cancels of any job at once."""

    def __init__(self) -> None:
        import torch

        from ..tracking.model import ModelCache

        # Ray starts an actor of one CPU with OMP_NUM_THREADS=1; the model runs one frame
        # at a time here (model_lock), and like the web app's own model it uses the node's
        # cores (on 2 cores, one thread made each frame about 1.5x slower).
        torch.set_num_threads(os.cpu_count() or 1)
        self.models = ModelCache()
        self.root = Path(tempfile.mkdtemp(prefix="sam2web-worker-"))
        self.jobs: dict[str, _Job] = {}
        self.model_lock = threading.Lock()
        self.jobs_lock = threading.Lock()
        self.after_cancel: list[int] = []

    def pid(self) -> int:
        return os.getpid()

    def running(self) -> list[str]:
        """Ids of the jobs this worker still holds (running, or with frames not polled)."""
        with self.jobs_lock:
            return sorted(self.jobs)

    def start(self, job_id: str, job: TrackingJob, frames: dict[str, bytes]) -> int:
        """Start tracking ``job`` in a thread; returns this worker's process id."""
        state = _Job()
        with self.jobs_lock:
            self.jobs[job_id] = state
        thread = threading.Thread(
            target=self._run, args=(job_id, state, job, frames), name=f"job-{job_id}"
        )
        thread.daemon = True
        thread.start()
        return os.getpid()

    def _run(self, job_id: str, state: _Job, job: TrackingJob, frames: dict) -> None:
        folder = self.root / job_id
        try:
            _write_frames(frames, folder / "frames")
            with self.model_lock:
                if not state.cancel.is_set():
                    self._track(state, job, folder)
        except BaseException as err:  # reported to the web process by poll
            log.exception("tracking job %s failed", job_id)
            state.error = f"{type(err).__name__}: {err}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with state.changed:
                state.finished = True
                state.changed.notify_all()
            if state.done_at_cancel is not None:
                self.after_cancel.append(state.done - state.done_at_cancel)
                del self.after_cancel[:-100]
            if state.abandoned:
                self._forget(job_id)

    def _track(self, state: _Job, job: TrackingJob, folder: Path) -> None:
        from ..tracking.checkpoints import get_spec
        from ..tracking.model import choose_device

        predictor = self.models.get(
            get_spec(job.model_key),
            _checkpoint_here(job),
            choose_device(job.device),
            job.resolution,
            corrections=job.corrections,
        )
        session, _ = rebuild_session(job, predictor, folder / "frames", folder / "masks")
        steps = session.propagate(job.direction, job.start_frame, job.end_frame, state.cancel)
        for step in steps:
            result = step.result
            ids = sorted(result.masks)
            item = (
                step.done,
                step.total,
                result.frame_idx,
                ids,
                [_pack(result.masks[i]) for i in ids],
                [float(result.scores.get(i, float("nan"))) for i in ids],
                session.history[-1],
            )
            with state.changed:
                state.frames.append(item)
                state.done = step.done
                state.changed.notify_all()
                # Not too far ahead of the web process (memory), unless it cancels.
                while len(state.frames) >= QUEUE_FRAMES and not state.cancel.is_set():
                    state.changed.wait(POLL_WAIT_S)

    def poll(self, job_id: str, wait_s: float = POLL_WAIT_S) -> tuple[list, bool, str | None]:
        """(frames tracked since the last poll, finished, error); waits up to ``wait_s``
        for a frame. A finished job is forgotten once its last frames were polled."""
        with self.jobs_lock:
            state = self.jobs.get(job_id)
        if state is None:
            return [], True, "the job is unknown to the worker"
        with state.changed:
            if not state.frames and not state.finished:
                state.changed.wait(wait_s)
            frames = list(state.frames)
            state.frames.clear()
            state.changed.notify_all()  # room in the queue again
            finished, error = state.finished, state.error
        if finished:
            self._forget(job_id)
            if state.done_at_cancel is not None:
                log.info(
                    "job %s: %d frame(s) tracked after the cancel arrived",
                    job_id,
                    state.done - state.done_at_cancel,
                )
        return frames, finished, error

    def frames_after_cancel(self) -> list[int]:
        """For each job cancelled on this worker, the frames it finished after the cancel
        arrived (the most recent last; at most 1 when cancelling works)."""
        return list(self.after_cancel)

    def cancel(self, job_id: str, abandon: bool = False) -> None:
        """Stop the job after the frame it is tracking; ``abandon``: nobody will poll it."""
        with self.jobs_lock:
            state = self.jobs.get(job_id)
        if state is None:
            return
        state.abandoned = state.abandoned or abandon
        with state.changed:
            if state.done_at_cancel is None:
                state.done_at_cancel = state.done
            state.cancel.set()
            state.changed.notify_all()
        if abandon and state.finished:
            self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        with self.jobs_lock:
            self.jobs.pop(job_id, None)


# ------------------------------------------------------------------ the web process side
def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def _head(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnavailable(f"SAM2WEB_RAY_ADDRESS {address!r} is not host:port")
    return host, int(port)


class Cluster:
    """This process's connection to one Ray cluster, and its workers (one per model)."""

    def __init__(self, address: str):
        self.address = address
        self._lock = threading.Lock()
        self._workers: dict[str, object] = {}
        self.generation = 0  # counts connections lost: objects put before are gone
        self.connected = False

    def check(self) -> None:
        """Connect (once) after checking that the head answers; ClusterUnavailable if not."""
        host, port = _head(self.address)
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError:
            self.lost()
            raise ClusterUnavailable(
                f"the Ray cluster at {self.address} cannot be reached"
            ) from None
        import ray

        with self._lock:
            if self.connected and ray.is_initialized():
                return
            try:
                ray.init(
                    address=f"{host}:{port}",
                    namespace=NAMESPACE,
                    log_to_driver=False,
                    runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]},
                )
            except Exception as err:
                log.warning("cannot connect to the Ray cluster at %s: %s", self.address, err)
                raise ClusterUnavailable(
                    f"the Ray cluster at {self.address} cannot be reached"
                ) from None
            self.connected = True

    def lost(self) -> None:
        """Forget the connection (after the cluster went away); the next run connects again."""
        with self._lock:
            self._workers.clear()
            self.generation += 1
            if self.connected:
                import ray

                with contextlib.suppress(Exception):
                    ray.shutdown()
            self.connected = False

    def worker(self, job: TrackingJob):
        """The actor that runs ``job``'s model (created on first use, then kept)."""
        import ray

        ident = f"{job.model_key}|{job.checkpoint}|{job.device}"
        name = "sam2web-" + hashlib.sha256(ident.encode()).hexdigest()[:16]
        with self._lock:
            if name not in self._workers:
                gpus = 1 if job.device.startswith("cuda") else 0
                actor = ray.remote(TrackerWorker).options(
                    name=name,
                    namespace=NAMESPACE,
                    get_if_exists=True,
                    max_concurrency=16,
                    num_cpus=1,
                    num_gpus=gpus,
                )
                self._workers[name] = actor.remote()
            return self._workers[name]

    def workers(self) -> dict[str, object]:
        """The workers (actor handles) this process has used, by name."""
        with self._lock:
            return dict(self._workers)

    def held_jobs(self, timeout_s: float = 10.0) -> list[str]:
        """The jobs this process's workers still hold, once none is left or after
        ``timeout_s`` (a closed session's job is gone within a frame)."""
        import ray

        deadline = time.monotonic() + timeout_s
        while True:
            calls = [w.running.remote() for w in self.workers().values()]
            held = [j for jobs in ray.get(calls, timeout=POLL_TIMEOUT_S) for j in jobs]
            if not held or time.monotonic() > deadline:
                return held
            time.sleep(0.05)

    def put_frames(self, frames_dir: Path):
        """The session's frame files (and video.json) in the object store, as one object."""
        import ray

        files = {
            p.name: p.read_bytes()
            for p in sorted(Path(frames_dir).iterdir())
            if _FRAME_NAME.match(p.name)
        }
        return ray.put(files)


_clusters: dict[str, Cluster] = {}
_clusters_lock = threading.Lock()


def connect(address: str) -> Cluster:
    """The cluster at ``address``, connected; ClusterUnavailable (a clause) if it cannot be
    used: Ray missing, the head not answering, or Ray refusing to connect."""
    if not ray_installed():
        raise ClusterUnavailable(RAY_MISSING)
    with _clusters_lock:
        cluster = _clusters.setdefault(address, Cluster(address))
    cluster.check()
    return cluster


def unavailable_sentence(reason: ClusterUnavailable, fallback: str) -> str:
    """What the page says when the cluster cannot be used (``fallback``: local|refuse)."""
    clause = str(reason)
    clause = clause[0].upper() + clause[1:]
    if fallback == "refuse":
        return f"{clause}, and this server tracks only there; try again later."
    return f"{clause}; tracking runs on this server instead."


def lost_sentence(frames: int) -> str:
    if not frames:
        return "The Ray cluster went away before it tracked a frame; press Track again."
    tracked = "the frame" if frames == 1 else f"the {frames} frames"
    return (
        f"The Ray cluster went away during tracking; {tracked} tracked before it did "
        "are kept, and pressing Track again tracks from the first prompted frame."
    )


def refuse(reason: ClusterUnavailable) -> TrackingError:
    return TrackingError(unavailable_sentence(reason, "refuse"))


def remote_job(job: TrackingJob, device: str) -> TrackingJob:
    """``job`` as a worker runs it: its device is chosen there (``device``: the setting),
    and its checkpoint, a file of this server, is found there as :func:`_checkpoint_here`
    says; this server's folders mean nothing there."""
    return replace(job, device=device, frames_dir="", masks_dir="", control_dir="")


def propagate_remote(
    cluster: Cluster,
    job: TrackingJob,
    frames: Callable[[], object],
    tracking: TrackingSession,
    cancel: threading.Event,
    notes: list[str],
    stops: list[Callable[[], None]] | None = None,
) -> Iterator[PropagationStep]:
    """Run ``job`` (a propagation of ``tracking``) on the cluster with the frames object
    ``frames()`` returns (see :meth:`Cluster.put_frames`): each tracked frame's masks are written to
    ``tracking``'s store and yielded as a step; ``cancel`` stops the worker after its
    current frame. The run is appended to ``tracking``'s history when it ends (also when
    the cluster went away: then with the frames tracked so far, and a sentence in
    ``notes``). While the job runs, ``stops`` holds a function that abandons it at once
    (for a session closed while nobody follows the run)."""
    import ray

    worker = stop = None
    job_id = uuid.uuid4().hex
    record: Propagate | None = None
    done = 0
    finished = False
    tracking.propagating = True
    try:
        try:
            worker = cluster.worker(job)
            stop = functools.partial(_abandon, worker, job_id)
            if stops is not None:
                stops.append(stop)
            ray.get(worker.start.remote(job_id, job, frames()), timeout=START_TIMEOUT_S)
            cancel_sent = False
            while not finished:
                if cancel.is_set() and not cancel_sent:
                    worker.cancel.remote(job_id)
                    cancel_sent = True
                reply = ray.get(worker.poll.remote(job_id), timeout=POLL_TIMEOUT_S)
                items, finished, error = reply
                for item in items:
                    step, record = _store_frame(tracking, item)
                    done = step.done
                    yield step
                if error is not None:
                    log.warning("tracking on the Ray cluster failed: %s", error)
                    raise TrackingError(
                        "Tracking on the Ray cluster failed; the reason is in the server "
                        "log. Press Track to try again."
                    )
        except (ray.exceptions.RayError, ConnectionError) as err:
            log.warning("the Ray cluster went away during tracking: %s", err)
            cluster.lost()
            finished = True
            notes.append(lost_sentence(done))
    finally:
        if not finished and worker is not None:  # the caller stopped listening: stop it
            _abandon(worker, job_id)
        if stops is not None and stop is not None:
            with contextlib.suppress(ValueError):
                stops.remove(stop)
        tracking.propagating = False
        if record is not None:
            tracking.history.append(record)


def _abandon(worker, job_id: str) -> None:
    """Tell ``worker`` to stop ``job_id`` and forget it (nobody polls it any more)."""
    with contextlib.suppress(Exception):
        worker.cancel.remote(job_id, True)


def _store_frame(tracking: TrackingSession, item) -> tuple[PropagationStep, Propagate]:
    done, total, frame_idx, ids, packed, scores, record = item
    store = tracking.store
    n = store.height * store.width
    masks = {
        i: np.unpackbits(bits, count=n).view(bool).reshape(store.height, store.width)
        for i, bits in zip(ids, packed, strict=True)
    }
    score_map = dict(zip(ids, scores, strict=True))
    store.write(frame_idx, masks, score_map)
    return PropagationStep(FrameResult(frame_idx, masks, score_map), done, total), record
