"""Zones, arena presets, per-zone statistics and the ruler, on scripted paths whose answers
are known by construction."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from sam2web.analysis.calibrate import (
    calibration_from_video,
    ruler_calibration,
    ruler_pixels_per_unit,
)
from sam2web.analysis.tables import Calibration
from sam2web.analysis.zones import (
    Circle,
    Polygon,
    Rect,
    Ring,
    Zone,
    fit_circle,
    rect_arena_zones,
    round_arena_zones,
    zones_from_json,
    zones_to_json,
)
from sam2web.analysis.zonestats import ZONE_COLUMNS, write_zone_csv, zone_membership, zone_stats
from sam2web.errors import PromptError
from sam2web.tracking.maskstore import MaskStore
from sam2web.types import VideoInfo
from sam2web.units import normalize_length_unit
from tests.tables import make_rows


def one_sentence(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message[0].isupper() and message.endswith(".") and "\n" not in message
    return message


# ---------------------------------------------------------------------------- shapes
def test_rect_contains_is_vectorised_and_includes_edges():
    r = Rect("box", 40, 60, 20, 40)  # corners in any order
    assert (r.x0, r.y0, r.x1, r.y1) == (20, 40, 40, 60)
    x = np.array([20, 30, 40, 19.99, 41, np.nan])
    y = np.array([40, 50, 60, 50, 50, 50])
    assert r.contains(x, y).tolist() == [True, True, True, False, False, False]
    assert r.contains(30, 50).shape == ()


def test_masks_are_pixel_centres_inside():
    r = Rect("box", 10, 20, 20, 25)
    m = r.mask(40, 30)
    assert m.shape == (40, 30) and m.dtype == bool
    rows, cols = np.nonzero(m)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 24, 10, 19)
    assert m.sum() == 10 * 5
    c = Circle("disc", 50.0, 50.0, 10.0)
    area = c.mask(100, 100).sum()
    assert abs(area - math.pi * 100) < 0.05 * math.pi * 100


def test_polygon_contains_matches_rect_and_triangle():
    square = Polygon("sq", ((10, 10), (30, 10), (30, 20), (10, 20)))
    assert np.array_equal(square.mask(40, 50), Rect("r", 10, 10, 30, 20).mask(40, 50))
    tri = Polygon("tri", ((0, 0), (10, 0), (0, 10)))
    assert tri.contains([1, 6, 4.9], [1, 6, 4.9]).tolist() == [True, False, True]


def test_ring_is_outer_minus_inner():
    ring = Ring("periphery", Circle("arena", 0, 0, 10), Circle("centre", 0, 0, 5))
    assert ring.contains([0, 5, 5.01, 10, 10.01], [0, 0, 0, 0, 0]).tolist() == [
        False,
        False,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Rect("a", 1, 1, 1, 5), "no area"),
        (lambda: Circle("a", 1, 1, 0), "radius"),
        (lambda: Polygon("a", ((0, 0), (1, 1), (2, 2))), "no area"),
        (lambda: Polygon("a", ((0, 0), (1, 1))), "no area"),
        (lambda: Rect("", 0, 0, 1, 1), "zone name"),
        (lambda: Rect("x" * 41, 0, 0, 1, 1), "zone name"),
        (lambda: Rect("a", 0, 0, float("nan"), 1), "finite"),
    ],
)
def test_bad_shapes_say_one_sentence(make, words):
    with pytest.raises(PromptError) as err:
        make()
    assert words in one_sentence(err)


def test_zones_round_trip_through_json():
    centre, periphery = rect_arena_zones([(10, 10), (50, 10), (50, 30), (10, 30)])
    zones = [Rect("box", 1, 2, 3, 4), Circle("disc", 5, 6, 7), centre, periphery]
    data = json.loads(json.dumps(zones_to_json(zones)))
    assert zones_from_json(data) == zones
    with pytest.raises(PromptError):
        zones_from_json([{"type": "hexagon", "name": "x"}])
    with pytest.raises(PromptError):
        Zone.from_json({"type": "rect", "name": "x", "x0": 0})
    with pytest.raises(PromptError) as err:
        zones_from_json([Rect("a", 0, 0, 1, 1).to_json()] * 2)
    assert "Two zones are named 'a'" in one_sentence(err)


# ---------------------------------------------------------------------------- presets
def test_fit_circle_is_exact_for_points_on_a_circle():
    angles = np.deg2rad([10, 100, 200, 290])
    pts = [(80 + 50 * np.cos(a), 60 + 50 * np.sin(a)) for a in angles]
    cx, cy, r = fit_circle(pts)
    assert (cx, cy, r) == pytest.approx((80, 60, 50), abs=1e-9)
    cx, cy, r = fit_circle(pts[:3])
    assert (cx, cy, r) == pytest.approx((80, 60, 50), abs=1e-9)


def test_fit_circle_least_squares_with_noise():
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, 2 * np.pi, 40)
    radii = 50 + rng.normal(0, 0.5, 40)
    pts = np.column_stack([80 + radii * np.cos(angles), 60 + radii * np.sin(angles)])
    cx, cy, r = fit_circle(pts)
    assert abs(cx - 80) < 0.5 and abs(cy - 60) < 0.5 and abs(r - 50) < 0.5


@pytest.mark.parametrize(
    ("points", "words"),
    [
        ([(0, 0), (1, 1)], "at least 3"),
        ([(0, 0), (0, 0), (1, 1)], "at least 3"),
        ([(0, 0), (1, 1), (2, 2)], "one line"),
    ],
)
def test_fit_circle_refuses_bad_clicks(points, words):
    with pytest.raises(PromptError) as err:
        fit_circle(points)
    assert words in one_sentence(err)


def test_round_arena_centre_is_half_the_radius():
    pts = [(100 + 40 * np.cos(a), 80 + 40 * np.sin(a)) for a in (0, 2, 4)]
    centre, periphery = round_arena_zones(pts)
    assert (centre.name, periphery.name) == ("centre", "periphery")
    assert (centre.cx, centre.cy, centre.r) == pytest.approx((100, 80, 20))
    assert periphery.contains([100, 125, 139, 141], [80, 80, 80, 80]).tolist() == [
        False,
        True,
        True,
        False,
    ]
    small, _ = round_arena_zones(pts, centre_fraction=0.25)
    assert small.r == pytest.approx(10)
    with pytest.raises(PromptError):
        round_arena_zones(pts, centre_fraction=1.0)


def test_rect_arena_from_two_and_four_corners():
    centre, periphery = rect_arena_zones([(10, 20), (50, 100)])
    assert (centre.x0, centre.y0, centre.x1, centre.y1) == (20, 40, 40, 80)
    assert isinstance(periphery.outer, Rect)
    # Four corners in a scrambled order give the same regions.
    centre4, periphery4 = rect_arena_zones([(50, 100), (10, 20), (10, 100), (50, 20)])
    assert np.array_equal(centre4.mask(120, 60), centre.mask(120, 60))
    assert np.array_equal(periphery4.mask(120, 60), periphery.mask(120, 60))
    # The centre is a quarter of the arena's area.
    assert centre.mask(120, 60).sum() * 4 == periphery.outer.mask(120, 60).sum()
    # A tilted square: centre vertices halfway to the middle.
    tilted, _ = rect_arena_zones([(50, 0), (100, 50), (50, 100), (0, 50)])
    assert sorted(tilted.vertices) == sorted([(50, 25), (75, 50), (50, 75), (25, 50)])
    with pytest.raises(PromptError) as err:
        rect_arena_zones([(0, 0), (1, 0), (1, 1)])
    assert "not 3 points" in one_sentence(err)


# ---------------------------------------------------------------------------- statistics
ZONE = Rect("box", 20, 40, 40, 60)


def line_path(n: int = 30, absent: tuple[int, ...] = ()) -> list:
    """x = 5 + 2 f, y = 50: inside the box (x in [20, 40]) on frames 8..17."""
    return [None if f in absent else (5 + 2 * f, 50) for f in range(n)]


def test_disc_crossing_a_rectangle():
    rows = make_rows({1: line_path()}, fps=10.0)
    (s,) = zone_stats(rows, [ZONE])
    assert (s.object_id, s.zone, s.membership, s.frames) == (1, "box", "centroid", 30)
    assert s.frames_inside == 10 and s.fraction_inside == pytest.approx(1 / 3)
    assert s.time_in_zone_s == pytest.approx(1.0)
    assert s.entries == 1
    assert s.latency_s == pytest.approx(0.8)
    assert s.distance_inside == pytest.approx(18.0) and s.unit == "px"
    assert s.time_scored_s == pytest.approx(1.0) and s.mean_score_inside == pytest.approx(5.0)
    (s,) = zone_stats(rows, [ZONE], Calibration(pixels_per_unit=2.0, unit="mm", fps=5.0))
    assert s.distance_inside == pytest.approx(9.0) and s.unit == "mm"
    assert s.time_in_zone_s == pytest.approx(2.0) and s.latency_s == pytest.approx(1.6)


def test_absence_inside_splits_entries_and_distance():
    rows = make_rows({1: line_path(absent=(12,))})
    (s,) = zone_stats(rows, [ZONE])
    assert s.frames_inside == 9 and s.entries == 2
    assert s.distance_inside == pytest.approx(3 * 2 + 4 * 2)


def test_inside_on_the_first_frame_is_an_entry_with_zero_latency():
    path = [(30, 50)] * 3 + [(0, 0)] * 2 + [(30, 50)] * 2
    (s,) = zone_stats(make_rows({1: path}), [ZONE])
    assert s.entries == 2 and s.latency_s == 0.0 and s.frames_inside == 5


def test_never_inside_and_never_present():
    rows = make_rows({1: [(0, 0)] * 4, 2: [None] * 4})
    s1, s2 = zone_stats(rows, [ZONE])
    assert (s1.entries, s1.frames_inside, s1.latency_s, s1.mean_score_inside) == (0, 0, None, None)
    assert s2.frames == 4 and s2.frames_inside == 0 and s2.distance_inside == 0.0


def test_scores_weight_the_time_inside():
    path = line_path()
    scores = [5.0] * 30
    scores[9] = math.nan  # unknown score (e.g. gap-filled): inside, not counted as scored
    scores[10] = 1.0
    rows = make_rows({1: path}, scores={1: scores})
    (s,) = zone_stats(rows, [ZONE])
    assert s.frames_inside == 10
    assert s.time_scored_s == pytest.approx(0.9)
    assert s.mean_score_inside == pytest.approx((8 * 5.0 + 1.0) / 9)


def test_stats_per_object_and_zone_in_order():
    rows = make_rows({3: line_path(), 1: [(30, 50)] * 30})
    stats = zone_stats(rows, [ZONE, Circle("disc", 0, 0, 1)])
    assert [(s.object_id, s.zone) for s in stats] == [
        (3, "box"),
        (3, "disc"),
        (1, "box"),
        (1, "disc"),
    ]
    assert stats[2].time_in_zone_s == pytest.approx(3.0)
    membership = zone_membership(rows, [ZONE])
    assert [f for f, inside in membership[(3, "box")].items() if inside] == list(range(8, 18))


def square_mask(col: int, height: int = 60, width: int = 80) -> np.ndarray:
    m = np.zeros((height, width), dtype=bool)
    m[20:30, col : col + 10] = True
    return m


def test_membership_by_mask_overlap(tmp_path):
    """A 10x10 square moving 1 column per frame into the zone x >= 40: the fraction of its
    pixels inside is (col + 10 - 40) / 10, so >= 0.5 from col 35 on."""
    zone = Rect("right", 40, 0, 80, 60)
    cols = list(range(28, 42))
    store = MaskStore(tmp_path / "masks", 60, 80)
    for f, c in enumerate(cols):
        store.write(f, {1: square_mask(c)}, {1: 3.0})
    rows = make_rows({1: [(c + 5.0, 25.0) for c in cols]})
    (s,) = zone_stats(rows, [zone], masks=store, min_overlap=0.5)
    first = cols.index(35)
    assert s.membership == "overlap>=0.5"
    assert s.frames_inside == len(cols) - first and s.latency_s == pytest.approx(first / 10)
    triples = [(f, 1, square_mask(c)) for f, c in enumerate(cols)]
    (t,) = zone_stats(rows, [zone], masks=iter(triples), min_overlap=0.5)
    assert t == s
    (full,) = zone_stats(rows, [zone], masks=store, min_overlap=1.0)
    assert full.frames_inside == len(cols) - cols.index(40)
    (c,) = zone_stats(rows, [zone])  # centroid col + 5 >= 40 from col 35
    assert c.frames_inside == s.frames_inside
    with pytest.raises(PromptError):
        zone_stats(rows, [zone], masks=store, min_overlap=0)


def test_membership_by_overlap_reads_any_mask_reader(tmp_path):
    """A store seen through identity fixes (a FixedStore) works as the store does: after a
    swap from frame 3, squares wholly inside or outside the zone are members by overlap
    exactly where their fixed centroids are."""
    from sam2web.analysis.identity import FixedStore, Swap
    from sam2web.analysis.results import measurements
    from sam2web.types import TrackedObject

    zone = Rect("right", 40, 0, 80, 60)
    store = MaskStore(tmp_path / "masks", 60, 80)
    for f in range(6):
        store.write(f, {1: square_mask(10), 2: square_mask(50)}, {1: 3.0, 2: 3.0})
    view = FixedStore(store, [Swap(1, 2, 3)])
    objects = [TrackedObject(1, "a", (255, 0, 0)), TrackedObject(2, "b", (0, 0, 255))]
    rows = measurements(view, objects, VideoInfo(6, 80, 60, 10.0, "x", "video"))
    by_overlap = zone_membership(rows, [zone], masks=view, min_overlap=1.0)
    assert by_overlap == zone_membership(rows, [zone])
    assert by_overlap[(1, "right")] == {f: f >= 3 for f in range(6)}
    assert by_overlap[(2, "right")] == {f: f < 3 for f in range(6)}


def test_zone_csv(tmp_path):
    rows = make_rows({1: line_path()}, names={1: "=cmd()"})
    path = write_zone_csv(zone_stats(rows, [ZONE]), tmp_path / "out" / "zones.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == ZONE_COLUMNS
    line = dict(zip(table[0], table[1], strict=True))
    assert line["object_name"] == "'=cmd()"
    assert line["entries"] == "1" and line["time_in_zone_s"] == "1"
    assert line["latency_s"] == "0.8" and line["distance_inside"] == "18"


# ---------------------------------------------------------------------------- ruler
def test_ruler_scale():
    assert ruler_pixels_per_unit((10, 10), (40, 50), 10) == pytest.approx(5.0)
    cal = ruler_calibration((0, 0), (0, 30), 6, "mm")
    assert cal.pixels_per_unit == pytest.approx(5.0) and cal.unit == "mm"


@pytest.mark.parametrize(
    ("p1", "p2", "distance", "words"),
    [
        ((5, 5), (5, 5), 10, "same point"),
        ((0, 0), (3, 4), 0, "positive"),
        ((0, 0), (3, 4), -2, "positive"),
        ((0, 0), (3, 4), "ten", "positive"),
        ((0, float("nan")), (3, 4), 1, "points on the frame"),
    ],
)
def test_ruler_refuses_bad_input(p1, p2, distance, words):
    with pytest.raises(PromptError) as err:
        ruler_pixels_per_unit(p1, p2, distance)
    assert words in one_sentence(err)


def test_calibration_from_video_pixel_size():
    info = VideoInfo(5, 100, 80, 2.0, "x.tif", "tiff", pixel_size=0.5, pixel_unit="µm")
    cal = calibration_from_video(info)
    assert cal.pixels_per_unit == pytest.approx(2.0) and cal.length_unit == "µm"
    plain = calibration_from_video(VideoInfo(5, 100, 80, 2.0, "x.mp4", "video"))
    assert not plain.calibrated


def test_length_units_are_normalised():
    for spelling in ("µm", "μm", "um", "micron", "Micron", "\\u00B5m"):
        assert normalize_length_unit(spelling) == "µm"
    assert normalize_length_unit("mm") == "mm" and normalize_length_unit("nm") == "nm"
    for nothing in ("pixel", "", None, 3, "furlong"):
        assert normalize_length_unit(nothing) is None


def test_a_rectangle_without_area_says_how_the_page_draws_one():
    from sam2web.analysis.zones import Rect
    from sam2web.errors import PromptError

    with pytest.raises(PromptError) as caught:
        Rect("arena", 5, 5, 5, 40)
    assert caught.value.message == (
        "The rectangle 'arena' has no area; click one corner, then the opposite one."
    )


def _inside_convex(verts, x, y, margin):
    """Pixel centres strictly inside a counter-clockwise convex polygon by ``margin``, and
    those strictly outside by ``margin``: half-plane tests, independent of the zone code."""
    inside = np.ones(x.shape, bool)
    outside = np.zeros(x.shape, bool)
    for (x0, y0), (x1, y1) in zip(verts, verts[1:] + verts[:1], strict=True):
        length = math.hypot(x1 - x0, y1 - y0)
        side = ((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)) / length
        inside &= side > margin
        outside |= side < -margin
    return inside, outside


def test_a_polygon_mask_is_the_pixel_centres_inside_it():
    """Random convex polygons (hulls of random points, counter-clockwise in x-right/y-down
    terms as the half-plane test expects) and an L shape, against truth computed without the
    zone code: every pixel centre more than 1e-6 px inside is in the mask, every one more
    than 1e-6 px outside is not. A variant that also takes the pixels under the outline
    (cv2.fillPoly's convention) fails this: a 10x10 square on pixel corners gives 121 pixels
    instead of 100."""
    import cv2

    rng = np.random.default_rng(7)
    h, w = 60, 80
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    for _ in range(20):
        pts = rng.uniform([2, 2], [w - 2, h - 2], size=(8, 2)).astype(np.float32)
        hull = cv2.convexHull(pts, clockwise=False)[:, 0, :].astype(float)
        verts = [tuple(v) for v in hull]
        if (
            abs(
                sum(
                    x0 * y1 - x1 * y0
                    for (x0, y0), (x1, y1) in zip(verts, verts[1:] + verts[:1], strict=True)
                )
            )
            < 1
        ):
            continue
        inside, outside = _inside_convex(verts, cols, rows, 1e-6)
        if not inside.any():  # the half-plane signs assume the other orientation
            inside, outside = _inside_convex(verts[::-1], cols, rows, 1e-6)
        mask = Polygon("p", verts).mask(h, w)
        assert inside.any() and mask[inside].all() and not mask[outside].any()
    ell = Polygon("L", ((10, 10), (40, 10), (40, 20), (20, 20), (20, 50), (10, 50)))
    truth = Rect("a", 10, 10, 40, 20).mask(h, w) | Rect("b", 10, 10, 20, 50).mask(h, w)
    assert np.array_equal(ell.mask(h, w), truth)
    square = Polygon("sq", ((10, 10), (20, 10), (20, 20), (10, 20)))
    assert square.mask(h, w).sum() == 100
    outline = np.zeros((h, w), np.uint8)
    cv2.fillPoly(outline, [np.array(square.vertices, np.int32)], 1)
    assert outline.sum() == 121  # the rejected convention: the outline's pixels too
    assert not square.contains([np.nan, 15], [15, np.nan]).any()
