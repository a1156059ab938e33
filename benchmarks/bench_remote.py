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

import argparse
import contextlib
import dataclasses
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sam2web.compute import remote  # noqa: E402
from sam2web.session.engine import Engine  # noqa: E402
from sam2web.session.user import UserSession  # noqa: E402
from sam2web.settings import Settings  # noqa: E402
from sam2web.tracking import accel  # noqa: E402
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
    started = time.perf_counter()
    stamps = [time.perf_counter() for _ in user.propagate("forward")]
    assert not user.last_run.notes, user.last_run.notes
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    user.close()
    return {
        "first": stamps[0] - started,
        "median": statistics.median(gaps),
        "mean": statistics.fmean(gaps),
        "total": stamps[-1] - started,
        "frames": len(stamps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="", help="host:port of a running Ray head")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--size", default="120x160", help="frame height x width")
    args = parser.parse_args()
    flags = accel.cpu_bf16_flags()
    print(f"CPU: {accel.cpu_model()}; {os.cpu_count()} cores visible")
    print(f"bf16/AMX flags: {', '.join(flags) if flags else 'none'}")

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
            results = {}
            for side, ray_address in (("here", ""), ("cluster", address)):
                settings = dataclasses.replace(
                    Settings.from_env({}),
                    resolution=args.resolution,
                    device="cpu",
                    checkpoint=ckpt,
                    offline=True,
                    data_dir=tmp_path / side,
                    ray_address=ray_address,
                )
                engine = Engine(settings)
                warm_started = time.perf_counter()
                timed_run(engine, clip)  # loads the model (there: starts the worker)
                warm = time.perf_counter() - warm_started
                results[side] = {**timed_run(engine, clip), "warm-up": warm}
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
    print(
        f"{'':8} {'warm-up s':>10} {'first s':>8} {'median s/f':>11} {'mean s/f':>9} {'run s':>7}"
    )
    for side, r in results.items():
        print(
            f"{side:8} {r['warm-up']:10.2f} {r['first']:8.3f} {r['median']:11.4f} "
            f"{r['mean']:9.4f} {r['total']:7.2f}"
        )
    here, there = results["here"], results["cluster"]
    print(
        f"overhead per frame: {there['median'] - here['median']:+.4f} s median, "
        f"{there['mean'] - here['mean']:+.4f} s mean "
        f"({(there['mean'] / here['mean'] - 1) * 100:+.1f} %); "
        f"to the first frame: {there['first'] - here['first']:+.3f} s"
    )


if __name__ == "__main__":
    main()
