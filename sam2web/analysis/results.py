"""Results computed once: one pass over the stored masks feeds every consumer.

After a run, each stored frame is read once (:func:`walk`, or the overlay video's own pass
beside tracking) and handed to every :class:`FrameSink`: the measurements table
(:class:`MeasurementSink`), the mask writers of :mod:`sam2web.outputs.exports` and the overlay
video. What is derived from the measurements alone (summaries, calibrated tables, plots, the
page's review) reads the rows of :class:`Results`, never the masks again.

Coordinates follow :mod:`sam2web.types`: x to the right, y down, in pixels of the original
frame, origin at the top-left corner of the top-left pixel. Pixel [row, col] covers
x in [col, col + 1) and y in [row, row + 1), so its centre is (col + 0.5, row + 0.5); a
centroid is the mean of the mask's pixel centres and lines up with the user's clicks.
Bounding boxes are integer pixel indices: (bbox_x, bbox_y) is the column and row of the
top-left mask pixel, bbox_w and bbox_h count pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..tracking.maskstore import MaskStore
from ..types import FrameResult, Measurement, Progress, TrackedObject, VideoInfo

CSV_COLUMNS = (
    "frame",
    "time_s",
    "object_id",
    "object_name",
    "present",
    "score",
    "area_px",
    "centroid_x",
    "centroid_y",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
)

_EMPTY_GEOMETRY = {
    "area_px": None,
    "centroid_x": None,
    "centroid_y": None,
    "bbox_x": None,
    "bbox_y": None,
    "bbox_w": None,
    "bbox_h": None,
}


def centroid_xy(mask: np.ndarray | None) -> tuple[float, float] | None:
    """Mean (x, y) of the mask's pixel centres, or None for an empty mask."""
    if mask is None:
        return None
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return float(cols.mean()) + 0.5, float(rows.mean()) + 0.5


def measure(mask: np.ndarray | None, present: bool) -> dict:
    """Area (pixels), centroid (x, y) and bounding box of one boolean (H, W) mask.

    Every value is None when the object is not present or the mask is empty.
    """
    if not present or mask is None:
        return dict(_EMPTY_GEOMETRY)
    # From the pixel counts per row and per column: the sums of the pixels' row and column
    # indices are exact integers, so each mean is the one rounding of sum / area, as the
    # mean of the indices of every pixel is (its partial sums are exact in float64).
    mask = np.asarray(mask, dtype=bool)
    per_row, per_col = mask.sum(axis=1), mask.sum(axis=0)
    area = int(per_row.sum())
    if area == 0:
        return dict(_EMPTY_GEOMETRY)
    rows, cols = np.flatnonzero(per_row), np.flatnonzero(per_col)
    row_sum = int(np.dot(rows, per_row[rows]))
    col_sum = int(np.dot(cols, per_col[cols]))
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
    return {
        "area_px": area,
        "centroid_x": col_sum / area + 0.5,
        "centroid_y": row_sum / area + 0.5,
        "bbox_x": x0,
        "bbox_y": y0,
        "bbox_w": x1 - x0 + 1,
        "bbox_h": y1 - y0 + 1,
    }


class FrameSink(Protocol):
    """A consumer of stored results, fed every frame of the video once, in frame order."""

    def add(self, frame_idx: int, result: FrameResult | None) -> None:
        """Frame ``frame_idx``'s stored result (None: nothing stored on that frame)."""

    def finish(self) -> None:
        """Every frame was added: complete the output."""

    def abort(self) -> None:
        """Stop and leave no partial output."""


class MeasurementSink:
    """Builds the measurements table (:class:`~sam2web.types.Measurement` rows) from the
    frames it is fed: one row per object per frame, frame-major, objects in the given order.

    ``present`` is True when the object has a non-empty stored mask whose score does not say
    "absent" (score > 0, or unknown). Rows without a stored result have present False and
    score NaN (an empty CSV cell)."""

    def __init__(self, objects: Iterable[TrackedObject], info: VideoInfo):
        self.objects = list(objects)
        self.info = info
        self.rows: list[Measurement] = []

    def add(self, frame_idx: int, result: FrameResult | None) -> None:
        for obj in self.objects:
            mask = score = None
            if result is not None:
                mask = result.masks.get(obj.obj_id)
                score = result.scores.get(obj.obj_id)
            score = math.nan if score is None else float(score)
            geometry = measure(mask, present=not score <= 0.0)
            self.rows.append(
                Measurement(
                    frame=self.info.original_frame(frame_idx),
                    time_s=self.info.time_of(frame_idx),
                    object_id=obj.obj_id,
                    object_name=obj.name,
                    present=geometry["area_px"] is not None,
                    score=score,
                    **geometry,
                )
            )

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        self.rows = []


def walk(
    store: MaskStore,
    frames: Iterable[int],
    sinks: Iterable[FrameSink],
    progress: Progress | None = None,
    finish: bool = True,
) -> None:
    """Read each of ``frames`` from the store once and hand it to every sink; then finish
    them (unless ``finish`` is False: the caller does). When anything fails, every sink is
    aborted."""
    sinks = list(sinks)
    frames = list(frames)
    try:
        for done, frame_idx in enumerate(frames, start=1):
            result = store.read(frame_idx)
            for sink in sinks:
                sink.add(frame_idx, result)
            if progress is not None:
                progress(done, len(frames))
        if finish:
            for sink in sinks:
                sink.finish()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise


def measurements(
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    frames: range | None = None,
    progress: Progress | None = None,
) -> list[Measurement]:
    """The measurements table of ``frames`` (default: the whole video); see
    :class:`MeasurementSink`. A table's row count is frames x objects."""
    sink = MeasurementSink(objects, info)
    walk(store, range(info.num_frames) if frames is None else frames, [sink], progress)
    return sink.rows


@dataclass
class Results:
    """What one run produced, computed once: the measurements and the files written from
    the masks (by key, see :data:`sam2web.outputs.exports.FILES`). ``history_length`` is the
    length of the session's history they were computed for (any later action makes them
    stale)."""

    info: VideoInfo
    objects: list[TrackedObject]
    rows: list[Measurement]
    history_length: int
    files: dict[str, Path] = field(default_factory=dict)

    def object_names(self) -> dict[int, str]:
        return {o.obj_id: o.name for o in self.objects}
