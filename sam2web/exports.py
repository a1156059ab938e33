"""Measurements per object and frame, as a CSV table and as a zip of label images.

Coordinates follow :mod:`sam2web.types`: x to the right, y down, in pixels of the original
frame, origin at the top-left corner of the top-left pixel. Pixel [row, col] covers
x in [col, col + 1) and y in [row, row + 1), so its centre is (col + 0.5, row + 0.5); a
centroid is the mean of the mask's pixel centres and lines up with the user's clicks.
Bounding boxes are integer pixel indices: (bbox_x, bbox_y) is the column and row of the
top-left mask pixel, bbox_w and bbox_h count pixels.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from .fileio import write_bytes_atomic, write_zip_atomic
from .maskstore import MaskStore
from .types import Measurement, TrackedObject, VideoInfo

Progress = Callable[[int, "int | None"], None]

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

# A spreadsheet treats a cell starting with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

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
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return dict(_EMPTY_GEOMETRY)
    x0, x1 = int(cols.min()), int(cols.max())
    y0, y1 = int(rows.min()), int(rows.max())
    return {
        "area_px": int(rows.size),
        "centroid_x": float(cols.mean()) + 0.5,
        "centroid_y": float(rows.mean()) + 0.5,
        "bbox_x": x0,
        "bbox_y": y0,
        "bbox_w": x1 - x0 + 1,
        "bbox_h": y1 - y0 + 1,
    }


def measurements(
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    frames: range | None = None,
    progress: Progress | None = None,
) -> list[Measurement]:
    """One row per object per frame, frame-major, objects in the given order.

    Every frame of ``frames`` (default: the whole video) gets a row for every object, so a
    table's row count is frames x objects. ``present`` is True when the object has a
    non-empty stored mask whose score does not say "absent" (score > 0, or unknown).
    Rows without a stored result have present False and score NaN (an empty CSV cell).
    """
    objects = list(objects)
    frames = range(info.num_frames) if frames is None else frames
    rows: list[Measurement] = []
    total = len(frames)
    for done, frame_idx in enumerate(frames, start=1):
        result = store.read(frame_idx)
        for obj in objects:
            mask = score = None
            if result is not None:
                mask = result.masks.get(obj.obj_id)
                score = result.scores.get(obj.obj_id)
            score = math.nan if score is None else float(score)
            geometry = measure(mask, present=not score <= 0.0)
            present = geometry["area_px"] is not None
            rows.append(
                Measurement(
                    frame=frame_idx,
                    time_s=info.time_of(frame_idx),
                    object_id=obj.obj_id,
                    object_name=obj.name,
                    present=present,
                    score=score,
                    **geometry,
                )
            )
        if progress is not None:
            progress(done, total)
    return rows


def safe_cell(text: str) -> str:
    """Text made inert for spreadsheets: a leading ``'`` is added when it starts with
    ``= + - @`` (or a tab / carriage return), which Excel, LibreOffice and Google Sheets
    would otherwise run as a formula. The csv module handles commas, quotes and newlines."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _fmt(value, digits: int) -> str:
    if value is None:
        return ""
    value = float(value)
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def _int(value) -> str:
    return "" if value is None else str(int(value))


def write_csv(rows: Iterable[Measurement], path: Path) -> Path:
    """Write measurements as UTF-8 CSV with the columns of :data:`CSV_COLUMNS`.

    Empty cells stand for "no value" (absent object, unknown score). ``present`` is 1 or 0;
    time_s has 6 decimals, centroids 3, scores 4. Object names pass through
    :func:`safe_cell`. The file is written under a temporary name and renamed when complete.
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r.frame,
                _fmt(r.time_s, 6),
                r.object_id,
                safe_cell(r.object_name),
                1 if r.present else 0,
                _fmt(r.score, 4),
                _int(r.area_px),
                _fmt(r.centroid_x, 3),
                _fmt(r.centroid_y, 3),
                _int(r.bbox_x),
                _int(r.bbox_y),
                _int(r.bbox_w),
                _int(r.bbox_h),
            ]
        )
    return write_bytes_atomic(Path(path), buf.getvalue().encode("utf-8"))


def write_masks_zip(
    store: MaskStore,
    objects: Iterable[TrackedObject],
    info: VideoInfo,
    path: Path,
    progress: Progress | None = None,
) -> Path:
    """A zip of label images, one PNG per frame of the video, plus README.txt and
    objects.csv.

    ``masks/00000.png`` ... hold frame 0, 1, ... (zero-padded frame index, at least five
    digits). Pixel value = object id, 0 = background; frames without results are all zero,
    so the archive always has one image per frame. Only the listed objects are drawn; where
    two overlap, the later one in ``objects`` wins. Images are 8-bit greyscale PNGs when
    every id is below 256, else 16-bit.
    """
    objects = list(objects)
    order = [o.obj_id for o in objects]
    sixteen_bit = any(i >= 256 for i in order)
    digits = max(5, len(str(max(info.num_frames - 1, 0))))

    def fill(zf: zipfile.ZipFile) -> None:
        zf.writestr(
            "README.txt",
            _readme(objects, info, digits, sixteen_bit),
            compress_type=zipfile.ZIP_DEFLATED,
        )
        zf.writestr("objects.csv", _objects_csv(objects), compress_type=zipfile.ZIP_DEFLATED)
        for frame_idx in range(info.num_frames):
            labels = store.label_image(frame_idx, order)
            image = Image.fromarray(labels if sixteen_bit else labels.astype(np.uint8))
            buf = io.BytesIO()
            image.save(buf, format="PNG", optimize=False, compress_level=6)
            # PNG data is already deflated; storing it again compressed gains nothing.
            zf.writestr(
                f"masks/{frame_idx:0{digits}d}.png",
                buf.getvalue(),
                compress_type=zipfile.ZIP_STORED,
            )
            if progress is not None:
                progress(frame_idx + 1, info.num_frames)

    return write_zip_atomic(Path(path), fill, compression=zipfile.ZIP_STORED)


def _objects_csv(objects: list[TrackedObject]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("id", "name", "color"))
    for o in objects:
        r, g, b = o.color
        writer.writerow((o.obj_id, safe_cell(o.name), f"#{r:02x}{g:02x}{b:02x}"))
    return buf.getvalue()


def _readme(objects: list[TrackedObject], info: VideoInfo, digits: int, sixteen_bit: bool) -> str:
    depth = "16-bit" if sixteen_bit else "8-bit"
    lines = [
        f"Object masks for {info.source_name}",
        "",
        f"masks/ holds one {depth} greyscale PNG per frame of the video ({info.num_frames} "
        f"frames, {info.width}x{info.height} pixels), named by the frame number counted from",
        f"0 and padded to {digits} digits: masks/{0:0{digits}d}.png is the first frame.",
        f"Frame n starts at n / {info.fps:g} seconds.",
        "",
        "Each pixel holds the id of the object covering it; 0 is background. Where two",
        "objects overlap, the pixel holds the id of the object listed later below. A frame",
        "with no tracked object is all zeros. Image viewers show these small values as",
        "near-black; open them with an image-analysis tool (Python, ImageJ/Fiji).",
        "",
        "Objects (also in objects.csv, with their display colour):",
    ]
    lines += [f"  {o.obj_id}: {o.name}" for o in objects] or ["  (none)"]
    return "\n".join(lines) + "\n"
