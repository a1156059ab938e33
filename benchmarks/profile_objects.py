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

import argparse
import collections
import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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
    import numpy as np
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
            for obj_id, x, y in clicks:
                predictor.add_new_points_or_box(
                    state,
                    0,
                    obj_id,
                    points=np.array([[x, y]], np.float32),
                    labels=np.array([1], np.int32),
                )
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


def _is_part(name: str, part: str) -> bool:
    from benchmarks.bench_engine import _is_part as is_part

    return is_part(name, part)


def count_part_flops(predictor, frames_dir: Path, clicks) -> dict[str, float]:
    """GFLOP per tracked frame (after the first) for each part."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(q, k, v)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)

    def totals() -> dict[str, float]:
        counts = counter.get_flop_counts()
        out = {p: sum(sum(o.values()) for n, o in counts.items() if _is_part(n, p)) for p in PARTS}
        out["total"] = counter.get_total_flops()
        return out

    with torch.inference_mode(), counter:
        state = predictor.init_state(str(frames_dir))
        for obj_id, x, y in clicks:
            predictor.add_new_points_or_box(
                state,
                0,
                obj_id,
                points=np.array([[x, y]], np.float32),
                labels=np.array([1], np.int32),
            )
        frames = 0
        for i, _ in enumerate(predictor.propagate_in_video(state)):
            if i == 0:
                before = totals()
            else:
                frames += 1
        after = totals()
    return {k: (after[k] - before[k]) / frames / 1e9 for k in after}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--objects", type=int, default=3, choices=(2, 3))
    parser.add_argument("--bf16", action="store_true", help="run under CPU bf16 autocast")
    parser.add_argument("--ops", action="store_true", help="also print torch.profiler's top ops")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from PIL import Image

    from benchmarks.bench_engine import clicks_for, machine_info, make_discs
    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import build_predictor, write_random_checkpoint
    from tests import synth

    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="sam2web-objects-"))
    ckpt = write_random_checkpoint(work / "random.pt", "sam2.1-tiny", seed=0)
    discs = make_discs(640, 480, args.objects)
    frames = synth.make_frames(num_frames=args.frames, height=480, width=640, discs=discs)
    frames_dir = work / "frames"
    frames_dir.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(frames_dir / f"{i:05d}.jpg", quality=95)
    clicks = clicks_for(discs)
    predictor = build_predictor(
        get_spec("sam2.1-tiny"), ckpt, device="cpu", image_size=args.resolution
    )

    runs = {}
    flops = {}
    for n in (1, args.objects):
        runs[n] = track(predictor, frames_dir, clicks[:n], args.bf16)
        flops[n] = count_part_flops(predictor, frames_dir, clicks[:n])

    machine = machine_info()
    print(
        f"CPU: {machine['cpu']} ({machine.get('cpu_flags', '?')}), "
        f"{machine.get('usable_cores')} cores, {torch.get_num_threads()} threads; "
        f"{args.resolution} px, {'bf16' if args.bf16 else 'fp32'}, {args.frames} frames"
    )
    print()
    print(
        "| part | 1 obj s/frame | 1 obj calls/frame | "
        f"{args.objects} obj s/frame | {args.objects} obj calls/frame | extra s per extra obj "
        f"| 1 obj GFLOP/frame | {args.objects} obj GFLOP/frame |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    one, many = runs[1], runs[args.objects]
    extra = args.objects - 1
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
        fa = flops[1].get(part)
        fb = flops[args.objects].get(part)
        print(
            f"| {part} | {a:.3f} | {ca} | {b:.3f} | {cb} | {(b - a) / extra:.3f} | "
            f"{'' if fa is None else f'{fa:.1f}'} | {'' if fb is None else f'{fb:.1f}'} |"
        )

    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            track(predictor, frames_dir, clicks, args.bf16, hooks=False)
        print()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
