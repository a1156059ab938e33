"""Tracking runs of the web app on a Ray cluster (``SAM2WEB_RAY_ADDRESS``): the web
process's side (the worker's is :mod:`sam2web.compute.worker`).

The unit sent to the cluster is the self-contained :class:`~sam2web.compute.zerogpu.TrackingJob`
that ZeroGPU also runs. No disk is shared with the cluster: the bytes of the session's
frame files go to Ray's object store once per video (:meth:`Cluster.put_frames`), and the
worker writes them into a folder of its own. A :class:`~sam2web.compute.worker.TrackerWorker`
actor per model keeps that model loaded between jobs; the web process empties its queue of
tracked frames with ``poll`` (a long poll: the call returns as soon as a frame is ready) and
writes those masks into the session's own :class:`~sam2web.tracking.maskstore.MaskStore`, so
the progress bar, the live overlay video and the exports work as with local tracking;
Cancel reaches the worker with ``cancel`` and stops it between two frames.

Clicks stay in the web process. When the cluster cannot be reached (or Ray is not
installed) :func:`connect` says so in one sentence and the caller tracks locally, or
refuses (``SAM2WEB_RAY_FALLBACK``). A run that fails on the cluster ends with one sentence
in ``notes`` naming why (:func:`failure_sentence`: the worker did not start in time, could
not start, stopped, or the cluster went away); the frames tracked so far stay in the store
and in the session's history. Only the last resets this process's connection: every other
failure ends that one run and leaves the other users' runs going.

Ray is optional: nothing here imports it until a propagation asks for the cluster.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import TrackingError
from ..history import Propagate
from ..tracking.tracker import PropagationStep, TrackingSession
from ..types import FrameResult
from .worker import ABANDON_AFTER_S, ABANDONED, FRAME_NAME, QUEUE_FRAMES, TrackerWorker
from .zerogpu import TrackingJob

log = logging.getLogger(__name__)

__all__ = ["QUEUE_FRAMES", "TrackerWorker"]

NAMESPACE = "sam2web"
CONNECT_TIMEOUT_S = 3.0  # for the cluster's head port to answer
START_TIMEOUT_S = 300.0  # for a new worker to start (its first job also loads the model)
POLL_TIMEOUT_S = 30.0  # a poll unanswered this long: the worker or the cluster is gone
# A job its web process stopped polling this long is stopped by the worker.
ABANDON_S = ABANDON_AFTER_S

RAY_MISSING = (
    "Tracking on the Ray cluster needs Ray in this server (pip install -r requirements-ray.txt)"
)


class ClusterUnavailable(Exception):
    """The cluster cannot be used now; ``str(err)`` is a clause saying why."""


def cluster_device(setting: str, cluster_gpus: float) -> str:
    """The device a worker on a Ray cluster tracks on for SAM2WEB_DEVICE ``setting``:
    ``auto`` is ``cuda`` where the cluster has a GPU and ``cpu`` where it has none (Ray
    hides the GPUs from a worker that did not ask for one); any other setting stays."""
    device = (setting or "auto").strip().lower()
    if device == "auto":
        return "cuda" if cluster_gpus >= 1 else "cpu"
    return device


def wants_gpu(device: str) -> bool:
    """Whether a worker on ``device`` (see :func:`cluster_device`) asks Ray for a GPU."""
    return device.startswith("cuda")


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
        self._replaced: dict[str, int] = {}  # workers that died, by name: a new name each
        self.generation = 0  # counts connections lost: objects put before are gone
        self.connected = False

    def check(self) -> None:
        """Connect (once) after checking that the head answers; ClusterUnavailable if not."""
        host, port = _head(self.address)
        if not self.head_answers():
            self.lost()
            raise ClusterUnavailable(f"the Ray cluster at {self.address} cannot be reached")
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

    def head_answers(self) -> bool:
        """Whether the cluster's head port answers now."""
        host, port = _head(self.address)
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                return True
        except OSError:
            return False

    def device_for(self, setting: str) -> str:
        """The device this cluster's workers track on for SAM2WEB_DEVICE ``setting``."""
        import ray

        return cluster_device(setting, float(ray.cluster_resources().get("GPU", 0)))

    def worker(self, job: TrackingJob):
        """The actor that runs ``job``'s model (created on first use, then kept)."""
        import ray

        with self._lock:
            name = self._name(job)
            if name not in self._workers:
                actor = ray.remote(TrackerWorker).options(
                    name=name,
                    namespace=NAMESPACE,
                    get_if_exists=True,
                    max_concurrency=16,
                    num_cpus=1,
                    num_gpus=1 if wants_gpu(job.device) else 0,
                )
                self._workers[name] = actor.remote()
            return self._workers[name]

    def forget_worker(self, job: TrackingJob, handle) -> None:
        """Forget ``job``'s worker when it is ``handle`` (it died or could not start): the
        next run on that model starts a new one."""
        with self._lock:
            name = self._name(job)
            if self._workers.get(name) is handle:
                del self._workers[name]
                # A dead actor's name may stay taken a while: the next one gets another.
                base = worker_name(job)
                self._replaced[base] = self._replaced.get(base, 0) + 1

    def _name(self, job: TrackingJob) -> str:
        base = worker_name(job)
        count = self._replaced.get(base, 0)
        return f"{base}-{count}" if count else base

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
            if FRAME_NAME.match(p.name)
        }
        return ray.put(files)


