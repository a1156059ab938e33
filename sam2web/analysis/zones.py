"""Named zones of the frame: their shapes, masks and open-field presets.

Coordinates follow :mod:`sam2web.types`: (x, y) in pixels of the original frame, x to the
right, y down, origin at the top-left corner of the top-left pixel; pixel [row, col] covers
x in [col, col + 1) and y in [row, row + 1), so its centre is (col + 0.5, row + 0.5).

Shapes: :class:`Rect`, :class:`Circle`, :class:`Polygon`, and :class:`Ring` (the part of one
shape outside another, e.g. an arena's periphery). ``contains(x, y)`` is vectorised over
arrays; a point on a rectangle's or circle's edge is inside (a point exactly on a polygon's
edge may fall either way). ``mask(height, width)`` rasterises a zone as the pixels whose
centre it contains.

Open-field presets (:func:`round_arena_zones`, :func:`rect_arena_zones`) split an arena into
a centre and a periphery. The centre is the arena shrunk about its middle by
``centre_fraction`` of its *linear* size: a circle of ``fraction x radius``, or a
rectangle of ``fraction x`` each side. The default 0.5 makes the centre a quarter of the
arena's area, the common open-field choice.

What tracked objects do in the zones (membership, statistics, the zone table) is in
:mod:`sam2web.analysis.zonestats`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PromptError

MAX_NAME_CHARS = 40
# What a set of zones may hold (the page draws a few; a file or API call is checked against
# these before any shape is built from it).
MAX_ZONES = 32  # of one video
MAX_CORNERS = 1_000  # of one polygon
MAX_ZONES_JSON_CHARS = 1_000_000  # zones sent as JSON text


# ---------------------------------------------------------------------------- shapes
def _check_name(name) -> str:
    if not isinstance(name, str) or not name.strip() or not name.strip().isprintable():
        raise PromptError(
            f"A zone name must be 1 to {MAX_NAME_CHARS} printable characters, for example centre."
        )
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise PromptError(
            f"A zone name must be 1 to {MAX_NAME_CHARS} printable characters, for example centre."
        )
    return name


def check_corners(name, count: int) -> None:
    """A PromptError when a polygon has more than :data:`MAX_CORNERS` corners."""
    if count > MAX_CORNERS:
        raise PromptError(
            f"The polygon '{_check_name(name)}' has {count:,} corners, more than the "
            f"{MAX_CORNERS:,} a zone may have; draw it with fewer corners."
        )


def check_number(value, what: str) -> float:
    """``value`` as a finite float; otherwise a PromptError naming ``what``."""
    if isinstance(value, bool):
        raise PromptError(f"The {what} must be a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PromptError(f"The {what} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise PromptError(f"The {what} must be a finite number.")
    return number


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    if height <= 0 or width <= 0:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    yy, xx = np.mgrid[0:height, 0:width]
    return xx + 0.5, yy + 0.5


@dataclass(frozen=True)
class Zone:
    """Base of the zone shapes; ``name`` identifies the zone in tables."""

    name: str

    def contains(self, x, y) -> np.ndarray:
        """Boolean array (broadcast shape of ``x`` and ``y``): which points are inside.
        NaN coordinates are outside."""
        raise NotImplementedError

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean (height, width) array [row, col]: pixels whose centre is inside."""
        xx, yy = _pixel_grid(height, width)
        return self.contains(xx, yy)

    def to_json(self) -> dict:
        """A JSON-ready dict; :meth:`Zone.from_json` reads it back."""
        raise NotImplementedError

    @staticmethod
    def from_json(data: dict) -> Zone:
        """The zone described by a :meth:`to_json` dict; a malformed one raises PromptError."""
        if not isinstance(data, dict):
            raise PromptError("A stored zone is not readable; draw the zone again.")
        kind = data.get("type")
        try:
            if kind == "rect":
                return Rect(data["name"], data["x0"], data["y0"], data["x1"], data["y1"])
            if kind == "circle":
                return Circle(data["name"], data["cx"], data["cy"], data["r"])
            if kind == "polygon":
                vertices = data["vertices"]
                if not isinstance(vertices, (list, tuple)):
                    raise TypeError("corners are not a list")
                check_corners(data["name"], len(vertices))  # before a point is read
                return Polygon(data["name"], tuple(tuple(v) for v in vertices))
            if kind == "ring":
                if any(
                    isinstance(part, dict) and part.get("type") == "ring"
                    for part in (data["outer"], data["inner"])
                ):
                    raise ValueError("a ring of rings")
                return Ring(
                    data["name"], Zone.from_json(data["outer"]), Zone.from_json(data["inner"])
                )
        except (KeyError, TypeError, ValueError):
            raise PromptError("A stored zone is not readable; draw the zone again.") from None
        raise PromptError("A stored zone is not readable; draw the zone again.")


