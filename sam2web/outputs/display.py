"""Frames as the page shows them: stored masks blended in, prompts drawn, scaled to fit.

The page shows each frame scaled so that its longer side is :data:`DISPLAY_LONG_SIDE`
pixels (small videos enlarged for precise clicks, large ones reduced so each update stays
small). A click on the shown image is converted back with :func:`to_original`; everything
else in sam2web works in (x, y) pixels of the original frame (:mod:`sam2web.types`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import cv2
import numpy as np

from ..analysis.identity import fixed_view, fixes_in_force, shown_object
from ..tracking.tracker import TrackingSession
from ..types import VideoInfo
from .render import OverlayStyle, draw_overlay, draw_prompts, gallery_indices, recent_centroids

DISPLAY_LONG_SIDE = 960  # pixels of the longer side of the frame shown in the page
MAX_ENLARGE = 6.0
GALLERY_LONG_SIDE = 240  # pixels of the longer side of a gallery thumbnail


def display_scale(width: int, height: int) -> float:
    """Factor from original-frame pixels to the pixels of the image shown in the page."""
    return min(DISPLAY_LONG_SIDE / max(width, height), MAX_ENLARGE)


def to_original(info: VideoInfo, x_display: float, y_display: float) -> tuple[float, float]:
    """A position in the displayed image -> (x, y) pixels of the original frame, kept
    inside the frame."""
    k = display_scale(info.width, info.height)
    return (
        min(max(x_display / k, 0.0), float(info.width)),
        min(max(y_display / k, 0.0), float(info.height)),
    )


@dataclass(frozen=True)
class PendingCorner:
    """The first corner of a box being drawn: (x, y) pixels on ``frame``, for ``obj_id``."""

    frame: int
    x: float
    y: float
    obj_id: int | None


def render_frame(
    read_rgb: Callable[[int], np.ndarray],
    tracking: TrackingSession | None,
    style: OverlayStyle,
    frame_idx: int,
    scale: float = 1.0,
    show_prompts: bool = True,
    pending: PendingCorner | None = None,
    hidden: Collection[int] = (),
    active: int | None = None,
) -> np.ndarray:
    """The frame with stored masks blended in and this frame's prompts drawn, resized by
    ``scale`` (masks are drawn at the original size, markers at the shown size).

    The page's own look, which no file has: the objects in ``hidden`` are left out (masks,
    trails and prompts) and ``active`` is outlined thicker (``draw_overlay``'s
    ``highlight``)."""
    frame = read_rgb(frame_idx)
    objects = tracking.objects if tracking is not None else {}
    if hidden:
        objects = {k: v for k, v in objects.items() if k not in hidden}
    if tracking is not None:
        store = fixed_view(tracking.store, tracking.history)
        result = store.read(int(frame_idx))
        if result is not None:
            masks = {k: v for k, v in result.masks.items() if k in objects}
            trails = None
            if style.trails > 0:
                trails = recent_centroids(store, int(frame_idx), style.trails, objects)
            frame = draw_overlay(frame, masks, objects, style, trails, highlight=active)
    if scale != 1.0:
        h, w = frame.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
        frame = cv2.resize(frame, size, interpolation=interp)
    if show_prompts and tracking is not None:
        frame = _draw_frame_prompts(frame, tracking, frame_idx, scale, hidden)
        if pending is not None and pending.frame == frame_idx:
            obj = objects.get(pending.obj_id)
            color = obj.color if obj is not None else (255, 255, 255)
            x, y = pending.x * scale, pending.y * scale
            frame = draw_prompts(frame, [], (x - 2, y - 2, x + 2, y + 2), color)
    return frame


def _draw_frame_prompts(
    frame: np.ndarray,
    tracking: TrackingSession,
    frame_idx: int,
    scale: float,
    hidden: Collection[int] = (),
) -> np.ndarray:
    """The frame's prompts, each in the colour of the object it is shown as (a prompt is
    given to the tracker object shown as that object, see
    :func:`sam2web.analysis.identity.tracker_object`)."""
    objects = tracking.objects
    fixes = fixes_in_force(tracking.history)
    for (f, oid), prompts in tracking.prompts.items():
        if f != frame_idx or oid not in objects:
            continue
        shown = objects.get(shown_object(fixes, oid, f), objects[oid])
        if shown.obj_id in hidden:
            continue
        box = None
        if prompts.box is not None:
            b = prompts.box
            box = (b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale)
        clicks = [(c.x * scale, c.y * scale, c.positive) for c in prompts.clicks]
        frame = draw_prompts(frame, clicks, box, shown.color)
    return frame


def gallery(
    read_rgb: Callable[[int], np.ndarray],
    tracking: TrackingSession | None,
    style: OverlayStyle,
    info: VideoInfo,
    max_items: int = 24,
) -> list[tuple[np.ndarray, str]]:
    """Every N-th frame with its overlay, captioned "frame i", for a quick check of a run."""
    k = min(1.0, GALLERY_LONG_SIDE / max(info.width, info.height))
    return [
        (render_frame(read_rgb, tracking, style, i, scale=k, show_prompts=False), f"frame {i}")
        for i in gallery_indices(info.num_frames, max_items)
    ]
