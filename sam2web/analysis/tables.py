"""Analysis of tracked objects from their measurements: calibration, calibrated tables,
per-object summaries, confidence events and plots. Files are written by
:mod:`sam2web.outputs.exports`.

Units. Measurements (:class:`sam2web.types.Measurement`) are in pixels of the original frame
and seconds. A :class:`Calibration` adds a length scale (pixels per unit, e.g. 5 px per mm)
and may override the frame rate; lengths are then reported in that unit, areas in unit²
and speeds in unit per second. Without a scale every length stays in pixels ("px").

Coordinates follow :mod:`sam2web.types`: a centroid (x, y) is in pixels with the origin at
the top-left corner of the top-left pixel, so pixel [row, col] covers x in [col, col + 1)
and y in [row, row + 1). Plots draw the frame with ``extent=(0, W, H, 0)`` so centroids land
on the pixels they describe.

matplotlib is imported by the functions that use it, and figures are
built as :class:`matplotlib.figure.Figure` objects (Agg canvas) without pyplot, so nothing
here touches global plotting state.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from ..errors import PromptError
from ..fileio import write_bytes_atomic
from ..types import Measurement, TrackedObject
from .results import CSV_COLUMNS

MAX_UNIT_CHARS = 16

LOST = "lost"
UNCERTAIN = "uncertain"

SUMMARY_COLUMNS = (
    "object_id",
    "object_name",
    "frames_present",
    "first_frame",
    "last_frame",
    "total_distance",
    "mean_speed",
    "max_speed",
    "mean_area",
    "unit",
)


# ---------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class Calibration:
    """How to turn pixels and frames into physical units.

    ``pixels_per_unit``: how many pixels of the original frame make one ``unit`` (e.g. 5.0
    with unit "mm"); None = uncalibrated, lengths stay in pixels and ``unit`` is ignored.
    ``fps``: frames per second to use instead of the video's own rate (None = the video's
    time stamps). Invalid values raise :class:`~sam2web.errors.PromptError`.
    """

    pixels_per_unit: float | None = None
    unit: str = "px"
    fps: float | None = None

    def __post_init__(self):
        ppu = _positive_or_none(self.pixels_per_unit, "The pixels-per-unit scale")
        fps = _positive_or_none(self.fps, "The frame rate")
        if not isinstance(self.unit, str):
            raise PromptError("The unit must be text, for example mm or µm.")
        unit = self.unit.strip()
        if not unit or len(unit) > MAX_UNIT_CHARS or not unit.isprintable():
            raise PromptError(
                f"The unit must be 1 to {MAX_UNIT_CHARS} printable characters, for example "
                "mm or µm."
            )
        if ppu is not None and unit == "px" and ppu != 1.0:
            raise PromptError(
                "Name the unit the pixels-per-unit scale converts to (for example mm), "
                "or clear the scale to keep pixels."
            )
        object.__setattr__(self, "pixels_per_unit", ppu)
        object.__setattr__(self, "fps", fps)
        object.__setattr__(self, "unit", unit)

    @property
    def calibrated(self) -> bool:
        """True when a length scale is set (lengths are reported in ``unit``)."""
        return self.pixels_per_unit is not None

    @property
    def length_unit(self) -> str:
        """Unit of reported lengths: ``unit`` when calibrated, else "px"."""
        return self.unit if self.calibrated else "px"

    def to_length(self, pixels: float) -> float:
        """A length in pixels expressed in :attr:`length_unit`."""
        return pixels / self.pixels_per_unit if self.calibrated else pixels

    def to_area(self, pixels: float) -> float:
        """An area in pixels expressed in :attr:`length_unit` squared."""
        return pixels / self.pixels_per_unit**2 if self.calibrated else pixels

    def time_of(self, row: Measurement) -> float:
        """Seconds at the start of the row's frame: frame / fps with an fps override, else
        the row's own time stamp."""
        return row.frame / self.fps if self.fps is not None else row.time_s


