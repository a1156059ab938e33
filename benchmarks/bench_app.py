"""Time a user's whole session in the running app: upload -> clicks -> Track -> video.

Starts ``app.py`` with a random-weight SAM2.1-tiny checkpoint (timing does not depend on
weight values), drives it through its API with gradio_client on a synthetic clip of moving
discs, and prints how long each step took and the total from upload to a playable overlay
video with all downloads.

    .venv/bin/python benchmarks/bench_app.py --frames 50 --resolution 1024
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
    from gradio_client import Client, handle_file

    from sam2web.tracking.model import write_random_checkpoint
    from tests import synth
    from tests.appserver import start_app

    with tempfile.TemporaryDirectory(prefix="sam2web-bench-app-") as tmp:
        tmp = Path(tmp)
        sx, sy = args.width / 160, args.height / 120
        discs = tuple(
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
        clip = synth.write_video(
            tmp / "clip.mp4",
            synth.make_frames(args.frames, args.height, args.width, discs=discs),
            fps=25,
        )
        ckpt = write_random_checkpoint(tmp / "tiny.pt")
        print(f"[bench-app] starting the app at {args.resolution} px", flush=True)
        t0 = time.perf_counter()
        server = start_app(tmp / "app", ckpt, resolution=args.resolution)
        started = time.perf_counter() - t0
        try:
            client = Client(server.url, verbose=False)
            times = {}
            t = time.perf_counter()
            client.predict(handle_file(str(clip)), api_name="/upload")
            times["upload + decode"] = time.perf_counter() - t
            t = time.perf_counter()
            for obj, disc in enumerate(discs[: args.objects], start=1):
                client.predict(f"disc {obj}", 0, api_name="/add_object")
                client.predict(0, obj, disc.x0, disc.y0, True, api_name="/add_point")
            times["objects + clicks"] = time.perf_counter() - t
            t = time.perf_counter()
            result = client.predict(
                "forward", "", "", 0, 0.5, True, True, 0, "", "mm", "", api_name="/propagate"
            )
            times["track + video + exports"] = time.perf_counter() - t
            total = sum(times.values())
            reader = imageio_ffmpeg.read_frames(result[4])
            meta = next(reader)
            decoded = sum(1 for _ in reader)
            from benchmarks.bench_engine import machine_info

            cpu = machine_info()
            print(
                f"\nApp from upload to overlay video: {args.frames} frames "
                f"{args.width}x{args.height}, {args.objects} object(s), "
                f"{args.resolution} px; CPU: {cpu['cpu']} ({os.cpu_count()} CPU(s); flags: "
                f"{cpu.get('cpu_flags', 'unknown')}); app start {started:.1f} s"
            )
            print("| step | seconds |\n|---|---:|")
            for name, seconds in times.items():
                print(f"| {name} | {seconds:.1f} |")
            print(f"| **total** | **{total:.1f}** |")
            print(
                f"| per frame (tracking step) | {times['track + video + exports'] / args.frames:.2f} |"
            )
            print(f"\nstatus: {result[1]}")
            print(
                f"video: {meta['size'][0]}x{meta['size'][1]}, {decoded} frames, "
                f"{meta['fps']} fps, {meta['codec']}"
            )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
