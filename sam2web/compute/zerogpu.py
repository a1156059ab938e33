"""Tracking on a Hugging Face ZeroGPU Space.

On ZeroGPU, a GPU is lent to a function only while it runs, and only to functions decorated
with ``spaces.GPU``: the call runs in a forked worker process, and its arguments and return
value cross to and from that process by pickling. Nothing the worker changes in memory comes
back. So the GPU work of sam2web is one self-contained, picklable job:
:func:`run_tracking_job` receives a :class:`TrackingJob` (folders, model configuration and
the session's whole action history as plain values), rebuilds SAM2's state by replaying
that history, propagates, and returns a :class:`TrackingOutcome`. Masks are written to the
session's mask folder on disk, which the web process reads; progress and cancellation also
go through small files in the session's folder.

Everywhere else (no ``spaces`` package, or ``SPACES_ZERO_GPU`` not set, as on a laptop, in
Docker or on a CPU Space) :func:`gpu` returns the function unchanged and sam2web tracks in
process as usual.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import write_bytes_atomic
from ..history import Action, Propagate, tracked_frames
from ..tracking.tracker import PropagationStep, TrackingSession, replay
from ..types import FrameResult

log = logging.getLogger(__name__)

PROGRESS_FILE = "gpu-progress"
CANCEL_FILE = "gpu-cancel"


def zerogpu_enabled() -> bool:
    """True on a ZeroGPU Space: the ``spaces`` package is installed and the Space runtime
    set ``SPACES_ZERO_GPU``."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower()
    return flag in ("1", "true", "yes") and importlib.util.find_spec("spaces") is not None


def gpu(duration: int | Callable[..., int] = 60):
    """Decorator: ``spaces.GPU(duration=...)`` on ZeroGPU, the function itself elsewhere.

    Applied at import time, as ZeroGPU requires. ``duration`` is the longest time in seconds
    the call may hold the GPU, or a function of the call's arguments that returns it.
    """

    def decorate(fn):
        if not zerogpu_enabled():
            return fn
        import spaces

        log.info("ZeroGPU: %s runs on a lent GPU", fn.__name__)
        return spaces.GPU(duration=duration)(fn)

    return decorate


@dataclass(frozen=True)
class TrackingJob:
    """Everything the GPU worker needs, as plain picklable values."""

    frames_dir: str
    masks_dir: str
    control_dir: str  # holds the progress and cancel files
    info: object  # sam2web.types.VideoInfo (a frozen dataclass)
    model_key: str
    checkpoint: str | None
    resolution: int
    corrections: str
    device: str
    bf16: str
    full_memory_frames: int
    objects: tuple[tuple[int, str, tuple[int, int, int]], ...]  # (id, name, colour)
    history: tuple[Action, ...]  # TrackingSession.history before this run
    direction: str = "forward"
    start_frame: int | None = None
    end_frame: int | None = None
    quality: str | None = None  # the session's quality key (None: SAM2WEB_BF16 decides)

    def replay_frames(self) -> int:
        """Frames the replay of earlier propagations tracks again (for the time limit)."""
        return tracked_frames(list(self.history))


@dataclass(frozen=True)
class TrackingOutcome:
    record: Propagate  # the new run, as the session's history records it
    frames: int  # frames tracked by the new propagation
    seconds: float  # of the new propagation
    cancelled: bool
    replayed_frames: int = 0
    notes: list[str] = field(default_factory=list)


def job_duration(job: TrackingJob) -> int:
    """GPU seconds to ask for: a generous bound from the frames to replay and to track."""
    frames = job.replay_frames() + job.info.num_frames  # type: ignore[attr-defined]
    return int(min(600, 30 + 0.25 * frames))


class _FileFlag:
    """``threading.Event``-like view of a file: set when the file exists."""

    def __init__(self, path: Path):
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()


_worker_models = None


