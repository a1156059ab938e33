"""What a job on a lent GPU asks for and what it replays: its duration, its chunks, its replay.

ZeroGPU lends a GPU for the duration a call asks for: a request above what the visitor has
left is refused before it starts, and a call that runs past it is killed. So a job asks for
what it needs, from the work in it:

* :class:`Speed`: seconds per tracked frame and object, per model and precision. It starts
  from a cautious guess scaled by model size, processing resolution and precision, and is
  calibrated by every finished job (the measured speed, never less than half the guess).
* :func:`job_seconds`: the worker's start (process fork, CUDA initialisation, model build
  and weights), then the frames to replay and to track times the object count, with a
  margin; :data:`JOB_CAP_S` caps it.
* :func:`chunk_plans`: a run whose estimate does not fit under the cap is split into chunks
  that each fit; each chunk is one job and is recorded in the history as it completes.
* :func:`bounded_history`: the history a job replays to rebuild SAM 2's state. SAM 2 reads
  the memories of the 6 frames before the one it tracks and the object pointers of the 15
  before it (``num_maskmem``, ``max_obj_ptrs_in_encoder``), so an earlier run is replayed
  only over the frames within :data:`REPLAY_WINDOW` of a frame the new run starts from or
  of a later prompt. Masks are exactly an in-process run's while every earlier run lies in
  that window; beyond it the replayed context is the window's, not the whole run's.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from ..history import Action, Pass, Propagate
from ..tracking.tracker import pass_frames, plan_passes

# The longest a job asks for. ZeroGPU refuses a request above the visitor's remaining
# quota (a few minutes a day without PRO) or above its per-call maximum, so longer runs go
# in chunks that each fit.
JOB_CAP_S = 120
# Frames each side of a start or a prompt over which earlier runs are replayed: twice the
# 16 frames SAM 2 reads back, so those frames are themselves tracked with context.
REPLAY_WINDOW = 32
# Seconds before the first frame on a cold worker: the fork, CUDA's initialisation, the
# model build and its weights (measured on a CPU: about 3 s for tiny; a GPU's copy is
# small beside it).
START_S = {"tiny": 10.0, "small": 12.0, "base-plus": 16.0, "large": 24.0}
# Guessed seconds per frame and object at 1024 px in float32 on a lent GPU, before the
# first job measures it: generous, so the first job of a Space is not killed.
FRAME_S = {"tiny": 0.06, "small": 0.08, "base-plus": 0.12, "large": 0.25}
BF16_FACTOR = 0.6
MARGIN = 1.5


def model_size(model_key: str) -> str:
    """``sam2.1-base-plus`` → ``base-plus``."""
    for size in sorted(FRAME_S, key=len, reverse=True):
        if model_key.endswith(size):
            return size
    return "large"


def bf16_quality(quality: str | None, bf16_setting: str) -> bool:
    """Whether a job at ``quality`` runs bfloat16 on a CUDA GPU (see
    :func:`sam2web.tracking.model.autocast_context`)."""
    if quality in ("full", "full-fp16"):
        return False
    if quality == "full-bf16":
        return True
    return (bf16_setting or "auto").strip().lower() in ("auto", "1")


@dataclass(frozen=True)
class SpeedKey:
    model_key: str
    resolution: int
    bf16: bool


class Speed:
    """Seconds per frame and object on the lent GPU, guessed, then measured. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._measured: dict[SpeedKey, float] = {}

    @staticmethod
    def guess(key: SpeedKey) -> float:
        scale = (key.resolution / 1024) ** 2
        return FRAME_S[model_size(key.model_key)] * scale * (BF16_FACTOR if key.bf16 else 1.0)

    def per_frame_object(self, key: SpeedKey) -> float:
        with self._lock:
            measured = self._measured.get(key)
        guess = self.guess(key)
        return guess if measured is None else max(measured, guess / 2)

    def record(self, key: SpeedKey, frame_objects: int, seconds: float) -> None:
        """A finished job tracked ``frame_objects`` frame-object pairs in ``seconds``."""
        if frame_objects < 8 or seconds <= 0:  # too short to say anything
            return
        with self._lock:
            self._measured[key] = seconds / frame_objects


