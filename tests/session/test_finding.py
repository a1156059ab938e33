"""Objects found without clicks in a user session and in batches: found boxes prompt
exactly as the same boxes given by hand, the history replays, and a batch finds the
objects again on each recording, wherever they start."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from sam2web.analysis.finders import FinderSettings
from sam2web.cli.main import main
from sam2web.errors import PromptError
from sam2web.history import AddMask, FindObjects, SetBox
from sam2web.session.batch import SUMMARY_FILENAME
from sam2web.session.projectload import load_project
from sam2web.session.user import UserSession
from tests import synth
from tests.masks import assert_nontrivial

H, W, T = 120, 160, 12


def _shapes(ax: float, ay: float, bx: float, by: float) -> tuple[synth.Shape, ...]:
    """A red disc moving right from (ax, ay) and a blue one moving left from (bx, by)."""
    return (
        synth.Shape(tuple((ax + 6 * t, ay) for t in range(T)), 9, 9, (230, 60, 40)),
        synth.Shape(tuple((bx - 6 * t, by) for t in range(T)), 8, 8, (40, 90, 230)),
    )


def _recording(path, shapes):
    return synth.write_video(path, synth.arena_frames(shapes, H, W, noise=2.0, drift=0.3))


def _masks(user: UserSession, frame: int) -> list[np.ndarray]:
    result = user.tracking.store.read(frame)
    return [result.masks[o.obj_id] for o in user.objects]


def test_found_boxes_prompt_exactly_as_boxes_by_hand(tmp_path, engine):
    clip = _recording(tmp_path / "a.mp4", _shapes(20, 40, 140, 85))
    found_user, hand_user = UserSession(engine), UserSession(engine)
    try:
        found_user.upload(clip)
        hand_user.upload(clip)
        proposals = found_user.find_objects("motion", 0, FinderSettings(count=2, min_area=40))
        assert np.allclose([c for p in proposals for c in p.centroid], [20, 40, 140, 85], atol=1)
        objects = found_user.accept_found(prompt="box")
        assert [o.name for o in objects] == ["found 1", "found 2"]
        for p in proposals:
            hand_user.add_box(0, *p.box, obj_id=hand_user.add_object().obj_id)
        found, hand = _masks(found_user, 0), _masks(hand_user, 0)
        assert_nontrivial(found)
        assert all(np.array_equal(f, h) for f, h in zip(found, hand, strict=True))
        history = found_user.tracking.history
        assert isinstance(history[-1], FindObjects) and history[-1].picked == (1, 2)
        # undo takes back a found object's box as it does a box drawn by hand
        found_user.undo(0, objects[1].obj_id)
        assert objects[1].obj_id not in found_user.tracking.store.read(0).masks
        saved = found_user.save_project()
        reloaded = UserSession(engine)
        try:
            reloaded.upload(clip)
            reloaded.load_project(saved)
            assert reloaded.tracking.history == found_user.tracking.history
            again = reloaded.tracking.store.read(0).masks[objects[0].obj_id]
            assert np.array_equal(again, found[0])
        finally:
            reloaded.close()
    finally:
        found_user.close()
        hand_user.close()


def test_contrast_objects_start_as_label_masks_and_picks(tmp_path, user):
    image = np.full((T, H, W, 3), 25, np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    for cx, cy, r in ((40, 40, 14), (110, 70, 10)):
        image[:, (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r] = 220
    user.upload(synth.write_video(tmp_path / "cells.mp4", image))
    proposals = user.find_objects("contrast", 3, FinderSettings(count=5, min_area=20))
    assert len(proposals) == 2
    with pytest.raises(PromptError, match="Pick proposals among 1, 2"):
        user.accept_found([3])
    assert user.objects == []  # a refused pick changes nothing
    objects = user.accept_found([2], prompt="mask")
    assert [o.name for o in objects] == ["label 2"]
    prompt = user.tracking.history[-2]
    assert isinstance(prompt, AddMask) and prompt.frame == 3
    assert user.tracking.history[-1].how == "contrast"
    with pytest.raises(PromptError, match="Find objects first"):
        user.accept_found()


def test_static_recording_is_refused_and_changes_nothing(tmp_path, user):
    still = np.repeat(synth.background(H, W)[None], T, axis=0)
    user.upload(synth.write_video(tmp_path / "still.mp4", still))
    with pytest.raises(PromptError, match="Nothing moves in this video"):
        user.find_objects("motion", 0)
    assert user.objects == [] and user.found is None


def test_batch_finds_the_objects_on_each_recording(tmp_path, engine, monkeypatch):
    starts = [(20, 40, 140, 85), (30, 80, 130, 30), (15, 60, 145, 100)]
    recs = [_recording(tmp_path / f"r{i}.mp4", _shapes(*s)) for i, s in enumerate(starts)]
    lonely = _recording(tmp_path / "lonely.mp4", _shapes(20, 40, 140, 85)[:1])
    user = UserSession(engine)
    try:
        user.upload(recs[0])
        user.find_objects("motion", 0, FinderSettings(count=2, min_area=40))
        user.accept_found()
        project = tmp_path / "p.json"
        project.write_bytes(user.save_project().read_bytes())  # saved before any run
    finally:
        user.close()
    s = engine.settings
    monkeypatch.setenv("SAM2WEB_CHECKPOINT", str(s.checkpoint))
    monkeypatch.setenv("SAM2WEB_RESOLUTION", str(s.resolution))
    monkeypatch.setenv("SAM2WEB_OFFLINE", "1")
    monkeypatch.setenv("SAM2WEB_DATA_DIR", str(s.data_dir))
    out = tmp_path / "out"
    args = ["track", *map(str, recs), str(lonely), "--project", str(project), "--out", str(out)]
    assert main([*args, "--no-video", "--direction", "forward"]) == 1
    with open(out / SUMMARY_FILENAME, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["status"], r["found"]) for r in rows] == [("tracked", "2")] * 3 + [("failed", "")]
    assert rows[3]["message"].startswith("Found 1 of the 2 objects the project finds on frame 1")
    for i, start in enumerate(starts):
        saved = load_project(out / f"{i + 1}_r{i}" / "sam2web_project.json")
        boxes = [a for a in saved.history if isinstance(a, SetBox)]
        centres = [((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2) for b in boxes]
        assert np.allclose(np.ravel(centres), start, atol=2.0)
        assert rows[i]["frames"] == str(T)
