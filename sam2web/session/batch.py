"""Batches: fitting a project to each video of a batch, and the batch's summary table.

A project is made on one video; a batch runs it on recordings of the same camera set-up
that differ in length (and sometimes in size). :func:`fit_project` turns the project into
the one for a given video: prompts stay at their frame indices, clicks and boxes are
scaled when the frames are a scaled copy of the project's (same aspect ratio), and every
recorded tracking run that reached the project video's end runs to this video's end. A
project without a tracking run gets one (:attr:`VideoPlan.direction`). A video of another
shape, or too short for the prompts, is refused with one sentence.

:class:`VideoRecord` is one row of ``batch_summary.csv`` (:func:`write_summary`), written
the same way whether the batch ran here or on a cluster; its ``found`` column counts the
objects a project's finder steps found on the recording (blank: the project has none; the
finder runs again on each recording, :func:`sam2web.session.finding.refit_found`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.rowtools import safe_cell
from ..errors import OUT_OF_MEMORY, UserError
from ..fileio import atomic_output
from ..history import (
    AddClick,
    AddMask,
    ClearFrame,
    FindObjects,
    MergeObjects,
    Pass,
    Propagate,
    SetBox,
    SwapObjects,
    Undo,
    decode_mask_resized,
    encode_mask,
)
from ..tracking.tracker import DIRECTIONS
from ..types import TrackedObject, VideoInfo
from .project import Project, ProjectError, ProjectSource

SUMMARY_FILENAME = "batch_summary.csv"
DEFAULT_DIRECTION = "both"

# Frames that differ in aspect ratio by less than this are a scaled copy of each other
# (a codec rounds odd sizes to even ones, e.g. 333x201 -> 666x402 or 332x200).
ASPECT_TOLERANCE = 0.01

_FRAMED = (AddClick, SetBox, AddMask, Undo, ClearFrame, FindObjects)
_FIXES = (SwapObjects, MergeObjects)  # in force from their frame on


@dataclass(frozen=True)
class VideoPlan:
    """A project fitted to one video."""

    project: Project  # replays on the video as it is (source matches it)
    notes: list[str]
    direction: str | None  # the run to make after the replay when the project has none


@dataclass
class Tracked:
    """What tracking one video gave (besides its files)."""

    notes: list[str]
    frames: int
    width: int
    height: int
    present: dict[int, int]  # object id -> frames where it is present
    found: int | None = None  # objects the project's finder steps found; None: none


@dataclass
class VideoRecord:
    """One row of the batch summary."""

    position: int
    video: str
    folder: str
    status: str  # "tracked" or "failed"
    seconds: float
    message: str = ""
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    present: dict[int, int] = field(default_factory=dict)
    found: int | None = None


@dataclass(frozen=True)
class Job:
    """One video of a batch: its 1-based position, its path and its output folder's name."""

    position: int
    video: Path
    folder: str
    label: str


def check_video_file(video: Path) -> None:
    if not video.is_file():
        raise UserError("The file does not exist; check the path.")


def failure_message(err: BaseException) -> str:
    """The one sentence a failed video's line carries."""
    if isinstance(err, UserError):
        return err.message
    if isinstance(err, MemoryError):
        return OUT_OF_MEMORY
    return (
        f"unexpected failure ({type(err).__name__}: {err}); run again with --verbose for details."
    )


def safe_suffix(name: str) -> str:
    """The extension of a file name, reduced to letters and digits (the format is told by
    it), for a copy of the file under a name chosen here."""
    suffix = Path(name).suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""


@contextlib.contextmanager
def sam2_progress_hidden() -> Iterator[None]:
    """sam2 draws a tqdm bar of its own for every propagation pass; a batch shows its own
    progress instead, so sam2's bars are switched off while it runs."""
    try:
        import sam2.sam2_video_predictor as predictor_module
    except ImportError:  # pragma: no cover - sam2 is a dependency
        yield
        return
    original = predictor_module.tqdm
    predictor_module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        predictor_module.tqdm = original


