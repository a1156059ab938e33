"""Batches on Ray (``track --ray``): the same files as a run here, a worker killed while
tracking, a damaged video among good ones, and Ray missing."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sam2web.cli.cluster import INSTALL_HINT
from sam2web.cli.main import main
from sam2web.outputs.maskfiles import read_npz
from sam2web.session.engine import Engine
from sam2web.session.user import UserSession
from sam2web.settings import Settings
from tests import synth
from tests.masks import assert_nontrivial
from tests.raycluster import ray_cluster  # noqa: F401 - the fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 6
COMPARED = (  # the files compared byte for byte (the project file has its time stamp)
    "sam2web_tracks.csv",
    "sam2web_tracks_calibrated.csv",
    "sam2web_summary.csv",
)


@pytest.fixture(scope="module")
def batch(tmp_path_factory, random_checkpoint) -> dict:
    """Three 6-frame clips, a project made on the first, and the batch run here."""
    folder = tmp_path_factory.mktemp("raybatch")
    clips = [
        synth.write_video(folder / f"c{i}.mp4", synth.make_frames(FRAMES, 120, 160, seed=i))
        for i in range(3)
    ]
    env = {
        "SAM2WEB_CHECKPOINT": str(random_checkpoint),
        "SAM2WEB_RESOLUTION": "256",
        "SAM2WEB_OFFLINE": "1",
        "SAM2WEB_DATA_DIR": str(folder / "data"),
    }
    settings = dataclasses.replace(
        Settings.from_env(env), checkpoint=random_checkpoint, data_dir=folder / "data"
    )
    user = UserSession(Engine(settings))
    try:
        user.upload(clips[0])
        user.click(0, 40, 60, "positive", user.add_object("red").obj_id)
        user.click(0, 120, 40, "positive", user.add_object("blue").obj_id)
        list(user.propagate())
        project = folder / "p.json"
        project.write_bytes(user.save_project().read_bytes())
    finally:
        user.close()
    here = folder / "here"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        args = ["track", *map(str, clips), "--project", str(project), "--out", str(here)]
        assert main([*args, "--no-video"]) == 0
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return {"clips": clips, "project": project, "here": here, "env": env}


def _command(batch: dict, videos: list[Path], out: Path, address: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sam2web",
        "track",
        *map(str, videos),
        "--project",
        str(batch["project"]),
        "--out",
        str(out),
        "--no-video",
        "-v",
        "--ray",
        address,
    ]


def _env(batch: dict, cluster) -> dict:
    return dict(os.environ, **batch["env"], **cluster.env, TQDM_DISABLE="1", PYTHONPATH=str(ROOT))


def _without_seconds(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1 :] for r in rows]


def _assert_same_folders(here: Path, there: Path, folders: list[str]) -> None:
    for folder in folders:
        names = sorted(p.name for p in (here / folder).iterdir())
        assert sorted(p.name for p in (there / folder).iterdir()) == names
        for name in COMPARED:
            assert (there / folder / name).read_bytes() == (here / folder / name).read_bytes()
        _, _, expected = read_npz(here / folder / "sam2web_masks.npz")
        _, _, got = read_npz(there / folder / "sam2web_masks.npz")
        assert_nontrivial(expected.reshape(-1, *expected.shape[-2:]))
        assert np.array_equal(got, expected)


def _run_killing_first_worker(command: list[str], env: dict, cwd: Path) -> tuple[int, str, list]:
    """Run the batch, SIGKILL the worker process tracking video 1 as soon as it starts
    on it (the driver logs its pid); returns (exit code, stderr, killed pids)."""
    run = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    killed: list[int] = []

    def watch() -> None:
        for line in run.stderr:
            lines.append(line)
            if not killed and "video 1 tracking on worker pid " in line:
                pid = int(line.rsplit("pid ", 1)[1].split()[0])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        run.wait(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    reader.join(timeout=10)
    return run.returncode, "".join(lines), killed


def test_ray_batch_matches_the_run_here_through_a_killed_worker_and_a_bad_file(
    batch,
    ray_cluster,  # noqa: F811
    tmp_path,
):
    """One run on the cluster: the worker tracking the first video is killed (it is
    replaced and the video tried again), a damaged file fails alone, and every good
    video's files are those of the run here."""
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(np.random.default_rng(0).bytes(4096))
    videos = [*batch["clips"][:2], bogus, batch["clips"][2]]
    out = tmp_path / "out"
    code, text, killed = _run_killing_first_worker(
        _command(batch, videos, out, ray_cluster.address), _env(batch, ray_cluster), tmp_path
    )
    assert killed, text[-3000:]
    assert code == 1, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {bogus}: "), text[-3000:]
    assert "Traceback" not in text
    assert f"note: {batch['clips'][0]}: its worker stopped" in text
    assert "trying again (1 of 2)" in text
    assert "3 of 4 videos tracked" in text
    # Folders are numbered by position in the batch: link the run here's to compare.
    here = tmp_path / "here"
    here.mkdir()
    for src, dst in (("1_c0", "1_c0"), ("2_c1", "2_c1"), ("3_c2", "4_c2")):
        (here / dst).symlink_to(batch["here"] / src)
    _assert_same_folders(here, out, ["1_c0", "2_c1", "4_c2"])
    there = _without_seconds(out / "batch_summary.csv")
    expected = _without_seconds(batch["here"] / "batch_summary.csv")
    assert [there[0], *there[1:3], there[4]] == [
        expected[0],
        *expected[1:3],
        [expected[3][0].replace("3", "4"), *expected[3][1:2], "4_c2", *expected[3][3:]],
    ]
    assert there[3][1:4] == [str(bogus), "", "failed"]
    # No worker leaves its scratch folder behind, not even the one that was killed.
    assert sorted(p.name for p in ray_cluster.scratch.glob("sam2web-worker-*")) == []


