#!/usr/bin/env python
"""Where the time of each extra object goes: SAM2's raw flow with 1 and with N objects.

Tracks the same synthetic clip (``bench_engine``'s moving discs, one click per disc on
frame 0) with 1 object and with ``--objects`` objects, in this process, and reports per
tracked frame (after the prompted one): wall seconds spent inside each part of the model
(forward hooks on the image encoder, memory attention, mask decoder, prompt encoder and
memory encoder; the rest is sam2's Python around them), the calls per frame, and the
FLOPs per part (torch's FlopCounterMode in a separate untimed pass). With
``--ops`` it adds torch.profiler's top operators for the N-object run.

Example::

    python benchmarks/profile_objects.py --resolution 512 --frames 6 --objects 3
"""

from __future__ import annotations

import collections
import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402

PARTS = (
    "image_encoder",
    "memory_attention",
    "sam_mask_decoder",
    "sam_prompt_encoder",
    "memory_encoder",
)


def track(predictor, frames_dir: Path, clicks, bf16: bool, hooks: bool = True) -> dict:
    """Run the tutorial flow; seconds and calls per part over the frames after the first
    propagate yields, and the frames' wall seconds."""
    import torch

    spent: dict[str, float] = collections.defaultdict(float)
    calls: dict[str, int] = collections.defaultdict(int)
    starts: dict[str, float] = {}
    handles = []
    timing = {"on": False}
    if hooks:
        for part in PARTS:
            module = getattr(predictor, part)

            def pre(m, a, part=part):
                starts[part] = time.perf_counter()

            def post(m, a, out, part=part):
                if timing["on"]:
                    spent[part] += time.perf_counter() - starts[part]
                    calls[part] += 1

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        with torch.inference_mode(), autocast:
            state = predictor.init_state(str(frames_dir))
            harness.prompt_raw(predictor, state, clicks)
            frames = 0
            wall = 0.0
            last = time.perf_counter()
            for i, _ in enumerate(predictor.propagate_in_video(state)):
                now = time.perf_counter()
                if i > 0:
                    wall += now - last
                    frames += 1
                timing["on"] = True  # from the second frame on
                last = time.perf_counter()
    finally:
        for h in handles:
            h.remove()
    return {"frames": frames, "wall": wall, "spent": dict(spent), "calls": dict(calls)}


def count_part_flops(predictor, frames_dir: Path, clicks) -> dict[str, float]:
    """GFLOP per tracked frame (after the first) for each part."""
    import torch

    counter = harness.flop_counter()
    with torch.inference_mode(), counter:
        state = predictor.init_state(str(frames_dir))
        harness.prompt_raw(predictor, state, clicks)
        frames = 0
        for i, _ in enumerate(predictor.propagate_in_video(state)):
            if i == 0:
                before = harness.part_flops(counter, PARTS)
            else:
                frames += 1
        after = harness.part_flops(counter, PARTS)
    return {k: (after[k] - before[k]) / frames / 1e9 for k in after}


def part_rows(runs: dict, flops: dict, objects: int) -> list[tuple]:
    """Per part (then sam2's Python around them, and the whole frame): seconds and calls per
    frame with 1 and with ``objects`` objects, the extra per extra object, GFLOP."""
    one, many = runs[1], runs[objects]
    rows = []
    for part in (*PARTS, "rest", "total"):
        if part == "total":
            a, b = one["wall"] / one["frames"], many["wall"] / many["frames"]
            ca = cb = ""
        elif part == "rest":
            a = (one["wall"] - sum(one["spent"].values())) / one["frames"]
            b = (many["wall"] - sum(many["spent"].values())) / many["frames"]
            ca = cb = ""
        else:
            a = one["spent"].get(part, 0.0) / one["frames"]
            b = many["spent"].get(part, 0.0) / many["frames"]
            ca = f"{one['calls'].get(part, 0) / one['frames']:.1f}"
            cb = f"{many['calls'].get(part, 0) / many['frames']:.1f}"
        fa, fb = flops[1].get(part), flops[objects].get(part)
        rows.append(
            (
                part,
                f"{a:.3f}",
                ca,
                f"{b:.3f}",
                cb,
                f"{(b - a) / (objects - 1):.3f}",
                "" if fa is None else f"{fa:.1f}",
                "" if fb is None else f"{fb:.1f}",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--objects", type=int, default=3, choices=(2, 3))
    parser.add_argument("--bf16", action="store_true", help="run under CPU bf16 autocast")
    parser.add_argument("--ops", action="store_true", help="also print torch.profiler's top ops")
    harness.add_threads(parser)
    args = parser.parse_args(argv)

    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import build_predictor, write_random_checkpoint
    from tests import synth

    harness.use_threads(args.threads)
    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="sam2web-objects-"))
    ckpt = write_random_checkpoint(work / "random.pt", "sam2.1-tiny", seed=0)
    discs = harness.make_discs(640, 480, args.objects)
    frames = synth.make_frames(num_frames=args.frames, height=480, width=640, discs=discs)
    frames_dir = harness.write_jpegs(frames, work / "frames")
    clicks = harness.clicks_for(discs)
    predictor = build_predictor(
        get_spec("sam2.1-tiny"), ckpt, device="cpu", image_size=args.resolution
    )
    runs, flops = {}, {}
    for n in (1, args.objects):
        runs[n] = track(predictor, frames_dir, clicks[:n], args.bf16)
        flops[n] = count_part_flops(predictor, frames_dir, clicks[:n])

    print(harness.machine_line())
    print(f"{args.resolution} px, {'bf16' if args.bf16 else 'fp32'}, {args.frames} frames")
    print()
    n = args.objects
    columns = (
        "part",
        "1 obj s/frame",
        "1 obj calls/frame",
        f"{n} obj s/frame",
        f"{n} obj calls/frame",
        "extra s per extra obj",
        "1 obj GFLOP/frame",
        f"{n} obj GFLOP/frame",
    )
    print(harness.table(columns, part_rows(runs, flops, n)))
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            track(predictor, frames_dir, clicks, args.bf16, hooks=False)
        print()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