# ---------------------------------------------------------------------------- planning
def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise UserError(f"The direction must be one of {', '.join(DIRECTIONS)}.")
    return direction


def fit_project(
    project: Project,
    info: VideoInfo,
    sha256: str | None,
    direction: str = DEFAULT_DIRECTION,
) -> VideoPlan:
    """``project`` made to replay on the video described by ``info`` (see the module
    docstring). Raises ProjectError with one sentence when the video cannot take it."""
    check_direction(direction)
    src = project.source
    sx, sy = _scale(src, info)
    _check_length(project, info)
    notes = _check_step(project, info)
    same_size = (info.width, info.height) == (src.width, src.height)
    if not same_size:
        notes.append(
            f"Its frames are {info.width}x{info.height} pixels, the project's "
            f"{src.width}x{src.height}; the clicks, boxes and mask prompts are scaled by {sx:.4g}."
        )
    elif src.sha256 and sha256 and src.sha256 != sha256:
        notes.append(
            f"The project was made on {src.name}; its prompts are replayed at the same "
            "frames and positions."
        )
    if info.num_frames != src.num_frames:
        notes.append(
            f"It has {info.num_frames} frames, the project's video {src.num_frames}; "
            "tracking runs to its own end."
        )
    history = [_fit_action(a, src, info, sx, sy) for a in project.history]
    has_run = any(isinstance(a, Propagate) for a in history)
    source = dataclasses.replace(
        src,
        sha256=None,  # this video's identity is recorded when its own project is saved
        num_frames=info.num_frames,
        width=info.width,
        height=info.height,
        frame_step=info.frame_step,
    )
    fitted = dataclasses.replace(project, source=source, history=history)
    return VideoPlan(fitted, notes, None if has_run else direction)


def _scale(src: ProjectSource, info: VideoInfo) -> tuple[float, float]:
    sx, sy = info.width / src.width, info.height / src.height
    if abs(sx - sy) > ASPECT_TOLERANCE * max(sx, sy):
        raise ProjectError(
            f"This project was made on {src.name} with frames of {src.width}x{src.height} "
            f"pixels, but this video's frames are {info.width}x{info.height}, another shape, "
            "so the clicks cannot be placed; use videos of the same camera view."
        )
    return sx, sy


def _check_step(project: Project, info: VideoInfo) -> list[str]:
    """A video read with another frame step than the project's takes it only when every
    prompt, run start and identity fix is on frame 0 (the original's frame 0 at any
    step); returns the note saying so."""
    saved, step = project.source.frame_step, info.frame_step
    if saved == step:
        return []
    frames = [a.frame for a in project.history if isinstance(a, (*_FRAMED, *_FIXES))]
    frames += [p.start for a in project.history if isinstance(a, Propagate) for p in a.passes]
    if any(frames):
        raise ProjectError(
            f"This project was made with frame step {saved} and has prompts after frame 0, "
            f"which frame step {step} does not read at the same frames of the original; "
            f"use frame step {saved}, or prompt only on frame 0."
        )
    return [f"It is read with frame step {step}, the project was made with {saved}."]


def _check_length(project: Project, info: VideoInfo) -> None:
    """Every prompt, tracking run and identity fix must fall on a frame of the video, or
    the video is refused before anything is tracked."""
    needed = [a.frame for a in project.history if isinstance(a, _FRAMED)]
    needed += [p.start for a in project.history if isinstance(a, Propagate) for p in a.passes]
    fixes = [a.frame for a in project.history if isinstance(a, _FIXES)]
    last = max(needed, default=0)
    if last >= info.num_frames:
        raise ProjectError(
            f"This project has prompts up to frame {last}, but this video has only "
            f"{_frames_held(info.num_frames)}; use a video of at least {last + 1} frames."
        )
    last_fix = max(fixes, default=0)
    if last_fix >= info.num_frames:
        raise ProjectError(
            f"This project has an identity fix (swap or merge) from frame {last_fix}, but "
            f"this video has only {_frames_held(info.num_frames)}; use a video of at least "
            f"{last_fix + 1} frames."
        )


