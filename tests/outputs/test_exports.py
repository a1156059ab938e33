"""Measurements, the CSV table and the zip of label images, against ground-truth discs."""

from __future__ import annotations

import csv
import io
import math
import zipfile

import numpy as np
import pytest
from PIL import Image

from sam2web.analysis.results import CSV_COLUMNS, measure, measurements
from sam2web.outputs.maskfiles import write_masks_zip
from sam2web.outputs.rowfiles import write_csv
from sam2web.tracking.maskstore import MaskStore
from sam2web.types import TrackedObject, VideoInfo, color_for
from tests import synth

H, W, N = 120, 160, 8
DISCS = synth.DEFAULT_DISCS
INFO = VideoInfo(num_frames=N, width=W, height=H, fps=10.0, source_name="discs.mp4", kind="video")
TRICKY = 'a, "quoted"\nnäme 猫'


def gt(obj_id: int, t: int) -> np.ndarray:
    return synth.disc_mask(H, W, DISCS[obj_id - 1], t)


@pytest.fixture
def tracked(tmp_path):
    """Both discs stored on frames 0-5, except: frame 3 has no result for object 2, and on
    frame 4 SAM2 says object 1 is absent (negative score, empty mask). Frames 6-7: nothing."""
    store = MaskStore(tmp_path / "masks", H, W)
    for t in range(6):
        store.write(t, {1: gt(1, t)}, {1: 3.5})
        if t != 3:
            store.write(t, {2: gt(2, t)}, {2: 1.25})
    store.write(4, {1: np.zeros((H, W), bool)}, {1: -2.0})
    objs = [TrackedObject(1, "=cmd()", color_for(1)), TrackedObject(2, TRICKY, color_for(2))]
    return store, objs


@pytest.mark.parametrize("disc", DISCS)
def test_measure_disc_matches_ground_truth(disc):
    for t in (0, 3, 7):
        m = measure(synth.disc_mask(H, W, disc, t), present=True)
        assert m["area_px"] == pytest.approx(math.pi * disc.radius**2, rel=0.02)
        cx, cy = disc.center(t)
        # A centroid off by half a pixel would fail here (pixel centres are col + 0.5).
        assert abs(m["centroid_x"] - cx) < 0.2 and abs(m["centroid_y"] - cy) < 0.2
        assert abs(m["bbox_w"] - 2 * disc.radius) <= 1 and abs(m["bbox_h"] - 2 * disc.radius) <= 1
        assert abs(m["bbox_x"] + m["bbox_w"] / 2 - cx) <= 0.5
        assert abs(m["bbox_y"] + m["bbox_h"] / 2 - cy) <= 0.5


def test_measure_rectangle_exactly():
    mask = np.zeros((H, W), bool)
    mask[10:20, 30:45] = True  # rows 10-19, cols 30-44
    m = measure(mask, present=True)
    assert m == {
        "area_px": 150,
        "centroid_x": 37.5,
        "centroid_y": 15.0,
        "bbox_x": 30,
        "bbox_y": 10,
        "bbox_w": 15,
        "bbox_h": 10,
    }
    assert all(isinstance(m[k], int) for k in ("area_px", "bbox_x", "bbox_y", "bbox_w"))


def test_measure_absent_or_empty_is_none():
    full = np.ones((4, 4), bool)
    for m in (measure(np.zeros((4, 4), bool), True), measure(None, True), measure(full, False)):
        assert set(m) == {
            "area_px",
            "centroid_x",
            "centroid_y",
            "bbox_x",
            "bbox_y",
            "bbox_w",
            "bbox_h",
        }
        assert all(v is None for v in m.values())


def test_measurements_one_row_per_object_per_frame(tracked):
    store, objs = tracked
    rows = measurements(store, objs, INFO)
    assert len(rows) == N * 2
    assert [(r.frame, r.object_id) for r in rows[:4]] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    by_key = {(r.frame, r.object_id): r for r in rows}
    r = by_key[(2, 2)]
    assert r.present and r.score == 1.25 and r.time_s == pytest.approx(0.2)
    assert r.object_name == TRICKY
    assert (r.centroid_x, r.centroid_y) == pytest.approx(DISCS[1].center(2), abs=0.2)
    for key in [(3, 2), (4, 1), (6, 1), (7, 2)]:
        assert not by_key[key].present and by_key[key].area_px is None, key
    assert by_key[(4, 1)].score == -2.0
    assert math.isnan(by_key[(3, 2)].score) and math.isnan(by_key[(7, 1)].score)
    assert len(measurements(store, objs, INFO, frames=range(2, 4))) == 4