def job_seconds(
    speed: Speed, key: SpeedKey, objects: int, replay_frames: int, track_frames: int
) -> int:
    """GPU seconds to ask for: the worker's start and the frames times the objects, with a
    margin, at most :data:`JOB_CAP_S`."""
    work = (replay_frames + track_frames) * max(1, objects) * speed.per_frame_object(key)
    need = START_S[model_size(key.model_key)] + MARGIN * work
    return int(min(JOB_CAP_S, max(15, round(need))))


def fitting_frames(speed: Speed, key: SpeedKey, objects: int, replay_frames: int) -> int:
    """How many frames one job can track within :data:`JOB_CAP_S` after its replay (at
    least one)."""
    per_frame = MARGIN * max(1, objects) * speed.per_frame_object(key)
    budget = JOB_CAP_S - START_S[model_size(key.model_key)] - replay_frames * per_frame
    return max(1, int(budget / per_frame))


@dataclass(frozen=True)
class ChunkPlan:
    """One job's share of a run: ``direction`` from ``start`` to ``end`` (inclusive)."""

    direction: str
    start: int
    end: int

    @property
    def frames(self) -> int:
        return abs(self.end - self.start) + 1


def chunk_plans(passes: Iterable[Pass], per_chunk: int) -> list[ChunkPlan]:
    """The run's passes cut into chunks of at most ``per_chunk`` frames, in tracking
    order. A chunk after the first of a pass starts on the frame after the last one
    tracked, so no frame is tracked twice by one pass."""
    per_chunk = max(1, per_chunk)
    chunks = []
    for p in passes:
        step = -1 if p.reverse else 1
        direction = "backward" if p.reverse else "forward"
        for first in range(0, p.frames, per_chunk):
            n = min(per_chunk, p.frames - first)
            start = p.start + step * first
            chunks.append(ChunkPlan(direction, start, start + step * (n - 1)))
    return chunks


def chunk_passes(chunk: ChunkPlan, num_frames: int) -> list[Pass]:
    return plan_passes(chunk.direction, chunk.start, chunk.end, num_frames)


def truncated(passes: Iterable[Pass], done: int) -> tuple[Pass, ...]:
    """The first ``done`` frames of ``passes`` as passes (what a stopped run tracked)."""
    kept = []
    for p in passes:
        if done <= 0:
            break
        kept.append(Pass(p.start, p.reverse, min(p.frames, done)))
        done -= kept[-1].frames
    return tuple(kept)


def _anchors(history: list[Action], starts: Iterable[int]) -> list[int]:
    """Frames whose results read earlier runs: the new run's starts, and every prompt or
    fix recorded after the first run (a click on a tracked frame reads its neighbours)."""
    anchors = list(starts)
    seen_run = False
    for action in history:
        if isinstance(action, Propagate):
            seen_run = True
        elif seen_run and hasattr(action, "frame"):
            anchors.append(int(action.frame))
    return anchors


def _clip(p: Pass, anchors: list[int], window: int) -> list[Pass]:
    """The parts of pass ``p`` within ``window`` frames of an anchor, as passes in ``p``'s
    direction."""
    frames = pass_frames([p])
    keep = [f for f in frames if any(abs(f - a) <= window for a in anchors)]
    parts: list[Pass] = []
    step = -1 if p.reverse else 1
    for f in keep:
        last = parts[-1] if parts else None
        if last is not None and last.start + step * last.frames == f:
            parts[-1] = Pass(last.start, p.reverse, last.frames + 1)
        else:
            parts.append(Pass(f, p.reverse, 1))
    return parts


def bounded_history(
    history: Iterable[Action], starts: Iterable[int], window: int = REPLAY_WINDOW
) -> tuple[Action, ...]:
    """``history`` with each earlier run cut to the frames within ``window`` of the new
    run's ``starts`` or of a later prompt (see the module's note). Runs wholly within it,
    and every other action, are kept as they are."""
    history = list(history)
    anchors = _anchors(history, starts)
    out: list[Action] = []
    for action in history:
        if isinstance(action, Propagate):
            passes = tuple(part for p in action.passes for part in _clip(p, anchors, window))
            if passes:
                out.append(dataclasses.replace(action, passes=passes))
        else:
            out.append(action)
    return tuple(out)
