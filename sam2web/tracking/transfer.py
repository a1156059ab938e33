"""A tracked frame's masks and scores, copied from the model's device to the CPU in one go.

sam2 gives each tracked frame's mask logits for every object as one ``(N, 1, H, W)`` tensor
on the model's device, and each object's score logit as a one-element tensor in its state.
Reading them object by object (``(logits[i, 0] > 0).cpu()``, ``float(score)``) costs one
copy and one wait for the GPU per object and per value. :func:`start_copy` instead
thresholds all masks on the device and starts one copy of the masks and one of the scores;
on CUDA both go into page-locked (pinned) memory with ``non_blocking=True`` and a CUDA event
marks their end, so the host only waits, in :meth:`FrameCopy.result`, when it needs the
values. On a CPU nothing is copied: the arrays are the thresholded tensors themselves,
exactly what the per-object reads gave.

The three device operations are module functions (:func:`copies_async`,
:func:`pinned_empty`, :func:`copy_async`, :func:`record_event`) so that tests can stand in
for a GPU with plain CPU tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def copies_async(device: torch.device) -> bool:
    """Whether copies from ``device`` to the CPU can run asynchronously (CUDA)."""
    return device.type == "cuda"


def pinned_empty(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised page-locked CPU tensor (from torch's caching host allocator)."""
    import torch

    return torch.empty(tuple(shape), dtype=dtype, device="cpu", pin_memory=True)


def copy_async(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Start copying ``src`` (on the GPU) into ``dst`` (pinned) on the current stream."""
    dst.copy_(src, non_blocking=True)


def record_event(device: torch.device):
    """A CUDA event recorded on ``device``'s current stream, after the copies started."""
    import torch

    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


class FrameCopy:
    """One frame's masks and scores on their way to the CPU (see :func:`start_copy`)."""

    def __init__(self, obj_ids, masks, scores, present: list[bool], event, staged: bool):
        self.obj_ids = [int(o) for o in obj_ids]
        self._masks = masks  # (N, H, W) bool CPU tensor (pinned while staged)
        self._scores = scores  # (k,) float32 CPU tensor of the present scores, or None
        self._present = present
        self._event = event
        self._staged = staged  # the tensors are pinned buffers still being filled

    def result(self) -> tuple[dict[int, np.ndarray], dict[int, float]]:
        """Wait for the copies (where they run asynchronously) and return
        ``({obj_id: (H, W) bool mask}, {obj_id: score logit})``; a score the state has no
        output for is NaN."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        masks = self._masks.numpy()
        if self._staged:
            # Pinned memory is scarce: hand out pageable copies and let the pinned buffers
            # go back to torch's cache at once.
            masks = masks.copy()
        values = iter(self._scores.tolist() if self._scores is not None else [])
        scores = [float(next(values)) if p else math.nan for p in self._present]
        return (
            {oid: masks[i] for i, oid in enumerate(self.obj_ids)},
            dict(zip(self.obj_ids, scores, strict=True)),
        )


def start_copy(obj_ids, logits: torch.Tensor, scores: list[torch.Tensor | None]) -> FrameCopy:
    """Threshold a frame's mask logits (``(N, 1, H, W)``, object ``i`` is ``obj_ids[i]``) at
    0 on their device and start copying them, and ``scores`` (one-element tensors, None
    where the state holds no output), to the CPU; :meth:`FrameCopy.result` gives them."""
    import torch

    if len(scores) != len(obj_ids) or logits.shape[0] != len(obj_ids):
        raise ValueError("one mask and one score per object are needed")
    binary = logits[:, 0] > 0.0
    present = [s is not None for s in scores]
    found = [s.float().reshape(-1)[0] for s in scores if s is not None]
    values = torch.stack(found) if found else None
    if not copies_async(binary.device):
        cpu_values = values.cpu() if values is not None else None
        return FrameCopy(obj_ids, binary.cpu(), cpu_values, present, None, False)
    host_masks = pinned_empty(binary.shape, torch.bool)
    copy_async(host_masks, binary)
    host_values = None
    if values is not None:
        host_values = pinned_empty(values.shape, values.dtype)
        copy_async(host_values, values)
    return FrameCopy(obj_ids, host_masks, host_values, present, record_event(binary.device), True)


def copy_frame(state: dict, frame_idx: int, obj_ids, logits: torch.Tensor) -> FrameCopy:
    """:func:`start_copy` of a tracked frame's masks and its objects' scores in ``state``
    (what :func:`~sam2web.tracking.sam2state.object_score` reads)."""
    from .sam2state import score_tensor

    return start_copy(obj_ids, logits, [score_tensor(state, frame_idx, o) for o in obj_ids])
