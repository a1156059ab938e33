"""The command line: ``python -m sam2web track`` replays a project on a batch of videos."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sam2web.cli.main import main
from sam2web.cli.outputs import OUTPUT_FILES, output_folder_name
from sam2web.outputs.maskfiles import read_npz
from sam2web.session.engine import Engine
from sam2web.session.user import UserSession
from sam2web.settings import Settings
from tests import synth
from tests.masks import assert_nontrivial

ROOT = Path(__file__).resolve().parents[2]
NUM_FRAMES = 6


@pytest.fixture(scope="module")
def batch(tmp_path_factory, random_checkpoint) -> dict:
    """Two 6-frame clips of the same size, and a project made on the first one."""
    folder = tmp_path_factory.mktemp("batch")
    a = synth.write_video(folder / "a.mp4", synth.make_frames(NUM_FRAMES, 120, 160), fps=10.0)
    b = synth.write_video(
        folder / "b clip!.mp4", synth.make_frames(NUM_FRAMES, 120, 160, seed=5), fps=10.0
    )
    data_dir = tmp_path_factory.mktemp("data")
    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=256,
        checkpoint=random_checkpoint,
        data_dir=data_dir,
        offline=True,
    )
    user = UserSession(Engine(settings))
    try:
        user.upload(a)
        red = user.add_object("red").obj_id
        blue = user.add_object("blue").obj_id
        user.click(0, 40, 60, "positive", red)
        user.click(0, 120, 40, "positive", blue)
        list(user.propagate())
        store = user.tracking.store
        masks = np.stack([[store.read(f).masks[i] for i in (red, blue)] for f in range(NUM_FRAMES)])
        project = folder / "p.json"
        project.write_bytes(user.save_project().read_bytes())
    finally:
        user.close()
    return {"a": a, "b": b, "project": project, "checkpoint": random_checkpoint, "masks": masks}


def _run(args: list[str], batch: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    data_dir = tmp_path / "workspaces"
    env = dict(
        os.environ,
        SAM2WEB_CHECKPOINT=str(batch["checkpoint"]),
        SAM2WEB_RESOLUTION="256",
        SAM2WEB_OFFLINE="1",
        SAM2WEB_DATA_DIR=str(data_dir),
        TQDM_DISABLE="1",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-m", "sam2web", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Every session's workspace is removed, failed or not.
    assert not data_dir.exists() or not any(data_dir.iterdir())
    return done


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _check_folder(folder: Path, video: Path, overlay: bool) -> None:
    expected = {n for n in OUTPUT_FILES if overlay or not n.endswith(".mp4")}
    assert {p.name for p in folder.iterdir()} == expected
    tracks = _csv_rows(folder / "sam2web_tracks.csv")
    assert len(tracks) == NUM_FRAMES * 2
    assert {r["object_name"] for r in tracks} == {"red", "blue"}
    assert len(_csv_rows(folder / "sam2web_tracks_calibrated.csv")) == NUM_FRAMES * 2
    assert [r["object_name"] for r in _csv_rows(folder / "sam2web_summary.csv")] == ["red", "blue"]
    frames, ids, masks = read_npz(folder / "sam2web_masks.npz")
    assert list(frames) == list(range(NUM_FRAMES)) and list(ids) == [1, 2]
    assert masks.shape == (NUM_FRAMES, 2, 120, 160)
    project = json.loads((folder / "sam2web_project.json").read_text(encoding="utf-8"))
    assert project["source"]["name"] == video.name
    assert project["source"]["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    if overlay:
        assert (folder / "sam2web_overlay.mp4").stat().st_size > 1000


def test_track_writes_every_export_for_each_video(batch, tmp_path):
    out = tmp_path / "out"
    done = _run(
        [
            "track",
            str(batch["a"]),
            str(batch["b"]),
            "--project",
            str(batch["project"]),
            "--out",
            str(out),
            "--pixels-per-unit",
            "2",
            "--unit",
            "mm",
        ],
        batch,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["1_a", "2_b_clip", "batch_summary.csv"]
    _check_folder(out / "1_a", batch["a"], overlay=True)
    _check_folder(out / "2_b_clip", batch["b"], overlay=True)
    assert "error:" not in done.stderr
    # The first video is the project's own: same masks as the session that made it.
    _, _, masks = read_npz(out / "1_a" / "sam2web_masks.npz")
    assert_nontrivial(list(batch["masks"].reshape(-1, *batch["masks"].shape[-2:])))
    assert np.array_equal(masks, batch["masks"])
    rows = _csv_rows(out / "1_a" / "sam2web_tracks_calibrated.csv")
    assert "centroid_x_mm" in rows[0] and "area_mm2" in rows[0]
    # The second is another file of the same size: replayed, with a note saying so.
    assert "note: " in done.stderr and "a.mp4" in done.stderr
    assert "2 of 2 videos tracked" in done.stderr


def test_a_bad_file_fails_alone(batch, tmp_path):
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "out"
    done = _run(
        [
            "track",
            str(batch["a"]),
            str(bogus),
            str(batch["b"]),
            "--project",
            str(batch["project"]),
            "--out",
            str(out),
            "--no-video",
        ],
        batch,
        tmp_path,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {bogus}: ")
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["1_a", "3_b_clip", "batch_summary.csv"]
    rows = _csv_rows(out / "batch_summary.csv")
    assert [(r["video"], r["status"]) for r in rows] == [
        (str(batch["a"]), "tracked"),
        (str(bogus), "failed"),
        (str(batch["b"]), "tracked"),
    ]
    _check_folder(out / "1_a", batch["a"], overlay=False)
    _check_folder(out / "3_b_clip", batch["b"], overlay=False)


def test_help_documents_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["track", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--project",
        "--out",
        "--no-video",
        "--fps",
        "--pixels-per-unit",
        "--unit",
        "--model",
        "--checkpoint",
        "--resolution",
        "--fast",
        "--device",
        "--direction",
        "--ray",
        "--workers",
        "--gpus-per-worker",
        "--cpus-per-worker",
        "--retries",
        "example:",
    ):
        assert option in text
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0 and "--port" in capsys.readouterr().out


def test_module_entry_point_help():
    done = subprocess.run(
        [sys.executable, "-m", "sam2web", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert "track" in done.stdout and "serve" in done.stdout


def test_usage_errors_exit_2(batch, tmp_path, capsys):
    video = str(batch["a"])
    with pytest.raises(SystemExit) as exit_:
        main(["track", video, "--out", str(tmp_path)])  # no --project
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["track", video, "--project", "p.json", "--out", "o", "--resolution", "100"])
    assert exit_.value.code == 2
    assert main([]) == 2
    assert (
        main(
            [
                "track",
                video,
                "--project",
                str(batch["project"]),
                "--out",
                "o",
                "--fast",
                "--resolution",
                "512",
            ]
        )
        == 2
    )
    assert "either --fast or --resolution" in capsys.readouterr().err

    junk = tmp_path / "junk.json"
    junk.write_bytes(b"\x89PNG not a project")
    assert main(["track", video, "--project", str(junk), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The file junk.json is not a sam2web project")
    assert (
        main(
            [
                "track",
                video,
                "--project",
                str(batch["project"]),
                "--out",
                str(tmp_path / "o"),
                "--unit",
                "mm",
            ]
        )
        == 2
    )
    assert "--unit needs --pixels-per-unit" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "name, position, count, expected",
    [
        ("a.mp4", 1, 2, "1_a"),
        ("b clip!.mp4", 2, 2, "2_b_clip"),
        ("../../etc/passwd", 3, 12, "03_passwd"),
        ("día 1.mov", 1, 1, "1_d_a_1"),
        ("...mp4", 1, 1, "1_video"),
    ],
)
def test_output_folder_names_are_safe(name, position, count, expected):
    assert output_folder_name(position, Path(name), count) == expected


def test_fast_uses_the_fast_resolution(monkeypatch):
    from sam2web.cli.parser import build_parser
    from sam2web.cli.track import make_settings

    monkeypatch.setenv("SAM2WEB_FAST_RESOLUTION", "384")
    args = build_parser().parse_args(["serve", "--fast"])
    assert make_settings(args).resolution == 384
    args = build_parser().parse_args(["serve"])
    assert make_settings(args).resolution == 1024


def test_track_with_a_frame_step_keeps_the_original_frame_numbers(batch, tmp_path):
    out = tmp_path / "out"
    args = ["track", str(batch["a"]), "--project", str(batch["project"]), "--out", str(out)]
    done = _run([*args, "--frame-step", "2", "--no-video"], batch, tmp_path)
    assert done.returncode == 0, done.stderr
    tracks = _csv_rows(out / "1_a" / "sam2web_tracks.csv")
    kept = list(range(0, NUM_FRAMES, 2))
    assert sorted({int(r["frame"]) for r in tracks}) == kept
    assert sorted({float(r["time_s"]) for r in tracks}) == pytest.approx([f / 10.0 for f in kept])
    frames, _, _ = read_npz(out / "1_a" / "sam2web_masks.npz")
    assert list(frames) == kept
    saved = json.loads((out / "1_a" / "sam2web_project.json").read_text(encoding="utf-8"))
    assert saved["source"]["frame_step"] == 2
    refused = _run([*args, "--frame-step", "0"], batch, tmp_path)
    assert refused.returncode == 2 and "is not a frame step" in refused.stderr
