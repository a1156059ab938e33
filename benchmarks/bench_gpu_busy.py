"""The share of wall time the GPU is busy while sam2web's tracking session propagates.

    python benchmarks/bench_gpu_busy.py [--checkpoint FILE] [--model sam2.1-tiny]
        [--frames 200] [--objects 2]

A :class:`~sam2web.tracking.tracker.TrackingSession` (the app's path: lazy frames with
read-ahead, the batched mask copy, the mask store's writes) tracks a synthetic clip under
the precision sessions get by default, inside ``torch.profiler``. The GPU-busy share is the
union of the intervals of every GPU activity the profiler saw (kernels, copies, memsets)
over the wall time of the propagation; the rest is time the GPU waited for the host. Without
--checkpoint the real architecture runs with seeded random weights (shapes and speed are
real). Without a CUDA GPU it says so in one sentence and exits with status 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NO_GPU = "No CUDA GPU is visible to PyTorch here, so the GPU-busy share is not measured."


def busy_union_us(intervals: list[tuple[float, float]]) -> float:
    """Microseconds covered by at least one of the (start, end) intervals."""
    total, end_so_far = 0.0, None
    for start, end in sorted(intervals):
        if end_so_far is None or start > end_so_far:
            total += end - start
            end_so_far = end
        elif end > end_so_far:
            total += end - end_so_far
            end_so_far = end
    return total


def gpu_intervals(profile) -> list[tuple[float, float]]:
    """(start, end) in microseconds of every GPU activity in a finished profile."""
    from torch.autograd import DeviceType

    out = []
    for event in profile.events():
        if event.device_type == DeviceType.CUDA:
            out.append((float(event.time_range.start), float(event.time_range.end)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--model", default="sam2.1-tiny")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--objects", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.gpu_check import _frames
    from sam2web.media.folder import FrameFolder
    from sam2web.media.ingest import ingest
    from sam2web.media.limits import MediaLimits
    from sam2web.tracking.checkpoints import get_spec
    from sam2web.tracking.model import autocast_context, build_predictor, write_random_checkpoint
    from sam2web.tracking.tracker import TrackingSession
    from sam2web.types import Click

    gpu = torch.device("cuda")
    spec = get_spec(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = args.checkpoint or write_random_checkpoint(tmp / "random.pt", spec.key)
        clip = tmp / "clip"
        clip.mkdir()
        _frames(clip, args.frames)
        with zipfile.ZipFile(tmp / "clip.zip", "w") as archive:
            for frame in sorted(clip.iterdir()):
                archive.write(frame, frame.name)
        limits = MediaLimits(
            max_bytes=1 << 34,
            max_frames=1 << 20,
            max_duration_s=1e9,
            max_pixels=1 << 28,
            max_zip_ratio=1000,
        )
        ingest(tmp / "clip.zip", tmp / "frames", limits=limits)
        folder = FrameFolder(tmp / "frames")
        predictor = build_predictor(spec, ckpt, device=gpu)
        session = TrackingSession(
            predictor,
            folder.frame_paths(),
            folder.info,
            tmp / "masks",
            autocast=lambda: autocast_context(gpu),
        )
        w, h = folder.info.width, folder.info.height
        for i in range(args.objects):
            obj = session.add_object()
            session.add_click(0, obj.obj_id, Click(w * (i + 1) / (args.objects + 1), h / 2))
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            frames = sum(1 for _ in session.propagate("forward"))
            torch.cuda.synchronize()
            wall = time.perf_counter() - start
        busy = busy_union_us(gpu_intervals(prof)) / 1e6
    print(f"| GPU | {torch.cuda.get_device_name(gpu)} |")
    print("|---|---|")
    print(f"| frames, objects | {frames}, {args.objects} |")
    print(f"| wall s (s/frame) | {wall:.2f} ({wall / max(frames, 1):.4f}) |")
    print(f"| GPU-busy s | {busy:.2f} |")
    print(f"| GPU-busy share | {busy / wall:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
