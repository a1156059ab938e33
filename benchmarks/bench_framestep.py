"""Wall time per second of video when tracking every N-th frame (frame steps 1, 2, 5, 10).

One run: a synthetic clip of moving discs is read at each step in turn by one session
(upload, one click per object on frame 0, Track, the overlay video and every download), with
a random-weight SAM2.1-tiny checkpoint (timing does not depend on weight values). It prints,
per step, the frames the model tracked (counted from the run, not computed), the seconds of
each phase, the wall seconds per second of video, and the speed-up over step 1.

    .venv/bin/python benchmarks/bench_framestep.py --frames 60 --resolution 512
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402

STEPS = (1, 2, 5, 10)


def run_step(engine, clip: Path, discs, step: int) -> tuple[dict, int, float]:
    """(seconds per phase, frames the model tracked, seconds of video) at one step."""
    from sam2web.session.user import UserSession

    user = UserSession(engine)
    steps = harness.Steps()
    try:
        with steps("upload"):
            info = user.upload(clip, source_name=clip.name, frame_step=step)
        with steps("clicks"):
            for disc in discs:
                obj = user.add_object()
                user.click(0, disc.x0, disc.y0, obj_id=obj.obj_id)
        tracked = 0
        with steps("track"):
            for _ in user.propagate():
                tracked += 1
        with steps("video + downloads"):
            user.export()
            user.export_science()
    finally:
        user.close()
    return steps.seconds, tracked, info.duration_s


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--frames", type=int, default=60, help="clip length (default 60)")
    parser.add_argument("--fps", type=float, default=30.0, help="clip frame rate (default 30)")
    parser.add_argument("--width", type=int, default=320, help="clip width (default 320)")
    parser.add_argument("--height", type=int, default=240, help="clip height (default 240)")
    parser.add_argument("--objects", type=int, choices=(1, 2, 3), default=1)
    parser.add_argument("--resolution", type=int, default=512, help="processing px (512)")
    harness.add_threads(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    threads = harness.use_threads(args.threads)
    load_before = harness.load_average()

    from tests import synth

    with tempfile.TemporaryDirectory(prefix="sam2web-bench-step-") as tmp:
        tmp = Path(tmp)
        discs = harness.make_discs(args.width, args.height, args.objects)
        frames = synth.make_frames(args.frames, args.height, args.width, discs=discs)
        clip = synth.write_video(tmp / "clip.mp4", frames, fps=args.fps)
        engine = harness.random_engine(tmp, args.resolution)
        run_step(engine, clip, discs[:1], STEPS[-1])  # model built and warm before timing
        results = {}
        for step in STEPS:
            harness.log(f"frame step {step}", "bench-step")
            results[step] = run_step(engine, clip, discs, step)
    base = None
    rows = []
    for step, (seconds, tracked, video_s) in results.items():
        total = sum(seconds.values())
        per_video_s = total / video_s
        base = base or per_video_s
        rows.append(
            (
                step,
                tracked,
                *(f"{seconds[k]:.1f}" for k in ("upload", "track", "video + downloads")),
                f"{total:.1f}",
                f"{per_video_s:.2f}",
                f"{total / tracked:.2f}",
                f"{base / per_video_s:.1f}x",
            )
        )
    print(
        f"\nFrame step: {args.frames} frames {args.width}x{args.height} at {args.fps:g} fps "
        f"({args.frames / args.fps:.1f} s of video), {args.objects} object(s), "
        f"{args.resolution} px, {threads} torch threads"
    )
    print(harness.machine_line())
    print(f"load average before: {load_before}, after: {harness.load_average()}")
    columns = (
        "step",
        "model frames",
        "upload s",
        "track s",
        "video+downloads s",
        "total s",
        "s per s of video",
        "s per model frame",
        "speed-up",
    )
    print(harness.table(columns, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
