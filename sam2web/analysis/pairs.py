"""Distances between tracked objects, from a measurement table.

Distances are between centroids (x, y) in pixels of the original frame (see
:mod:`sam2web.types`), reported in the calibration's length unit ("px" uncalibrated). A
distance needs both objects present on the frame; otherwise it is None. Time within a
distance counts frames x the duration of one frame (1 / fps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from ..errors import PromptError
from ..types import Measurement
from .rowtools import frame_seconds, general, has_centroid, text, write_table
from .tables import Calibration

PAIR_DISTANCE_COLUMNS = (
    "frame",
    "time_s",
    "object_a",
    "name_a",
    "object_b",
    "name_b",
    "distance",
    "unit",
)
PAIR_SUMMARY_COLUMNS = (
    "object_a",
    "name_a",
    "object_b",
    "name_b",
    "frames_both_present",
    "within",
    "frames_within",
    "time_within_s",
    "mean_distance",
    "min_distance",
    "unit",
)
NEAREST_COLUMNS = (
    "frame",
    "time_s",
    "object_id",
    "object_name",
    "neighbour_id",
    "neighbour_name",
    "distance",
    "unit",
)


@dataclass(frozen=True)
class PairDistance:
    """Centroid distance of objects a < b on one frame (None unless both are present)."""

    frame: int
    time_s: float
    object_a: int
    name_a: str
    object_b: int
    name_b: str
    distance: float | None
    unit: str


@dataclass(frozen=True)
class PairSummary:
    """One pair over the table: frames with both present, frames and seconds at most
    ``within`` apart (both in ``unit``), mean and least distance (None if never both)."""

    object_a: int
    name_a: str
    object_b: int
    name_b: str
    frames_both_present: int
    within: float
    frames_within: int
    time_within_s: float
    mean_distance: float | None
    min_distance: float | None
    unit: str


@dataclass(frozen=True)
class NearestNeighbour:
    """The closest other present object to one object on one frame; neighbour and distance
    are None when the object is absent or no other object is present."""

    frame: int
    time_s: float
    object_id: int
    object_name: str
    neighbour_id: int | None
    neighbour_name: str | None
    distance: float | None
    unit: str


def _frames(rows: Iterable[Measurement]) -> dict[int, dict[int, Measurement]]:
    """{frame: {object id: row}}, frames ascending, objects in order of appearance."""
    out: dict[int, dict[int, Measurement]] = {}
    for r in rows:
        out.setdefault(r.frame, {})[r.object_id] = r
    return dict(sorted(out.items()))


def _names(rows: Iterable[Measurement]) -> dict[int, str]:
    names: dict[int, str] = {}
    for r in rows:
        names.setdefault(r.object_id, r.object_name)
    return names


def _distance(a: Measurement, b: Measurement) -> float | None:
    if not (has_centroid(a) and has_centroid(b)):
        return None
    return math.hypot(b.centroid_x - a.centroid_x, b.centroid_y - a.centroid_y)


def pair_distances(
    rows: Iterable[Measurement], cal: Calibration | None = None
) -> list[PairDistance]:
    """Every pair of objects (ids ascending, a < b) on every frame of the table, frame-major."""
    rows = list(rows)
    cal = cal or Calibration()
    names = _names(rows)
    ids = sorted(names)
    out = []
    for frame, by_id in _frames(rows).items():
        any_row = next(iter(by_id.values()))
        for a, b in combinations(ids, 2):
            ra, rb = by_id.get(a), by_id.get(b)
            d = None if ra is None or rb is None else _distance(ra, rb)
            out.append(
                PairDistance(
                    frame=frame,
                    time_s=cal.time_of(any_row),
                    object_a=a,
                    name_a=names[a],
                    object_b=b,
                    name_b=names[b],
                    distance=None if d is None else cal.to_length(d),
                    unit=cal.length_unit,
                )
            )
    return out


def pair_summaries(
    rows: Iterable[Measurement],
    within: float,
    cal: Calibration | None = None,
    fps: float | None = None,
) -> list[PairSummary]:
    """Per pair (a < b): how long the two were at most ``within`` apart (``within`` in the
    calibration's length unit, "px" uncalibrated; must be >= 0). A frame lasts 1 / the
    calibration's fps, else 1 / ``fps``, the video's."""
    rows = list(rows)
    cal = cal or Calibration()
    if isinstance(within, bool):
        raise PromptError("The distance must be a number of at least 0.")
    try:
        within = float(within)
    except (TypeError, ValueError):
        raise PromptError(f"The distance must be a number of at least 0, not {within!r}.") from None
    if not (math.isfinite(within) and within >= 0):
        raise PromptError(f"The distance must be a number of at least 0, not {within!r}.")
    dt = frame_seconds(rows, cal, fps)
    by_pair: dict[tuple[int, int], list[float]] = {}
    names = _names(rows)
    for a, b in combinations(sorted(names), 2):
        by_pair[(a, b)] = []
    for p in pair_distances(rows, cal):
        if p.distance is not None:
            by_pair[(p.object_a, p.object_b)].append(p.distance)
    out = []
    for (a, b), dists in by_pair.items():
        close = sum(1 for d in dists if d <= within)
        out.append(
            PairSummary(
                object_a=a,
                name_a=names[a],
                object_b=b,
                name_b=names[b],
                frames_both_present=len(dists),
                within=within,
                frames_within=close,
                time_within_s=close * dt,
                mean_distance=sum(dists) / len(dists) if dists else None,
                min_distance=min(dists) if dists else None,
                unit=cal.length_unit,
            )
        )
    return out


def nearest_neighbours(
    rows: Iterable[Measurement], cal: Calibration | None = None
) -> list[NearestNeighbour]:
    """Per frame and object (frame-major, objects in order of the table): the closest other
    present object. Ties go to the smaller id."""
    rows = list(rows)
    cal = cal or Calibration()
    out = []
    for _, by_id in _frames(rows).items():
        for obj_id, r in by_id.items():
            best: tuple[float, int] | None = None
            for other_id, o in by_id.items():
                if other_id == obj_id:
                    continue
                d = _distance(r, o)
                if d is not None and (best is None or (d, other_id) < best):
                    best = (d, other_id)
            out.append(
                NearestNeighbour(
                    frame=r.frame,
                    time_s=cal.time_of(r),
                    object_id=obj_id,
                    object_name=r.object_name,
                    neighbour_id=None if best is None else best[1],
                    neighbour_name=None if best is None else by_id[best[1]].object_name,
                    distance=None if best is None else cal.to_length(best[0]),
                    unit=cal.length_unit,
                )
            )
    return out


def write_pair_distances_csv(items: Iterable[PairDistance], path: Path) -> Path:
    """UTF-8 CSV with :data:`PAIR_DISTANCE_COLUMNS`; empty distance = not both present."""
    return write_table(
        path,
        PAIR_DISTANCE_COLUMNS,
        (
            [
                p.frame,
                f"{p.time_s:.6f}",
                p.object_a,
                text(p.name_a),
                p.object_b,
                text(p.name_b),
                general(p.distance),
                text(p.unit),
            ]
            for p in items
        ),
    )


def write_pair_summary_csv(items: Iterable[PairSummary], path: Path) -> Path:
    """UTF-8 CSV with :data:`PAIR_SUMMARY_COLUMNS` (empty cell = None)."""
    return write_table(
        path,
        PAIR_SUMMARY_COLUMNS,
        (
            [
                s.object_a,
                text(s.name_a),
                s.object_b,
                text(s.name_b),
                s.frames_both_present,
                general(s.within),
                s.frames_within,
                general(s.time_within_s),
                general(s.mean_distance),
                general(s.min_distance),
                text(s.unit),
            ]
            for s in items
        ),
    )


def write_nearest_csv(items: Iterable[NearestNeighbour], path: Path) -> Path:
    """UTF-8 CSV with :data:`NEAREST_COLUMNS` (empty cell = None)."""
    return write_table(
        path,
        NEAREST_COLUMNS,
        (
            [
                n.frame,
                f"{n.time_s:.6f}",
                n.object_id,
                text(n.object_name),
                "" if n.neighbour_id is None else n.neighbour_id,
                "" if n.neighbour_name is None else text(n.neighbour_name),
                general(n.distance),
                text(n.unit),
            ]
            for n in items
        ),
    )
