"""Processing qualities, and how far a faster one agrees with the exact one on a user's clip.

A quality is a way to run the same model: ``full`` at SAM2WEB_RESOLUTION (SAM2's native
1024 px by default) and ``fast``, a preview at SAM2WEB_FAST_RESOLUTION. :func:`compare`
tracks the same frames with the same objects and clicks in two fresh tracking sessions and
measures the mask agreement (IoU per object and frame) and the speed of each; the user's own
session is never touched.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PromptError, TrackingError
from ..history import Action, prompt_actions
from ..tracking.accel import QUALITY_KEYS, Quality
from ..tracking.tracker import TrackingSession, replay
from ..types import Progress

# Runs an iterator of steps and yields what it yields (see compare()).
Drive = Callable[[Iterator], Iterator]

# Processing qualities a user can choose (what each means: sam2web.tracking.accel.quality): SAM2's
# own float32 at full resolution, full resolution in bfloat16 where the hardware runs it
# natively (in float16 on CUDA GPUs without bf16), and a faster, smaller preview.
QUALITIES = QUALITY_KEYS

# Mean and lowest IoU at or above which a quality "agrees closely" with the exact one, and
# the mean IoU below which it "differs".
CLOSE_MEAN, CLOSE_MIN, DIFFERS_MEAN = 0.95, 0.90, 0.80


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a tracking session at some quality, and how to name it."""

    label: str  # e.g. "the fast preview (448 px)"
    session: TrackingSession


@dataclass
class QualityAgreement:
    """A candidate quality against the reference (exact) one on frames of the user's clip."""

    first_frame: int
    last_frame: int
    candidate: str  # label of the candidate side
    reference: str  # label of the reference side
    iou: dict[int, tuple[float, float]]  # object id -> (mean, min) IoU over the frames
    names: dict[int, str]
    reference_s_per_frame: float
    candidate_s_per_frame: float

    @property
    def speedup(self) -> float:
        c = self.candidate_s_per_frame
        return self.reference_s_per_frame / c if c else 0.0

    @property
    def mean_iou(self) -> float:
        return float(np.mean([m for m, _ in self.iou.values()])) if self.iou else 1.0

    @property
    def min_iou(self) -> float:
        return float(min(m for _, m in self.iou.values())) if self.iou else 1.0

    def verdict(self) -> str:
        """ "close", "rough" or "differs", from the measured IoU."""
        if self.mean_iou >= CLOSE_MEAN and self.min_iou >= CLOSE_MIN:
            return "close"
        return "rough" if self.mean_iou >= DIFFERS_MEAN else "differs"

    def sentence(self) -> str:
        frames = self.last_frame - self.first_frame + 1
        where = f"On frames {self.first_frame}–{self.last_frame} ({frames})"
        iou = f"a mask IoU of {self.mean_iou:.3f} on average (lowest {self.min_iou:.3f})"
        verdict = self.verdict()
        if verdict == "close":
            agreement = f"{self.candidate} agrees closely with {self.reference} at {iou}"
        elif verdict == "rough":
            agreement = (
                f"{self.candidate} agrees only roughly with {self.reference}, at {iou}; "
                "check the frames that matter to you before relying on it"
            )
        else:
            agreement = (
                f"{self.candidate} differs from {self.reference}, at {iou}; use "
                f"{self.reference} for this video"
            )
        speed = (
            f"it tracked {self.speedup:.1f}× as fast ({self.candidate_s_per_frame:.2f} s "
            f"against {self.reference_s_per_frame:.2f} s per frame)"
        )
        return f"{where} {agreement}, and {speed}."


