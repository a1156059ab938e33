#!/usr/bin/env python
"""Benchmark: the web app's tracking here against the same run on a Ray cluster.

Both sides run a :class:`~sam2web.session.user.UserSession` on the same synthetic clip with
the same two clicks, the model warm (one untimed run first: here the engine's model cache,
there the worker that keeps its model), and a fresh session for the timed run, so neither
replays an earlier run. For each side it prints the seconds to the first tracked frame,
the median and mean seconds per frame after it, and the whole run; then the remote path's
per-frame overhead (shipping the job, replaying the clicks on the worker, the masks coming
back frame by frame and written into the session's store). Weights are random (timing does
not depend on them).

Without ``--address`` it starts a one-node cluster on 127.0.0.1 (its own port and temp
folder, token authentication off) and stops exactly that cluster's processes afterwards.
The worker then shares this machine's cores with the web process, as a head node would.

    .venv/bin/python benchmarks/bench_remote.py --frames 20 --resolution 256
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402
from sam2web.compute import remote  # noqa: E402
from sam2web.session.engine import Engine  # noqa: E402
from sam2web.session.user import UserSession  # noqa: E402
from sam2web.settings import Settings  # noqa: E402
from sam2web.tracking.model import write_random_checkpoint  # noqa: E402
from tests import synth  # noqa: E402


def start_head(temp: Path) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        str(Path(sys.executable).with_name("ray")),
        *("start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}"),
        *("--num-cpus=2", "--object-store-memory=200000000", "--include-dashboard=false"),
        *("--disable-usage-stats", f"--temp-dir={temp}"),
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    log = (temp / "head.log").open("wb")
    head = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return f"127.0.0.1:{port}", head
        time.sleep(0.2)
    raise SystemExit("the Ray head did not start within 90 s")


def stop_head(head: subprocess.Popen) -> None:
    import psutil

    try:
        started = psutil.Process(head.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    for process in started:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    head.wait(timeout=10)


def timed_run(engine: Engine, clip: Path) -> dict:
    """One forward run of a fresh session; seconds to the first frame and between frames."""
    user = UserSession(engine)
    user.upload(clip)
    user.click(0, 40, 60)
    user.add_object("b")
    user.click(0, 120, 40)
    clock = harness.FrameClock(rss=False).start()
    for _ in user.propagate("forward"):
        clock.tick()
    clock.stop()
    assert not user.last_run.notes, user.last_run.notes
    user.close()
    summary = harness.per_frame_summary(clock.times)
    return {
        "first": summary["first_yield_s"],
        "median": summary["s_per_frame"],
        "mean": summary["s_per_frame_mean"],
        "total": sum(clock.times),
        "frames": len(clock.times),
    }


def measure(side: str, ray_address: str, args, ckpt: Path, clip: Path, tmp: Path) -> dict:
    """A warm-up run (loads the model; there: starts the worker), then the timed run."""
    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=args.resolution,
        device="cpu",
        checkpoint=ckpt,
        offline=True,
        data_dir=tmp / side,
        ray_address=ray_address,
    )
    engine = Engine(settings)
    _, warm = harness.timed(timed_run, engine, clip)
    return {**timed_run(engine, clip), "warm-up": warm}


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--address", default="", help="host:port of a running Ray head")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--size", default="120x160", help="frame height x width")
    args = parser.parse_args(argv)
    print(harness.machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        tmp_path = Path(tmp)
        height, width = (int(v) for v in args.size.split("x"))
        clip = synth.write_video(
            tmp_path / "clip.mp4", synth.make_frames(args.frames, height, width), fps=10
        )
        ckpt = write_random_checkpoint(tmp_path / "sam2.1_hiera_tiny_random.pt")
        head = None
        address = args.address
        if not address:
            os.environ["RAY_AUTH_MODE"] = "disabled"
            (tmp_path / "ray").mkdir()
            address, head = start_head(tmp_path / "ray")
        try:
            results = {
                side: measure(side, ray_address, args, ckpt, clip, tmp_path)
                for side, ray_address in (("here", ""), ("cluster", address))
            }
        finally:
            with contextlib.suppress(Exception):
                remote.connect(address).lost()
            if head is not None:
                stop_head(head)
    report(results, args)


def report(results: dict, args) -> None:
    print(
        f"\n{args.frames} frames of {args.size} px, processing at {args.resolution} px, "
        "SAM2.1-tiny (random weights), 2 objects"
    )
    rows = [
        (
            side,
            f"{r['warm-up']:.2f}",
            f"{r['first']:.3f}",
            f"{r['median']:.4f}",
            f"{r['mean']:.4f}",
            f"{r['total']:.2f}",
        )
        for side, r in results.items()
    ]
    columns = ("", "warm-up s", "first s", "median s/f", "mean s/f", "run s")
    print(harness.table(columns, rows, text=True))
    here, there = results["here"], results["cluster"]
    print(
        f"overhead per frame: {there['median'] - here['median']:+.4f} s median, "
        f"{there['mean'] - here['mean']:+.4f} s mean "
        f"({(there['mean'] / here['mean'] - 1) * 100:+.1f} %); "
        f"to the first frame: {there['first'] - here['first']:+.3f} s"
    )


if __name__ == "__main__":
    main()
