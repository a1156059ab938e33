"""A session read with a frame step: every output keeps the original's frame numbers and
times, the outputs agree with each other, and a project replays with its step."""

from __future__ import annotations

import csv
import json
import zipfile

import numpy as np
import pytest

from sam2web.analysis.zones import Rect
from sam2web.analysis.zonestats import zone_stats
from sam2web.outputs.maskfiles import read_coco_rle, read_npz
from sam2web.session.project import ProjectError
from sam2web.session.user import UserSession
from tests import synth

LENGTH, FPS = 11, 10.0  # 11 frames: not a multiple of 2 or 5


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "discs.mp4"
    return synth.write_video(path, synth.make_frames(LENGTH, 120, 160), fps=FPS)


def _tracked(engine, clip, step: int) -> UserSession:
    user = UserSession(engine)
    user.upload(clip, source_name="discs.mp4", frame_step=step)
    x, y = synth.DEFAULT_DISCS[0].x0, synth.DEFAULT_DISCS[0].y0
    user.click(0, x, y)
    for _ in user.propagate():
        pass
    return user


def _csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("step", [1, 2, 5])
def test_csv_frames_and_times_are_the_originals(engine, clip, step):
    user = _tracked(engine, clip, step)
    exports = user.export()
    rows = _csv(exports.csv)
    expected = list(range(0, LENGTH, step))  # 11 frames: the last kept is 10 at every step
    assert [int(r["frame"]) for r in rows] == expected
    assert [float(r["time_s"]) for r in rows] == pytest.approx([f / FPS for f in expected])
    user.close()


def test_outputs_agree_with_each_other_under_a_step(engine, clip):
    step = 2
    user = _tracked(engine, clip, step)
    exports = user.export()
    science = user.export_science()
    rows = _csv(exports.csv)
    frames = [int(r["frame"]) for r in rows]
    npz_frames, ids, masks = read_npz(science["npz"])
    assert npz_frames.tolist() == frames
    coco = read_coco_rle(science["coco"])
    assert {f for f, _ in coco} <= set(frames)
    coco_json = json.loads(science["coco"].read_text())
    assert coco_json["info"]["frame_step"] == step
    assert [im["id"] for im in coco_json["images"]] == frames
    present = 0
    for k, f in enumerate(frames):  # the same masks under the same original number
        if rows[k]["present"] == "1":
            present += 1
            np.testing.assert_array_equal(coco[(f, int(ids[0]))], masks[k, 0])
            assert int(masks[k, 0].sum()) == int(rows[k]["area_px"])
        else:
            assert (f, int(ids[0])) not in coco
    assert present > 0
    with zipfile.ZipFile(exports.masks) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("masks/"))
        assert names == [f"masks/{f:05d}.png" for f in frames]
        assert f"Every {step}-frame step" in zf.read("README.txt").decode()
    calibrated = _csv(science["calibrated"])
    assert [int(r["frame"]) for r in calibrated] == frames
    summary = _csv(science["summary"])[0]
    assert (int(summary["first_frame"]), int(summary["last_frame"])) == (0, frames[-1])
    # A zone over the whole frame holds the object on every row where it is present: each
    # row lasts step / fps.
    whole = Rect("all", 0, 0, 159, 119)
    stats = zone_stats(user.results.rows, [whole])[0]
    assert stats.frames_inside == present
    assert stats.time_in_zone_s == pytest.approx(present * step / FPS)
    by_overlap = zone_stats(user.results.rows, [whole], masks=user.tracking.store, min_overlap=0.5)[
        0
    ]
    assert by_overlap.time_in_zone_s == pytest.approx(stats.time_in_zone_s)
    user.close()


def test_a_project_replays_with_its_step_and_refuses_another(engine, clip, tmp_path):
    user = _tracked(engine, clip, 5)
    first = _csv(user.export().csv)
    project = user.save_project()
    saved = json.loads(project.read_text())
    assert saved["source"]["frame_step"] == 5 and saved["version"] == 2
    kept = tmp_path / "project.json"
    kept.write_bytes(project.read_bytes())
    user.close()

    again = UserSession(engine)
    again.upload(clip, source_name="discs.mp4", frame_step=5)
    again.load_project(kept)
    replayed = _csv(again.export().csv)
    assert replayed == first
    again.close()

    other = UserSession(engine)
    other.upload(clip, source_name="discs.mp4", frame_step=2)
    with pytest.raises(ProjectError, match="frame step 5"):
        other.load_project(kept)
    assert other.tracking is None or not other.objects  # nothing changed
    other.close()
