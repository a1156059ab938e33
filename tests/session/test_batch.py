"""Batches of real recordings: a project replayed on videos of other lengths and sizes,
projects saved before tracking, and the batch summary table."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sam2web.cli.main import main
from sam2web.errors import UserError
from sam2web.history import (
    AddClick,
    AddMask,
    MergeObjects,
    Pass,
    Propagate,
    SetBox,
    SwapObjects,
    decode_mask,
    encode_mask,
)
from sam2web.outputs.maskfiles import read_npz
from sam2web.session.batch import SUMMARY_FILENAME, fit_project, run_note
from sam2web.session.engine import Engine
from sam2web.session.project import ProjectError
from sam2web.session.projectload import load_project
from sam2web.session.user import UserSession
from sam2web.settings import Settings
from sam2web.types import VideoInfo
from tests import synth
from tests.masks import assert_nontrivial

H, W = 120, 160


def _discs(scale: float) -> tuple[synth.Disc, ...]:
    return tuple(
        dataclasses.replace(
            d,
            x0=d.x0 * scale,
            y0=d.y0 * scale,
            vx=d.vx * scale,
            vy=d.vy * scale,
            radius=d.radius * scale,
        )
        for d in synth.DEFAULT_DISCS
    )


def _clip(folder: Path, name: str, frames: int, scale: float = 1.0, height=H, width=W) -> Path:
    h, w = int(height * scale), int(width * scale)
    pixels = synth.make_frames(frames, h, w, discs=_discs(scale))
    return synth.write_video(folder / name, pixels, fps=10.0)


def _prompt(user: UserSession, scale: float, frame: int = 0) -> None:
    """The clicks a user makes: a click on the red disc, a box around the blue one."""
    red = user.add_object("red").obj_id
    blue = user.add_object("blue").obj_id
    user.click(frame, 40 * scale, 60 * scale, "positive", red)
    user.add_box(frame, 106 * scale, 26 * scale, 134 * scale, 54 * scale, blue)


def _masks(user: UserSession) -> np.ndarray:
    store = user.tracking.store
    ids = [o.obj_id for o in user.objects]
    return np.stack([[store.read(f).masks[i] for i in ids] for f in range(user.info.num_frames)])


def _by_hand(settings: Settings, clip: Path, scale: float, direction: str, frame=0):
    user = UserSession(Engine(settings))
    try:
        user.upload(clip)
        _prompt(user, scale, frame)
        list(user.propagate(direction))
        return _masks(user)
    finally:
        user.close()


@pytest.fixture(scope="module")
def settings(tmp_path_factory, random_checkpoint) -> Settings:
    return dataclasses.replace(
        Settings.from_env({}),
        resolution=256,
        checkpoint=random_checkpoint,
        data_dir=tmp_path_factory.mktemp("data"),
        offline=True,
    )


@pytest.fixture
def cli_env(monkeypatch, settings):
    monkeypatch.setenv("SAM2WEB_CHECKPOINT", str(settings.checkpoint))
    monkeypatch.setenv("SAM2WEB_RESOLUTION", "256")
    monkeypatch.setenv("SAM2WEB_OFFLINE", "1")
    monkeypatch.setenv("SAM2WEB_DATA_DIR", str(settings.data_dir))


def _save_project(settings: Settings, clip: Path, path: Path, track: bool, frame=0) -> Path:
    user = UserSession(Engine(settings))
    try:
        user.upload(clip)
        _prompt(user, 1.0, frame)
        if track:
            list(user.propagate("forward"))
        path.write_bytes(user.save_project().read_bytes())
    finally:
        user.close()
    return path


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tracked_project(tmp_path_factory, settings) -> Path:
    """A project made on an 8-frame clip (day1.mp4) and tracked forward from frame 0."""
    folder = tmp_path_factory.mktemp("project")
    made_on = _clip(folder, "day1.mp4", 8)
    return _save_project(settings, made_on, folder / "p.json", track=True)


def test_project_replays_on_other_lengths_and_scaled_sizes(
    tmp_path, settings, tracked_project, cli_env, capsys
):
    longer = _clip(tmp_path, "day2.mp4", 10)
    scaled = _clip(tmp_path, "day3.mp4", 6, scale=2.0)
    square = _clip(tmp_path, "other.mp4", 6, width=H)
    out = tmp_path / "out"
    videos = [longer, scaled, square]
    code = main(
        ["track", *map(str, videos), "--project", str(tracked_project), "--out", str(out)]
        + ["--no-video"]
    )
    err = capsys.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {square}: This project was made on day1.mp4 with frames of 160x120 pixels, "
        "but this video's frames are 120x120, another shape, so the clicks cannot be placed; "
        "use videos of the same camera view."
    ]
    assert f"note: {scaled}: Its frames are 320x240 pixels, the project's 160x120; the " in err
    assert f"note: {longer}: It has 10 frames, the project's video 8; tracking runs" in err
    # Each video tracked to its own end, with the masks the same (scaled) prompts give
    # when made by hand on it.
    for folder, clip, scale, frames in (("1_day2", longer, 1, 10), ("2_day3", scaled, 2, 6)):
        got_frames, ids, got = read_npz(out / folder / "sam2web_masks.npz")
        assert list(got_frames) == list(range(frames)) and list(ids) == [1, 2]
        expected = _by_hand(settings, clip, scale, "forward")
        assert_nontrivial(expected.reshape(-1, *expected.shape[-2:]))
        assert np.array_equal(got, expected)
    replayed = load_project(out / "2_day3" / "sam2web_project.json")
    assert replayed.source.name == "day3.mp4" and replayed.source.width == 320
    click = next(a for a in replayed.history if isinstance(a, AddClick))
    assert (click.x, click.y) == (80.0, 120.0)

    rows = _rows(out / SUMMARY_FILENAME)
    assert [r["video"] for r in rows] == [str(v) for v in videos]
    assert [r["status"] for r in rows] == ["tracked", "tracked", "failed"]
    assert [r["frames"] for r in rows] == ["10", "6", ""]
    assert [(r["width"], r["height"]) for r in rows[:2]] == [("160", "120"), ("320", "240")]
    assert rows[2]["message"].startswith("This project was made on day1.mp4")
    for row, folder in zip(rows[:2], ("1_day2", "2_day3"), strict=True):
        summary = {r["object_name"]: r for r in _rows(out / folder / "sam2web_summary.csv")}
        for name in ("red", "blue"):
            assert row[f"{name} frames present"] == summary[name]["frames_present"]
        assert float(row["seconds"]) > 0


def test_project_without_a_run_is_tracked(tmp_path, settings, cli_env, capsys):
    clip = _clip(tmp_path, "a.mp4", 8)
    short = _clip(tmp_path, "short.mp4", 2)
    project = _save_project(settings, clip, tmp_path / "p.json", track=False, frame=3)
    assert not any(isinstance(a, Propagate) for a in load_project(project).history)
    out = tmp_path / "out"
    code = main(
        ["track", str(clip), str(short), "--project", str(project), "--out", str(out)]
        + ["--no-video"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert (
        f"note: {clip}: The project has no tracking run; tracked both ways from frame 3, "
        "the first prompted frame." in err
    )
    assert f"error: {short}: This project has prompts up to frame 3, but this video has " in err
    assert "1 of 2 videos tracked" in err
    frames, _, got = read_npz(out / "1_a" / "sam2web_masks.npz")
    assert list(frames) == list(range(8))
    expected = _by_hand(settings, clip, 1, "both", frame=3)
    assert_nontrivial(expected.reshape(-1, *expected.shape[-2:]))
    assert np.array_equal(got, expected)
    saved = load_project(out / "1_a" / "sam2web_project.json")
    runs = [a for a in saved.history if isinstance(a, Propagate)]
    assert runs == [Propagate((Pass(3, False, 5), Pass(3, True, 4)))]
    rows = _rows(out / SUMMARY_FILENAME)
    assert [(r["status"], r["frames"]) for r in rows] == [("tracked", "8"), ("failed", "")]


# ---------------------------------------------------------------------------- planning
def _info(frames: int, width: int, height: int) -> VideoInfo:
    return VideoInfo(frames, width, height, 10.0, "v.mp4", "video")


def test_fit_project_scales_and_extends(tracked_project):
    project = load_project(tracked_project)
    plan = fit_project(project, _info(12, 333, 250), None)  # 333/160 ~ 250/120 within 1 %
    box = next(a for a in plan.project.history if isinstance(a, SetBox))
    assert box.x0 == pytest.approx(106 * 333 / 160) and box.y1 == pytest.approx(54 * 250 / 120)
    run = next(a for a in plan.project.history if isinstance(a, Propagate))
    assert run.passes == (Pass(0, False, 12),)
    assert plan.direction is None
    shorter = fit_project(project, _info(5, W, H), None)
    assert next(a for a in shorter.project.history if isinstance(a, Propagate)).passes == (
        Pass(0, False, 5),
    )
    with pytest.raises(ProjectError, match="another shape"):
        fit_project(project, _info(8, 200, 120), None)
    with pytest.raises(UserError, match="direction"):
        fit_project(project, _info(8, W, H), None, direction="sideways")


def test_fit_project_scales_mask_prompts_and_checks_their_frame(tracked_project):
    """A mask prompt on a video twice the size becomes the same shape at twice the size
    (each pixel its nearest source pixel), and one beyond a short video's end is refused."""
    project = load_project(tracked_project)
    mask = np.zeros((H, W), bool)
    mask[30:50, 40:90] = True  # a block of 20 x 50 pixels
    history = [*project.history, AddMask(3, 1, encode_mask(mask))]
    with_mask = dataclasses.replace(project, history=history)
    plan = fit_project(with_mask, _info(12, 2 * W, 2 * H), None)
    scaled = next(a for a in plan.project.history if isinstance(a, AddMask))
    big = decode_mask(scaled.rle, 2 * H, 2 * W)
    expected = np.zeros((2 * H, 2 * W), bool)
    expected[60:100, 80:180] = True
    assert np.array_equal(big, expected)
    assert "mask prompts are scaled" in " ".join(plan.notes)
    with pytest.raises(ProjectError, match="prompts up to frame 3"):
        fit_project(with_mask, _info(3, W, H), None)


