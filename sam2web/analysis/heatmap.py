"""Occupancy heatmaps: where an object spent its time, as counts of frames per cell of a grid
laid over the frame.

The grid covers x in [0, width] and y in [0, height] (pixels of the original frame, see
:mod:`sam2web.types`) with ``nx`` x ``ny`` equal cells; a centroid on a cell's left/top edge
belongs to that cell, one on the frame's right/bottom edge to the last cell. Counts are
frames where the object is present; time = count x the duration of one frame.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import write_bytes_atomic
from ..types import Measurement
from .rowtools import frame_seconds, general, has_centroid, write_table
from .tables import Calibration

OCCUPANCY_COLUMNS = ("x_bin", "y_bin", "x_min", "x_max", "y_min", "y_max", "frames", "time_s")


@dataclass(frozen=True)
class Occupancy:
    """Frames per grid cell for one object.

    ``counts`` int64 (ny, nx), indexed [y bin, x bin] like the frame; ``x_edges`` (nx + 1,)
    and ``y_edges`` (ny + 1,) in pixels; ``frame_s`` seconds per frame.
    """

    object_id: int
    counts: np.ndarray
    x_edges: np.ndarray
    y_edges: np.ndarray
    frame_s: float

    @property
    def seconds(self) -> np.ndarray:
        """Time per cell in seconds, float (ny, nx)."""
        return self.counts * self.frame_s


def occupancy(
    rows: Iterable[Measurement],
    object_id: int,
    width: int,
    height: int,
    bins: int | tuple[int, int] = 32,
    cal: Calibration | None = None,
    fps: float | None = None,
) -> Occupancy:
    """Histogram of the object's centroids over a (width x height) frame.

    ``bins`` is the number of cells along x and y, one int for both or (nx, ny). Centroids
    outside the frame are left out. A frame lasts 1 / the video's ``fps`` unless ``cal``
    overrides the frame rate.
    """
    rows = list(rows)
    nx, ny = (bins, bins) if isinstance(bins, (int, np.integer)) else bins
    nx, ny = int(nx), int(ny)
    if nx < 1 or ny < 1 or width < 1 or height < 1:
        raise ValueError(f"need positive bins and frame size, got {nx}x{ny}, {width}x{height}")
    pts = np.array(
        [
            (r.centroid_x, r.centroid_y)
            for r in rows
            if r.object_id == object_id and has_centroid(r)
        ],
        dtype=float,
    ).reshape(-1, 2)
    x_edges = np.linspace(0.0, float(width), nx + 1)
    y_edges = np.linspace(0.0, float(height), ny + 1)
    # histogram2d's last bin is closed on the right, so a centroid at x = width still counts.
    counts, _, _ = np.histogram2d(pts[:, 1], pts[:, 0], bins=(y_edges, x_edges))
    return Occupancy(
        object_id=object_id,
        counts=counts.astype(np.int64),
        x_edges=x_edges,
        y_edges=y_edges,
        frame_s=frame_seconds(rows, cal or Calibration(), fps),
    )


def render_heatmap(
    frame_rgb: np.ndarray,
    occ: Occupancy,
    alpha: float = 0.6,
    cmap: str = "inferno",
    vmax: float | None = None,
) -> np.ndarray:
    """The occupancy drawn over a frame: uint8 RGB (H, W, 3), the frame's own size.

    Each pixel takes the colour of the cell its centre lies in (colour map ``cmap``,
    counts scaled from 0 to ``vmax``, default the largest count), blended with weight
    ``alpha``; cells never visited leave the frame as it is. ``frame_rgb`` is uint8
    (H, W, 3) or (H, W).
    """
    from matplotlib import colormaps

    frame = np.asarray(frame_rgb)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] < 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    frame = frame[:, :, :3]
    height, width = frame.shape[:2]
    ny, nx = occ.counts.shape
    # Cell of each pixel centre, on the grid the occupancy was counted on.
    col = np.clip(np.searchsorted(occ.x_edges, np.arange(width) + 0.5, side="right") - 1, 0, nx - 1)
    row = np.clip(
        np.searchsorted(occ.y_edges, np.arange(height) + 0.5, side="right") - 1, 0, ny - 1
    )
    counts = occ.counts[row[:, None], col[None, :]].astype(float)
    top = float(vmax) if vmax is not None else float(occ.counts.max(initial=0))
    if top <= 0:
        return frame.copy()
    colours = colormaps[cmap](np.clip(counts / top, 0.0, 1.0))[:, :, :3] * 255.0
    visited = (counts > 0)[:, :, None]
    blended = (1 - alpha) * frame.astype(float) + alpha * colours
    return np.where(visited, np.rint(blended), frame).astype(np.uint8)


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write a uint8 RGB (H, W, 3) image as PNG atomically; returns ``path``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return write_bytes_atomic(Path(path), buf.getvalue())


def write_occupancy_csv(occ: Occupancy, path: Path) -> Path:
    """One CSV line per grid cell (y bin major): bin indices, cell edges in pixels, frames
    and seconds (:data:`OCCUPANCY_COLUMNS`)."""
    ny, nx = occ.counts.shape
    cells = (
        [
            i,
            j,
            general(occ.x_edges[i]),
            general(occ.x_edges[i + 1]),
            general(occ.y_edges[j]),
            general(occ.y_edges[j + 1]),
            int(occ.counts[j, i]),
            general(occ.counts[j, i] * occ.frame_s),
        ]
        for j in range(ny)
        for i in range(nx)
    )
    return write_table(path, OCCUPANCY_COLUMNS, cells)
