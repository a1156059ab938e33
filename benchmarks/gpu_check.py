"""A few-minute check of sam2web on a CUDA GPU: fidelity of CUDA float32 against the CPU,
bfloat16 and float16 speed and agreement, per-frame time and GPU-busy share, memory over a
long run, and the SAM2WEB_COMPILE=vos compile time and speed. Prints one table headed with the GPU's
name. Without a CUDA GPU it says so in one sentence and exits with status 2.

    python benchmarks/gpu_check.py [--checkpoint FILE] [--model sam2.1-tiny] [--frames 1000]

Without --checkpoint the real architecture runs with seeded random weights (shapes and speed
are real; agreement then compares meaningless but deterministic masks).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NO_GPU = "No CUDA GPU is visible to PyTorch here, so there is nothing to check; run this on a machine with an NVIDIA GPU."


def _frames(folder: Path, count: int, size: int = 512) -> None:
    """A moving disc on a textured background, as JPEG frames 00000.jpg ..."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size]
    base = ((xx * 7 + yy * 13) % 256).astype(np.uint8)
    for i in range(count):
        cx, cy = size // 4 + (i * 3) % (size // 2), size // 2
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (size // 10) ** 2
        rgb = np.stack([base, base // 2, 255 - base], -1)
        rgb[disc] = (250, 40, 40)
        Image.fromarray(rgb).save(folder / f"{i:05d}.jpg", quality=95)


def _track(predictor, folder: Path, device, dtype, frames: int):
    """Masks per frame, seconds per frame, GPU-busy seconds (CUDA events) and peak memory."""
    import torch

    cast = (
        torch.autocast("cuda", dtype=dtype) if dtype is not None and device.type == "cuda" else None
    )
    masks, seconds, busy = [], [], 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), cast or torch.autocast("cpu", enabled=False):
        state = predictor.init_state(str(folder), offload_video_to_cpu=True)
        predictor.add_new_points_or_box(state, 0, 1, points=[[128, 256]], labels=[1])
        steps = predictor.propagate_in_video(state, max_frame_num_to_track=frames)
        while True:
            start = time.perf_counter()
            if device.type == "cuda":
                begin, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                begin.record()
            item = next(steps, None)
            if item is None:
                break
            if device.type == "cuda":
                end.record()
                end.synchronize()
                busy += begin.elapsed_time(end) / 1000
            seconds.append(time.perf_counter() - start)
            masks.append((item[2][0] > 0).cpu().numpy())
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    return masks, seconds, busy, peak


def _iou(a, b) -> float:
    import numpy as np

    ious = []
    for x, y in zip(a, b, strict=False):
        union = np.logical_or(x, y).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(x, y).sum() / union))
    return float(np.mean(ious)) if ious else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--model", default="sam2.1-tiny")
    parser.add_argument("--frames", type=int, default=1000, help="frames of the memory run")
    parser.add_argument("--short", type=int, default=24, help="frames of the comparisons")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_GPU)
        return 2
    import numpy as np

    from sam2web.tracking.accel import cuda_capability, half_precision
    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import build_predictor, write_random_checkpoint

    gpu = torch.device("cuda")
    name, capability = torch.cuda.get_device_name(gpu), cuda_capability(gpu)
    spec = get_spec(args.model)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = args.checkpoint or write_random_checkpoint(tmp / "random.pt", spec.key)
        short, long_ = tmp / "short", tmp / "long"
        short.mkdir(), long_.mkdir()
        _frames(short, args.short)
        _frames(long_, args.frames)
        cpu_model = build_predictor(spec, ckpt, device="cpu")
        cpu_masks, cpu_s, _, _ = _track(cpu_model, short, torch.device("cpu"), None, args.short)
        del cpu_model
        model = build_predictor(spec, ckpt, device=gpu)
        fp32, fp32_s, fp32_busy, _ = _track(model, short, gpu, None, args.short)
        rows.append(("CUDA fp32 vs CPU fp32: mean IoU", f"{_iou(fp32, cpu_masks):.4f}"))
        rows.append(("CPU fp32 s/frame (median)", f"{np.median(cpu_s[1:]):.3f}"))
        rows.append(("CUDA fp32 s/frame (median)", f"{np.median(fp32_s[1:]):.4f}"))
        rows.append(("CUDA fp32 GPU-busy share", f"{fp32_busy / sum(fp32_s):.0%}"))
        for label, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            try:
                masks, secs, busy, _ = _track(model, short, gpu, dtype, args.short)
            except Exception as err:  # a dtype the GPU cannot run: say so in the table
                rows.append((f"CUDA {label}", f"failed: {type(err).__name__}: {err}"[:80]))
                continue
            rows.append((f"CUDA {label} vs CUDA fp32: mean IoU", f"{_iou(masks, fp32):.4f}"))
            speed = np.median(fp32_s[1:]) / np.median(secs[1:])
            rows.append(
                (
                    f"CUDA {label} s/frame (median), speed-up",
                    f"{np.median(secs[1:]):.4f}, {speed:.2f}x",
                )
            )
            rows.append((f"CUDA {label} GPU-busy share", f"{busy / sum(secs):.0%}"))
        dtype = torch.bfloat16 if half_precision(capability) == "bf16" else None
        start = time.perf_counter()
        _, secs, busy, peak = _track(model, long_, gpu, dtype, args.frames)
        total = time.perf_counter() - start
        rows.append(
            (f"{args.frames}-frame run ({'bf16' if dtype else 'fp32'}): seconds", f"{total:.1f}")
        )
        rows.append((f"{args.frames}-frame run: peak GPU memory", f"{peak / 2**20:.0f} MiB"))
        rows.append((f"{args.frames}-frame run: GPU-busy share", f"{busy / sum(secs):.0%}"))
        del model
        torch.cuda.empty_cache()
        try:
            start = time.perf_counter()
            vos = build_predictor(spec, ckpt, device=gpu, compile="vos")
            rows.append(
                (
                    "vos build (returns before compiling): seconds",
                    f"{time.perf_counter() - start:.1f}",
                )
            )
            gate = vos.sam2web_vos  # compiles in the background (sam2web.tracking.vos)
            gate.done.wait()
            if gate.error:
                raise RuntimeError(gate.error)
            rows.append(("vos background compile: seconds", f"{gate.seconds:.1f}"))
            _, secs, busy, _ = _track(vos, short, gpu, dtype, args.short)
            rows.append(
                (
                    "vos s/frame (median), GPU-busy share",
                    f"{np.median(secs[1:]):.4f}, {busy / sum(secs):.0%}",
                )
            )
        except Exception as err:
            rows.append(("vos compile", f"failed: {type(err).__name__}: {err}"[:80]))
    print(
        f"## {name} (compute capability {capability[0]}.{capability[1]}), {spec.key}, "
        f"torch {torch.__version__}, {'checkpoint ' + str(args.checkpoint) if args.checkpoint else 'random weights'}"
    )
    print("| measure | value |\n|---|---:|")
    for key, value in rows:
        print(f"| {key} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