def rebuild_session(
    job: TrackingJob, predictor, frames_dir: Path, masks_dir: Path
) -> tuple[TrackingSession, int]:
    """A tracking session on ``predictor`` for the frames in ``frames_dir`` with the job's
    history replayed (masks written to ``masks_dir``) and its objects' names and colours;
    returns it with the number of frames the replay tracked again."""
    from ..media.folder import FrameFolder
    from ..tracking.model import autocast_context

    folder = FrameFolder(Path(frames_dir))
    session = TrackingSession(
        predictor,
        folder.frame_paths(),
        folder.info,
        Path(masks_dir),
        full_memory_frames=job.full_memory_frames,
        autocast=lambda: autocast_context(predictor.device, job.bf16, quality=job.quality),
    )
    replayed = []
    for action in job.history:
        replay(session, action, on_frame=lambda: replayed.append(1))
    for obj_id, name, color in job.objects:
        obj = session.objects.get(obj_id)
        if obj is not None:
            obj.name, obj.color = name, tuple(color)
    return session, len(replayed)


def _run_tracking_job(job: TrackingJob) -> TrackingOutcome:
    from ..tracking.checkpoints import get_spec
    from ..tracking.model import ModelCache

    global _worker_models
    if _worker_models is None:
        _worker_models = ModelCache()
    predictor = _worker_models.get(
        get_spec(job.model_key),
        job.checkpoint,
        job.device,
        job.resolution,
        corrections=job.corrections,
    )
    # The store is not cleared: replaying rewrites each stored frame with the same masks
    # (atomically), so the web process never sees a frame vanish while the job runs.
    session, replayed = rebuild_session(job, predictor, Path(job.frames_dir), Path(job.masks_dir))
    control = Path(job.control_dir)
    cancel = _FileFlag(control / CANCEL_FILE)
    started = time.perf_counter()
    done = 0
    for step in session.propagate(job.direction, job.start_frame, job.end_frame, cancel):
        done = step.done
        write_bytes_atomic(
            control / PROGRESS_FILE, f"{step.done} {step.total} {step.result.frame_idx}".encode()
        )
    return TrackingOutcome(
        record=session.history[-1],
        frames=done,
        seconds=time.perf_counter() - started,
        cancelled=cancel.is_set(),
        replayed_frames=replayed,
    )


run_tracking_job = gpu(duration=job_duration)(_run_tracking_job)


def read_progress(control_dir: Path) -> tuple[int, int, int] | None:
    """(done, total, frame) written by a running job, or None before its first frame."""
    with contextlib.suppress(OSError, ValueError):
        done, total, frame = (Path(control_dir) / PROGRESS_FILE).read_text().split()
        return int(done), int(total), int(frame)
    return None


def propagate_in_job(
    job: TrackingJob, tracking: TrackingSession, cancel: threading.Event
) -> Iterator[PropagationStep]:
    """Run ``job`` (a propagation of ``tracking``) in a worker thread here, and in a GPU
    process on ZeroGPU, writing masks to the session's store; its progress file turns into
    steps, and ``cancel`` into its cancel file. The new run is appended to the session's
    history when the job ends.

    The job replays the session's history to rebuild SAM2's state, so tracked masks are
    those of an in-process run. This process's own SAM2 state does not see the job's
    frames: a later click on a tracked frame is previewed without that frame's earlier
    mask, while the next propagation (a job again) replays everything exactly."""
    control = Path(job.control_dir)
    for name in (PROGRESS_FILE, CANCEL_FILE):
        (control / name).unlink(missing_ok=True)
    box: dict = {}

    def work() -> None:
        try:
            box["outcome"] = run_tracking_job(job)
        except BaseException as err:  # raised below, in the caller's thread
            box["error"] = err

    worker = threading.Thread(target=work, name="tracking-job", daemon=True)
    tracking.propagating = True
    worker.start()
    try:
        yield from _follow(worker, control, tracking, cancel)
    finally:
        if worker.is_alive():  # the caller stopped listening: stop the job too
            with contextlib.suppress(OSError):
                (control / CANCEL_FILE).touch()
            worker.join()
        tracking.propagating = False
        tracking.store.refresh()
    if "error" in box:
        raise box["error"]
    tracking.history.append(box["outcome"].record)


def _follow(
    worker: threading.Thread, control: Path, tracking: TrackingSession, cancel: threading.Event
) -> Iterator[PropagationStep]:
    shown = 0
    while True:
        running = worker.is_alive()
        progress = read_progress(control)
        if progress is not None and progress[0] > shown:
            shown, total, frame = progress
            tracking.store.refresh()
            result = tracking.store.read(frame) or FrameResult(frame, {}, {})
            yield PropagationStep(result, shown, total)
        if not running:
            return
        if cancel.is_set():
            (control / CANCEL_FILE).touch()
        time.sleep(0.2)
