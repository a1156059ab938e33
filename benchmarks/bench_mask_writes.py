#!/usr/bin/env python
"""Benchmark: what storing a tracked frame's masks costs the model's thread, with the file
written at once and written behind, side by side in one run.

    python benchmarks/bench_mask_writes.py [--frames 60] [--sizes 1920x1080,1024x768]
        [--objects 1,4,16] [--step-ms 20]

For each frame size and object count, moving discs (sam2web's test clip, scaled) are stored
frame after frame in a fresh :class:`~sam2web.tracking.maskstore.MaskStore`, twice:

* ``at once``: ``write(...)``, packing, compressing and replacing the file on the calling
  thread (how a click's mask is stored);
* ``behind``: ``write(..., behind=True)`` (how a propagation stores its frames), the file
  then written by the store's writer thread; the final ``flush()`` is timed apart.

Each is run twice: back to back (frames stored one after another, so the writer's pace
bounds both ways), and with a device step of ``--step-ms`` before each frame, during which
the calling thread waits without Python's lock (as it does in a CUDA synchronise): a model of
a GPU propagation, where the write behind should cost the model's thread only the packing.
The real GPU-busy share is measured by ``bench_gpu_busy.py`` on a GPU. The files of both ways
are checked to hold the same masks.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402


def disc_masks(width: int, height: int, objects: int, frames: int) -> list[dict]:
    """Per frame, ``objects`` boolean disc masks (the three test discs, repeated shifted)."""
    from tests.synth import disc_mask

    discs = harness.make_discs(width, height, 3)
    out = []
    for t in range(frames):
        masks = {}
        for i in range(objects):
            d = discs[i % 3]
            shifted = dataclasses.replace(d, x0=d.x0 + (i // 3) * 0.05 * width)
            masks[i + 1] = disc_mask(height, width, shifted, t)
        out.append(masks)
    return out


def run(store, frames: list[dict], behind: bool, step_s: float) -> tuple[list[float], float]:
    """Seconds on the calling thread per write, and the flush at the end."""
    times = []
    for t, masks in enumerate(frames):
        if step_s:
            time.sleep(step_s)  # the device step: the thread waits, Python's lock is free
        scores = {o: 1.0 for o in masks}
        start = time.perf_counter()
        store.write(t, masks, scores, behind=behind)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    store.flush()
    return times, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from sam2web.tracking.maskstore import MaskStore

    parser = harness.parser(__doc__)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--sizes", default="1920x1080,1024x768")
    parser.add_argument("--objects", default="1,4,16")
    parser.add_argument("--step-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    counts = [int(n) for n in args.objects.split(",")]
    step_s = args.step_ms / 1000.0

    rows = []
    for width, height in sizes:
        for objects in counts:
            frames = disc_masks(width, height, objects, args.frames)
            cells = {}
            with tempfile.TemporaryDirectory() as tmp:
                for mode, behind in (("now", False), ("behind", True)):
                    for step in (0.0, step_s):
                        store = MaskStore(Path(tmp) / f"{mode}-{step}", height, width)
                        start = time.perf_counter()
                        times, flush = run(store, frames, behind, step)
                        wall = time.perf_counter() - start
                        cells[mode, step] = (statistics.median(times), flush, wall)
                        store.close()
                a = MaskStore(Path(tmp) / "now-0.0", height, width)
                b = MaskStore(Path(tmp) / "behind-0.0", height, width)
                for t in range(args.frames):
                    ra, rb = a.read(t), b.read(t)
                    assert all(np.array_equal(ra.masks[o], rb.masks[o]) for o in ra.masks)
            ms = {k: (v[0] * 1e3, v[1] * 1e3, v[2] * 1e3 / args.frames) for k, v in cells.items()}
            now, behind = ms["now", step_s], ms["behind", step_s]
            rows.append(
                [
                    f"{width}x{height}",
                    objects,
                    harness.fmt(ms["now", 0.0][2], 1),
                    harness.fmt(ms["behind", 0.0][2], 1),
                    harness.fmt(now[0], 1),
                    harness.fmt(behind[0], 1),
                    harness.fmt(now[2], 1),
                    harness.fmt(behind[2], 1),
                    harness.fmt(now[2] / behind[2], 2, "×"),
                    harness.fmt(behind[1], 1),
                ]
            )
            harness.log(f"{width}x{height}, {objects} objects done")
    print(harness.machine_line())
    step = f"{args.step_ms:g} ms"
    print(
        f"{args.frames} frames per row. Back to back: frames stored one after another (the "
        f"writer's pace bounds both). With a {step} device step before each frame: the "
        "calling thread's median ms per write, the ms per frame of the loop, their ratio "
        "(at once / behind), and the flush at the end of the run."
    )
    print()
    columns = [
        "frame",
        "objects",
        "back to back, ms/frame at once",
        "… behind",
        f"{step} step: write ms at once",
        "… behind",
        "ms/frame at once",
        "… behind",
        "ratio",
        "final flush ms",
    ]
    print(harness.table(columns, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
