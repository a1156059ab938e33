"""Analysis of tracked objects: calibrated tables, per-object summaries, plots, and mask
exports for other tools (NumPy ``.npz`` and COCO run-length encoding).

Units. Measurements (:class:`sam2web.types.Measurement`) are in pixels of the original frame
and seconds. A :class:`Calibration` adds a length scale (pixels per unit, e.g. 5 px per mm)
and may override the frame rate; lengths are then reported in that unit, areas in unit²
and speeds in unit per second. Without a scale every length stays in pixels ("px").

Coordinates follow :mod:`sam2web.types`: a centroid (x, y) is in pixels with the origin at
the top-left corner of the top-left pixel, so pixel [row, col] covers x in [col, col + 1)
and y in [row, row + 1). Plots draw the frame with ``extent=(0, W, H, 0)`` so centroids land
on the pixels they describe.

matplotlib and pycocotools are imported by the functions that use them, and figures are
built as :class:`matplotlib.figure.Figure` objects (Agg canvas) without pyplot, so nothing
here touches global plotting state.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from .errors import PromptError
from .exports import CSV_COLUMNS, safe_cell
from .fileio import atomic_output, write_bytes_atomic, write_zip_atomic
from .maskstore import MaskStore
from .types import Measurement, TrackedObject, VideoInfo

Progress = Callable[[int, "int | None"], None]

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

    Always the pixel columns of :data:`sam2web.exports.CSV_COLUMNS`; with a length scale
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


def write_calibrated_csv(rows: Iterable[Measurement], cal: Calibration, path: Path) -> Path:
    """Write :func:`calibrated_rows` as UTF-8 CSV (header = :func:`calibrated_columns`).

    Empty cells mean "no value"; ``present`` is 1/0; pixel columns use the formatting of
    :func:`sam2web.exports.write_csv`; calibrated columns keep 8 significant digits.
    """
    columns = calibrated_columns(cal)
    pixel_digits = {"time_s": 6, "score": 4, "centroid_x": 3, "centroid_y": 3}
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in calibrated_rows(rows, cal):
        cells = []
        for name in columns:
            value = row[name]
            if name == "object_name":
                cells.append(safe_cell(value))
            elif name == "present":
                cells.append(1 if value else 0)
            elif name in pixel_digits:
                cells.append(_fixed(value, pixel_digits[name]))
            elif name in CSV_COLUMNS:
                cells.append("" if value is None else str(int(value)))
            else:
                cells.append(_general(value))
        writer.writerow(cells)
    return write_bytes_atomic(Path(path), buf.getvalue().encode("utf-8"))


def _fixed(value, digits: int) -> str:
    if value is None or math.isnan(float(value)):
        return ""
    return f"{float(value):.{digits}f}"


def _general(value) -> str:
    if value is None or math.isnan(float(value)):
        return ""
    return f"{float(value):.8g}"


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


def _by_object(rows: Iterable[Measurement]) -> dict[int, list[Measurement]]:
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
    grouped = _by_object(rows)
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


def write_summary_csv(summaries: Iterable[ObjectSummary], path: Path) -> Path:
    """Write summaries as UTF-8 CSV with :data:`SUMMARY_COLUMNS` (empty cell = None).

    total_distance is in ``unit``, mean_speed and max_speed in ``unit``/s, mean_area in
    ``unit``² (the unit column says which).
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for s in summaries:
        writer.writerow(
            [
                s.object_id,
                safe_cell(s.object_name),
                s.frames_present,
                "" if s.first_frame is None else s.first_frame,
                "" if s.last_frame is None else s.last_frame,
                _general(s.total_distance),
                _general(s.mean_speed),
                _general(s.max_speed),
                _general(s.mean_area),
                safe_cell(s.unit),
            ]
        )
    return write_bytes_atomic(Path(path), buf.getvalue().encode("utf-8"))


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
    for obj_id, series in _by_object(rows).items():
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


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """Sorted frame indices grouped into runs of consecutive frames: [(first, last), ...]."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
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
    grouped = _by_object(rows)

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
    grouped = _by_object(rows)
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
        for a, b in _runs(lost):
            ax.axvspan(a - 0.5, b + 0.5, **lost_style)
        for a, b in _runs(uncertain):
            ax.axvspan(a - 0.5, b + 0.5, **unsure_style)
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


# ---------------------------------------------------------------------------- npz export
def _result_frames(store: MaskStore, ids: list[int], info: VideoInfo) -> list[int]:
    """Frames of the video where the store holds a result for at least one of ``ids``."""
    return [
        f
        for f in store.frames()
        if f < info.num_frames and any(store.score(f, i) is not None for i in ids)
    ]


def _npy_header(shape: tuple[int, ...], dtype) -> bytes:
    from numpy.lib import format as npy

    buf = io.BytesIO()
    npy.write_array_header_1_0(
        buf,
        {
            "descr": npy.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(int(s) for s in shape),
        },
    )
    return buf.getvalue()


def write_npz(
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    path: Path,
    progress: Progress | None = None,
) -> Path:
    """Masks and scores as a compressed ``.npz`` (a zip of ``.npy`` files, as written by
    :func:`numpy.savez_compressed`), streamed one frame at a time.

    Arrays (T = frames with results, K = objects in the given order):

    - ``frames`` int64 (T,): frame indices that have a result for some object;
    - ``time_s`` float64 (T,): start time of each frame in seconds;
    - ``object_ids`` int64 (K,), ``object_names`` str (K,);
    - ``scores`` float64 (T, K): SAM2's object score logit, NaN where not stored;
    - ``masks_packed`` uint8 (T, K, ceil(H*W/8)): each (H, W) mask flattened row-major and
      packed with :func:`numpy.packbits`; an object without a result is all zero;
    - ``shape`` int64 (4,): (T, K, H, W).

    Unpack with ``np.unpackbits(d["masks_packed"], axis=-1, count=H*W).reshape(T, K, H,
    W).astype(bool)``, or use :func:`read_npz`.
    """
    objects = list(objects)
    ids = [o.obj_id for o in objects]
    frames = _result_frames(store, ids, info)
    height, width = store.height, store.width
    nbytes = (height * width + 7) // 8
    scores = np.full((len(frames), len(ids)), np.nan)
    empty = np.zeros(nbytes, dtype=np.uint8)

    def write(zf: zipfile.ZipFile) -> None:
        with zf.open("masks_packed.npy", "w", force_zip64=True) as fh:
            fh.write(_npy_header((len(frames), len(ids), nbytes), np.uint8))
            for t, frame_idx in enumerate(frames):
                result = store.read(frame_idx)
                for k, obj_id in enumerate(ids):
                    mask = None if result is None else result.masks.get(obj_id)
                    if mask is None:
                        fh.write(empty.tobytes())
                        continue
                    scores[t, k] = result.scores.get(obj_id, np.nan)
                    fh.write(np.packbits(mask.reshape(-1)).tobytes())
                if progress is not None:
                    progress(t + 1, len(frames))
        arrays = {
            "frames": np.asarray(frames, dtype=np.int64),
            "time_s": np.asarray([info.time_of(f) for f in frames], dtype=np.float64),
            "object_ids": np.asarray(ids, dtype=np.int64),
            "object_names": np.asarray([o.name for o in objects], dtype=str),
            "scores": scores,
            "shape": np.asarray([len(frames), len(ids), height, width], dtype=np.int64),
        }
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)

    return write_zip_atomic(Path(path), write)


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames (T,), object_ids (K,), masks bool (T, K, H, W)) from :func:`write_npz`.

    Loads every mask into memory: T*K*H*W bytes.
    """
    with np.load(path, allow_pickle=False) as data:
        t, k, h, w = (int(v) for v in data["shape"])
        masks = np.unpackbits(data["masks_packed"], axis=-1, count=h * w)
        return data["frames"], data["object_ids"], masks.reshape(t, k, h, w).astype(bool)


