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

import collections
import contextlib
import dataclasses
import importlib.util
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TrackingError
from ..fileio import write_bytes_atomic
from ..history import Action, Pass, Propagate, tracked_frames
from ..tracking.maskstore import MaskStore
from ..tracking.tracker import (
    PropagationStep,
    TrackingSession,
    pass_frames,
    plan_passes,
    replay,
)
from ..types import FrameResult
from . import gpuplan
from .carry import context_thread

log = logging.getLogger(__name__)

PROGRESS_FILE = "gpu-progress"
CANCEL_FILE = "gpu-cancel"
REPLAY_DIR = "gpu-replay-masks"


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

    def passes(self) -> list[Pass]:
        """The passes this job's propagation tracks."""
        num_frames = self.info.num_frames  # type: ignore[attr-defined]
        start = 0 if self.start_frame is None else self.start_frame
        return plan_passes(self.direction, start, self.end_frame, num_frames)


@dataclass(frozen=True)
class TrackingOutcome:
    record: Propagate  # the new run, as the session's history records it
    frames: int  # frames tracked by the new propagation
    seconds: float  # of the new propagation
    cancelled: bool
    replayed_frames: int = 0
    notes: list[str] = field(default_factory=list)


# Seconds per frame and object measured by this process's finished jobs (see gpuplan).
SPEED = gpuplan.Speed()


def speed_key(job: TrackingJob) -> gpuplan.SpeedKey:
    return gpuplan.SpeedKey(
        job.model_key, job.resolution, gpuplan.bf16_quality(job.quality, job.bf16)
    )


def job_duration(job: TrackingJob) -> int:
    """GPU seconds to ask for (see :func:`sam2web.compute.gpuplan.job_seconds`): the
    worker's start, the frames to replay and to track times the objects, capped."""
    track = sum(p.frames for p in job.passes())
    return gpuplan.job_seconds(SPEED, speed_key(job), len(job.objects), job.replay_frames(), track)


class _FileFlag:
    """``threading.Event``-like view of a file: set when the file exists."""

    def __init__(self, path: Path):
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()


_worker_models = None


