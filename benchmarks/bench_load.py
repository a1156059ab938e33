"""Several users at once in the running app: the serial policy against the fair scheduler.

For each policy (SAM2WEB_SCHEDULER=serial, then fair) this starts ``app.py`` in its own
process with a random-weight SAM2.1-tiny checkpoint (timing does not depend on weight
values) and runs the same scenario: user i arrives ``--stagger`` x i seconds after the first,
uploads its own synthetic clip (FRAMES + i frames, its own size), adds one object, clicks
on it and tracks forward. One more user clicks and undoes on a small clip of its own, one
pair every 2 s (or as soon as the previous pair was answered), for as long as anyone tracks. It reports, side by side:

* time to first mask: from a user's arrival to the answer of its first click;
* click latency while others track: the clicking user's answers, p50 and p95;
* throughput: frames tracked by all users over the time from the first tracked frame to the
  last (from the mask files each run writes);
* fairness: over the time all runs were under way together, each user's share of the frames
  tracked in it (min and max share; none under serial, where runs follow each other).

The scenario's helpers are tests/loadrun.py, shared with tests/test_load.py.

    .venv/bin/python benchmarks/bench_load.py --sessions 3 --frames 20 --resolution 256
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402


@dataclass
class PolicyRun:
    policy: str
    first_mask_s: list[float] = field(default_factory=list)
    clicks_s: list[float] = field(default_factory=list)
    frames: int = 0
    span_s: float = 0.0
    shares: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.frames / self.span_s if self.span_s > 0 else float("nan")


def _user(url, clip, data_dir, arrive_s, t0, watcher, out: dict) -> None:
    from gradio_client import Client

    from tests import loadrun

    time.sleep(max(0.0, t0 + arrive_s - time.perf_counter()))
    arrived = time.perf_counter()
    try:
        client = Client(url, verbose=False)
        folder = loadrun.upload(client, clip.write(data_dir.parent), data_dir)
        loadrun.prompt(client, clip)
        out["first_mask"] = time.perf_counter() - arrived
        watcher.watch(folder)
        out["folder"] = folder
        out["status"] = loadrun.track(client, clip)
    except Exception as err:  # reported in the table
        out["error"] = f"{clip.key}: {err}"


def _clicker(url, clip, data_dir, start: threading.Event, stop: threading.Event, out: list):
    from gradio_client import Client

    from tests import loadrun

    client = Client(url, verbose=False)
    loadrun.upload(client, clip.write(data_dir.parent), data_dir)
    loadrun.prompt(client, clip)
    x, y = clip.discs()[0].center(0)
    start.wait()
    pace_s = 2.0
    while not stop.is_set():
        began = t = time.perf_counter()
        client.predict(0, 1, x + 2, y, True, api_name="/add_point")
        out.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.predict(0, api_name="/undo")
        out.append(time.perf_counter() - t)
        # A steady pace, so both policies spend about the same model time on clicks.
        stop.wait(max(0.0, pace_s - (time.perf_counter() - began)))


def run_policy(policy: str, args, ckpt: Path, workdir: Path) -> PolicyRun:
    from tests import loadrun
    from tests.appserver import start_app

    result = PolicyRun(policy)
    server = start_app(
        workdir / policy,
        ckpt,
        resolution=args.resolution,
        extra_env={"SAM2WEB_SCHEDULER": policy, "SAM2WEB_CONCURRENCY": str(args.concurrency)},
    )
    clips = loadrun.user_clips(args.sessions, args.frames, objects=1)
    clicker_clip = loadrun.UserClip("clicker", 4, 160, 120, ("clicked",))
    outs = [{} for _ in clips]
    clicks: list[float] = []
    start, stop = threading.Event(), threading.Event()
    try:
        clicker = threading.Thread(
            target=_clicker,
            args=(server.url, clicker_clip, server.data_dir, start, stop, clicks),
            daemon=True,
        )
        if not args.no_clicker:
            clicker.start()
        with loadrun.FrameWatcher() as watcher:
            t0 = time.perf_counter()
            users = [
                threading.Thread(
                    target=_user,
                    args=(server.url, c, server.data_dir, i * args.stagger, t0, watcher, o),
                    daemon=True,
                )
                for i, (c, o) in enumerate(zip(clips, outs, strict=True))
            ]
            for thread in users:
                thread.start()
            # Clicks count while someone tracks: from the first user's first tracked frame.
            while not any(o.get("folder") and watcher.first_change(o["folder"]) for o in outs):
                if not any(t.is_alive() for t in users):
                    break
                time.sleep(0.02)
            start.set()
            for thread in users:
                thread.join(900)
            stop.set()
            if clicker.is_alive():
                clicker.join(60)
    finally:
        start.set()
        stop.set()
        server.stop()
    result.errors = [o["error"] for o in outs if "error" in o]
    if result.errors:
        return result
    folders = [o["folder"] for o in outs]
    result.first_mask_s = [o["first_mask"] for o in outs]
    result.clicks_s = clicks
    result.frames = sum(c.frames for c in clips)
    result.span_s = max(watcher.last_change(f) for f in folders) - min(
        watcher.first_change(f) for f in folders
    )
    begin, end, got = watcher.split(folders)
    if end > begin and sum(got):
        result.shares = [n / sum(got) for n in got]
    return result


def _clicks(latencies: list[float]) -> str:
    from tests.loadrun import percentile

    if not latencies:
        return "— (no clicking user)"
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    return f"{p50:.2f} / {p95:.2f} ({len(latencies)} clicks)"


def table(runs: list[PolicyRun]) -> str:
    columns = (
        "policy",
        "time to first mask per user, s",
        "click p50 / p95 while others track, s",
        "throughput, frames/s",
        "fairness: share of frames while all track",
    )
    rows = []
    for run in runs:
        if run.errors:
            rows.append((run.policy, f"failed: {'; '.join(run.errors)}"))
            continue
        shares = (
            f"{100 * min(run.shares):.0f}%–{100 * max(run.shares):.0f}%"
            if run.shares
            else "— (runs one after another)"
        )
        rows.append(
            (
                run.policy,
                " / ".join(f"{s:.1f}" for s in run.first_mask_s),
                _clicks(run.clicks_s),
                f"{run.throughput:.2f}",
                shares,
            )
        )
    return harness.table(columns, rows, align="llrrl")


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--sessions", type=int, default=3, help="tracking users (default 3)")
    parser.add_argument(
        "--frames", type=int, default=20, help="frames of user 0's clip; user i: FRAMES + i"
    )
    parser.add_argument("--resolution", type=int, default=256, help="SAM2WEB_RESOLUTION")
    parser.add_argument("--concurrency", type=int, default=1, help="SAM2WEB_CONCURRENCY")
    parser.add_argument(
        "--stagger", type=float, default=2.0, help="seconds between users' arrivals (default 2)"
    )
    parser.add_argument(
        "--policies", default="serial,fair", help="comma-separated (default serial,fair)"
    )
    parser.add_argument(
        "--no-clicker",
        action="store_true",
        help="leave the clicking user out: throughput then compares tracking alone (under "
        "serial the clicker's clicks wait for whole runs, so fewer of them take model time)",
    )
    args = parser.parse_args(argv)

    from sam2web.tracking.model import write_random_checkpoint

    runs = []
    with tempfile.TemporaryDirectory(prefix="sam2web-bench-load-") as tmp:
        tmp = Path(tmp)
        ckpt = write_random_checkpoint(tmp / "tiny.pt")
        for policy in args.policies.split(","):
            runs.append(run_policy(policy.strip(), args, ckpt, tmp))
    print(
        f"\n{args.sessions} users tracking {args.frames}..{args.frames + args.sessions - 1} "
        f"frames each (one object, forward), arriving {args.stagger:g} s apart"
        f"{'' if args.no_clicker else ', plus one user clicking'}; {args.resolution} px, "
        f"SAM2WEB_CONCURRENCY={args.concurrency}."
    )
    print(harness.machine_line())
    print()
    print(table(runs))
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
