"""Typed records passed between sam2web's stages.

Coordinate convention, used everywhere: a user's click or box is in (x, y) pixels of the
*original* frame, x to the right, y down, origin at the top-left pixel's corner. Arrays are
indexed [row, col] = [y, x]. :func:`xy_to_rowcol` is the one conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A progress callback: ``progress(done, total)``; total is None when unknown.
Progress = Callable[[int, "int | None"], None]
# Called now and then while work waits for its turn on the shared model (e.g. to say so).
WaitCallback = Callable[[], None]


def xy_to_rowcol(x: float, y: float) -> tuple[int, int]:
    """Pixel (x, y) of the original frame -> integer array index (row, col)."""
    return int(y), int(x)


@dataclass(frozen=True)
class VideoInfo:
    """Facts about an ingested video or image sequence."""

    num_frames: int
    width: int
    height: int
    fps: float  # frames per second used for time stamps (1.0 for sequences unless given)
    source_name: str  # display name of the upload (never used as a path)
    kind: str  # "video", "images" or "tiff"
    fps_is_nominal: bool = False  # True when no real frame rate was known (sequences)
    notes: tuple[str, ...] = ()  # what ingest did that a user should know (rotation, scaling)
    pixel_size: float | None = None  # width of one pixel in pixel_unit, when the file states it
    pixel_unit: str | None = None  # unit of pixel_size, e.g. "µm"
    # Every frame_step-th frame of the original was kept: frame i here is the original's
    # frame i * frame_step; source_frames counts the original's frames (0: num_frames).
    frame_step: int = 1
    source_frames: int = 0

    @property
    def duration_s(self) -> float:
        frames = self.source_frames or self.num_frames * self.frame_step
        return frames / self.fps if self.fps > 0 else 0.0

    @property
    def tracked_fps(self) -> float:
        """Frames per second of the frames kept (the original's rate / frame_step)."""
        return self.fps / self.frame_step

    def original_frame(self, frame_idx: int) -> int:
        """The original video's number of kept frame ``frame_idx``."""
        return int(frame_idx) * self.frame_step

    def time_of(self, frame_idx: int) -> float:
        """Seconds from the start of the original video to the start of kept frame
        ``frame_idx`` (its original frame number / the original's fps)."""
        return self.original_frame(frame_idx) / self.fps


@dataclass(frozen=True)
class Click:
    """A point prompt: (x, y) in original-frame pixels; positive=True marks the object."""

    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True)
class Box:
    """A box prompt in original-frame pixels: top-left (x0, y0), bottom-right (x1, y1)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def normalized(self) -> Box:
        return Box(
            min(self.x0, self.x1),
            min(self.y0, self.y1),
            max(self.x0, self.x1),
            max(self.y0, self.y1),
        )


@dataclass
class FramePrompts:
    """All prompts of one object on one frame, in the order they were given."""

    clicks: list[Click] = field(default_factory=list)
    box: Box | None = None
    mask: Any = None  # a bool (H, W) mask prompt, given before the box and clicks

    def is_empty(self) -> bool:
        return not self.clicks and self.box is None and self.mask is None


@dataclass
class TrackedObject:
    obj_id: int  # stable, starts at 1; 0 is background in label images
    name: str
    color: tuple[int, int, int]  # RGB 0-255


@dataclass
class FrameResult:
    """Tracking output for one frame: a boolean mask [row, col] and SAM2's object score
    logit per object id (present when score > 0)."""

    frame_idx: int
    masks: dict[int, np.ndarray]
    scores: dict[int, float]

    def present(self, obj_id: int) -> bool:
        return self.scores.get(obj_id, float("-inf")) > 0.0


@dataclass(frozen=True)
class Measurement:
    """One object on one frame. Geometry is None when the object is absent."""

    frame: int
    time_s: float
    object_id: int
    object_name: str
    present: bool
    score: float
    area_px: int | None
    centroid_x: float | None
    centroid_y: float | None
    bbox_x: int | None
    bbox_y: int | None
    bbox_w: int | None
    bbox_h: int | None


RGB = tuple[int, int, int]

# matplotlib's "tab10" colours, in order.
TAB10: list[RGB] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def color_for(obj_id: int) -> RGB:
    """Display colour of an object: tab10, cycling from id 1."""
    return TAB10[(int(obj_id) - 1) % len(TAB10)]