def test_without_ray_the_option_says_how_to_install_it(batch, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    args = ["track", str(batch["clips"][0]), "--project", str(batch["project"])]
    assert main([*args, "--out", str(tmp_path / "o"), "--ray"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {INSTALL_HINT}"
    assert not (tmp_path / "o").exists()
    # Everything else works without Ray: the modules import and the command line parses.
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import sam2web.cli.cluster, sam2web.cli.main\n"
        "from sam2web.cli.parser import build_parser\n"
        "args = build_parser().parse_args(['track', 'a.mp4', '--project', 'p', '--out', 'o'])\n"
        "assert args.ray is None and not sam2web.cli.cluster.ray_installed()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_worker_sizing():
    from sam2web.cli.cluster import RayOptions, plan_workers
    from sam2web.errors import UserError

    options = RayOptions(address=None)
    gpu = plan_workers(options, {"CPU": 16, "GPU": 2}, videos=10, device="auto")
    assert (gpu.workers, gpu.gpus, gpu.cpus) == (2, 1.0, 4.0)
    cpu = plan_workers(options, {"CPU": 16}, videos=10, device="auto")
    assert (cpu.workers, cpu.gpus, cpu.cpus) == (4, 0.0, 4.0)
    small = plan_workers(options, {"CPU": 2}, videos=3, device="cpu")
    assert (small.workers, small.cpus) == (1, 2.0)
    assert plan_workers(options, {"CPU": 16}, videos=2, device="auto").workers == 2
    half = dataclasses.replace(options, gpus_per_worker=0.5, workers=None)
    assert plan_workers(half, {"CPU": 8, "GPU": 1}, videos=9, device="auto").workers == 2
    shared = plan_workers(dataclasses.replace(options, workers=2), {"CPU": 2}, 5, "cpu")
    assert (shared.workers, shared.cpus) == (2, 1.0)
    with pytest.raises(UserError, match="fewer than 1 worker of 8 cores"):
        plan_workers(dataclasses.replace(options, cpus_per_worker=8), {"CPU": 2}, 1, "cpu")
    with pytest.raises(UserError, match="fewer than 3 workers of 1 core and"):
        plan_workers(dataclasses.replace(options, workers=3), {"CPU": 2}, 5, "cpu")


def test_too_many_workers_are_counted_in_singular_and_plural_right():
    import pytest

    from sam2web.cli.cluster import RayOptions, plan_workers
    from sam2web.errors import UserError

    options = RayOptions(address=None, workers=3, cpus_per_worker=1, gpus_per_worker=1)
    with pytest.raises(UserError) as caught:
        plan_workers(options, {"CPU": 2, "GPU": 1}, videos=5, device="auto")
    assert caught.value.message == (
        "The cluster has 2 CPU cores and 1 GPU, fewer than 3 workers of 1 core and 1 GPU "
        "take; lower --workers, --cpus-per-worker or --gpus-per-worker."
    )


@pytest.mark.parametrize(
    ("tries", "retries", "note"),
    [
        (0, 2, "trying again (1 of 2)."),
        (1, 2, "trying again (2 of 2)."),
        (2, 2, "it is not tried again after 2 retries."),
        (1, 1, "it is not tried again after 1 retry."),
        (0, 0, "it is not tried again (--retries is 0)."),
    ],
)
def test_a_lost_worker_note_is_a_whole_sentence(tries, retries, note):
    """The note on a worker that stopped ends in what happens next, never in '; '."""
    from types import SimpleNamespace

    from sam2web.cli.cluster import _Attempt, _worker_lost

    restarted, replaced, lines = [], [], []
    board = SimpleNamespace(restart=SimpleNamespace(remote=restarted.append))
    batch = SimpleNamespace(
        options=SimpleNamespace(retries=retries),
        ray=SimpleNamespace(get=lambda ref: ref),
        board=board,
        replace=replaced.append,
        workers=[object()],
    )
    job = SimpleNamespace(video="v.mp4", position=3)
    attempt = _Attempt(job=job, slot=0, tries=tries)
    retry = _worker_lost(
        batch, attempt, RuntimeError("boom"), lambda text, file: lines.append(text)
    )
    assert retry is (tries < retries)
    assert lines == [f"note: v.mp4: its worker stopped (boom); {note}"]
    assert (restarted, replaced) == ([3], [0])


def _found_recording(path: Path, start: tuple[float, float, float, float]) -> Path:
    """A red disc moving right from (ax, ay) and a blue one moving left from (bx, by), over
    12 frames (over fewer, the median background keeps part of a disc)."""
    ax, ay, bx, by = start
    frames = 2 * FRAMES
    shapes = (
        synth.Shape(tuple((ax + 6 * t, ay) for t in range(frames)), 9, 9, (230, 60, 40)),
        synth.Shape(tuple((bx - 6 * t, by) for t in range(frames)), 8, 8, (40, 90, 230)),
    )
    return synth.write_video(path, synth.arena_frames(shapes, 120, 160, noise=2.0, drift=0.3))


def test_ray_batch_finds_the_objects_on_each_recording_as_a_run_here(
    batch,
    ray_cluster,  # noqa: F811
    tmp_path,
):
    """A project that finds two moving objects (no clicks) run over recordings in which
    they start elsewhere: the workers find them on each recording, and every file equals
    the run here, the summary's ``found`` column included."""
    from sam2web.analysis.finders import FinderSettings
    from sam2web.history import SetBox
    from sam2web.session.projectload import load_project

    starts = [(20, 40, 140, 85), (30, 80, 130, 30), (15, 60, 145, 100)]
    recs = [_found_recording(tmp_path / f"r{i}.mp4", s) for i, s in enumerate(starts)]
    settings = dataclasses.replace(
        Settings.from_env(batch["env"]),
        checkpoint=Path(batch["env"]["SAM2WEB_CHECKPOINT"]),
        data_dir=tmp_path / "data",
    )
    user = UserSession(Engine(settings))
    try:
        user.upload(recs[0])
        user.find_objects("motion", 0, FinderSettings(count=2, min_area=40))
        user.accept_found()
        project = tmp_path / "found.json"
        project.write_bytes(user.save_project().read_bytes())
    finally:
        user.close()
    found = dict(batch, project=project)
    here, there = tmp_path / "here", tmp_path / "there"
    env = _env(found, ray_cluster)
    common = _command(found, recs, here, ray_cluster.address)[:-2]  # without --ray
    done = subprocess.run(common, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    command = _command(found, recs, there, ray_cluster.address)
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    folders = [f"{i + 1}_r{i}" for i in range(3)]
    _assert_same_folders(here, there, folders)
    summary = _without_seconds(there / "batch_summary.csv")
    assert summary == _without_seconds(here / "batch_summary.csv")
    col = summary[0].index("found")
    assert [row[col] for row in summary[1:]] == ["2", "2", "2"]
    for folder, start in zip(folders, starts, strict=True):
        saved = load_project(there / folder / "sam2web_project.json")
        boxes = [a for a in saved.history if isinstance(a, SetBox)]
        centres = [((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2) for b in boxes]
        assert np.allclose(np.ravel(centres), start, atol=2.0)