def _positive_or_none(value, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PromptError(f"{what} must be a positive number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PromptError(f"{what} must be a positive number, not {value!r}.") from None
    if not math.isfinite(number) or number <= 0:
        raise PromptError(f"{what} must be a positive number, not {value!r}.")
    return number


# ---------------------------------------------------------------------------- tables
def calibrated_columns(cal: Calibration) -> tuple[str, ...]:
    """Column names of :func:`calibrated_rows` / :func:`write_calibrated_csv`.

    Always the pixel columns of :data:`sam2web.analysis.results.CSV_COLUMNS`; with a length scale
    also ``centroid_x_<unit>``, ``centroid_y_<unit>`` (same origin as the pixel centroid,
    divided by the scale) and ``area_<unit>2`` (area in unit²), e.g. ``centroid_x_mm``.
    """
    if not cal.calibrated:
        return CSV_COLUMNS
    u = cal.unit
    return (*CSV_COLUMNS, f"centroid_x_{u}", f"centroid_y_{u}", f"area_{u}2")


def calibrated_rows(rows: Iterable[Measurement], cal: Calibration) -> list[dict]:
    """Per-frame table rows (dicts keyed by :func:`calibrated_columns`).

    Pixel values are kept as measured; ``time_s`` is recomputed as frame / fps when the
    calibration overrides the frame rate. Calibrated values are None where the object is
    absent.
    """
    out = []
    u = cal.unit
    for r in rows:
        row = {
            "frame": r.frame,
            "time_s": cal.time_of(r),
            "object_id": r.object_id,
            "object_name": r.object_name,
            "present": r.present,
            "score": r.score,
            "area_px": r.area_px,
            "centroid_x": r.centroid_x,
            "centroid_y": r.centroid_y,
            "bbox_x": r.bbox_x,
            "bbox_y": r.bbox_y,
            "bbox_w": r.bbox_w,
            "bbox_h": r.bbox_h,
        }
        if cal.calibrated:
            row[f"centroid_x_{u}"] = _maybe(cal.to_length, r.centroid_x)
            row[f"centroid_y_{u}"] = _maybe(cal.to_length, r.centroid_y)
            row[f"area_{u}2"] = _maybe(cal.to_area, r.area_px)
        out.append(row)
    return out


def _maybe(fn, value):
    return None if value is None else fn(value)


# ---------------------------------------------------------------------------- summaries
@dataclass(frozen=True)
class ObjectSummary:
    """Motion and size of one object over the analysed frames.

    Lengths are in ``unit`` ("px" when uncalibrated), speeds in ``unit`` per second, areas
    in ``unit``². An object never present has frames_present 0, first/last frame None,
    total_distance 0.0 and mean_speed, max_speed, mean_area None. With fewer than two
    consecutive present frames, total_distance is 0.0 and both speeds are None.
    """

    object_id: int
    object_name: str
    frames_present: int
    first_frame: int | None
    last_frame: int | None
    total_distance: float
    mean_speed: float | None
    max_speed: float | None
    mean_area: float | None
    unit: str


def by_object(rows: Iterable[Measurement]) -> dict[int, list[Measurement]]:
    """Rows grouped by object id (ids in order of first appearance), each sorted by frame."""
    grouped: dict[int, list[Measurement]] = {}
    for r in rows:
        grouped.setdefault(r.object_id, []).append(r)
    for series in grouped.values():
        series.sort(key=lambda r: r.frame)
    return grouped


def _steps(series: list[Measurement], cal: Calibration) -> Iterator[tuple[float, float]]:
    """(distance in pixels, seconds) for each pair of neighbouring rows where the object is
    present in both. An absent row between two present ones breaks the path: no step is
    counted across it."""
    for a, b in pairwise(series):
        if not (a.present and b.present) or a.centroid_x is None or b.centroid_x is None:
            continue
        dt = cal.time_of(b) - cal.time_of(a)
        if dt <= 0:
            continue
        yield math.hypot(b.centroid_x - a.centroid_x, b.centroid_y - a.centroid_y), dt


def summarize(
    rows: Iterable[Measurement], objects: Iterable[TrackedObject], cal: Calibration
) -> list[ObjectSummary]:
    """One :class:`ObjectSummary` per object, in the order of ``objects``.

    A step is the centroid displacement between two neighbouring rows of the table (the
    object's rows sorted by frame) where the object is present in both; frames where it is
    absent are not bridged. Each step's speed is its distance over the time between the two
    frames (the calibration's fps, else the rows' time stamps). total_distance sums the
    steps; mean_speed = total_distance / total time of the counted steps (time spent
    absent is left out); max_speed is the fastest step. mean_area averages the present
    frames. With a nominal frame rate (image sequences) speeds are per nominal second.
    """
    grouped = by_object(rows)
    unit = cal.length_unit
    out = []
    for obj in objects:
        series = grouped.get(obj.obj_id, [])
        present = [r for r in series if r.present and r.area_px is not None]
        steps = list(_steps(series, cal))
        distance = sum(d for d, _ in steps)
        seconds = sum(t for _, t in steps)
        out.append(
            ObjectSummary(
                object_id=obj.obj_id,
                object_name=obj.name,
                frames_present=len(present),
                first_frame=present[0].frame if present else None,
                last_frame=present[-1].frame if present else None,
                total_distance=cal.to_length(distance),
                mean_speed=cal.to_length(distance) / seconds if steps else None,
                max_speed=max(cal.to_length(d) / t for d, t in steps) if steps else None,
                mean_area=(
                    cal.to_area(sum(r.area_px for r in present) / len(present)) if present else None
                ),
                unit=unit,
            )
        )
    return out


# ---------------------------------------------------------------------------- confidence
def _check_threshold(threshold: float, margin: float | None) -> tuple[float, float | None]:
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise PromptError(f"The score threshold must be a number, not {threshold!r}.") from None
    if not math.isfinite(threshold):
        raise PromptError("The score threshold must be a finite number.")
    if margin is not None:
        margin = _positive_or_none(margin, "The uncertainty margin")
    return threshold, margin


def _classify(score: float, threshold: float, margin: float | None) -> str | None:
    """LOST below the threshold, UNCERTAIN within ``margin`` above it, else None.
    A NaN score (frame not tracked) is neither."""
    if math.isnan(score):
        return None
    if score < threshold:
        return LOST
    if margin is not None and score < threshold + margin:
        return UNCERTAIN
    return None


def low_confidence_frames(
    rows: Iterable[Measurement], threshold: float = 0.0, margin: float | None = None
) -> dict[int, list[int]]:
    """Sorted frames per object id whose score logit is below ``threshold`` (lost), plus,
    when ``margin`` is given, those with threshold <= score < threshold + margin
    (uncertain). Every object in ``rows`` has a key; frames without a stored score (NaN,
    not tracked) are never listed."""
    threshold, margin = _check_threshold(threshold, margin)
    out: dict[int, list[int]] = {}
    for obj_id, series in by_object(rows).items():
        out[obj_id] = [r.frame for r in series if _classify(r.score, threshold, margin) is not None]
    return out


def confidence_events(
    rows: Iterable[Measurement], threshold: float = 0.0, margin: float | None = None
) -> list[tuple[int, int, str]]:
    """(frame, object id, "lost" | "uncertain") for each low-confidence row, sorted by frame
    then object id; the classes are those of :func:`low_confidence_frames`."""
    threshold, margin = _check_threshold(threshold, margin)
    events = []
    for r in rows:
        kind = _classify(r.score, threshold, margin)
        if kind is not None:
            events.append((r.frame, r.object_id, kind))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


# ---------------------------------------------------------------------------- plots
def _rgb01(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(c / 255.0 for c in color)


def _new_figure(width_in: float, height_in: float, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return write_bytes_atomic(Path(path), buf.getvalue())


def load_plot(path: Path) -> np.ndarray:
    """A written plot as a uint8 RGB array (H, W, 3), e.g. for an image widget."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def frame_runs(frames: list[int], step: int = 1) -> list[tuple[int, int]]:
    """Sorted frame indices grouped into runs of consecutive frames (``step`` apart, for
    the original frame numbers of a video tracked every ``step``-th frame):
    [(first, last), ...]."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + step:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


def plot_trajectories(
    first_frame_rgb: np.ndarray,
    rows: Iterable[Measurement],
    objects: Iterable[TrackedObject],
    path: Path,
) -> Path:
    """Centroid paths of the objects drawn over a frame; returns ``path`` (PNG).

    ``first_frame_rgb`` is uint8 (H, W, 3) or (H, W). Each object is drawn in its display
    colour (``TrackedObject.color``); frames where it is absent break its line, a lone
    present frame is a dot, a circle marks where it is first seen and a square where it is
    last seen. Axes are pixel coordinates of the original frame.
    """
    frame = np.asarray(first_frame_rgb)
    if frame.ndim not in (2, 3) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"expected an (H, W, 3) or (H, W) frame, got shape {frame.shape}")
    height, width = frame.shape[:2]
    objects = list(objects)
    grouped = by_object(rows)

    # Long side between 640 and 1600 pixels at 100 dpi, so small clips stay legible.
    scale = min(max(640 / max(height, width), 1.0), 1600 / max(height, width))
    fig = _new_figure(width * scale / 100 + 0.9, height * scale / 100 + 1.2)
    ax = fig.add_subplot()
    ax.imshow(
        frame,
        extent=(0, width, height, 0),
        interpolation="nearest",
        cmap="gray" if frame.ndim == 2 else None,
    )
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    for obj in objects:
        series = grouped.get(obj.obj_id, [])
        xs = np.array(
            [r.centroid_x if r.present and r.centroid_x is not None else np.nan for r in series],
            dtype=float,
        )
        ys = np.array(
            [r.centroid_y if r.present and r.centroid_y is not None else np.nan for r in series],
            dtype=float,
        )
        color = _rgb01(obj.color)
        seen = np.flatnonzero(~np.isnan(xs))
        label = obj.name if seen.size else f"{obj.name} (not found)"
        ax.plot(xs, ys, color=color, linewidth=2.0, solid_capstyle="round", label=label)
        if not seen.size:
            continue
        prev_gone = np.r_[True, np.isnan(xs[:-1])]
        next_gone = np.r_[np.isnan(xs[1:]), True]
        lone = seen[prev_gone[seen] & next_gone[seen]]
        if lone.size:
            ax.plot(xs[lone], ys[lone], linestyle="none", marker="o", markersize=3, color=color)
        ax.plot(
            xs[seen[0]],
            ys[seen[0]],
            linestyle="none",
            marker="o",
            markersize=9,
            markerfacecolor=color,
            markeredgecolor="white",
            markeredgewidth=1.5,
        )
        ax.plot(
            xs[seen[-1]],
            ys[seen[-1]],
            linestyle="none",
            marker="s",
            markersize=7,
            markerfacecolor=color,
            markeredgecolor="white",
            markeredgewidth=1.5,
        )
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=8,
            color="black",
            markeredgecolor="white",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="s",
            markersize=7,
            color="black",
            markeredgecolor="white",
        ),
    ]
    labels += ["first seen", "last seen"]
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False
    )
    return _save_figure(fig, path)


