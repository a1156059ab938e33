"""Distances between objects and occupancy heatmaps, on scripted paths."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from sam2web.analysis.heatmap import (
    OCCUPANCY_COLUMNS,
    occupancy,
    render_heatmap,
    save_png,
    write_occupancy_csv,
)
from sam2web.analysis.pairs import (
    NEAREST_COLUMNS,
    PAIR_DISTANCE_COLUMNS,
    PAIR_SUMMARY_COLUMNS,
    nearest_neighbours,
    pair_distances,
    pair_summaries,
    write_nearest_csv,
    write_pair_distances_csv,
    write_pair_summary_csv,
)
from sam2web.analysis.tables import Calibration
from sam2web.errors import PromptError
from tests.tables import make_rows


def read_csv(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


# Object 1 stays at (0, 0); object 2 walks away along x: 3, 6, 9, 12 px; object 3 sits at
# (0, 4) and is absent on frame 2.
PATHS = {
    1: [(0, 0)] * 4,
    2: [(3, 0), (6, 0), (9, 0), (12, 0)],
    3: [(0, 4), (0, 4), None, (0, 4)],
}


def test_pair_distances_per_frame():
    rows = make_rows(PATHS, fps=2.0)
    items = pair_distances(rows)
    assert len(items) == 4 * 3
    d12 = [p.distance for p in items if (p.object_a, p.object_b) == (1, 2)]
    assert d12 == [3, 6, 9, 12]
    d23 = [p.distance for p in items if (p.object_a, p.object_b) == (2, 3)]
    assert d23 == [5, pytest.approx(52**0.5), None, pytest.approx(160**0.5)]
    assert items[3].time_s == 0.5 and items[0].unit == "px"
    cal = Calibration(pixels_per_unit=3.0, unit="mm")
    assert [p.distance for p in pair_distances(rows, cal) if p.object_b == 2] == [1, 2, 3, 4]


def test_time_within_a_distance():
    rows = make_rows(PATHS, fps=2.0)
    s12, s13, s23 = pair_summaries(rows, within=6)
    assert (s12.object_a, s12.object_b, s12.frames_both_present) == (1, 2, 4)
    assert s12.frames_within == 2 and s12.time_within_s == pytest.approx(1.0)
    assert s12.mean_distance == pytest.approx(7.5) and s12.min_distance == 3
    assert s13.frames_both_present == 3 and s13.frames_within == 3
    assert s23.frames_within == 1  # 5 px on frame 0 only
    (mm,) = pair_summaries(make_rows({1: PATHS[1], 2: PATHS[2]}), 2, Calibration(3.0, "mm"))
    assert mm.frames_within == 2 and mm.unit == "mm"
    with pytest.raises(PromptError):
        pair_summaries(rows, within=-1)


def test_nearest_neighbour_per_object_and_frame():
    rows = make_rows(PATHS)
    nn = {(n.frame, n.object_id): n for n in nearest_neighbours(rows)}
    assert (nn[(0, 1)].neighbour_id, nn[(0, 1)].distance) == (2, 3)
    assert (nn[(1, 1)].neighbour_id, nn[(1, 1)].distance) == (3, 4)
    assert (nn[(2, 1)].neighbour_id, nn[(2, 1)].distance) == (2, 9)  # 3 absent
    assert nn[(2, 3)].neighbour_id is None and nn[(2, 3)].distance is None
    assert nn[(0, 2)].neighbour_id == 1
    lonely = nearest_neighbours(make_rows({1: [(1, 1)]}))
    assert lonely[0].neighbour_id is None


def test_pair_csvs(tmp_path):
    rows = make_rows(PATHS, names={1: "@a", 2: "b", 3: "c"})
    t = read_csv(write_pair_distances_csv(pair_distances(rows), tmp_path / "d.csv"))
    assert tuple(t[0]) == PAIR_DISTANCE_COLUMNS and len(t) == 13
    assert t[1][3] == "'@a" and t[1][6] == "3"
    assert t[9][6] == ""  # pair (2, 3) on frame 2: object 3 absent
    t = read_csv(write_pair_summary_csv(pair_summaries(rows, 5), tmp_path / "s.csv"))
    assert tuple(t[0]) == PAIR_SUMMARY_COLUMNS and len(t) == 4
    t = read_csv(write_nearest_csv(nearest_neighbours(rows), tmp_path / "n.csv"))
    assert tuple(t[0]) == NEAREST_COLUMNS and len(t) == 13


def test_occupancy_counts_and_render(tmp_path):
    # 100x50 frame, 10x5 cells of 10 px: 3 frames in cell (x 0, y 0), 1 in cell (x 9, y 4),
    # one centroid on the right/bottom edge of the frame (last cell), one absent.
    path = [(5, 5), (9.9, 0.1), (0, 0), (95, 45), (100, 50), None]
    rows = make_rows({1: path, 2: [(50, 25)] * 6}, fps=4.0)
    occ = occupancy(rows, 1, width=100, height=50, bins=(10, 5))
    assert occ.counts.shape == (5, 10) and occ.counts.sum() == 5
    assert occ.counts[0, 0] == 3 and occ.counts[4, 9] == 2
    assert occ.seconds[0, 0] == pytest.approx(0.75)

    frame = np.full((50, 100, 3), 40, dtype=np.uint8)
    image = render_heatmap(frame, occ)
    assert image.shape == (50, 100, 3) and image.dtype == np.uint8
    assert np.array_equal(image[20:30, 40:60], frame[20:30, 40:60])  # unvisited cells
    assert not np.array_equal(image[0:10, 0:10], frame[0:10, 0:10])
    assert (image[0:10, 0:10] == image[0, 0]).all()  # one colour per cell
    out = save_png(image, tmp_path / "heat.png")
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), image)

    table = read_csv(write_occupancy_csv(occ, tmp_path / "occ.csv"))
    assert tuple(table[0]) == OCCUPANCY_COLUMNS and len(table) == 1 + 50
    first = dict(zip(table[0], table[1], strict=True))
    assert first["frames"] == "3" and first["x_max"] == "10" and first["time_s"] == "0.75"
    square = occupancy(rows, 2, 100, 50, bins=4)
    assert square.counts.shape == (4, 4) and square.counts[2, 2] == 6
