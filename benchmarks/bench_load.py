"""Several users at once in the running app, and how the page answers meanwhile.

Starts ``app.py`` with a random-weight SAM2.1-tiny checkpoint (timing does not depend on
weight values). Each user has its own gradio_client ``Client`` in its own thread and its own
synthetic clip (user i: FRAMES + i frames, its own size): upload -> two objects -> clicks ->
Track -> export. One more user drags the frame slider meanwhile. Prints, per user, the total
time and when its tracking started and ended (from the server's log: the model queue runs
one at a time), the slider's latency (median, p95, max) and the server's RSS before, at its
peak and after. The scenario is tests/loadrun.py, the same as tests/test_load.py's.

    .venv/bin/python benchmarks/bench_load.py --sessions 4 --frames 20 --resolution 256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=4, help="users at once (default 4)")
    parser.add_argument(
        "--frames",
        type=int,
        default=20,
        help="frames of the first user's clip; user i gets FRAMES + i (default 20)",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=256,
        help="processing resolution, SAM2WEB_RESOLUTION (default 256)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="model events at once, SAM2WEB_CONCURRENCY (default 1)",
    )
    parser.add_argument(
        "--slider-pause",
        type=float,
        default=0.1,
        help="seconds between the slider user's frame requests (default 0.1)",
    )
    args = parser.parse_args(argv)

    from sam2web.model import write_random_checkpoint
    from tests.appserver import start_app
    from tests.loadrun import check, run_load, user_clips

    with tempfile.TemporaryDirectory(prefix="sam2web-bench-load-") as tmp:
        tmp = Path(tmp)
        ckpt = write_random_checkpoint(tmp / "tiny.pt")
        t0 = time.perf_counter()
        server = start_app(
            tmp / "app",
            ckpt,
            resolution=args.resolution,
            extra_env={"SAM2WEB_CONCURRENCY": str(args.concurrency)},
        )
        started = time.perf_counter() - t0
        try:
            run = run_load(
                server.url,
                user_clips(args.sessions, args.frames),
                tmp / "clips",
                server.log,
                pid=server.process.pid,
                scrub_pause_s=args.slider_pause,
            )
        finally:
            server.stop()
    print(
        f"\nLoad: {args.sessions} users at once, {args.frames}..."
        f"{args.frames + args.sessions - 1} frames each, two objects, "
        f"{args.resolution} px, SAM2WEB_CONCURRENCY={args.concurrency}, "
        f"{os.cpu_count()} CPU(s); app start {started:.1f} s. Times in seconds from the "
        "start of the load, in tracking order.\n"
    )
    print(run.table())
    problems = {u.clip.key: check(u) for u in run.users if check(u)}
    if problems:
        print(f"\nWrong or missing results: {problems}")
        return 1
    print("\nEvery user's CSV and overlay video match their own clip.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