def mask_iou(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Intersection over union of two boolean masks; two empty (or missing) masks agree."""
    a_any = a is not None and bool(a.any())
    b_any = b is not None and bool(b.any())
    if not a_any and not b_any:
        return 1.0
    if not a_any or not b_any:
        return 0.0
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def agreement_per_object(
    reference: dict[int, dict[int, np.ndarray]],
    candidate: dict[int, dict[int, np.ndarray]],
    obj_ids: list[int],
) -> dict[int, tuple[float, float]]:
    """{object id: (mean, min) IoU} over the frames of ``reference``; both map frame ->
    {object id: mask}."""
    out = {}
    for obj_id in obj_ids:
        ious = [
            mask_iou(masks.get(obj_id), candidate.get(frame, {}).get(obj_id))
            for frame, masks in reference.items()
        ]
        out[obj_id] = (float(np.mean(ious)), float(np.min(ious)))
    return out


def seconds_per_frame(times: list[float]) -> float:
    """Seconds per frame: the median after the first (prompted, already encoded) frame."""
    rest = times[1:] or times
    return float(np.median(rest)) if rest else 0.0


def _track(
    side: Side, actions: list[Action], start: int, end: int, cancel: threading.Event | None
) -> Iterator[tuple[int, dict[int, np.ndarray], float]]:
    """Replay ``actions`` into the side's session, then track start..end forward; yields
    (frame, masks, seconds) per tracked frame and None-frames (-1) per replayed action."""
    for action in actions:
        replay(side.session, action)
        yield -1, {}, 0.0
    steps = side.session.propagate("forward", start, end, cancel)
    while True:
        # Timed here, around the frame's own work: a caller may resume this generator
        # after waiting for the shared model, and that wait is not the model's speed.
        began = time.perf_counter()
        step = next(steps, None)
        if step is None:
            return
        yield step.result.frame_idx, dict(step.result.masks), time.perf_counter() - began


def compare(
    reference: Side,
    candidate: Side,
    actions: list[Action],
    start: int,
    end: int,
    names: dict[int, str],
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    drive: Drive = iter,
) -> QualityAgreement:
    """Track frames ``start``..``end`` forward on both sides after replaying ``actions``
    (the user's objects and clicks), and measure agreement and speed. The candidate runs
    first, so the reference's frames are already decoded when it is timed. ``drive(steps)``
    runs a side's steps, one replayed action or tracked frame each (e.g. one unit each on
    a shared model); by default in the calling thread."""
    count = end - start + 1
    total = 2 * (len(actions) + count)
    done = 0
    masks: dict[str, dict[int, dict[int, np.ndarray]]] = {"candidate": {}, "reference": {}}
    seconds: dict[str, list[float]] = {"candidate": [], "reference": []}
    for key, side in (("candidate", candidate), ("reference", reference)):
        for frame, frame_masks, took in drive(_track(side, actions, start, end, cancel)):
            if frame >= 0:
                masks[key][frame] = frame_masks
                seconds[key].append(took)
            done += 1
            if progress is not None:
                progress(done, total)
    if len(masks["reference"]) < count or len(masks["candidate"]) < count:
        raise TrackingError("The comparison was cancelled.")
    return QualityAgreement(
        first_frame=start,
        last_frame=end,
        candidate=candidate.label,
        reference=reference.label,
        iou=agreement_per_object(masks["reference"], masks["candidate"], list(names)),
        names=dict(names),
        reference_s_per_frame=seconds_per_frame(seconds["reference"]),
        candidate_s_per_frame=seconds_per_frame(seconds["candidate"]),
    )


def compare_qualities(
    tracking: TrackingSession,
    start_session: Callable[[str, Path], TrackingSession],
    scratch_root: Path,
    reference: Quality,
    candidate: Quality,
    frames: int = 5,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    drive: Drive = iter,
) -> QualityAgreement:
    """``candidate`` against ``reference`` (the exact quality) on the first ``frames``
    frames from ``tracking``'s earliest clicked frame, with its objects and clicks.
    ``start_session(quality_key, masks_dir)`` makes a fresh session on the same video; its
    masks go to folders under ``scratch_root`` that are removed afterwards. ``drive`` runs
    each side's steps (see :func:`compare`)."""
    if (candidate.resolution, candidate.precision) == (reference.resolution, reference.precision):
        raise PromptError(
            f"{candidate.label} and {reference.label} run the same way on this server, so "
            "there is nothing to compare."
        )
    if not 1 <= int(frames) <= 100:
        raise PromptError("Compare on 1 to 100 frames.")
    start = tracking.planned_frames("forward")[0]  # checks every object has clicks
    end = min(start + int(frames) - 1, tracking.info.num_frames - 1)
    names = {o.obj_id: o.name for o in tracking.objects.values()}
    folders = [Path(scratch_root) / "compare-reference", Path(scratch_root) / "compare-candidate"]
    sessions: list[TrackingSession] = []
    try:
        for q, folder in ((reference, folders[0]), (candidate, folders[1])):
            sessions.append(start_session(q.key, folder))
        return compare(
            Side(_side_label(reference), sessions[0]),
            Side(_side_label(candidate), sessions[1]),
            prompt_actions(tracking.history),
            start,
            end,
            names,
            cancel,
            progress,
            drive,
        )
    finally:
        for side in sessions:  # their writes behind end before the folders go
            side.close()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _side_label(q: Quality) -> str:
    """How a sentence names a quality: "full quality (1024 px)", "the fast preview (448 px)",
    "full resolution in bfloat16 (1024 px)"."""
    if q.key == "full":
        return f"full quality ({q.resolution} px)"
    if q.key == "fast":
        return f"the fast preview ({q.resolution} px)"
    if q.key == "full-fp16":
        return f"full resolution in float16 ({q.resolution} px)"
    return f"full resolution in bfloat16 ({q.resolution} px)"