def test_csv_columns_values_and_safe_names(tracked, tmp_path):
    store, objs = tracked
    path = write_csv(measurements(store, objs, INFO), tmp_path / "tracks.csv")
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == (
        "frame,time_s,object_id,object_name,present,score,area_px,centroid_x,centroid_y,"
        "bbox_x,bbox_y,bbox_w,bbox_h"
    )
    with path.open(newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == CSV_COLUMNS
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert len(rows) == N * 2
    names = {r["object_id"]: r["object_name"] for r in rows}
    assert names["1"] == "'=cmd()"  # never run as a formula by a spreadsheet
    assert names["2"] == TRICKY  # commas, quotes, newline, unicode survive
    row = next(r for r in rows if r["frame"] == "3" and r["object_id"] == "1")
    assert row["time_s"] == "0.300000" and row["present"] == "1" and row["score"] == "3.5000"
    cx, cy = DISCS[0].center(3)
    assert abs(float(row["centroid_x"]) - cx) < 0.2 and abs(float(row["centroid_y"]) - cy) < 0.2
    assert len(row["centroid_x"].split(".")[1]) == 3
    assert int(row["area_px"]) == int(gt(1, 3).sum())
    absent = next(r for r in rows if r["frame"] == "3" and r["object_id"] == "2")
    assert absent["present"] == "0" and absent["score"] == ""
    assert all(absent[c] == "" for c in CSV_COLUMNS[6:])
    negative = next(r for r in rows if r["frame"] == "4" and r["object_id"] == "1")
    assert negative["present"] == "0" and negative["score"] == "-2.0000"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["tracks.csv"]


@pytest.mark.parametrize("name", ["+1", "-x", "@sum(A1)", "\tTAB"])
def test_formula_prefixes_are_neutralised(tmp_path, name):
    store = MaskStore(tmp_path / "m", H, W)
    info = VideoInfo(1, W, H, 1.0, "x", "images")
    rows = measurements(store, [TrackedObject(1, name, color_for(1))], info)
    with write_csv(rows, tmp_path / "t.csv").open(newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[1][3] == "'" + name


def read_zip(path) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        images = {
            n: np.array(Image.open(io.BytesIO(zf.read(n)))) for n in names if n.startswith("masks/")
        }
        texts = {n: zf.read(n).decode("utf-8") for n in names if not n.startswith("masks/")}
    return images, texts, names


def test_masks_zip_has_a_label_image_per_frame(tracked, tmp_path):
    store, objs = tracked
    steps = []
    path = write_masks_zip(
        store, objs, INFO, tmp_path / "masks.zip", progress=lambda d, n: steps.append((d, n))
    )
    images, texts, names = read_zip(path)
    assert sorted(images) == [f"masks/{t:05d}.png" for t in range(N)]  # every frame
    assert steps[-1] == (N, N)
    for t in range(N):
        labels = images[f"masks/{t:05d}.png"]
        assert labels.dtype == np.uint8 and labels.shape == (H, W)
        expected = np.zeros((H, W), np.uint8)
        if t < 6 and t != 4:
            expected[gt(1, t)] = 1
        if t < 6 and t != 3:
            expected[gt(2, t)] = 2  # object 2 is listed last: it wins where they overlap
        np.testing.assert_array_equal(labels, expected)
    assert not images["masks/00007.png"].any()
    objects_csv = list(csv.reader(io.StringIO(texts["objects.csv"], newline="")))
    assert objects_csv == [
        ["id", "name", "color"],
        ["1", "'=cmd()", "#1f77b4"],
        ["2", TRICKY, "#ff7f0e"],
    ]
    readme = texts["README.txt"]
    assert "0 is background" in readme and "2: " + TRICKY in readme
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["masks.zip"]


def test_masks_zip_uses_16_bit_for_large_ids(tmp_path):
    store = MaskStore(tmp_path / "m", H, W)
    store.write(0, {300: gt(1, 0)}, {300: 1.0})
    info = VideoInfo(2, W, H, 5.0, "x", "images")
    images, _, _ = read_zip(
        write_masks_zip(store, [TrackedObject(300, "big", (1, 2, 3))], info, tmp_path / "z.zip")
    )
    labels = images["masks/00000.png"]
    assert labels.max() == 300 and (labels[gt(1, 0)] == 300).all()
    assert (labels[~gt(1, 0)] == 0).all()
    assert not images["masks/00001.png"].any()
