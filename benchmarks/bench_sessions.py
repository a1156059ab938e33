"""RSS of a server holding many kept sessions, with and without releasing their state.

Each session is a user's work as the app keeps it: a 640x360 clip of moving discs
uploaded, one object and one click on frame 0 (random-weight SAM2.1-tiny; memory does not
depend on weight values). With ``--release`` every session gives back its SAM 2 state
once its click is done, as a session without an open tab does
(``UserSession.release_model``); without it every state stays. Prints the process's RSS
before the first session and after the last, per session, and the ratio of the two modes
when both ran (each mode in a child process of its own).

    .venv/bin/python benchmarks/bench_sessions.py --sessions 20 100 --resolution 1024
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402


def child(args) -> dict:
    """One mode in this process: N sessions, then the RSS."""
    from sam2web.session.engine import Engine
    from sam2web.session.user import UserSession
    from sam2web.settings import Settings
    from sam2web.tracking.model import write_random_checkpoint
    from tests import synth

    tmp = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    ckpt = write_random_checkpoint(tmp / "tiny.pt", "sam2.1-tiny", seed=0)
    settings = dataclasses.replace(
        Settings.from_env({}),
        resolution=args.resolution,
        checkpoint=ckpt,
        offline=True,
        data_dir=tmp / "sessions",
        bf16="0",
        session_ram_mb=0,
    )
    engine = Engine(settings)
    discs = harness.make_discs(args.width, args.height, 1)
    frames = synth.make_frames(args.frames, args.height, args.width, discs=discs)
    clip = synth.write_video(tmp / "clip.mp4", frames, fps=25)
    # The model is loaded (and one click made) before the baseline, as on a running server.
    warm = UserSession(engine)
    warm.upload(clip)
    warm.click(0, discs[0].x0, discs[0].y0)
    warm.close()
    gc.collect()
    before = harness.rss_mib()
    users = []
    for i in range(args.count):
        user = UserSession(engine)
        user.upload(clip)
        user.click(0, discs[0].x0, discs[0].y0)
        if args.release:
            user.release_model()
        users.append(user)
        if (i + 1) % 10 == 0:
            harness.log(f"{i + 1} sessions, RSS {harness.rss_mib():.0f} MiB")
    gc.collect()
    after = harness.rss_mib()
    held = sum(u.model_bytes() for u in users) / harness.MIB
    for user in users:
        user.close()
    return {"before": before, "after": after, "held": held}


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--modes", nargs="+", default=["kept", "released"])
    parser.add_argument("--child", action="store_true", help=argparse_hidden())
    parser.add_argument("--count", type=int, default=0, help=argparse_hidden())
    parser.add_argument("--release", action="store_true", help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.child:
        harness.report_result(child(args))
        return 0
    print(harness.machine_line())
    print(f"{args.frames}-frame {args.width}x{args.height} clip, one click at {args.resolution} px")
    rows = []
    for count in args.sessions:
        got = {}
        for mode in args.modes:
            argv_child = [
                __file__,
                "--child",
                f"--count={count}",
                f"--frames={args.frames}",
                f"--width={args.width}",
                f"--height={args.height}",
                f"--resolution={args.resolution}",
            ] + (["--release"] if mode == "released" else [])
            got[mode] = harness.run_child(argv_child, timeout_s=7200)
            r = got[mode]
            if "error" in r:
                print(f"{count} sessions, {mode}: {r}")
                continue
            per = (r["after"] - r["before"]) / count
            rows.append([count, mode, f"{r['before']:.0f}", f"{r['after']:.0f}", f"{per:.1f}"])
            print(
                f"{count} sessions, {mode}: RSS {r['before']:.0f} -> {r['after']:.0f} MiB",
                flush=True,
            )
        if all(m in got and "error" not in got[m] for m in ("kept", "released")):
            kept, rel = got["kept"]["after"], got["released"]["after"]
            print(f"{count} sessions: RSS kept / released = {kept / rel:.2f}")
    print(
        harness.table(["sessions", "mode", "RSS before MiB", "RSS after MiB", "MiB/session"], rows)
    )
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
