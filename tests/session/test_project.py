"""Project files: save a session, replay it on the same video, get the same masks.

Also: every invalid file ends in one clear sentence, a video of another length or another
file is refused, and the analysis exports of a session are complete and readable.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2web.analysis.tables import SUMMARY_COLUMNS, Calibration
from sam2web.errors import TrackingError
from sam2web.history import to_json
from sam2web.outputs.maskfiles import read_coco_rle, read_npz
from sam2web.session import projectload
from sam2web.session.engine import Engine
from sam2web.session.project import ProjectError, ProjectModel, dumps_project, model_notes
from sam2web.session.projectload import load_project, parse_project
from sam2web.session.user import SCIENCE_FILES, UserSession
from sam2web.settings import Settings
from sam2web.tracking.checkpoints import checkpoint_identity
from tests import synth
from tests.masks import assert_nontrivial, stored_masks

CALIBRATION = Calibration(pixels_per_unit=4.0, unit="mm")
NUM_FRAMES = 8


@pytest.fixture(scope="module")
def engine(tmp_path_factory, random_checkpoint) -> Engine:
    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=256,
        checkpoint=random_checkpoint,
        data_dir=tmp_path_factory.mktemp("data"),
        offline=True,
    )
    return Engine(settings)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("clips")
    frames = synth.make_frames(num_frames=NUM_FRAMES, height=120, width=160)
    other = synth.make_frames(num_frames=NUM_FRAMES, height=120, width=160, seed=7)
    return {
        "same": synth.write_video(folder / "discs.mp4", frames, fps=10.0),
        "other": synth.write_video(folder / "other.mp4", other, fps=10.0),
        "short": synth.write_video(folder / "short.mp4", frames[:6], fps=10.0),
    }


@pytest.fixture(scope="module")
def session_a(engine, clips):
    """Two objects tracked with clicks, a box, a refinement, an undo and two runs."""
    user = UserSession(engine)
    user.upload(clips["same"])
    red = user.add_object("red disc").obj_id
    blue = user.add_object("blue").obj_id
    user.click(0, 40, 60, "positive", red)
    user.click(0, 75, 62, "negative", red)
    user.add_box(0, 108, 28, 132, 52, obj_id=blue)
    user.click(0, 120, 40, "positive", blue)
    list(user.propagate("forward"))
    user.click(4, 52, 62, "positive", red)  # refinement on a tracked frame
    user.undo(4, red)
    user.click(4, 53, 63, "positive", red)
    user.rename_object(blue, "blue disc")
    list(user.propagate("both", start_frame=4))
    path = user.save_project(CALIBRATION)
    yield user, path
    user.close()


def _replayed(engine, video, project_path):
    user = UserSession(engine)
    user.upload(video)
    calls = []
    notes = user.load_project(project_path, progress=lambda d, t: calls.append((d, t)))
    return user, notes, calls


# ---------------------------------------------------------------------------- round trip
def test_saved_project_holds_everything(session_a, clips, random_checkpoint):
    user, path = session_a
    assert path.name == "sam2web_project.json" and path.parent == user.workspace.exports_dir
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "sam2web-project" and data["version"] == 1
    assert data["sam2web_version"] and data["sam2_version"] and data["created"]
    assert data["source"] == {
        "name": "discs.mp4",
        "sha256": hashlib.sha256(clips["same"].read_bytes()).hexdigest(),
        "num_frames": NUM_FRAMES,
        "width": 160,
        "height": 120,
        "fps": 10.0,
        "kind": "video",
    }
    model = data["model"]
    assert model["key"] == "sam2.1-tiny" and model["resolution"] == 256
    assert model["checkpoint_identity"] == checkpoint_identity(random_checkpoint)
    assert model["corrections"] == "keep" and isinstance(model["bf16"], bool)
    assert data["calibration"] == {"pixels_per_unit": 4.0, "unit": "mm", "fps": None}
    assert data["objects"] == [
        {"id": o.obj_id, "name": o.name, "color": list(o.color)} for o in user.objects
    ]
    assert [o["name"] for o in data["objects"]] == ["red disc", "blue disc"]
    assert [s["op"] for s in data["history"]] == [
        "add_object",
        "add_object",
        "click",
        "click",
        "box",
        "click",
        "propagate",
        "click",
        "undo",
        "click",
        "rename_object",
        "propagate",
    ]
    assert data["history"] == [to_json(a) for a in user.tracking.history]
    assert data["history"][-1]["passes"] == [
        {"start": 4, "reverse": False, "frames": 4},
        {"start": 4, "reverse": True, "frames": 5},
    ]
    # One history step per line: the file stays readable and diffable.
    lines = path.read_text(encoding="utf-8").splitlines()
    assert sum(line.strip().startswith('{"op":') for line in lines) == len(data["history"])
    project = load_project(path)
    assert project.calibration == CALIBRATION
    assert project.replay_steps() == 10 + NUM_FRAMES + 4 + 5


def test_replay_gives_identical_masks_objects_and_history(engine, session_a, clips):
    user_a, path = session_a
    user_b, notes, calls = _replayed(engine, clips["same"], path)
    try:
        assert notes == []
        total = load_project(path).replay_steps()
        assert calls[0] == (0, total) and calls[-1] == (total, total)
        a, b = user_a.tracking, user_b.tracking
        assert [(o.obj_id, o.name, o.color) for o in user_b.objects] == [
            (o.obj_id, o.name, o.color) for o in user_a.objects
        ]
        assert b.store.frames() == a.store.frames() == list(range(NUM_FRAMES))
        assert_nontrivial(stored_masks(a.store))
        for frame in range(NUM_FRAMES):
            ra, rb = a.store.read(frame), b.store.read(frame)
            assert ra.masks.keys() == rb.masks.keys() == {1, 2}
            for obj_id in ra.masks:
                assert np.array_equal(ra.masks[obj_id], rb.masks[obj_id]), (frame, obj_id)
                assert ra.scores[obj_id] == rb.scores[obj_id]
        assert b.history == a.history
        assert b.prompts == a.prompts
        assert user_b.active_object == 2
        # Saving the replayed session gives the same project again.
        again = json.loads(user_b.save_project(CALIBRATION).read_text(encoding="utf-8"))
        first = json.loads(path.read_text(encoding="utf-8"))
        for key in ("source", "model", "calibration", "objects", "history"):
            assert again[key] == first[key]
    finally:
        user_b.close()
    assert user_b.workspace is None


def test_json_text_round_trips_with_and_without_history(session_a):
    user, _ = session_a
    data = json.loads(user.save_project(CALIBRATION).read_text(encoding="utf-8"))
    assert json.loads(dumps_project(data)) == data
    empty = dict(data, objects=[], history=[])
    assert json.loads(dumps_project(empty)) == empty
    assert parse_project(empty).history == []


# ---------------------------------------------------------------------------- analysis
def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_export_science_writes_readable_files(session_a):
    user, _ = session_a
    files = user.export_science(CALIBRATION)
    assert set(files) == set(SCIENCE_FILES)
    for key, path in files.items():
        assert path.name == SCIENCE_FILES[key] and path.parent == user.workspace.exports_dir
        assert path.stat().st_size > 0
    store, objects = user.tracking.store, user.objects

    summary = _rows(files["summary"])
    assert list(summary[0]) == list(SUMMARY_COLUMNS)
    assert [r["object_name"] for r in summary] == ["red disc", "blue disc"]
    assert {r["unit"] for r in summary} == {"mm"}

    calibrated = _rows(files["calibrated"])
    assert len(calibrated) == NUM_FRAMES * len(objects)
    for row in calibrated:
        if row["present"] == "1":  # 4 px per mm: lengths in mm, areas in mm²
            assert float(row["centroid_x_mm"]) == pytest.approx(
                float(row["centroid_x"]) / 4, abs=1e-3
            )
            assert float(row["area_mm2"]) == pytest.approx(int(row["area_px"]) / 16, rel=1e-6)

    for key in ("trajectories", "confidence"):
        with Image.open(files[key]) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 100

    frames, ids, masks = read_npz(files["npz"])
    assert list(frames) == store.frames() and list(ids) == [1, 2]
    for t, frame in enumerate(frames):
        result = store.read(int(frame))
        for k, obj_id in enumerate(ids):
            assert np.array_equal(masks[t, k], result.masks[int(obj_id)])

    coco = read_coco_rle(files["coco"])
    expected = {
        (f, o): r.masks[o]
        for f in store.frames()
        for r in [store.read(f)]
        for o in r.masks
        if r.scores[o] > 0 and r.masks[o].any()
    }
    assert coco.keys() == expected.keys()
    for key, mask in expected.items():
        assert np.array_equal(coco[key], mask)


def test_export_science_needs_tracking(engine, clips):
    user = UserSession(engine)
    try:
        user.upload(clips["short"])
        with pytest.raises(TrackingError, match="Nothing is tracked yet"):
            user.export_science()
    finally:
        user.close()


# ---------------------------------------------------------------------------- bad files
def _one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".") and message[0].isupper()
    assert message.count(". ") == 0, message


def _mutations():
    def history(data, i, **changes):
        data["history"][i] = {**data["history"][i], **changes}

    yield "wrong format", lambda d: d.update(format="something-else"), "not a sam2web project"
    yield "newer version", lambda d: d.update(version=3), "newer sam2web"
    yield "bad version", lambda d: d.update(version="1"), "format version"
    yield "no history", lambda d: d.pop("history"), "has no 'history'"
    yield "no source", lambda d: d.pop("source"), "has no 'source'"
    yield "source size text", lambda d: d["source"].update(width="160"), "source width"
    yield "bad sha", lambda d: d["source"].update(sha256="xyz"), "sha256"
    yield "click x text", lambda d: history(d, 2, x="40"), "x of history step 3"
    yield "click x outside", lambda d: history(d, 2, x=1e9), "outside"
    yield "positive not bool", lambda d: history(d, 2, positive=1), "'positive'"
    yield "frame outside", lambda d: history(d, 2, frame=8), "frame of history step 3"
    yield "frame bool", lambda d: history(d, 2, frame=True), "whole number"
    yield "unknown op", lambda d: history(d, 2, op="explode"), "unknown action"
    yield "unknown object", lambda d: history(d, 2, obj=9), "object 9"
    yield "ids out of order", lambda d: history(d, 1, obj=5), "expected 2"
    yield "object list", lambda d: d["objects"].pop(), "object list does not match"
    yield "colour", lambda d: d["objects"][0].update(color=[1, 2]), "colour"
    yield "model", lambda d: d["model"].update(key="sam3-huge"), "not a known SAM2 model"
    yield "resolution", lambda d: d["model"].update(resolution=100), "multiple of 32"
    yield "calibration", lambda d: d["calibration"].update(pixels_per_unit=-1), "calibration"
    yield "pass too long", lambda d: d["history"][6]["passes"][0].update(frames=9), "frame count"
    yield "history not list", lambda d: d.update(history={}), "'history' is not a list"
    yield "not an object", lambda d: d.update(model=[1]), "'model' is not a JSON object"


@pytest.mark.parametrize(
    "label, mutate, fragment", list(_mutations()), ids=[m[0] for m in _mutations()]
)
def test_invalid_projects_give_one_clear_sentence(session_a, tmp_path, label, mutate, fragment):
    _, path = session_a
    data = json.loads(path.read_text(encoding="utf-8"))
    mutate(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProjectError) as err:
        load_project(bad)
    assert fragment in err.value.message
    assert "bad.json" in err.value.message
    _one_sentence(err.value.message)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"\x00\x01garbage", "not valid JSON"),
        (b'{"format": "sam2web-project", "version": 1', "not valid JSON"),
        (b"[1, 2, 3]", "not a sam2web project"),
        (b'{"format": "sam2web-project", "version": NaN}', "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_non_projects_are_refused(tmp_path, content, fragment):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(ProjectError, match=fragment) as err:
        load_project(path)
    _one_sentence(err.value.message)


def test_missing_file_and_size_caps(session_a, tmp_path, monkeypatch):
    with pytest.raises(ProjectError, match="cannot be read"):
        load_project(tmp_path / "nothing.json")
    _, path = session_a
    monkeypatch.setattr(projectload, "MAX_PROJECT_BYTES", 1000)
    with pytest.raises(ProjectError, match="larger than any sam2web project"):
        load_project(path)
    monkeypatch.setattr(projectload, "MAX_PROJECT_BYTES", 20 * 1024 * 1024)
    monkeypatch.setattr(projectload, "MAX_HISTORY", 5)
    with pytest.raises(ProjectError, match="more than 5"):
        load_project(path)


def test_real_caps_are_generous_but_bounded(session_a, tmp_path):
    """A file just over the real size cap is refused without being parsed."""
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (projectload.MAX_PROJECT_BYTES + 1))
    with pytest.raises(ProjectError, match="MB"):
        load_project(big)
    assert projectload.MAX_HISTORY >= 100_000


# ---------------------------------------------------------------------------- other videos
def test_video_of_another_length_is_refused(engine, session_a, clips):
    _, path = session_a
    user = UserSession(engine)
    try:
        user.upload(clips["short"])
        with pytest.raises(ProjectError) as err:
            user.load_project(path)
        message = err.value.message
        assert "8 frames of 160x120 pixels" in message and "6 frames" in message
        _one_sentence(message)
        assert user.tracking is None or not user.tracking.history  # nothing replayed
    finally:
        user.close()


def test_other_file_is_refused_in_strict_mode_and_replayed_otherwise(engine, session_a, clips):
    user_a, path = session_a
    user = UserSession(engine)
    try:
        user.upload(clips["other"])
        with pytest.raises(ProjectError, match="different file") as err:
            user.load_project(path)
        _one_sentence(err.value.message)
        notes = user.apply_project(load_project(path), strict_source=False)
        assert any("discs.mp4" in n for n in notes)
        assert user.tracking.history == user_a.tracking.history
        assert user.tracking.store.frames() == list(range(NUM_FRAMES))
        assert [o.name for o in user.objects] == ["red disc", "blue disc"]
    finally:
        user.close()


def test_a_step_that_cannot_be_replayed_leaves_the_session_empty(engine, session_a, clips):
    _, path = session_a
    data = json.loads(path.read_text(encoding="utf-8"))
    data["objects"] = data["objects"][:1]
    data["history"] = [data["history"][0], {"op": "undo", "frame": 0, "obj": 1}]
    user = UserSession(engine)
    try:
        user.upload(clips["same"])
        with pytest.raises(ProjectError, match=r"Step 2 of the project \(undo\)") as err:
            user.apply_project(parse_project(data))
        _one_sentence(err.value.message)
        assert user.objects == [] and user.tracking.history == []
    finally:
        user.close()


def test_model_differences_become_notes(session_a):
    _, path = session_a
    project = load_project(path)
    same = project.model
    assert model_notes(project, same) == []
    other = dataclasses.replace(same, key="sam2.1-small", resolution=1024, corrections="upstream")
    notes = model_notes(project, other)
    assert len(notes) == 3
    assert "SAM 2.1 small" in notes[0] and "1024" in notes[1] and "upstream" in notes[2]
    ckpt = dataclasses.replace(same, checkpoint_identity="0" * 16)
    assert "different checkpoint" in model_notes(project, ckpt)[0]
    numerics = ProjectModel(**{**dataclasses.asdict(same), "device": "cuda", "bf16": True})
    if (same.device, same.bf16) != ("cuda", True):
        assert "cuda with bfloat16" in model_notes(project, numerics)[0]


# ---------------------------------------------------------------------------- format 1 files
V1 = Path(__file__).resolve().parents[1] / "data" / "project_v1"


def test_a_project_saved_by_an_earlier_page_replays_to_its_masks(engine):
    """``data/project_v1`` holds a project file saved by the page before its history was
    typed, the clip it was made on and the masks that session had tracked. Loading it on
    that clip reproduces every mask and score exactly."""
    user = UserSession(engine)
    try:
        user.upload(V1 / "discs.zip", source_name="discs.zip")
        notes = user.load_project(V1 / "sam2web_project.json")
        # The same weights, saved under another file name (torch stores it inside the file).
        assert notes == [
            "The project was made with a different checkpoint file of the same model; masks "
            "may differ."
        ]
        expected = np.load(V1 / "expected_masks.npz")
        t, k, h, w = (int(v) for v in expected["shape"])
        masks = np.unpackbits(expected["masks"], axis=-1, count=h * w).reshape(t, k, h, w)
        assert_nontrivial(list(masks.reshape(-1, h, w).astype(bool)))
        store = user.tracking.store
        assert store.frames() == list(range(t))
        for frame in range(t):
            result = store.read(frame)
            for i, obj_id in enumerate((1, 2)):
                assert np.array_equal(result.masks[obj_id], masks[frame, i].astype(bool))
                # Masks are exact on every CPU; a score's last digits are not (the file was
                # written on an Intel Xeon; an AMD EPYC differs by 1.7e-6 relative).
                assert result.scores[obj_id] == pytest.approx(
                    expected["scores"][frame, i], rel=1e-4
                )
        assert [o.name for o in user.objects] == ["red disc", "blue disc"]
        saved = json.loads((V1 / "sam2web_project.json").read_text(encoding="utf-8"))
        again = json.loads(user.save_project(CALIBRATION).read_text(encoding="utf-8"))
        assert again["history"] == saved["history"] and again["objects"] == saved["objects"]
    finally:
        user.close()