@pytest.mark.parametrize("fix", [SwapObjects(1, 2, 5), MergeObjects(1, 2, 5)])
def test_a_fix_beyond_the_last_frame_is_refused_before_tracking(tracked_project, fix):
    """A swap or merge from frame 5 needs 6 frames: a 5-frame video (frames 0 to 4) is
    refused by the plan, before anything is tracked, with frames numbered as on the page
    (from 0); a 6-frame video takes it."""
    project = load_project(tracked_project)
    fixed = dataclasses.replace(project, history=[*project.history, fix])
    with pytest.raises(ProjectError) as refused:
        fit_project(fixed, _info(5, W, H), None)
    assert str(refused.value) == (
        "This project has an identity fix (swap or merge) from frame 5, but this video has "
        "only 5 frames (0 to 4); use a video of at least 6 frames."
    )
    plan = fit_project(fixed, _info(6, W, H), None)
    assert plan.project.history[-1] == fix


def test_batch_sentences_number_frames_from_0_as_the_page_does(tracked_project):
    project = load_project(tracked_project)
    late = dataclasses.replace(
        project, history=[*project.history, AddClick(1, 1, 40.0, 60.0, True)]
    )
    with pytest.raises(ProjectError) as refused:
        fit_project(late, _info(1, W, H), None)
    assert str(refused.value) == (
        "This project has prompts up to frame 1, but this video has only 1 frame (frame 0); "
        "use a video of at least 2 frames."
    )
    assert run_note("forward", 0) == (
        "The project has no tracking run; tracked forward from frame 0, the first prompted frame."
    )


def test_fit_project_takes_another_frame_step_only_for_prompts_on_frame_0(tracked_project):
    import dataclasses

    from sam2web.history import AddClick

    project = load_project(tracked_project)  # prompted and run from frame 0
    stepped = dataclasses.replace(_info(8, W, H), frame_step=3, source_frames=24)
    plan = fit_project(project, stepped, None)
    assert plan.project.source.frame_step == 3
    assert any("frame step 3" in note for note in plan.notes)
    later = dataclasses.replace(
        project, history=[*project.history, AddClick(frame=2, obj=1, x=20.0, y=20.0, positive=True)]
    )
    with pytest.raises(ProjectError, match="prompts after frame 0"):
        fit_project(later, stepped, None)
    assert fit_project(later, _info(8, W, H), None).project.source.frame_step == 1
