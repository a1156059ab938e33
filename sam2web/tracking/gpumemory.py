"""Whether a CUDA GPU has the memory for a start with many objects, asked before the model
runs, so that the user reads a sentence instead of an out-of-memory error.

The estimate is what sam2 1.1.0's video predictor keeps per object and tracked frame on the
device (``sam2_video_predictor._run_memory_encoder`` and ``_run_single_frame_inference``):
the memory features, 64 channels at a sixteenth of the processing size per side, stored in
bfloat16 (``maskmem_features.to(torch.bfloat16)``), and the low-resolution mask logits, one
channel at a quarter of the size per side in float32. At 1024 px: 64 x 64 x 64 x 2 bytes +
256 x 256 x 4 bytes = 768 KiB per object and frame. The memory position encoding is one
shared tensor and the object pointers are 256 floats; both are left out. A head-room factor
covers the activations of the frame being computed.
"""

from __future__ import annotations

from ..errors import TrackingError

HEADROOM = 1.5
"""Free memory must exceed the estimate by this factor."""

MIN_KEPT_FRAMES = 16
"""Frames whose memory sam2 reads at least (7 memory frames, prompted frames, slack)."""


def bytes_per_object_frame(image_size: int) -> int:
    """Device bytes sam2 keeps per object and tracked frame at ``image_size`` px."""
    side16, side4 = image_size // 16, image_size // 4
    return 64 * side16 * side16 * 2 + side4 * side4 * 4


def check_memory(device, objects: int, frames: int, image_size: int) -> None:
    """Refuse in one sentence when ``objects`` tracked over ``frames`` kept frames need more
    than the free memory of a CUDA ``device`` (``torch.cuda.mem_get_info``); nothing is
    checked on other devices."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or objects <= 0:
        return
    free, _total = torch.cuda.mem_get_info(device)
    kept = max(MIN_KEPT_FRAMES, int(frames))
    need = objects * kept * bytes_per_object_frame(image_size)
    if need * HEADROOM > free:
        most = int(free / HEADROOM // (kept * bytes_per_object_frame(image_size)))
        raise TrackingError(
            f"{objects} objects over {kept} frames need about {need / 2**30:.1f} GiB of GPU "
            f"memory and {free / 2**30:.1f} GiB is free, so start with at most {most} objects "
            "or a shorter clip."
        )
