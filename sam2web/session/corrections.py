"""Starting and correcting objects with masks, and fixing identities after tracking.

What the page, the API and the CLI do with masks instead of clicks, on a
:class:`~sam2web.tracking.tracker.TrackingSession`:

* :func:`read_labels` and :func:`start_from_labels`: every label of a label image
  (:mod:`sam2web.media.labels`) becomes an object, named after its label, prompted with its mask
  on one frame (SAM 2's mask prompt, recorded as :class:`~sam2web.history.AddMask`). The
  image is read and checked in full before anything changes, so a refused image changes
  nothing.
* :func:`brush_mask`: the layer a user painted on (brush adds, eraser removes), which must
  have the original frame size, as a mask ready for :meth:`TrackingSession.add_mask`.
* :func:`fix_action`: the history action of a swap or merge from a frame on, checked.

Nothing here imports gradio.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..errors import PromptError, SessionClosedError
from ..history import MergeObjects, SwapObjects, resize_mask
from ..media.labels import read_label_image
from ..tracking.gpumemory import check_memory
from ..tracking.tracker import TrackingSession, check_frame, drop_objects_since, object_mark
from ..types import TrackedObject, VideoInfo

FIX_KINDS = ("swap", "merge")

T = TypeVar("T")


def read_labels(
    info: VideoInfo,
    source: bytes | Path,
    frame_idx: int,
    *,
    max_labels: int,
    name: str | None = None,
) -> dict[int, np.ndarray]:
    """{label: mask} of a label image (its bytes or a server-side path) for ``frame_idx``
    of the video ``info`` describes. Raises a one-sentence UserError for a frame the video
    lacks, an unreadable image, one of another size, with no label or with more than
    ``max_labels``; nothing else happens, so a refused image changes nothing."""
    check_frame(info, frame_idx)
    return read_label_image(
        source, size=(info.width, info.height), max_labels=max_labels, name=name
    )


def start_from_labels(
    tracking: TrackingSession,
    labels: dict[int, np.ndarray],
    frame_idx: int,
    on_model: Callable[[Callable[[], T]], T] = lambda fn: fn(),
    target: Callable[[TrackedObject], int] | None = None,
) -> list[TrackedObject]:
    """Add one object per label (named after it), each prompted with its mask on
    ``frame_idx`` (see :func:`read_labels`); returns the new objects in label order.
    ``target(obj)`` is the tracker object the new object's mask goes to (the session's
    identity rule; default: the object itself).

    Each object's prompt is one call of ``on_model`` (one unit on the shared model, so
    other users wait for one object at most, never for the whole image). It is all or
    nothing: when one object fails, the objects already added are taken back (one more
    call of ``on_model``) and the error is raised, so the session is as before. On a CUDA GPU
    the memory the objects will need is checked first (:mod:`sam2web.tracking.gpumemory`)."""
    info = tracking.info
    kept = info.num_frames if not getattr(tracking, "trim", False) else 0
    check_memory(
        tracking.predictor.device,
        len(tracking.objects) + len(labels),
        kept,
        int(tracking.predictor.image_size),
    )
    mark = object_mark(tracking)

    def add(label: int, mask: np.ndarray) -> TrackedObject:
        obj = tracking.add_object(f"label {label}")
        tracking.add_mask(int(frame_idx), obj.obj_id if target is None else target(obj), mask)
        return obj

    added = []
    try:
        for label, mask in labels.items():
            added.append(on_model(functools.partial(add, label, mask)))
    except BaseException:
        with contextlib.suppress(SessionClosedError):  # a closed session is discarded
            on_model(lambda: drop_objects_since(tracking, mark))
        raise
    return added


def brush_mask(layer: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """The mask a painted layer holds: its pixels that are not transparent (an RGBA layer)
    or not black (RGB or grey). The brush paints on the frame at its original ``width`` x
    ``height``, so a layer of any other size (or a missing one) is refused in one sentence
    before anything is made from it."""
    if layer is None:
        raise PromptError("Nothing was painted; paint over the object with the brush first.")
    layer = np.asarray(layer)
    if layer.ndim not in (2, 3):
        raise PromptError("The painted layer is not an image; paint on the frame again.")
    check_layer_size(layer.shape[1], layer.shape[0], width, height)
    if layer.ndim == 3 and layer.shape[2] == 4:
        return layer[:, :, 3] > 0
    if layer.ndim == 3:
        return layer.max(axis=2) > 0
    return layer > 0


def check_layer_size(layer_width: int, layer_height: int, width: int, height: int) -> None:
    """A PromptError when a painted layer is not ``width`` x ``height`` pixels, the size of
    the frame the brush paints on."""
    if (layer_width, layer_height) != (width, height):
        raise PromptError(
            f"The painted layer is {layer_width}x{layer_height} pixels, but the frame is "
            f"{width}x{height}; load the frame into the brush again and paint on it."
        )


def mask_layer(mask: np.ndarray | None, color: tuple[int, int, int], size: tuple[int, int]):
    """An RGBA layer (H, W, 4) of ``size`` (width, height) showing ``mask`` opaque in
    ``color``, transparent elsewhere: what the brush starts from."""
    width, height = size
    layer = np.zeros((height, width, 4), dtype=np.uint8)
    if mask is None:
        return layer
    if mask.shape != (height, width):
        mask = resize_mask(mask, (height, width))
    layer[mask, :3] = color
    layer[mask, 3] = 255
    return layer


def fix_action(kind: str, first: int, second: int, frame_idx: int) -> SwapObjects | MergeObjects:
    """The history action of "swap ``first`` and ``second``" or "merge ``second`` into
    ``first``" from ``frame_idx`` on; a wrong kind or the same object twice is refused in
    one sentence (objects and frame are checked by the tracking session)."""
    if kind not in FIX_KINDS:
        raise PromptError("Choose swap or merge as the identity fix.")
    try:
        first, second, frame_idx = int(first), int(second), int(frame_idx)
    except (TypeError, ValueError):
        raise PromptError("Choose two objects and a frame for the identity fix.") from None
    if first == second:
        raise PromptError(f"Choose two different objects to {kind}.")
    if kind == "swap":
        return SwapObjects(first, second, frame_idx)
    return MergeObjects(first, second, frame_idx)