def plot_confidence(
    rows: Iterable[Measurement],
    objects: Iterable[TrackedObject],
    path: Path,
    threshold: float = 0.0,
    margin: float | None = None,
) -> Path:
    """Per object, SAM2's object score logit over the frames; returns ``path`` (PNG).

    A dashed line marks ``threshold``; frames scoring below it (lost) are shaded red and
    marked with a cross, frames within ``margin`` above it (uncertain) shaded orange.
    Untracked frames (no score) leave a gap in the line.
    """
    threshold, margin = _check_threshold(threshold, margin)
    objects = list(objects)
    grouped = by_object(rows)
    step = math.gcd(*(int(r.frame) for series in grouped.values() for r in series)) or 1
    n = max(len(objects), 1)
    fig = _new_figure(9.0, 0.6 + 1.8 * n)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    if not objects:
        axes[0].text(0.5, 0.5, "no objects", ha="center", va="center", transform=axes[0].transAxes)
    lost_style = {"color": "tab:red", "alpha": 0.18, "linewidth": 0}
    unsure_style = {"color": "tab:orange", "alpha": 0.18, "linewidth": 0}
    threshold_style = {"color": "0.3", "linestyle": "--", "linewidth": 1.0}
    for ax, obj in zip(axes[: len(objects)], objects, strict=True):
        series = grouped.get(obj.obj_id, [])
        frames = np.array([r.frame for r in series], dtype=float)
        scores = np.array([r.score for r in series], dtype=float)
        ax.plot(frames, scores, color=_rgb01(obj.color), linewidth=1.5, marker=".", markersize=3)
        ax.axhline(threshold, **threshold_style)
        kinds = [_classify(s, threshold, margin) for s in scores]
        lost = [int(f) for f, k in zip(frames, kinds, strict=True) if k == LOST]
        uncertain = [int(f) for f, k in zip(frames, kinds, strict=True) if k == UNCERTAIN]
        for a, b in frame_runs(lost, step):
            ax.axvspan(a - step / 2, b + step / 2, **lost_style)
        for a, b in frame_runs(uncertain, step):
            ax.axvspan(a - step / 2, b + step / 2, **unsure_style)
        if lost:
            lost_scores = [s for s, k in zip(scores, kinds, strict=True) if k == LOST]
            ax.plot(lost, lost_scores, linestyle="none", marker="x", markersize=6, color="tab:red")
        title = f"{obj.name} (id {obj.obj_id})"
        if lost or uncertain:
            title += f": {len(lost)} lost"
            if margin is not None:
                title += f", {len(uncertain)} uncertain"
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel("score logit")
        ax.grid(True, alpha=0.3)

    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color="0.4", linewidth=1.5, marker=".", markersize=3),
        Line2D([], [], **threshold_style),
        Patch(**lost_style),
    ]
    labels = ["score logit (object colour)", f"threshold {threshold:g}", "lost (below threshold)"]
    if margin is not None:
        handles.append(Patch(**unsure_style))
        labels.append(f"uncertain (< {threshold + margin:g})")
    fig.legend(
        handles, labels, loc="outside upper center", ncols=len(labels), frameon=False, fontsize=9
    )
    axes[-1].set_xlabel("frame")
    return _save_figure(fig, path)