# ---------------------------------------------------------------------------- COCO RLE
def write_coco_rle(
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    path: Path,
    progress: Progress | None = None,
) -> Path:
    """Masks as COCO-style JSON with run-length-encoded segmentations.

    - ``images``: one per frame of the video, ``id`` = frame index, ``file_name`` the
      zero-padded index as in the masks zip (``00000.png``), ``width``, ``height``,
      ``time_s``;
    - ``categories``: one per object, ``id`` = object id, ``name``;
    - ``annotations``: one per object present on a frame (non-empty mask, score > 0 or
      unknown), with ``segmentation`` {"size": [H, W], "counts": str} from
      :func:`pycocotools.mask.encode`, ``area`` (pixels), ``bbox`` [x, y, w, h] in pixels
      (pixel edges: x = first column, w = column count), ``image_id`` (frame),
      ``category_id`` (object id), ``score`` (SAM2's object score logit, null when
      unknown), ``iscrowd`` 0 and a running ``id`` from 1.

    Frames are read and written one at a time.
    """
    from pycocotools import mask as mask_utils

    objects = list(objects)
    ids = [o.obj_id for o in objects]
    digits = max(5, len(str(max(info.num_frames - 1, 0))))
    height, width = store.height, store.width
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        header = {
            "info": {
                "description": f"Object masks for {info.source_name}",
                "fps": info.fps,
                "num_frames": info.num_frames,
            },
            "images": [
                {
                    "id": f,
                    "file_name": f"{f:0{digits}d}.png",
                    "width": width,
                    "height": height,
                    "time_s": info.time_of(f),
                }
                for f in range(info.num_frames)
            ],
            "categories": [{"id": o.obj_id, "name": o.name} for o in objects],
        }
        fh.write(json.dumps(header, ensure_ascii=False)[:-1])
        fh.write(', "annotations": [')
        ann_id = 0
        frames = [f for f in store.frames() if f < info.num_frames]
        for done, frame_idx in enumerate(frames, start=1):
            result = store.read(frame_idx)
            for obj_id in ids:
                if result is None or obj_id not in result.masks:
                    continue
                score = float(result.scores.get(obj_id, math.nan))
                mask = result.masks[obj_id]
                if score <= 0.0 or not mask.any():
                    continue
                rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
                x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(rle))
                ann_id += 1
                ann = {
                    "id": ann_id,
                    "image_id": frame_idx,
                    "category_id": obj_id,
                    "segmentation": {
                        "size": [height, width],
                        "counts": rle["counts"].decode("ascii"),
                    },
                    "area": int(mask.sum()),
                    "bbox": [x, y, w, h],
                    "score": None if math.isnan(score) else score,
                    "iscrowd": 0,
                }
                fh.write(("" if ann_id == 1 else ", ") + json.dumps(ann))
            if progress is not None:
                progress(done, len(frames))
        fh.write("]}\n")
    return path


def read_coco_rle(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """{(frame, object id): bool mask (H, W)} decoded from :func:`write_coco_rle`."""
    from pycocotools import mask as mask_utils

    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    out = {}
    for ann in data["annotations"]:
        seg = ann["segmentation"]
        rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
        out[(int(ann["image_id"]), int(ann["category_id"]))] = mask_utils.decode(rle).astype(bool)
    return out
