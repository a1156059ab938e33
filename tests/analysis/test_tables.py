"""Calibrated tables, motion summaries, confidence timelines, plots and mask exports, checked
against ground-truth discs written straight into a MaskStore."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from sam2web.analysis.results import CSV_COLUMNS, measure, measurements
from sam2web.analysis.tables import (
    LOST,
    SUMMARY_COLUMNS,
    UNCERTAIN,
    Calibration,
    calibrated_columns,
    calibrated_rows,
    confidence_events,
    load_plot,
    low_confidence_frames,
    plot_confidence,
    plot_trajectories,
    summarize,
)
from sam2web.errors import PromptError
from sam2web.outputs.maskfiles import read_coco_rle, read_npz, write_coco_rle, write_npz
from sam2web.outputs.rowfiles import write_calibrated_csv, write_summary_csv
from sam2web.tracking.maskstore import MaskStore
from sam2web.types import TrackedObject, VideoInfo, color_for
from tests import synth

H, W = 96, 128
N = 30
FPS = 10.0
SPEED = 2.5  # pixels per frame
PX_PER_MM = 5.0
GAP = range(10, 15)  # frames where the "hider" disc is out of view
BACKGROUND = (90, 30, 60)  # a colour no line, marker or text is drawn in

INFO = VideoInfo(num_frames=N, width=W, height=H, fps=FPS, source_name="discs.mp4", kind="video")
STRAIGHT = synth.Disc(x0=16, y0=20, vx=SPEED, vy=0.0, radius=9, color=(0, 0, 0))
# 1.5 and 2.0 px/frame: SPEED along a 3-4-5 diagonal. In each axis every centre lies on a pixel
# centre or a pixel edge, so the discretised disc is symmetric and its centroid exact.
DIAGONAL = synth.Disc(x0=14, y0=14, vx=1.5, vy=2.0, radius=9, color=(0, 0, 0))
# Moves along x, leaves the view for GAP and comes back 20 px lower; bridging the gap would
# add a long step.
HIDER = synth.Disc(x0=16, y0=50, vx=SPEED, vy=0.0, radius=8, color=(0, 0, 0))
OBJECTS = [
    TrackedObject(i, name, color_for(i))
    for i, name in enumerate(("straight", "diagonal", "hider"), start=1)
]


def hider_mask(t: int) -> np.ndarray:
    mask = synth.disc_mask(H, W, HIDER, t)
    return np.roll(mask, 20, axis=0) if t >= GAP.stop else mask


def hider_score(t: int) -> float:
    return 2.0 + 0.1 * t


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> MaskStore:
    """Three discs over N frames. The hider is absent in GAP: frames 10-12 store an empty
    mask with a negative score, frames 13-14 store nothing for it."""
    store = MaskStore(tmp_path_factory.mktemp("analysis") / "masks", H, W)
    for t in range(N):
        masks = {1: synth.disc_mask(H, W, STRAIGHT, t), 2: synth.disc_mask(H, W, DIAGONAL, t)}
        scores = {1: 5.0, 2: 4.0}
        if t not in GAP:
            masks[3], scores[3] = hider_mask(t), hider_score(t)
        elif t < 13:
            masks[3], scores[3] = np.zeros((H, W), bool), -3.0 - t
        store.write(t, masks, scores)
    return store


@pytest.fixture(scope="module")
def rows(store):
    return measurements(store, OBJECTS, INFO)


def by_id(summaries):
    return {s.object_id: s for s in summaries}


# ---------------------------------------------------------------------------- calibration
@pytest.mark.parametrize(
    "kwargs",
    [
        {"pixels_per_unit": 0, "unit": "mm"},
        {"pixels_per_unit": -2.0, "unit": "mm"},
        {"pixels_per_unit": float("nan"), "unit": "mm"},
        {"pixels_per_unit": float("inf"), "unit": "mm"},
        {"pixels_per_unit": "five", "unit": "mm"},
        {"pixels_per_unit": True, "unit": "mm"},
        {"pixels_per_unit": 5.0, "unit": ""},
        {"pixels_per_unit": 5.0, "unit": "   "},
        {"pixels_per_unit": 5.0, "unit": "m" * 17},
        {"pixels_per_unit": 5.0, "unit": "m\nm"},
        {"pixels_per_unit": 5.0, "unit": 3},
        {"pixels_per_unit": 5.0, "unit": "px"},
        {"fps": 0.0},
        {"fps": -10},
        {"fps": float("nan")},
    ],
)
def test_calibration_rejects_bad_values_with_one_sentence(kwargs):
    with pytest.raises(PromptError) as err:
        Calibration(**kwargs)
    message = str(err.value)
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def test_calibration_accepts_and_normalises_good_values():
    cal = Calibration(pixels_per_unit=5, unit=" µm ", fps=25)
    assert (cal.pixels_per_unit, cal.unit, cal.fps) == (5.0, "µm", 25.0)
    assert cal.calibrated and cal.length_unit == "µm"
    assert Calibration(unit="m" * 16).unit == "m" * 16
    plain = Calibration(unit="mm")  # no scale: lengths stay in pixels
    assert not plain.calibrated and plain.length_unit == "px"
    assert plain.to_length(10.0) == 10.0 and plain.to_area(10.0) == 10.0


# ---------------------------------------------------------------------------- tables
def test_calibrated_rows_convert_lengths_areas_and_time(rows):
    cal = Calibration(PX_PER_MM, "mm", fps=20.0)
    table = calibrated_rows(rows, cal)
    assert len(table) == len(rows) == N * len(OBJECTS)
    extra = ("centroid_x_mm", "centroid_y_mm", "area_mm2")
    assert calibrated_columns(cal) == (*CSV_COLUMNS, *extra)
    for row, m in zip(table, rows, strict=True):
        assert tuple(row) == calibrated_columns(cal)
        assert row["time_s"] == pytest.approx(m.frame / 20.0)
        assert row["centroid_x"] == m.centroid_x and row["area_px"] == m.area_px
        if m.present:
            assert row["centroid_x_mm"] == pytest.approx(m.centroid_x / PX_PER_MM)
            assert row["centroid_y_mm"] == pytest.approx(m.centroid_y / PX_PER_MM)
            assert row["area_mm2"] == pytest.approx(m.area_px / PX_PER_MM**2)
        else:
            assert row["centroid_x_mm"] is None and row["area_mm2"] is None

    plain = calibrated_rows(rows, Calibration())
    assert tuple(plain[0]) == CSV_COLUMNS
    assert [r["time_s"] for r in plain] == [m.time_s for m in rows]


def test_calibrated_csv_round_trip(rows, tmp_path):
    cal = Calibration(PX_PER_MM, "mm")
    path = write_calibrated_csv(rows, cal, tmp_path / "table.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == calibrated_columns(cal)
        got = list(reader)
    assert len(got) == len(rows)
    for row, m in zip(got, rows, strict=True):
        assert int(row["frame"]) == m.frame and int(row["object_id"]) == m.object_id
        assert row["present"] == ("1" if m.present else "0")
        if m.present:
            assert float(row["centroid_x_mm"]) == pytest.approx(m.centroid_x / PX_PER_MM)
            assert float(row["area_mm2"]) == pytest.approx(m.area_px / PX_PER_MM**2)
        else:
            assert row["centroid_x_mm"] == row["area_mm2"] == row["area_px"] == ""


# ---------------------------------------------------------------------------- summaries
def test_constant_speed_gives_known_distance_and_speed(rows):
    summaries = by_id(summarize(rows, OBJECTS, Calibration(PX_PER_MM, "mm")))
    true_distance = SPEED * (N - 1) / PX_PER_MM  # mm
    true_speed = SPEED * FPS / PX_PER_MM  # mm/s
    for obj_id in (1, 2):
        s = summaries[obj_id]
        assert s.unit == "mm"
        assert (s.frames_present, s.first_frame, s.last_frame) == (N, 0, N - 1)
        assert s.total_distance == pytest.approx(true_distance, rel=0.02)
        assert s.mean_speed == pytest.approx(true_speed, rel=0.02)
        assert s.max_speed == pytest.approx(true_speed, rel=0.02)
        true_area = math.pi * 9**2 / PX_PER_MM**2
        assert s.mean_area == pytest.approx(true_area, rel=0.03)


@pytest.mark.parametrize("degrees", [45, 30, 10])
def test_off_grid_motion_keeps_distance_and_mean_speed(tmp_path, degrees):
    """Centres between pixel positions: each centroid carries a small discretisation error,
    which averages out in the distance and mean speed (a single step's speed keeps it)."""
    angle = math.radians(degrees)
    disc = synth.Disc(
        x0=14,
        y0=14,
        vx=SPEED * math.cos(angle),
        vy=SPEED * math.sin(angle),
        radius=9,
        color=(0, 0, 0),
    )
    store = MaskStore(tmp_path / "masks", H, W)
    for t in range(N):
        store.write(t, {1: synth.disc_mask(H, W, disc, t)}, {1: 3.0})
    s = summarize(
        measurements(store, OBJECTS[:1], INFO), OBJECTS[:1], Calibration(PX_PER_MM, "mm")
    )[0]
    assert s.total_distance == pytest.approx(SPEED * (N - 1) / PX_PER_MM, rel=0.02)
    assert s.mean_speed == pytest.approx(SPEED * FPS / PX_PER_MM, rel=0.02)
    assert s.max_speed == pytest.approx(SPEED * FPS / PX_PER_MM, rel=0.15)


def test_uncalibrated_summary_is_in_pixels_and_fps_override_scales_speed(rows):
    px = by_id(summarize(rows, OBJECTS, Calibration()))[1]
    assert px.unit == "px"
    assert px.total_distance == pytest.approx(SPEED * (N - 1), rel=0.02)
    assert px.mean_speed == pytest.approx(SPEED * FPS, rel=0.02)
    fast = by_id(summarize(rows, OBJECTS, Calibration(fps=2 * FPS)))[1]
    assert fast.total_distance == pytest.approx(px.total_distance)
    assert fast.mean_speed == pytest.approx(2 * px.mean_speed)


def test_distance_is_not_bridged_across_absent_frames(rows):
    hider_rows = [r for r in rows if r.object_id == 3]
    absent = [r.frame for r in hider_rows if not r.present]
    assert absent == list(GAP)
    assert all(r.area_px is None and r.centroid_x is None for r in hider_rows if r.frame in GAP)

    s = by_id(summarize(rows, OBJECTS, Calibration()))[3]
    steps = (GAP.start - 1) + (N - 1 - GAP.stop)  # 9 before the gap, 14 after
    assert s.frames_present == N - len(GAP)
    assert (s.first_frame, s.last_frame) == (0, N - 1)
    assert s.total_distance == pytest.approx(SPEED * steps, rel=0.02)
    assert s.mean_speed == pytest.approx(SPEED * FPS, rel=0.02)  # time in the gap left out
    assert s.max_speed == pytest.approx(SPEED * FPS, rel=0.02)


def test_summary_of_absent_and_single_frame_objects(rows):
    ghost = TrackedObject(9, "ghost", color_for(9))
    summaries = by_id(summarize(rows, [*OBJECTS, ghost], Calibration(PX_PER_MM, "mm")))
    g = summaries[9]
    assert (g.frames_present, g.first_frame, g.last_frame) == (0, None, None)
    assert g.total_distance == 0.0
    assert g.mean_speed is None and g.max_speed is None and g.mean_area is None

    one_frame = [r for r in rows if r.object_id == 1 and r.frame == 4]
    s = summarize(one_frame, OBJECTS[:1], Calibration())[0]
    assert (s.frames_present, s.first_frame, s.last_frame) == (1, 4, 4)
    assert s.total_distance == 0.0 and s.mean_speed is None and s.max_speed is None
    assert s.mean_area == one_frame[0].area_px


def test_summary_csv(rows, tmp_path):
    ghost = TrackedObject(9, "=ghost", color_for(9))
    summaries = summarize(rows, [*OBJECTS, ghost], Calibration(PX_PER_MM, "mm"))
    path = write_summary_csv(summaries, tmp_path / "summary.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
        got = list(reader)
    assert [int(r["object_id"]) for r in got] == [1, 2, 3, 9]
    assert float(got[0]["total_distance"]) == pytest.approx(summaries[0].total_distance)
    assert got[0]["unit"] == "mm"
    assert got[3]["object_name"] == "'=ghost"  # inert in spreadsheets
    assert got[3]["mean_speed"] == got[3]["first_frame"] == ""


# ---------------------------------------------------------------------------- confidence
@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Two objects with varied scores; object 2 has no result on frames 5-7 (NaN)."""
    rng = np.random.default_rng(3)
    store = MaskStore(tmp_path_factory.mktemp("scores") / "masks", H, W)
    objects = OBJECTS[:2]
    for t in range(N):
        masks = {1: synth.disc_mask(H, W, STRAIGHT, t)}
        scores = {1: float(rng.uniform(-4, 6))}
        if t not in (5, 6, 7):
            masks[2] = synth.disc_mask(H, W, DIAGONAL, t)
            scores[2] = float(rng.uniform(-4, 6))
        store.write(t, masks, scores)
    return store, objects, measurements(store, objects, INFO)


def test_low_confidence_frames_match_stored_scores(scored):
    store, objects, rows = scored
    threshold, margin = 0.5, 1.5
    stored = {(t, o.obj_id): store.score(t, o.obj_id) for t in range(N) for o in objects}
    lost = {
        o.obj_id: [
            t
            for t in range(N)
            if stored[t, o.obj_id] is not None and stored[t, o.obj_id] < threshold
        ]
        for o in objects
    }
    unsure = {
        o.obj_id: [
            t
            for t in range(N)
            if stored[t, o.obj_id] is not None
            and threshold <= stored[t, o.obj_id] < threshold + margin
        ]
        for o in objects
    }
    assert all(lost.values()) and all(unsure.values())  # the scenario exercises both

    assert low_confidence_frames(rows, threshold) == lost
    both = low_confidence_frames(rows, threshold, margin)
    assert both == {k: sorted(lost[k] + unsure[k]) for k in lost}
    assert not set(both[2]) & {5, 6, 7}  # untracked frames are not "lost"

    events = confidence_events(rows, threshold, margin)
    assert events == sorted(events, key=lambda e: (e[0], e[1]))
    expected = {(t, k, LOST) for k, ts in lost.items() for t in ts}
    expected |= {(t, k, UNCERTAIN) for k, ts in unsure.items() for t in ts}
    assert set(events) == expected and len(events) == len(expected)
    assert {(t, k) for t, k, _ in confidence_events(rows, threshold)} == {
        (t, k) for k, ts in lost.items() for t in ts
    }

    with pytest.raises(PromptError):
        low_confidence_frames(rows, float("nan"))
    with pytest.raises(PromptError):
        confidence_events(rows, 0.0, margin=-1.0)


def test_confidence_plot_is_written_and_legible(scored, tmp_path):
    _, objects, rows = scored
    path = plot_confidence(rows, objects, tmp_path / "confidence.png", threshold=0.5, margin=1.5)
    assert path.exists()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width >= 600 and height >= 300
    pixels = load_plot(path)
    assert pixels.shape == (height, width, 3) and pixels.dtype == np.uint8
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not a blank image
    # Each object's line is drawn in its colour.
    for obj in objects:
        assert np.all(pixels == obj.color, axis=-1).sum() > 100


# ---------------------------------------------------------------------------- trajectories
def test_trajectory_plot_draws_each_path_in_its_colour(rows, tmp_path):
    first = np.zeros((H, W, 3), np.uint8) + np.array(BACKGROUND, np.uint8)
    path = plot_trajectories(first, rows, OBJECTS, tmp_path / "trajectories.png")
    pixels = load_plot(path)
    assert pixels.shape[1] >= 600

    # The frame occupies the box of background pixels; map (x, y) onto it.
    ys, xs = np.nonzero(np.all(pixels == BACKGROUND, axis=-1))
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    assert (right - left) / (bottom - top) == pytest.approx(W / H, rel=0.03)

    def near(x: float, y: float, color, radius: int = 3) -> bool:
        col = int(left + x / W * (right - left))
        row = int(top + y / H * (bottom - top))
        patch = pixels[row - radius : row + radius + 1, col - radius : col + radius + 1]
        return bool(np.any(np.abs(patch.astype(int) - color).max(axis=-1) <= 10))

    for obj, disc in ((OBJECTS[0], STRAIGHT), (OBJECTS[1], DIAGONAL)):
        for t in (3, 12, 21):
            assert near(*disc.center(t), obj.color), (obj.name, t)
    hider = OBJECTS[2]
    assert near(*HIDER.center(5), hider.color)
    assert near(HIDER.center(20)[0], HIDER.center(20)[1] + 20, hider.color)
    # No line across the gap: midway between the last point before and the first after.
    before = np.array(HIDER.center(GAP.start - 1))
    after = np.array(HIDER.center(GAP.stop)) + (0, 20)
    assert not near(*(before + after) / 2, hider.color, radius=1)
    # Nothing drawn far from every path.
    assert not near(110, 85, hider.color) and not near(110, 85, OBJECTS[0].color)


# ---------------------------------------------------------------------------- exports
def test_npz_round_trip_is_exact(store, tmp_path):
    path = write_npz(store, OBJECTS, INFO, tmp_path / "masks.npz")
    frames, ids, masks = read_npz(path)
    assert frames.tolist() == list(range(N)) and ids.tolist() == [1, 2, 3]
    assert masks.shape == (N, 3, H, W) and masks.dtype == bool
    with np.load(path, allow_pickle=False) as data:
        assert data["object_names"].tolist() == [o.name for o in OBJECTS]
        assert data["masks_packed"].shape == (N, 3, (H * W + 7) // 8)
        scores = data["scores"]
        assert data["time_s"].tolist() == pytest.approx([t / FPS for t in range(N)])
    for t in range(N):
        for k, obj in enumerate(OBJECTS):
            stored = store.mask(t, obj.obj_id)
            if stored is None:
                assert not masks[t, k].any() and math.isnan(scores[t, k])
            else:
                np.testing.assert_array_equal(masks[t, k], stored)
                assert scores[t, k] == store.score(t, obj.obj_id)
    assert math.isnan(scores[13, 2]) and scores[11, 2] == -14.0


def test_npz_with_odd_size_and_sparse_frames(tmp_path):
    h, w = 37, 53  # h*w not a multiple of 8
    rng = np.random.default_rng(0)
    store = MaskStore(tmp_path / "masks", h, w)
    truth = {
        (2, 1): rng.random((h, w)) > 0.5,
        (7, 2): rng.random((h, w)) > 0.3,
        (7, 1): rng.random((h, w)) > 0.6,
    }
    for (t, obj_id), mask in truth.items():
        store.write(t, {obj_id: mask}, {obj_id: 1.0})
    store.write(9, {5: np.ones((h, w), bool)}, {5: 1.0})  # an object not exported
    info = VideoInfo(12, w, h, 1.0, "seq", "images", fps_is_nominal=True)
    objects = [TrackedObject(1, "a", color_for(1)), TrackedObject(2, "b", color_for(2))]
    frames, ids, masks = read_npz(write_npz(store, objects, info, tmp_path / "m.npz"))
    assert frames.tolist() == [2, 7] and ids.tolist() == [1, 2]
    for (t, obj_id), mask in truth.items():
        np.testing.assert_array_equal(masks[frames.tolist().index(t), obj_id - 1], mask)
    assert not masks[0, 1].any()


def test_coco_rle_round_trip_is_exact(store, tmp_path):
    path = write_coco_rle(store, OBJECTS, INFO, tmp_path / "masks.json")
    decoded = read_coco_rle(path)
    expected = set()
    for t in range(N):
        for obj in OBJECTS:
            mask, score = store.mask(t, obj.obj_id), store.score(t, obj.obj_id)
            if mask is not None and score > 0 and mask.any():
                expected.add((t, obj.obj_id))
                np.testing.assert_array_equal(decoded[(t, obj.obj_id)], mask)
    assert set(decoded) == expected
    assert len(expected) == 2 * N + N - len(GAP)

    data = json.loads(path.read_text(encoding="utf-8"))
    assert [im["id"] for im in data["images"]] == list(range(N))
    assert data["images"][0]["file_name"] == "00000.png"
    assert (data["images"][0]["width"], data["images"][0]["height"]) == (W, H)
    assert data["categories"] == [{"id": o.obj_id, "name": o.name} for o in OBJECTS]
    ids = [a["id"] for a in data["annotations"]]
    assert len(set(ids)) == len(ids)
    for ann in data["annotations"]:
        mask = store.mask(ann["image_id"], ann["category_id"])
        geometry = measure(mask, present=True)
        assert ann["segmentation"]["size"] == [H, W]
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["area"] == geometry["area_px"]
        assert ann["bbox"] == [
            geometry["bbox_x"],
            geometry["bbox_y"],
            geometry["bbox_w"],
            geometry["bbox_h"],
        ]
        assert ann["score"] == store.score(ann["image_id"], ann["category_id"])