def rebuild_session(
    job: TrackingJob,
    predictor,
    frames_dir: Path,
    masks_dir: Path,
    replay_dir: Path | None = None,
) -> tuple[TrackingSession, int]:
    """A tracking session on ``predictor`` for the frames in ``frames_dir`` with the job's
    history replayed and its objects' names and colours, writing to ``masks_dir``;
    returns it with the number of frames the replay tracked again. With ``replay_dir`` the
    replay's own masks go there (emptied first, then removed) and ``masks_dir`` receives
    only the new run's."""
    from ..media.folder import FrameFolder
    from ..tracking.model import autocast_context

    folder = FrameFolder(Path(frames_dir))
    if replay_dir is not None:
        shutil.rmtree(replay_dir, ignore_errors=True)
    session = TrackingSession(
        predictor,
        folder.frame_paths(),
        folder.info,
        Path(masks_dir if replay_dir is None else replay_dir),
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
    if replay_dir is not None:
        session.store.close()
        session.store = MaskStore(Path(masks_dir), folder.info.height, folder.info.width)
        shutil.rmtree(replay_dir, ignore_errors=True)
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
    # The replay (bounded: see gpuplan.bounded_history) writes to a scratch folder, so the
    # session's store receives only the new run's frames, each written atomically.
    control = Path(job.control_dir)
    session, replayed = rebuild_session(
        job, predictor, Path(job.frames_dir), Path(job.masks_dir), control / REPLAY_DIR
    )
    cancel = _FileFlag(control / CANCEL_FILE)
    started = time.perf_counter()
    done = 0
    # The progress file counts only frames whose masks are in their files (they are written
    # behind, oldest first): a job stopped at any moment keeps what the file said.
    unwritten: collections.deque[PropagationStep] = collections.deque()
    for step in session.propagate(job.direction, job.start_frame, job.end_frame, cancel):
        done = step.done
        unwritten.append(step)
        on_disk = None
        while unwritten and session.store.on_disk(unwritten[0].result.frame_idx):
            on_disk = unwritten.popleft()
        if on_disk is not None:
            _write_progress(control, on_disk)
    if unwritten:  # the run's end put them on disk
        _write_progress(control, unwritten[-1])
    return TrackingOutcome(
        record=session.history[-1],
        frames=done,
        seconds=time.perf_counter() - started,
        cancelled=cancel.is_set(),
        replayed_frames=replayed,
    )


def _write_progress(control: Path, step: PropagationStep) -> None:
    text = f"{step.done} {step.total} {step.result.frame_idx}"
    write_bytes_atomic(control / PROGRESS_FILE, text.encode())


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
    steps, and ``cancel`` into its cancel file.

    A run whose GPU time would not fit under :data:`~sam2web.compute.gpuplan.JOB_CAP_S` is
    split into chunks, one job each (see :mod:`sam2web.compute.gpuplan`); each chunk is
    appended to the session's history as it completes. Each job replays a bounded part of
    the history to rebuild SAM2's state (:func:`~sam2web.compute.gpuplan.bounded_history`).
    When a job is refused or stopped, the frames it tracked are recorded as a run (its
    masks are on disk) and one sentence says what happened and what to do.

    This process's own SAM2 state does not see the jobs' frames: a later click on a tracked
    frame is previewed without that frame's earlier mask, while the next propagation (a job
    again) replays what it needs."""
    control = Path(job.control_dir)
    passes = job.passes()
    total = sum(p.frames for p in passes)
    key = speed_key(job)
    objects = len(job.objects)
    per_chunk = gpuplan.fitting_frames(
        SPEED,
        key,
        objects,
        tracked_frames(list(gpuplan.bounded_history(job.history, [p.start for p in passes]))),
    )
    # A run that fits is one job (a run in both directions stays one recorded run).
    chunks = [None] if total <= per_chunk else gpuplan.chunk_plans(passes, per_chunk)
    tracking.propagating = True
    done_before = 0
    try:
        for chunk in chunks:
            starts = [p.start for p in passes] if chunk is None else [chunk.start]
            part = dataclasses.replace(
                job, history=gpuplan.bounded_history(tracking.history, starts)
            )
            if chunk is not None:
                part = dataclasses.replace(
                    part, direction=chunk.direction, start_frame=chunk.start, end_frame=chunk.end
                )
            outcome = yield from _one_job(part, tracking, cancel, done_before, total)
            tracking.history.append(outcome.record)
            done_before += outcome.frames
            SPEED.record(key, outcome.frames * max(1, objects), outcome.seconds)
            if outcome.cancelled or cancel.is_set():
                break
    finally:
        tracking.propagating = False
        tracking.store.refresh()
        for name in (PROGRESS_FILE, CANCEL_FILE):
            (control / name).unlink(missing_ok=True)


def _one_job(
    job: TrackingJob,
    tracking: TrackingSession,
    cancel: threading.Event,
    done_before: int,
    total: int,
) -> Iterator[PropagationStep]:
    """One chunk's job; returns its outcome (``yield from``). A failed job's tracked frames
    are recorded and a :class:`TrackingError` says what happened."""
    control = Path(job.control_dir)
    for name in (PROGRESS_FILE, CANCEL_FILE):
        (control / name).unlink(missing_ok=True)
    plan = pass_frames(job.passes())
    before = {frame: tracking.store.stamp(frame) for frame in set(plan)}
    box: dict = {}

    def work() -> None:
        try:
            box["outcome"] = run_tracking_job(job)
        except BaseException as err:  # raised below, in the caller's thread
            box["error"] = err

    # The request's context (Gradio's request: the visitor's token, the page's notices)
    # goes with the job: spaces.GPU reads it from the calling thread's context.
    worker = context_thread(work, name="tracking-job")
    worker.start()
    try:
        yield from _follow(worker, control, tracking, cancel, done_before, total)
    finally:
        if worker.is_alive():  # the caller stopped listening: stop the job too
            with contextlib.suppress(OSError):
                (control / CANCEL_FILE).touch()
            worker.join()
        tracking.store.refresh()
    if "error" in box:
        err = box["error"]
        progress = read_progress(control)
        done = max(0 if progress is None else progress[0], written(plan, before, tracking.store))
        kept = gpuplan.truncated(job.passes(), done)
        if kept:
            tracking.history.append(Propagate(kept))
        log.warning("GPU job failed after %d frames: %r", done, err)
        raise TrackingError(failure_sentence(err, done_before + done)) from err
    return box["outcome"]


def written(plan: list[int], before: dict, store: MaskStore) -> int:
    """How many of a stopped job's planned frames, in order, reached their files: each one
    whose file changed since ``before`` (the stamps when the job started). The job writes
    them oldest first, so frames on disk after the progress file's last count belong to the
    run, and the history records them with the masks."""
    count = 0
    for frame in plan:
        if store.stamp(frame) == before[frame]:
            break
        count += 1
    return count


def failure_sentence(err: BaseException, kept: int) -> str:
    """One sentence for a GPU job that was refused or stopped, ``kept`` frames tracked."""
    detail = " ".join(str(err).split()).rstrip(".") or type(err).__name__
    if kept:
        return (
            f"The GPU stopped this run ({detail}); the {kept} frames tracked before that "
            "are kept, press Track again to continue."
        )
    return f"The GPU run could not start ({detail}); nothing changed, try Track again later."


def _follow(
    worker: threading.Thread,
    control: Path,
    tracking: TrackingSession,
    cancel: threading.Event,
    done_before: int = 0,
    total: int | None = None,
) -> Iterator[PropagationStep]:
    shown = 0
    while True:
        running = worker.is_alive()
        progress = read_progress(control)
        if progress is not None and progress[0] > shown:
            shown, job_total, frame = progress
            tracking.store.refresh()
            result = tracking.store.read(frame) or FrameResult(frame, {}, {})
            yield PropagationStep(
                result, done_before + shown, job_total if total is None else total
            )
        if not running:
            return
        if cancel.is_set():
            (control / CANCEL_FILE).touch()
        time.sleep(0.2)
