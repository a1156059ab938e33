"""The table files written from tracking measurements: the per-frame CSV
(:func:`write_csv`), the calibrated CSV (:func:`write_calibrated_csv`) and the per-object
summary (:func:`write_summary_csv`).

Each is UTF-8 CSV, written under a temporary name and renamed when complete; empty cells
stand for "no value", and text cells pass through :func:`safe_cell`. Coordinates follow
:mod:`sam2web.types` (see :mod:`sam2web.analysis.results` for centroids and boxes).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path

from ..analysis.results import CSV_COLUMNS
from ..analysis.rowtools import safe_cell
from ..analysis.tables import (
    SUMMARY_COLUMNS,
    Calibration,
    ObjectSummary,
    calibrated_columns,
    calibrated_rows,
)
from ..fileio import write_bytes_atomic
from ..types import Measurement


def _fmt(value, digits: int) -> str:
    if value is None:
        return ""
    value = float(value)
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def _int(value) -> str:
    return "" if value is None else str(int(value))


def write_csv(
    rows: Iterable[Measurement], path: Path, interpolated: list[bool] | None = None
) -> Path:
    """Write measurements as UTF-8 CSV with the columns of :data:`CSV_COLUMNS`, and a last
    column ``interpolated`` (1 or 0 per row) when ``interpolated`` is given.

    Empty cells stand for "no value" (absent object, unknown score). ``present`` is 1 or 0;
    time_s has 6 decimals, centroids 3, scores 4. Object names pass through
    :func:`safe_cell`. The file is written under a temporary name and renamed when complete.
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS if interpolated is None else (*CSV_COLUMNS, "interpolated"))
    for i, r in enumerate(rows):
        extra = [] if interpolated is None else [1 if interpolated[i] else 0]
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
                *extra,
            ]
        )
    return write_bytes_atomic(Path(path), buf.getvalue().encode("utf-8"))


def write_calibrated_csv(
    rows: Iterable[Measurement],
    cal: Calibration,
    path: Path,
    interpolated: list[bool] | None = None,
) -> Path:
    """Write :func:`calibrated_rows` as UTF-8 CSV (header = :func:`calibrated_columns`,
    and ``interpolated`` last when given, as in :func:`write_csv`).

    Empty cells mean "no value"; ``present`` is 1/0; pixel columns use the formatting of
    :func:`sam2web.outputs.rowfiles.write_csv`; calibrated columns keep 8 significant digits.
    """
    columns = calibrated_columns(cal)
    pixel_digits = {"time_s": 6, "score": 4, "centroid_x": 3, "centroid_y": 3}
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns if interpolated is None else [*columns, "interpolated"])
    for i, row in enumerate(calibrated_rows(rows, cal)):
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
        if interpolated is not None:
            cells.append(1 if interpolated[i] else 0)
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