def worker_name(job: TrackingJob) -> str:
    """The name of the worker actor for ``job``'s model, checkpoint and device."""
    ident = f"{job.model_key}|{job.checkpoint}|{job.device}"
    return "sam2web-" + hashlib.sha256(ident.encode()).hexdigest()[:16]


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


def _kept(frames: int) -> str:
    if frames == 1:
        return "the frame tracked before is kept"
    return f"the {frames} frames tracked before are kept"


def _ended(cause: str, frames: int) -> str:
    """One sentence for a run that ``cause`` ended after ``frames`` tracked frames."""
    if not frames:
        return f"{cause} before it tracked a frame; press Track again."
    return (
        f"{cause} during tracking; {_kept(frames)}, and pressing Track again tracks from the "
        "first prompted frame."
    )


def lost_sentence(frames: int) -> str:
    return _ended("The Ray cluster went away", frames)


def stopped_sentence(frames: int) -> str:
    return _ended("The tracking worker on the Ray cluster stopped", frames)


def start_timeout_sentence() -> str:
    return (
        f"The Ray cluster did not start a tracking worker within {START_TIMEOUT_S:g} s, "
        "perhaps because none of its GPUs or CPUs is free; press Track again later."
    )


NOT_STARTED = (
    "The tracking worker could not start on the Ray cluster (the server log says why); "
    "press Track to try again."
)


def abandoned_sentence(frames: int) -> str:
    kept = _kept(frames) if frames else "nothing was tracked"
    return (
        "The Ray cluster stopped this run because this server had not collected its frames "
        f"for {ABANDON_S:g} s; {kept}, and pressing Track again tracks from the first "
        "prompted frame."
    )


def failure_sentence(cluster: Cluster, job: TrackingJob, worker, err, started: bool, frames: int):
    """The sentence for a run that Ray error ``err`` ended after ``frames`` frames
    (``started``: the worker had accepted the job). Only a cluster that went away resets
    this process's connection; a worker that died or could not start is replaced at the
    next run; the other users' runs go on."""
    import ray

    exc = ray.exceptions
    log.warning("tracking on the Ray cluster at %s ended: %r", cluster.address, err)
    if not ray.is_initialized() or not cluster.head_answers():
        cluster.lost()
        return lost_sentence(frames)
    init_failed = isinstance(err, exc.RayActorError) and err.actor_init_failed
    if init_failed or isinstance(err, exc.RuntimeEnvSetupError):
        cluster.forget_worker(job, worker)
        return NOT_STARTED
    if isinstance(err, exc.GetTimeoutError) and not started:
        return start_timeout_sentence()
    if isinstance(err, exc.RayActorError):
        cluster.forget_worker(job, worker)
    return stopped_sentence(frames)


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
    it failed on the cluster: then with the frames tracked so far, and a sentence in
    ``notes``, see :func:`failure_sentence`). While the job runs, ``stops`` holds a
    function that abandons it at once (for a session closed while nobody follows the run)."""
    import ray

    worker = stop = None
    job_id = uuid.uuid4().hex
    record: Propagate | None = None
    done = 0
    started = finished = False
    tracking.propagating = True
    try:
        try:
            job = replace(job, device=cluster.device_for(job.device))
            worker = cluster.worker(job)
            stop = functools.partial(_abandon, worker, job_id)
            if stops is not None:
                stops.append(stop)
            start = worker.start.remote(job_id, job, frames(), ABANDON_S)
            ray.get(start, timeout=START_TIMEOUT_S)
            started = True
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
                if error == ABANDONED:
                    notes.append(abandoned_sentence(done))
                elif error is not None:
                    log.warning("tracking on the Ray cluster failed: %s", error)
                    raise TrackingError(
                        "Tracking on the Ray cluster failed; the reason is in the server "
                        "log. Press Track to try again."
                    )
        except (ray.exceptions.RayError, ConnectionError) as err:
            notes.append(failure_sentence(cluster, job, worker, err, started, done))
    finally:
        if not finished and worker is not None:  # stopped listening, or failed: stop it
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
