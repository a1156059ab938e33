"""Functions shared by the analyses of measurement tables (zones, pairs, heatmaps).

A table is a list of :class:`sam2web.types.Measurement` rows, one per object per frame, as
:func:`sam2web.analysis.results.measurements` makes it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..fileio import write_bytes_atomic
from ..types import Measurement
from .tables import Calibration

# A spreadsheet treats a cell starting with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """Text made inert for spreadsheets: a leading ``'`` is added when it starts with
    ``= + - @`` (or a tab / carriage return), which Excel, LibreOffice and Google Sheets
    would otherwise run as a formula. The csv module handles commas, quotes and newlines."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def has_centroid(row: Measurement) -> bool:
    """True when the row is present and has a centroid."""
    return row.present and row.centroid_x is not None and row.centroid_y is not None


def frame_step(rows: Iterable[Measurement]) -> int:
    """The frame step of a table: the largest N dividing every row's frame number (rows of
    a video tracked every N-th frame carry the original's frame numbers 0, N, 2N, ...);
    1 when the rows have no frame after 0."""
    return math.gcd(*(int(r.frame) for r in rows)) or 1


def frame_seconds(rows: Sequence[Measurement], cal: Calibration, fps: float | None = None) -> float:
    """Seconds one row of an object lasts: the frame step (:func:`frame_step`) / the
    calibration's fps, else / ``fps`` (the original video's frame rate, ``VideoInfo.fps``),
    else read off the rows' time stamps (time_s = frame / fps); 0.0 only when none of them
    tells the rate (rows of frame 0 alone, without a rate)."""
    step = frame_step(rows)
    if cal.fps is not None:
        return step / cal.fps
    if fps is not None and math.isfinite(fps) and fps > 0:
        return step / fps
    for r in rows:
        if r.frame > 0 and math.isfinite(r.time_s) and r.time_s > 0:
            return step * r.time_s / r.frame
    return 0.0


def general(value: float | None) -> str:
    """A number for a CSV cell with 8 significant digits; empty for None or NaN."""
    if value is None or math.isnan(float(value)):
        return ""
    return f"{float(value):.8g}"


def text(value: str) -> str:
    """A text cell made inert for spreadsheets (see :func:`safe_cell`)."""
    return safe_cell(str(value))


def write_table(path: Path, header: Sequence[str], cells: Iterable[Sequence[object]]) -> Path:
    """Write a UTF-8 CSV atomically (temporary file, then rename); returns ``path``."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(cells)
    return write_bytes_atomic(Path(path), buf.getvalue().encode("utf-8"))
