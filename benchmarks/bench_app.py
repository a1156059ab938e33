"""Time a user's whole session in the running app: upload -> clicks -> Track -> video.

Starts ``app.py`` with a random-weight SAM2.1-tiny checkpoint (timing does not depend on
weight values), drives it through its API with gradio_client on a synthetic clip of moving
discs, and prints how long each step took and the total from upload to a playable overlay
video with all downloads.

    .venv/bin/python benchmarks/bench_app.py --frames 50 --resolution 1024
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402


def scaled_discs(args):
    """tests.synth's discs, scaled to the clip and slowed so that they cross it once."""
    from tests import synth

    sx, sy = args.width / 160, args.height / 120
    return tuple(
        synth.Disc(
            d.x0 * sx,
            d.y0 * sy,
            d.vx * sx * 8 / args.frames,
            d.vy * sy * 8 / args.frames,
            d.radius * sx,
            d.color,
        )
        for d in synth.DEFAULT_DISCS
    )


def session(url: str, clip: Path, discs, objects: int) -> tuple[dict, list]:
    """One user's session through the app's API; the seconds of each step and the result
    of tracking."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    steps = harness.Steps()
    with steps("upload + decode"):
        client.predict(handle_file(str(clip)), api_name="/upload")
    with steps("objects + clicks"):
        for obj, disc in enumerate(discs[:objects], start=1):
            client.predict(f"disc {obj}", 0, api_name="/add_object")
            client.predict(0, obj, disc.x0, disc.y0, True, api_name="/add_point")
    with steps("track + video + exports"):
        result = client.predict(
            "forward", "", "", 0, 0.5, True, True, 0, "", "mm", "", api_name="/propagate"
        )
    return steps.seconds, result


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--frames", type=int, default=50, help="clip length (default 50)")
    parser.add_argument("--width", type=int, default=320, help="clip width (default 320)")
    parser.add_argument("--height", type=int, default=240, help="clip height (default 240)")
    parser.add_argument(
        "--objects", type=int, choices=(1, 2), default=2, help="objects to click (default 2)"
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=1024,
        help="processing resolution, SAM2WEB_RESOLUTION (default 1024)",
    )
    args = parser.parse_args(argv)

    import imageio_ffmpeg

    from sam2web.tracking.model import write_random_checkpoint
    from tests import synth
    from tests.appserver import start_app

    with tempfile.TemporaryDirectory(prefix="sam2web-bench-app-") as tmp:
        tmp = Path(tmp)
        discs = scaled_discs(args)
        frames = synth.make_frames(args.frames, args.height, args.width, discs=discs)
        clip = synth.write_video(tmp / "clip.mp4", frames, fps=25)
        ckpt = write_random_checkpoint(tmp / "tiny.pt")
        harness.log(f"starting the app at {args.resolution} px", "bench-app")
        server, started = harness.timed(start_app, tmp / "app", ckpt, resolution=args.resolution)
        try:
            times, result = session(server.url, clip, discs, args.objects)
            reader = imageio_ffmpeg.read_frames(result[4])
            meta = next(reader)
            decoded = sum(1 for _ in reader)
        finally:
            server.stop()
    rows = [(name, f"{seconds:.1f}") for name, seconds in times.items()]
    rows.append(("**total**", f"**{sum(times.values()):.1f}**"))
    per_frame = times["track + video + exports"] / args.frames
    rows.append(("per frame (tracking step)", f"{per_frame:.2f}"))
    print(
        f"\nApp from upload to overlay video: {args.frames} frames {args.width}x{args.height}, "
        f"{args.objects} object(s), {args.resolution} px; app start {started:.1f} s"
    )
    print(harness.machine_line())
    print(harness.table(("step", "seconds"), rows))
    print(f"\nstatus: {result[1]}")
    print(
        f"video: {meta['size'][0]}x{meta['size'][1]}, {decoded} frames, "
        f"{meta['fps']} fps, {meta['codec']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
