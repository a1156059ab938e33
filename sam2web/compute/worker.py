"""The worker side of tracking runs on a Ray cluster: :class:`TrackerWorker`, a Ray actor per
model that keeps the model loaded between jobs (see :mod:`sam2web.compute.remote` for the web
process's side).

A job's frames come with it; the worker writes them into its scratch folder
(:mod:`sam2web.compute.scratch`), replays the job's history, propagates, and keeps each tracked
frame's masks in a queue that the web process empties with :meth:`TrackerWorker.poll`. A job
whose web process stops polling (the process died, or hangs) is abandoned after
``abandon_after_s``: it stops between two frames and gives the model to the next job.

Ray is not imported here: the class becomes an actor where the web process asks for one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .scratch import make_scratch
from .zerogpu import TrackingJob, rebuild_session

log = logging.getLogger(__name__)

POLL_WAIT_S = 0.25  # longest a poll waits on the worker for a new frame
QUEUE_FRAMES = 4  # a worker runs at most this many frames ahead of the web process
ABANDON_AFTER_S = 60.0  # a job nobody polled this long is stopped (its caller is gone)
ABANDONED = "abandoned"  # poll's error for a job stopped because nobody polled it
FRAME_NAME = re.compile(r"^\d{5,}\.(jpg|png)$|^video\.json$")


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
    polled_at: float = field(default_factory=time.monotonic)
    abandon_after_s: float = ABANDON_AFTER_S

    def unpolled(self) -> bool:
        return time.monotonic() - self.polled_at > self.abandon_after_s


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1))


def _write_frames(frames: dict[str, bytes], folder: Path) -> None:
    """The frame files shipped with a job, written into ``folder``. Names are those the
    web process gave its own frame files; anything else is refused."""
    folder.mkdir(parents=True)
    for name, data in frames.items():
        if not FRAME_NAME.match(name):
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
        self.root = make_scratch()
        self.jobs: dict[str, _Job] = {}
        self.model_lock = threading.Lock()
        self.jobs_lock = threading.Lock()
        self.after_cancel: list[int] = []
        self.dropped: deque[str] = deque(maxlen=1000)  # jobs stopped before or unpolled

    def pid(self) -> int:
        return os.getpid()

    def running(self) -> list[str]:
        """Ids of the jobs this worker still holds (running, or with frames not polled)."""
        with self.jobs_lock:
            return sorted(self.jobs)

    def scratch(self) -> str:
        """This worker's scratch folder."""
        return str(self.root)

    def start(
        self,
        job_id: str,
        job: TrackingJob,
        frames: dict[str, bytes],
        abandon_after_s: float = ABANDON_AFTER_S,
    ) -> int:
        """Start tracking ``job`` in a thread; returns this worker's process id. A job
        stopped before it started (see :meth:`cancel`) does not start."""
        state = _Job(abandon_after_s=abandon_after_s)
        with self.jobs_lock:
            if job_id in self.dropped:
                return os.getpid()
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
                if not state.cancel.is_set() and not self._abandon_unpolled(job_id, state):
                    self._track(job_id, state, job, folder)
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

    def _abandon_unpolled(self, job_id: str, state: _Job) -> bool:
        """Stop a job whose caller has not polled it for ``abandon_after_s``."""
        if not state.unpolled():
            return False
        log.warning(
            "job %s: nobody polled it for %.0f s; stopping it", job_id, state.abandon_after_s
        )
        with self.jobs_lock:
            self.dropped.append(job_id)
        state.abandoned = True
        state.cancel.set()
        return True

    def _track(self, job_id: str, state: _Job, job: TrackingJob, folder: Path) -> None:
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
        try:
            self._send_steps(job_id, state, job, session)
        finally:  # its writes behind end before the folder goes
            session.close()

    def _send_steps(self, job_id: str, state: _Job, job: TrackingJob, session) -> None:
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
                # Not too far ahead of the web process (memory), unless it cancels or
                # stopped polling.
                while len(state.frames) >= QUEUE_FRAMES and not state.cancel.is_set():
                    if self._abandon_unpolled(job_id, state):
                        break
                    state.changed.wait(POLL_WAIT_S)

    def poll(self, job_id: str, wait_s: float = POLL_WAIT_S) -> tuple[list, bool, str | None]:
        """(frames tracked since the last poll, finished, error); waits up to ``wait_s``
        for a frame. A finished job is forgotten once its last frames were polled."""
        with self.jobs_lock:
            state = self.jobs.get(job_id)
            dropped = job_id in self.dropped
        if state is None:
            return [], True, ABANDONED if dropped else "the job is unknown to the worker"
        with state.changed:
            state.polled_at = time.monotonic()
            if not state.frames and not state.finished:
                state.changed.wait(wait_s)
            frames = list(state.frames)
            state.frames.clear()
            state.changed.notify_all()  # room in the queue again
            finished, error = state.finished, state.error
        with self.jobs_lock:
            if state.abandoned and job_id in self.dropped:
                error = ABANDONED
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
        """Stop the job after the frame it is tracking; ``abandon``: nobody will poll it
        (a job not started yet then never starts)."""
        with self.jobs_lock:
            state = self.jobs.get(job_id)
            if state is None and abandon:
                self.dropped.append(job_id)
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
