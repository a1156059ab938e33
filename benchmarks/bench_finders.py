"""The moving-object finder on a long recording: wall time to find the objects on one frame
of a 1,000-frame 640x480 MP4 (frames read from the file by seeking, as a recording is
sampled), with the background as the median of the samples (what the app uses) and as
OpenCV's MOG2 fed with the same samples, and each one's largest centroid error (px)
against the synthetic truth.

    python benchmarks/bench_finders.py [--frames 1000] [--repeats 3]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from sam2web.analysis import finders  # noqa: E402
from tests import synth  # noqa: E402

W, H = 640, 480


def shapes(frames: int) -> tuple[synth.Shape, ...]:
    """Three discs and an ellipse crossing the arena back and forth (a triangle wave)."""

    def path(x0, y0, vx, vy):
        def wave(p, lo, hi):
            span = hi - lo
            q = (p - lo) % (2 * span)
            return lo + (q if q < span else 2 * span - q)

        return tuple(
            (wave(x0 + vx * t, 60, W - 60), wave(y0 + vy * t, 60, H - 60)) for t in range(frames)
        )

    return (
        synth.Shape(path(100, 100, 7, 3), 30, 30, (230, 60, 40)),
        synth.Shape(path(500, 120, -6, 4), 24, 24, (40, 90, 230)),
        synth.Shape(path(150, 380, 5, -2), 20, 20, (60, 190, 80)),
        synth.Shape(path(400, 300, -4, -5), 34, 16, (240, 220, 40), angle=25),
    )


def write_clip(path: Path, frames: int) -> Path:
    import imageio_ffmpeg

    arena = shapes(frames)
    bg = synth.background(H, W).astype(np.float32)
    rng = np.random.default_rng(1)
    writer = imageio_ffmpeg.write_frames(
        str(path), (W, H), fps=30, macro_block_size=1, output_params=["-loglevel", "error"]
    )
    writer.send(None)
    for t in range(frames):
        frame = bg.copy()
        for s in arena:
            frame[synth.shape_mask(H, W, s, t)] = s.color
        frame += 0.02 * t + rng.normal(0, 3, size=(H, W, 1))
        writer.send(np.ascontiguousarray(np.clip(frame, 0, 255).astype(np.uint8)))
    writer.close()
    return path


def reader(path: Path):
    cap = cv2.VideoCapture(str(path))

    def read(i: int) -> np.ndarray:
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, bgr = cap.read()
        assert ok, f"frame {i} unreadable"
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    return read


def find(path: Path, frames: int, frame_idx: int, method: str):
    """The finder's steps with the background ``method``; (centroids, seconds)."""
    settings = finders.FinderSettings(count=4, min_area=200)
    started = time.perf_counter()
    read = reader(path)
    if method == "median":
        found = finders.find_moving(read, frames, frame_idx, settings)
        seconds = time.perf_counter() - started
        return [p.centroid for p in found], seconds
    samples = [read(i) for i in finders.sample_indices(frames, settings.samples)]
    bg = finders.background_model(samples, "mog2")
    moving = finders.clean(finders.moving_pixels(finders.motion_map(read(frame_idx), bg)))
    labels = finders.split_touching(moving, settings.split_depth)
    areas = np.bincount(labels.ravel())
    order = [v for v in np.argsort(-areas) if v and areas[v] >= settings.min_area][:4]
    cents = []
    for v in order:
        r, c = np.nonzero(labels == v)
        cents.append((c.mean() + 0.5, r.mean() + 0.5))
    return cents, time.perf_counter() - started


def error(found, truth) -> float:
    if len(found) < len(truth):
        return float("inf")
    return max(min(np.hypot(fx - tx, fy - ty) for fx, fy in found) for tx, ty in truth)


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(harness.machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "arena.mp4", args.frames)
        frame_idx = args.frames // 2 + 7
        truth = [s.centers[frame_idx] for s in shapes(args.frames)]
        rows = []
        for method in ("median", "mog2"):
            times, err = [], float("nan")
            for _ in range(args.repeats):
                cents, seconds = find(clip, args.frames, frame_idx, method)
                times.append(seconds)
                err = error(cents, truth)
            rows.append(
                [
                    method,
                    harness.fmt(statistics.median(times)),
                    harness.fmt(10.0 / statistics.median(times)),
                    harness.fmt(err),
                ]
            )
    print(f"{args.frames} frames of {W}x{H}, objects found on frame {frame_idx}, 4 objects")
    print(
        harness.table(
            ["background", "median s", "target 10 s / time", "worst centroid error px"], rows
        )
    )


if __name__ == "__main__":
    main()