@dataclass(frozen=True)
class Rect(Zone):
    """Axis-aligned rectangle from corner (x0, y0) to corner (x1, y1), edges included;
    corners may be given in any order."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self):
        object.__setattr__(self, "name", _check_name(self.name))
        x0, x1 = sorted(check_number(v, "rectangle corner") for v in (self.x0, self.x1))
        y0, y1 = sorted(check_number(v, "rectangle corner") for v in (self.y0, self.y1))
        if x1 <= x0 or y1 <= y0:
            raise PromptError(
                f"The rectangle '{self.name}' has no area; click one corner, then the opposite one."
            )
        for attr, value in (("x0", x0), ("y0", y0), ("x1", x1), ("y1", y1)):
            object.__setattr__(self, attr, value)

    def contains(self, x, y) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)

    def to_json(self) -> dict:
        return {
            "type": "rect",
            "name": self.name,
            "x0": self.x0,
            "y0": self.y0,
            "x1": self.x1,
            "y1": self.y1,
        }


@dataclass(frozen=True)
class Circle(Zone):
    """Disc of radius ``r`` around (cx, cy), rim included."""

    cx: float
    cy: float
    r: float

    def __post_init__(self):
        object.__setattr__(self, "name", _check_name(self.name))
        object.__setattr__(self, "cx", check_number(self.cx, "circle centre"))
        object.__setattr__(self, "cy", check_number(self.cy, "circle centre"))
        r = check_number(self.r, "circle radius")
        if r <= 0:
            raise PromptError(f"The circle '{self.name}' needs a radius above 0 pixels.")
        object.__setattr__(self, "r", r)

    def contains(self, x, y) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        return (x - self.cx) ** 2 + (y - self.cy) ** 2 <= self.r**2

    def to_json(self) -> dict:
        return {"type": "circle", "name": self.name, "cx": self.cx, "cy": self.cy, "r": self.r}


@dataclass(frozen=True)
class Polygon(Zone):
    """Simple polygon through ``vertices`` ((x, y) pairs, in order, closed implicitly).
    Inside as matplotlib's ``Path.contains_points`` decides it (for a simple polygon: the
    points enclosed; a point exactly on an edge may fall either way)."""

    vertices: tuple[tuple[float, float], ...]

    def __post_init__(self):
        object.__setattr__(self, "name", _check_name(self.name))
        try:
            check_corners(self.name, len(self.vertices))
            verts = tuple(
                (check_number(x, "polygon corner"), check_number(y, "polygon corner"))
                for x, y in self.vertices
            )
        except (TypeError, ValueError):
            raise PromptError(
                f"The polygon '{self.name}' needs corners given as (x, y) points."
            ) from None
        if len(set(verts)) < 3 or abs(_signed_area(verts)) < 1e-9:
            raise PromptError(
                f"The polygon '{self.name}' has no area; click at least 3 corners that do "
                "not lie on one line."
            )
        object.__setattr__(self, "vertices", verts)

    def contains(self, x, y) -> np.ndarray:
        # matplotlib's point-in-path test (a crossing count) on the implicitly closed path.
        from matplotlib.path import Path as Outline

        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        points = np.column_stack([x.ravel(), y.ravel()])
        finite = np.isfinite(points).all(axis=1)
        inside = np.zeros(len(points), dtype=bool)
        if finite.any():
            outline = Outline(np.asarray(self.vertices, dtype=float))
            inside[finite] = outline.contains_points(points[finite])
        return inside.reshape(x.shape)

    def to_json(self) -> dict:
        return {
            "type": "polygon",
            "name": self.name,
            "vertices": [list(v) for v in self.vertices],
        }


@dataclass(frozen=True)
class Ring(Zone):
    """The part of ``outer`` that is not in ``inner`` (e.g. an arena's periphery around its
    centre): inside ``outer`` and not inside ``inner``, so ``inner``'s edge belongs to
    ``inner``."""

    outer: Zone
    inner: Zone

    def __post_init__(self):
        object.__setattr__(self, "name", _check_name(self.name))
        for part in (self.outer, self.inner):
            if not isinstance(part, Zone) or isinstance(part, Ring):
                raise PromptError(
                    f"The zone '{self.name}' must be made of a rectangle, circle or polygon."
                )

    def contains(self, x, y) -> np.ndarray:
        return self.outer.contains(x, y) & ~self.inner.contains(x, y)

    def to_json(self) -> dict:
        return {
            "type": "ring",
            "name": self.name,
            "outer": self.outer.to_json(),
            "inner": self.inner.to_json(),
        }


def _signed_area(verts: Sequence[tuple[float, float]]) -> float:
    xs = np.array([v[0] for v in verts])
    ys = np.array([v[1] for v in verts])
    return 0.5 * float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))


def zones_to_json(zones: Iterable[Zone]) -> list[dict]:
    """JSON-ready list of zones (for the project file)."""
    return [z.to_json() for z in zones]


def zones_from_json(data: Iterable[dict]) -> list[Zone]:
    """Zones from :func:`zones_to_json`; names must be unique, and there may be at most
    :data:`MAX_ZONES` (counted before any is built)."""
    items = list(itertools.islice(data, MAX_ZONES + 1))
    if len(items) > MAX_ZONES:
        raise PromptError(f"A video can have at most {MAX_ZONES} zones; remove some first.")
    zones = [Zone.from_json(d) for d in items]
    check_unique_names(zones)
    return zones


def check_unique_names(zones: Sequence[Zone]) -> None:
    """A PromptError when two of ``zones`` share a name."""
    seen: set[str] = set()
    for z in zones:
        if z.name in seen:
            raise PromptError(f"Two zones are named '{z.name}'; give each zone its own name.")
        seen.add(z.name)


# ---------------------------------------------------------------------------- presets
def _points(points, what: str) -> np.ndarray:
    try:
        arr = np.array([(float(x), float(y)) for x, y in points], dtype=float).reshape(-1, 2)
    except (TypeError, ValueError):
        raise PromptError(f"The {what} must be clicked points (x, y).") from None
    if not np.isfinite(arr).all():
        raise PromptError(f"The {what} must be points inside the frame.")
    return arr


def _check_fraction(fraction) -> float:
    f = check_number(fraction, "centre fraction")
    if not 0 < f < 1:
        raise PromptError(
            "The centre fraction must be between 0 and 1 (0.5 makes the centre half the "
            "arena's width)."
        )
    return f


def fit_circle(points: Iterable[tuple[float, float]]) -> tuple[float, float, float]:
    """Least-squares circle (cx, cy, r) in pixels through clicked rim points (x, y).

    Algebraic (Kåsa) fit: minimises sum (x^2 + y^2 + D x + E y + F)^2, exact for points on a
    circle. Needs at least 3 distinct points not on one line.
    """
    pts = _points(points, "rim points")
    unique = np.unique(pts, axis=0)
    if len(unique) < 3:
        raise PromptError("Click at least 3 different points on the arena's rim to fit a circle.")
    centre = pts.mean(axis=0)
    d = pts - centre
    scale = float(np.abs(d).max())
    d = d / scale
    sv = np.linalg.svd(d, compute_uv=False)
    if sv[-1] < 1e-6 * sv[0]:
        raise PromptError(
            "The rim points lie on one line; click points spread around the arena's rim."
        )
    a = np.column_stack([d, np.ones(len(d))])
    b = -(d**2).sum(axis=1)
    (dd, ee, ff), *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = -dd / 2, -ee / 2
    r2 = cx * cx + cy * cy - ff
    if not r2 > 0:
        raise PromptError(
            "No circle fits the rim points; click points spread around the arena's rim."
        )
    return (
        float(cx * scale + centre[0]),
        float(cy * scale + centre[1]),
        float(math.sqrt(r2) * scale),
    )


def round_arena_zones(
    rim_points: Iterable[tuple[float, float]],
    centre_fraction: float = 0.5,
    names: tuple[str, str] = ("centre", "periphery"),
) -> tuple[Circle, Ring]:
    """Centre and periphery of a round arena fitted to >= 3 clicked rim points.

    The arena is :func:`fit_circle`'s circle of radius R; the centre a circle of radius
    ``centre_fraction`` x R around the same point (0.5: a quarter of the area); the
    periphery the rest of the arena.
    """
    f = _check_fraction(centre_fraction)
    cx, cy, r = fit_circle(rim_points)
    centre = Circle(names[0], cx, cy, f * r)
    periphery = Ring(names[1], Circle("arena", cx, cy, r), centre)
    return centre, periphery


def rect_arena_zones(
    corners: Iterable[tuple[float, float]],
    centre_fraction: float = 0.5,
    names: tuple[str, str] = ("centre", "periphery"),
) -> tuple[Rect | Polygon, Ring]:
    """Centre and periphery of a square or rectangular arena from clicked corners.

    Two opposite corners give an axis-aligned :class:`Rect`; four corners (any order; a
    tilted or perspective-distorted arena) give a :class:`Polygon`. The centre is the arena
    scaled by ``centre_fraction`` about the mean of its corners, so each side of a
    rectangular arena shrinks to that fraction (0.5: a quarter of the area); the periphery
    is the rest of the arena.
    """
    f = _check_fraction(centre_fraction)
    pts = _points(corners, "arena corners")
    if len(pts) == 2:
        arena = Rect("arena", pts[0, 0], pts[0, 1], pts[1, 0], pts[1, 1])
        mx, my = (arena.x0 + arena.x1) / 2, (arena.y0 + arena.y1) / 2
        hw, hh = f * (arena.x1 - arena.x0) / 2, f * (arena.y1 - arena.y0) / 2
        centre: Rect | Polygon = Rect(names[0], mx - hw, my - hh, mx + hw, my + hh)
        return centre, Ring(names[1], arena, centre)
    if len(pts) != 4:
        raise PromptError(
            f"Click two opposite corners or all four corners of the arena, not {len(pts)} points."
        )
    mid = pts.mean(axis=0)
    order = np.argsort(np.arctan2(pts[:, 1] - mid[1], pts[:, 0] - mid[0]))
    ring = pts[order]
    arena_poly = Polygon("arena", tuple(map(tuple, ring)))
    inner = mid + f * (ring - mid)
    centre = Polygon(names[0], tuple(map(tuple, inner)))
    return centre, Ring(names[1], arena_poly, centre)
