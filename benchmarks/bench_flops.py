#!/usr/bin/env python
"""What the hardware allows: FLOPs per tracked frame and this machine's matmul peak.

Counts the FLOPs of every frame sam2's raw video predictor tracks on the synthetic clip
(torch's FlopCounterMode, float32, attention as the CPU runs it added through a custom
mapping; one untimed run per resolution), split by model part over the frames after the
first one propagate yields, and times float32 and bfloat16 square matmuls (2,048 and
4,096) for the peak. Prints, per resolution, the GFLOP per frame and the seconds a frame
would take at each peak. ``bench_engine.py`` uses both to put each mode's seconds per
frame against that limit, in the same run.

    .venv/bin/python benchmarks/bench_flops.py --resolutions 1024,448 --frames 6
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402

PARTS = ("image_encoder", "memory_attention", "sam_mask_decoder", "memory_encoder")


def count_flops(job: dict, resolution: int) -> dict:
    """FLOPs of every frame the raw flow tracks at ``resolution``: per frame, and per part
    of the model over the frames after the first one propagate yields (the frames timed)."""
    import torch

    from benchmarks.engine_modes import load_raw_predictor

    predictor = load_raw_predictor(job, resolution)
    counter = harness.flop_counter()
    per_frame: list[float] = []
    before: dict[str, int] = {}
    with torch.inference_mode(), counter:
        state = predictor.init_state(video_path=job["frames_dir"])
        harness.prompt_raw(predictor, state, job["clicks"])
        last = counter.get_total_flops()
        for i, _ in enumerate(predictor.propagate_in_video(state)):
            now = counter.get_total_flops()
            per_frame.append(float(now - last))
            last = now
            if i == 0:
                before = harness.part_flops(counter, PARTS)
        after = harness.part_flops(counter, PARTS)
    steady = max(1, len(per_frame) - 1)
    by_part = {k: (after[k] - before.get(k, 0)) / steady for k in after}
    by_part["other"] = by_part["total"] - sum(by_part[p] for p in PARTS)
    return {"resolution": resolution, "per_frame": per_frame, "steady_by_part": by_part}


def measure_peak(seconds: float = 1.0) -> dict:
    """This machine's matmul throughput in GFLOP/s (float32 and bfloat16, square matrices
    of 2,048 and 4,096, best of repeated runs for ``seconds`` each), with torch's current
    thread count: per wall second (``fp32``, ``bf16``) and per process CPU second times the
    thread count (``fp32_cpu``, ``bf16_cpu``: what the threads do while they run, which
    other processes on the machine do not lower)."""
    import torch

    best: dict[str, float] = {}
    for n in (2048, 4096):
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            x, y = a.to(dtype), b.to(dtype)
            x @ y  # warm-up
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                t, c = time.perf_counter(), time.process_time()
                x @ y
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                best[name] = max(best.get(name, 0.0), 2 * n**3 / wall / 1e9)
                per_cpu = 2 * n**3 / max(cpu, 1e-9) / 1e9 * torch.get_num_threads()
                best[f"{name}_cpu"] = max(best.get(f"{name}_cpu", 0.0), per_cpu)
    best["threads"] = torch.get_num_threads()
    return best


def peak_line(peak: dict) -> str:
    return (
        f"Matmul peak here: {peak['fp32']:.0f} GFLOP/s float32, {peak['bf16']:.0f} GFLOP/s "
        f"bfloat16 per wall second; {peak['fp32_cpu']:.0f} and {peak['bf16_cpu']:.0f} per "
        f"CPU second of each thread ({peak['threads']} threads, best square matmul of 2048 "
        "and 4096)"
    )


def flops_table(counts: list[dict], peak: dict) -> str:
    rows = []
    for c in counts:
        p = {k: v / 1e9 for k, v in c["steady_by_part"].items()}
        rows.append(
            (
                c["resolution"],
                len(c["per_frame"]),
                harness.fmt(p["total"], 1),
                harness.fmt(p["image_encoder"], 1),
                harness.fmt(p["memory_attention"], 1),
                harness.fmt(p["sam_mask_decoder"] + p["memory_encoder"], 1),
                harness.fmt(p["other"], 1),
                harness.fmt(p["total"] / peak["fp32"], 3),
                harness.fmt(p["total"] / peak["bf16"], 3),
            )
        )
    columns = (
        "px",
        "frames",
        "GFLOP/frame",
        "encoder",
        "memory attention",
        "decoder + memory encoder",
        "rest",
        "limit s/frame fp32",
        "limit s/frame bf16",
    )
    return harness.table(columns, rows, align="r")


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--resolutions", default="1024,448", help="comma list (1024,448)")
    parser.add_argument("--frames", type=int, default=6, help="clip length (default 6)")
    parser.add_argument("--objects", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--model", default="sam2.1-tiny")
    harness.add_threads(parser)
    args = parser.parse_args(argv)

    from sam2web.tracking.model import write_random_checkpoint
    from tests import synth

    harness.use_threads(args.threads)
    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="sam2web-flops-"))
    discs = harness.make_discs(args.width, args.height, args.objects)
    frames = synth.make_frames(args.frames, args.height, args.width, discs=discs)
    job = {
        "model": args.model,
        "checkpoint": str(write_random_checkpoint(work / "random.pt", args.model, seed=0)),
        "frames_dir": str(harness.write_jpegs(frames, work / "frames")),
        "clicks": harness.clicks_for(discs),
    }
    counts = []
    for px in (int(r) for r in args.resolutions.split(",")):
        harness.log(f"counting FLOPs at {px} px over {args.frames} frames", "flops")
        counts.append(count_flops(job, px))
    peak = measure_peak()
    print(harness.machine_line())
    print(peak_line(peak))
    print(
        f"Clip: {args.width}x{args.height}, {args.objects} object(s), model {args.model} "
        "(random weights); GFLOP per frame after the first one propagate yields"
    )
    print()
    print(flops_table(counts, peak))
    return 0


if __name__ == "__main__":
    sys.exit(main())