def _frames_held(count: int) -> str:
    """How many frames a video has and their numbers, counted from 0 as on the page."""
    if count == 1:
        return "1 frame (frame 0)"
    return f"{count} frames (0 to {count - 1})"


def _fit_action(action, src: ProjectSource, info: VideoInfo, sx: float, sy: float):
    if isinstance(action, AddClick):
        return dataclasses.replace(
            action, x=_fit(action.x, sx, info.width), y=_fit(action.y, sy, info.height)
        )
    if isinstance(action, SetBox):
        return dataclasses.replace(
            action,
            x0=_fit(action.x0, sx, info.width),
            y0=_fit(action.y0, sy, info.height),
            x1=_fit(action.x1, sx, info.width),
            y1=_fit(action.y1, sy, info.height),
        )
    if isinstance(action, AddMask) and (info.width, info.height) != (src.width, src.height):
        # Decoded straight at this video's size, never at the size the project claims.
        mask = decode_mask_resized(action.rle, (src.height, src.width), (info.height, info.width))
        return dataclasses.replace(action, rle=encode_mask(mask))
    if isinstance(action, Propagate):
        return Propagate(
            tuple(_fit_pass(p, src.num_frames, info.num_frames) for p in action.passes)
        )
    return action


def _fit(value: float, scale: float, size: int) -> float:
    return value if scale == 1 else min(max(value * scale, 0.0), float(size))


def _fit_pass(p: Pass, old_frames: int, new_frames: int) -> Pass:
    """A recorded pass on a video of ``new_frames`` frames: a backward pass runs to frame 0
    as before; a forward pass that reached the project video's end runs to this video's
    end, one that stopped earlier keeps its length (cut at this video's end)."""
    if p.reverse:
        return Pass(p.start, True, min(p.frames, p.start + 1))
    room = new_frames - p.start
    reached_end = p.start + p.frames >= old_frames
    return Pass(p.start, False, room if reached_end else min(p.frames, room))


def run_note(direction: str, start: int) -> str:
    ways = {"both": "both ways", "forward": "forward", "backward": "backward"}[direction]
    return (
        f"The project has no tracking run; tracked {ways} from frame {start}, the first "
        "prompted frame."
    )


# ---------------------------------------------------------------------------- summary
def summary_columns(objects: list[TrackedObject]) -> list[str]:
    names = [o.name for o in objects]
    unique = len(set(names)) == len(names)
    per_object = [
        f"{o.name} frames present" if unique else f"{o.name} (object {o.obj_id}) frames present"
        for o in objects
    ]
    return [
        "position",
        "video",
        "folder",
        "status",
        "frames",
        "width",
        "height",
        "seconds",
        "found",
        "message",
        *per_object,
    ]


def write_summary(path: Path, records: list[VideoRecord], objects: list[TrackedObject]) -> Path:
    """``batch_summary.csv``: one row per video, in batch order."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([safe_cell(c) for c in summary_columns(objects)])
        for r in sorted(records, key=lambda r: r.position):
            tracked = r.status == "tracked"
            writer.writerow(
                [
                    r.position,
                    safe_cell(r.video),
                    r.folder if tracked else "",
                    r.status,
                    _blank(r.frames),
                    _blank(r.width),
                    _blank(r.height),
                    f"{r.seconds:.2f}" if math.isfinite(r.seconds) else "",
                    _blank(r.found),
                    safe_cell(r.message),
                    *[r.present.get(o.obj_id, 0) if tracked else "" for o in objects],
                ]
            )
    return path


def _blank(value) -> str:
    return "" if value is None else str(value)
