"""Masks as prompts (label images, the brush), identity fixes and gap filling, through the
user session, the project file and the command line. Answers are known by construction:
the raw predictor's own ``add_new_mask`` on the same frames, the masks before a fix, and
a scripted linear path."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sam2web.analysis.results import Results
from sam2web.analysis.tables import Calibration
from sam2web.errors import UserError
from sam2web.history import AddMask, decode_mask, encode_mask
from sam2web.outputs.exports import write_row_files
from sam2web.outputs.maskfiles import read_npz
from sam2web.session.projectload import load_project
from sam2web.session.user import UserSession
from sam2web.types import Measurement, TrackedObject, VideoInfo
from tests import synth
from tests.conftest import TEST_RESOLUTION
from tests.masks import assert_nontrivial

SIZE = 128
DISCS = (
    synth.Disc(x0=24, y0=26, vx=2.0, vy=1.0, radius=10, color=(230, 60, 40)),
    synth.Disc(x0=96, y0=28, vx=-2.0, vy=1.5, radius=9, color=(40, 90, 230)),
    synth.Disc(x0=30, y0=96, vx=1.5, vy=-1.0, radius=11, color=(60, 200, 80)),
    synth.Disc(x0=100, y0=100, vx=-1.0, vy=-2.0, radius=8, color=(220, 200, 40)),
    synth.Disc(x0=64, y0=64, vx=0.5, vy=0.5, radius=9, color=(200, 60, 220)),
)


def label_png(discs, t: int = 0, size: tuple[int, int] = (SIZE, SIZE)) -> bytes:
    """A greyscale PNG in which disc i holds label i + 1."""
    from PIL import Image

    width, height = size
    labels = np.zeros((height, width), np.uint8)
    for i, disc in enumerate(discs):
        labels[synth.disc_mask(height, width, disc, t)] = i + 1
    buf = io.BytesIO()
    Image.fromarray(labels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def clip(tmp_path) -> Path:
    frames = synth.make_frames(num_frames=4, height=SIZE, width=SIZE, discs=DISCS)
    return synth.write_image_zip(tmp_path / "cells.zip", frames)


@pytest.fixture
def user(engine, clip):
    user = UserSession(engine)
    user.upload(clip, source_name="cells.zip")
    yield user
    user.close()


def raw_predictor(checkpoint: Path):
    """Meta's video predictor built from its config, as tests/test_fidelity.py builds it
    (with the flag that keeps corrections, sam2web's default)."""
    from sam2.build_sam import build_sam2_video_predictor

    s = TEST_RESOLUTION // 16
    overrides = [
        f"++model.image_size={TEST_RESOLUTION}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{s},{s}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{s},{s}]",
        "++model.add_all_frames_to_correct_as_cond=true",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_sam2_video_predictor(
            "configs/sam2.1/sam2.1_hiera_t.yaml",
            str(checkpoint),
            device="cpu",
            hydra_overrides_extra=overrides,
        )


# ---------------------------------------------------------------------- label images
def test_label_image_objects_equal_the_raw_predictors_mask_prompts(user, random_checkpoint):
    import torch

    added = user.start_from_labels(label_png(DISCS), 0, name="cells_labels.png")
    assert [(o.obj_id, o.name) for o in added] == [(i, f"label {i}") for i in range(1, 6)]
    assert [a.op for a in user.tracking.history] == ["add_object", "mask"] * 5
    ours_prompted = {o.obj_id: user.tracking.store.mask(0, o.obj_id) for o in added}
    ours_tracked = {s.result.frame_idx: dict(s.result.masks) for s in user.propagate()}

    predictor = raw_predictor(random_checkpoint)
    truth = {i + 1: synth.disc_mask(SIZE, SIZE, d, 0) for i, d in enumerate(DISCS)}
    raw_prompted = {}
    with torch.inference_mode():
        state = predictor.init_state(video_path=str(user.workspace.frames_dir))
        for obj_id, mask in truth.items():
            _, ids, logits = predictor.add_new_mask(state, 0, obj_id, mask)
            raw_prompted[obj_id] = (logits[list(ids).index(obj_id), 0] > 0).numpy()
        raw_tracked = {
            f: {o: (m[i, 0] > 0).numpy() for i, o in enumerate(ids)}
            for f, ids, m in predictor.propagate_in_video(state)
        }
    assert_nontrivial(raw_prompted.values(), "prompted masks")
    assert_nontrivial([m for ms in raw_tracked.values() for m in ms.values()], "tracked masks")
    for obj_id, mask in raw_prompted.items():
        assert np.array_equal(ours_prompted[obj_id], mask), f"object {obj_id} on frame 0"
    assert ours_tracked.keys() == raw_tracked.keys() == set(range(4))
    for frame, masks in raw_tracked.items():
        for obj_id, mask in masks.items():
            assert np.array_equal(ours_tracked[frame][obj_id], mask), (frame, obj_id)


@pytest.mark.parametrize(
    "case",
    ["wrong size", "too many labels", "empty", "no such frame", "not an image", "colour"],
)
def test_a_bad_label_image_gets_one_sentence_and_changes_nothing(user, engine, case):
    from PIL import Image

    engine.settings = dataclasses.replace(engine.settings, max_labels=4)
    data, frame = label_png(DISCS[:2]), 0
    if case == "wrong size":
        data = label_png(DISCS[:2], size=(SIZE, SIZE // 2))
    elif case == "too many labels":
        data = label_png(DISCS)
    elif case == "empty":
        data = label_png(())
    elif case == "no such frame":
        frame = 99
    elif case == "not an image":
        data = b"these are not labels"
    else:
        buf = io.BytesIO()
        Image.fromarray(synth.make_frames(1, SIZE, SIZE)[0]).save(buf, format="PNG")
        data = buf.getvalue()
    expected = {
        "wrong size": f"is {SIZE}x{SIZE // 2} pixels but the video's frames are {SIZE}x{SIZE}",
        "too many labels": "holds 5 labels, more than the 4 allowed",
        "empty": "holds no labels",
        "no such frame": "Frame 99 does not exist",
        "not an image": "cannot be read",
        "colour": "is a colour picture",
    }[case]
    with pytest.raises(UserError) as caught:
        user.start_from_labels(data, frame, name="labels.png")
    message = caught.value.message
    assert expected in message
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message
    assert user.objects == []
    assert user.tracking is None or user.tracking.history == []


def test_each_labels_mask_prompt_is_one_unit_so_another_users_click_waits_for_one_object(
    user, engine
):
    tracking = user.ensure_tracking()
    scheduler = engine.schedulers.get(str(tracking.predictor.device))
    order: list = []
    add_mask = tracking.add_mask

    def recorded(frame_idx, obj_id, mask):
        if not order:  # another user clicks while the first object is prompted
            scheduler.submit(lambda: order.append("other user"), "someone else")
        order.append(obj_id)
        return add_mask(frame_idx, obj_id, mask)

    tracking.add_mask = recorded
    user.start_from_labels(label_png(DISCS), 0)
    assert order == [1, "other user", 2, 3, 4, 5]


def test_a_label_image_failing_part_way_leaves_the_session_as_before(user):
    user.start_from_labels(label_png(DISCS[:1]), 0)  # one object from before
    tracking = user.tracking
    history, before = list(tracking.history), tracking.store.mask(0, 1).copy()
    add_mask = tracking.add_mask

    def third_fails(frame_idx, obj_id, mask):
        if obj_id == 4:
            raise RuntimeError("out of memory")
        return add_mask(frame_idx, obj_id, mask)

    tracking.add_mask = third_fails
    with pytest.raises(RuntimeError):
        user.start_from_labels(label_png(DISCS[1:]), 0)
    assert [(o.obj_id, o.name) for o in user.objects] == [(1, "label 1")]
    assert tracking.history == history
    assert tracking.state["obj_ids"] == [1]
    assert np.array_equal(tracking.store.mask(0, 1), before)
    assert all(tracking.store.mask(0, i) is None for i in (2, 3, 4))
    tracking.add_mask = add_mask
    again = user.start_from_labels(label_png(DISCS[1:3]), 0)
    assert [(o.obj_id, o.name) for o in again] == [(2, "label 1"), (3, "label 2")]


# ---------------------------------------------------------------------- identity fixes
def _outputs(user: UserSession) -> dict:
    exports = user.export(video=False)
    science = user.export_science()
    with zipfile.ZipFile(exports.masks) as zf:
        members = {n: zf.read(n) for n in sorted(zf.namelist())}
    return {
        "csv": exports.csv.read_bytes(),
        "npz": science["npz"].read_bytes(),
        "coco": science["coco"].read_bytes(),
        "zip": members,
        "masks": read_npz(science["npz"]),
    }


def _rows(csv_bytes: bytes) -> dict:
    return {
        (int(r["frame"]), int(r["object_id"])): r
        for r in csv.DictReader(io.StringIO(csv_bytes.decode()))
    }


GEOMETRY = ("present", "score", "area_px", "centroid_x", "centroid_y", "bbox_x", "bbox_y")


def _tracked_pair(user: UserSession) -> None:
    user.start_from_labels(label_png(DISCS[:2]), 0)
    for _ in user.propagate():
        pass


def test_swap_from_a_frame_changes_every_output_after_it_and_undo_restores_them(
    user, engine, clip, tmp_path
):
    """Swap at frame 2 of 4, undo, swap again, save; the command line replays the project
    (through the same replay as loading it in the page) to the same table."""
    from sam2web.cli.track import track_video

    _tracked_pair(user)
    before = _outputs(user)
    frames, ids, masks = before["masks"]
    assert list(ids) == [1, 2] and len(frames) == 4
    assert_nontrivial(masks.reshape(-1, SIZE, SIZE), "tracked masks")
    assert not np.array_equal(masks[:, 0], masks[:, 1])

    user.fix_identity("swap", 1, 2, 2)
    swapped = _outputs(user)
    old, new = _rows(before["csv"]), _rows(swapped["csv"])
    for frame in range(4):
        for obj, other in ((1, 2), (2, 1)):
            source = old[(frame, other if frame >= 2 else obj)]
            assert all(new[(frame, obj)][k] == source[k] for k in GEOMETRY), (frame, obj)
            assert new[(frame, obj)]["object_name"] == f"label {obj}"
    _, _, after = swapped["masks"]
    assert np.array_equal(after[:2], masks[:2])
    assert np.array_equal(after[2:, 0], masks[2:, 1])
    assert np.array_equal(after[2:, 1], masks[2:, 0])
    assert swapped["zip"] != before["zip"] and swapped["coco"] != before["coco"]
    first_two = [n for n in before["zip"] if n.endswith(("0.png", "1.png"))]
    assert first_two and all(swapped["zip"][n] == before["zip"][n] for n in first_two)

    user.undo_fix()
    undone = _outputs(user)
    for key in ("csv", "npz", "coco", "zip"):
        assert undone[key] == before[key], key

    # Recorded in the project, replayed on load and by the command line.
    user.fix_identity("swap", 1, 2, 2)
    project_path = user.save_project()
    saved = json.loads(project_path.read_text())
    assert saved["version"] == 2
    assert [s["op"] for s in saved["history"]][-3:] == ["swap", "undo_fix", "swap"]
    project = load_project(project_path)  # the command line replays it as a page load does
    folder = tmp_path / "cli"
    track_video(engine, clip, project, Calibration(), folder, video_out=False)
    assert (folder / "sam2web_tracks.csv").read_bytes() == swapped["csv"]


def test_merge_from_a_frame_folds_one_object_into_the_other_and_gaps_fill_the_table(user):
    _tracked_pair(user)
    before = _outputs(user)
    _, _, masks = before["masks"]
    user.fix_identity("merge", 1, 2, 1)
    merged = _outputs(user)
    _, _, after = merged["masks"]
    assert np.array_equal(after[:1], masks[:1])
    assert np.array_equal(after[1:, 0], masks[1:, 0] | masks[1:, 1])
    assert not after[1:, 1].any()
    rows = _rows(merged["csv"])
    for frame in range(1, 4):
        assert rows[(frame, 2)]["present"] == "0" and rows[(frame, 2)]["area_px"] == ""
        assert int(rows[(frame, 1)]["area_px"]) == int((masks[frame, 0] | masks[frame, 1]).sum())
    user.undo_fix()
    assert _outputs(user)["csv"] == before["csv"]
    with pytest.raises(UserError, match="no identity fix to undo"):
        user.undo_fix()
    with pytest.raises(UserError, match="does not exist"):
        user.fix_identity("swap", 1, 7, 0)

    # Gap filling is recorded and changes the per-frame table only.
    user.fill_gaps(3)
    filled = _outputs(user)
    assert filled["csv"].decode().splitlines()[0].endswith(",interpolated")
    assert filled["npz"] == before["npz"] and filled["zip"] == before["zip"]
    assert user.tracking.history[-1].op == "fill_gaps"
    with pytest.raises(UserError, match="whole number"):
        user.fill_gaps("lots")


# ---------------------------------------------------------------------- gap filling
def test_gap_filling_interpolates_a_linear_path_and_marks_the_rows(tmp_path):
    info = VideoInfo(12, 200, 100, 1.0, "path.zip", "images")
    obj = TrackedObject(1, "ant", (255, 0, 0))
    absent = {3, 4, 7, 8, 9}  # a gap of 2 frames and one of 3

    def row(f: int) -> Measurement:
        here = f not in absent
        x, y = 10.0 + 3.0 * f, 20.0 + 1.5 * f
        return Measurement(
            f, float(f), 1, "ant", here, 2.0 if here else float("nan"),
            50 if here else None, x if here else None, y if here else None,
            int(x) - 4 if here else None, int(y) - 4 if here else None,
            8 if here else None, 8 if here else None,
        )  # fmt: skip

    results = Results(info, [obj], [row(f) for f in range(12)], history_length=1)
    first = np.zeros((100, 200, 3), np.uint8)
    out = write_row_files(results, Calibration(), first, tmp_path, max_gap=2)
    rows = list(csv.DictReader(io.StringIO(out["csv"].read_text())))
    assert [int(r["interpolated"]) for r in rows] == [int(f in (3, 4)) for f in range(12)]
    for f in (3, 4):
        assert float(rows[f]["centroid_x"]) == 10.0 + 3.0 * f
        assert float(rows[f]["centroid_y"]) == 20.0 + 1.5 * f
        assert rows[f]["present"] == "1" and rows[f]["area_px"] == rows[f]["score"] == ""
    for f in (7, 8, 9):  # longer than 2 frames: left alone
        assert rows[f]["present"] == "0" and rows[f]["centroid_x"] == ""
    cal = Calibration(pixels_per_unit=2.0, unit="mm")
    out = write_row_files(results, cal, first, tmp_path / "mm", max_gap=2)
    rows = list(csv.DictReader(io.StringIO(out["calibrated"].read_text())))
    assert [int(r["interpolated"]) for r in rows] == [int(f in (3, 4)) for f in range(12)]
    assert float(rows[4]["centroid_x_mm"]) == (10.0 + 3.0 * 4) / 2
    plain = write_row_files(results, Calibration(), first, tmp_path / "plain")
    assert "interpolated" not in plain["csv"].read_text().splitlines()[0]
    assert "interpolated" not in plain["calibrated"].read_text().splitlines()[0]


# ---------------------------------------------------------------------- mask prompts
def test_a_mask_prompt_round_trips_through_the_project(user, engine, clip):
    truth = synth.disc_mask(SIZE, SIZE, DISCS[2], 1)
    user.add_object("cell")
    user.paint(1, truth)
    action = user.tracking.history[-1]
    assert isinstance(action, AddMask) and action.frame == 1
    assert np.array_equal(decode_mask(action.rle, SIZE, SIZE), truth)
    assert len(action.rle) < 200  # compact in the project file
    painted = user.tracking.store.mask(1, 1)
    assert_nontrivial([painted], "prompted mask")
    path = user.save_project()
    again = UserSession(engine)
    try:
        again.upload(clip, source_name="cells.zip")
        again.load_project(path)
        assert np.array_equal(again.tracking.store.mask(1, 1), painted)
        again.undo(1, 1)  # the mask was the only prompt: the object has none left there
        assert again.tracking.store.mask(1, 1) is None
    finally:
        again.close()


def test_a_damaged_mask_in_a_project_is_refused_in_one_sentence(user, tmp_path):
    user.add_object("cell")
    user.paint(0, synth.disc_mask(SIZE, SIZE, DISCS[0], 0))
    data = json.loads(user.save_project().read_text())
    data["history"][-1]["rle"] = encode_mask(np.ones((SIZE, SIZE + 1), bool))
    bad = tmp_path / "sam2web_project.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(UserError, match="is not a mask of the video's size"):
        load_project(bad)


def test_the_brush_and_batches_scale_masks_by_one_nearest_pixel_rule():
    """A 3-pixel-wide row with only its last pixel set, scaled to 2 pixels: output pixel 1
    has its centre at x = 1.5 * 3 / 2 = 2.25, over source pixel 2, so it is set; output
    pixel 0 (centre 0.75, source pixel 0) is not. OpenCV's INTER_NEAREST takes source
    pixel floor(1 * 1.5) = 1 and loses the pixel (the brush used it before). The brush's
    starting layer and a batch's scaled mask prompt give the same mask."""
    import numpy as np

    from sam2web.history import decode_mask_resized, encode_mask
    from sam2web.session.corrections import mask_layer

    src = np.array([[False, False, True]] * 2)
    layer = mask_layer(src, (255, 0, 0), (2, 4))  # size is (width, height)
    shown = layer[..., 3] == 255
    assert shown.tolist() == [[False, True]] * 4
    assert np.array_equal(decode_mask_resized(encode_mask(src), (2, 3), (4, 2)), shown)
    rng = np.random.default_rng(3)
    for _ in range(10):
        h, w = rng.integers(1, 40, size=2)
        to = tuple(int(v) for v in rng.integers(1, 60, size=2))
        mask = rng.random((h, w)) > 0.5
        brush = mask_layer(mask, (1, 2, 3), (to[1], to[0]))[..., 3] == 255
        assert np.array_equal(brush, decode_mask_resized(encode_mask(mask), (h, w), to))
