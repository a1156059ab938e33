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

import argparse
import contextlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
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
    started = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return time.perf_counter() - started, code, err.getvalue()


def _video_seconds(out: Path) -> float:
    """The per-video seconds of a batch (decode, replay, tracking, exports), summed."""
    import csv

    with open(out / "batch_summary.csv", newline="", encoding="utf-8") as fh:
        return sum(float(row["seconds"]) for row in csv.DictReader(fh))


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4, help="videos in the batch (default 4)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--resolution", type=int, default=256, help="processing px (256)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--workers", type=int, default=1, help="Ray workers (default 1)")
    parser.add_argument("--cpus-per-worker", type=float, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, best kept (2)")
    opts = parser.parse_args()

    import dataclasses

    import ray
    import torch

    from sam2web.settings import Settings
    from sam2web.tracking.accel import cpu_bf16_flags, cpu_model
    from sam2web.tracking.model import write_random_checkpoint
    from tests import synth

    flags = cpu_bf16_flags()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)")
    print(f"bf16/AMX flags: {' '.join(flags) if flags else 'none of avx512_bf16/amx'}")
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), ray {ray.__version__}, "
        f"Python {platform.python_version()}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
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
    project = _project(settings, clips[0], work / "p.json")
    frames = opts.clips * opts.frames
    common = ["track", *map(str, clips), "--project", str(project), "--no-video"]
    print(
        f"batch: {opts.clips} clips x {opts.frames} frames of {opts.width}x{opts.height}, "
        f"{opts.resolution} px"
    )

    started = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    init_s = time.perf_counter() - started
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
    (here_s, here_v), (ray_s, ray_v) = min(here_times), min(ray_times)
    print(f"runs here: {', '.join(f'{t:.1f}' for t, _ in here_times)} s")
    print(f"runs on Ray: {', '.join(f'{t:.1f}' for t, _ in ray_times)} s (best of each below)")

    moved = sum(c.stat().st_size for c in clips) + sum(
        _bytes(p) for p in (work / "ray").iterdir() if p.is_dir()
    )
    print()
    print("| run | workers | wall s (× here) | per-video s | s/frame in videos | rest s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, workers, wall, videos in (
        ("here", 1, here_s, here_v),
        ("ray", opts.workers, ray_s, ray_v),
    ):
        print(
            f"| {name} | {workers} | {wall:.1f} ({wall / here_s:.2f}) | {videos:.1f} | "
            f"{videos / frames:.3f} | {wall - videos / workers:.1f} |"
        )
    print()
    print(f"Ray start-up (ray.init, not in the batch's time): {init_s:.1f} s")
    print(
        "Ray path per frame (the per-video work on a worker against here): "
        f"{100 * (ray_v / here_v - 1):+.1f} %; the rest (model load here; worker start, "
        f"transfers and scheduling on Ray) adds {ray_s - ray_v / opts.workers - here_s + here_v:+.1f}"
        " s to the Ray batch"
    )
    print(f"bytes moved: {moved / frames / 1024:.1f} KiB per frame ({moved / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
