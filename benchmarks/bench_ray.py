#!/usr/bin/env python
"""Benchmark: a batch tracked here against the same batch on Ray, side by side in one run.

Makes N synthetic clips (moving discs) and a project on the first one (two clicks, tracked
forward), then runs ``python -m sam2web track`` on the N clips twice in this process
(``sam2web.cli.main.main``): one video after another here, and with ``--ray`` on a Ray started
here beforehand (so Ray's own start-up, printed apart, is not in the batch's time; the
workers' start and model load are, as the run here's model load is). Both batches load the
model once per worker and write the same files (``--no-video``).

Printed: the CPU model and its bf16/AMX flags, wall seconds of each batch and their ratio,
seconds per tracked frame and the Ray path's overhead per frame over the run here (with
one worker this is Ray's cost: start-up of the worker, moving the video and the results
through the object store, progress reports), and the bytes moved per frame (the videos
sent plus the output files sent back). Weights are random; timing does not depend on them.

Example::

    python benchmarks/bench_ray.py --clips 4 --frames 8
    python benchmarks/bench_ray.py --clips 8 --frames 16 --workers 2 --cpus-per-worker 1
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import harness  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")


def _project(settings, clip: Path, path: Path) -> Path:
    from sam2web.session.engine import Engine
    from sam2web.session.user import UserSession

    user = UserSession(Engine(settings))
    try:
        user.upload(clip)
        user.click(0, 40, 60, "positive", user.add_object("red").obj_id)
        user.click(0, 120, 40, "positive", user.add_object("blue").obj_id)
        list(user.propagate())
        path.write_bytes(user.save_project().read_bytes())
    finally:
        user.close()
    return path


def _batch(args: list[str]) -> tuple[float, int, str]:
    from sam2web.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code, seconds = harness.timed(main, args)
    return seconds, code, err.getvalue()


def _video_seconds(out: Path) -> float:
    """The per-video seconds of a batch (decode, replay, tracking, exports), summed."""
    import csv

    with open(out / "batch_summary.csv", newline="", encoding="utf-8") as fh:
        return sum(float(row["seconds"]) for row in csv.DictReader(fh))


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prepare(opts, work: Path) -> tuple[list[Path], Path]:
    """The clips, and the project (two clicks, tracked) made on the first of them."""
    import dataclasses

    from sam2web.settings import Settings
    from sam2web.tracking.model import write_random_checkpoint
    from tests import synth

    checkpoint = write_random_checkpoint(work / "tiny.pt", "sam2.1-tiny", seed=0)
    env = {
        "SAM2WEB_CHECKPOINT": str(checkpoint),
        "SAM2WEB_RESOLUTION": str(opts.resolution),
        "SAM2WEB_OFFLINE": "1",
        "SAM2WEB_DATA_DIR": str(work / "data"),
    }
    os.environ.update(env)
    os.environ["PYTHONPATH"] = str(ROOT)  # for the workers Ray starts here
    clips = [
        synth.write_video(
            work / f"clip{i}.mp4", synth.make_frames(opts.frames, opts.height, opts.width, seed=i)
        )
        for i in range(opts.clips)
    ]
    settings = dataclasses.replace(
        Settings.from_env(env), checkpoint=checkpoint, data_dir=work / "data"
    )
    return clips, _project(settings, clips[0], work / "p.json")


def run_batches(opts, common: list[str], work: Path) -> tuple[float, list, list]:
    """Ray's start-up seconds, and (wall s, per-video s) of each batch here and on Ray."""
    import ray

    _, init_s = harness.timed(
        ray.init, include_dashboard=False, logging_level="WARNING", log_to_driver=False
    )
    ray_args = [*common, "--out", str(work / "ray"), "--ray", "--workers", str(opts.workers)]
    if opts.cpus_per_worker:
        ray_args += ["--cpus-per-worker", str(opts.cpus_per_worker)]
    here_times, ray_times = [], []
    try:
        for _ in range(opts.repeat):  # interleaved, so that load drifts hit both alike
            seconds, code, err = _batch([*common, "--out", str(work / "here")])
            assert code == 0, err
            here_times.append((seconds, _video_seconds(work / "here")))
            seconds, code, err = _batch(ray_args)
            assert code == 0, err
            ray_times.append((seconds, _video_seconds(work / "ray")))
    finally:
        ray.shutdown()
    return init_s, here_times, ray_times


def report(opts, init_s: float, here_times: list, ray_times: list, moved: int) -> None:
    frames = opts.clips * opts.frames
    (here_s, here_v), (ray_s, ray_v) = min(here_times), min(ray_times)
    print(f"runs here: {', '.join(f'{t:.1f}' for t, _ in here_times)} s")
    print(f"runs on Ray: {', '.join(f'{t:.1f}' for t, _ in ray_times)} s (best of each below)")
    print()
    rows = [
        (
            name,
            workers,
            f"{wall:.1f} ({wall / here_s:.2f})",
            f"{videos:.1f}",
            f"{videos / frames:.3f}",
            f"{wall - videos / workers:.1f}",
        )
        for name, workers, wall, videos in (
            ("here", 1, here_s, here_v),
            ("ray", opts.workers, ray_s, ray_v),
        )
    ]
    columns = ("run", "workers", "wall s (× here)", "per-video s", "s/frame in videos", "rest s")
    print(harness.table(columns, rows))
    print()
    print(f"Ray start-up (ray.init, not in the batch's time): {init_s:.1f} s")
    print(
        "Ray path per frame (the per-video work on a worker against here): "
        f"{100 * (ray_v / here_v - 1):+.1f} %; the rest (model load here; worker start, "
        f"transfers and scheduling on Ray) adds {ray_s - ray_v / opts.workers - here_s + here_v:+.1f}"
        " s to the Ray batch"
    )
    print(f"bytes moved: {moved / frames / 1024:.1f} KiB per frame ({moved / 1024:.0f} KiB)")


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--clips", type=int, default=4, help="videos in the batch (default 4)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--resolution", type=int, default=256, help="processing px (256)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--workers", type=int, default=1, help="Ray workers (default 1)")
    parser.add_argument("--cpus-per-worker", type=float, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, best kept (2)")
    opts = parser.parse_args(argv)

    import ray

    print(harness.machine_line())
    print(f"ray {ray.__version__}")
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    clips, project = prepare(opts, work)
    common = ["track", *map(str, clips), "--project", str(project), "--no-video"]
    print(
        f"batch: {opts.clips} clips x {opts.frames} frames of {opts.width}x{opts.height}, "
        f"{opts.resolution} px"
    )
    init_s, here_times, ray_times = run_batches(opts, common, work)
    moved = sum(c.stat().st_size for c in clips) + sum(
        _bytes(p) for p in (work / "ray").iterdir() if p.is_dir()
    )
    report(opts, init_s, here_times, ray_times, moved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
