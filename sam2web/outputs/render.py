"""Drawing masks, prompts, labels and zones on frames.

Frames are uint8 RGB arrays (H, W, 3) indexed [row, col]; masks are boolean (H, W). Points
are (x, y) in original-frame pixels with the origin at the top-left pixel's corner (see
:mod:`sam2web.types`); OpenCV draws in pixel-centre coordinates, so :func:`_cv_point`
subtracts half a pixel.

The MP4 writer and the overlay videos drawn with these are in :mod:`sam2web.outputs.video`.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..analysis.results import centroid_xy
from ..tracking.maskstore import MaskStore
from ..types import RGB, TrackedObject

POSITIVE_COLOR: RGB = (0, 128, 0)  # matplotlib "green", as in SAM2's notebooks
NEGATIVE_COLOR: RGB = (255, 0, 0)  # matplotlib "red"

_SHIFT = 4  # fixed-point bits for sub-pixel drawing with OpenCV
_SCALE = 1 << _SHIFT


ZONE_COLOR = (255, 220, 0)


class Outlined(Protocol):
    """A named region of the frame (a :class:`sam2web.analysis.zones.Zone`)."""

    name: str

    def mask(self, height: int, width: int) -> np.ndarray: ...


@dataclass
class OverlayStyle:
    opacity: float = 0.5  # weight of the object colour inside a mask, 0..1
    contours: bool = True  # outline each mask in its colour
    labels: bool = True  # object name above each mask
    trails: int = 0  # centroid trail length in frames (0 = off)
    zones: tuple[Outlined, ...] = ()  # zones outlined and named on every frame of the video


# ---------------------------------------------------------------------- sizes
def line_thickness(height: int, width: int) -> int:
    """Contour / trail thickness in pixels for a frame size (1 px for small frames, 4 at 1080p)."""
    return max(1, round(min(height, width) / 240))


def marker_radius(height: int, width: int) -> float:
    """Outer radius of a prompt star in pixels."""
    return max(6.0, min(height, width) / 40)


def font_size(height: int, width: int) -> int:
    return max(10, round(min(height, width) / 28))


def _font_candidates() -> list[str]:
    """DejaVu Sans (wide Unicode coverage) from the system or matplotlib's copy."""
    names = ["DejaVuSans-Bold.ttf", "DejaVuSans.ttf"]
    spec = importlib.util.find_spec("matplotlib")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "mpl-data" / "fonts" / "ttf"
        names += [str(folder / n) for n in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf")]
    return names


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for name in _font_candidates():
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:  # Pillow's bundled font covers basic Latin only
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def _cv_point(x: float, y: float) -> tuple[int, int]:
    """(x, y) in corner-origin pixels -> OpenCV fixed-point pixel-centre coordinates."""
    return round((x - 0.5) * _SCALE), round((y - 0.5) * _SCALE)


def check_frame(frame_rgb: np.ndarray) -> np.ndarray:
    """``frame_rgb`` as an array; ValueError unless it is a uint8 RGB frame (H, W, 3)."""
    frame = np.asarray(frame_rgb)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB frame (H, W, 3), got {frame.dtype} {frame.shape}")
    return frame


# ---------------------------------------------------------------------- overlays
@lru_cache(maxsize=64)
def _tint_table(color: RGB, alpha: float) -> np.ndarray:
    """What tinting makes of each value 0..255 of each channel, as an OpenCV look-up
    table (1, 256, 3): rint(value * (1 - alpha) + colour * alpha) in float32, the same
    arithmetic per pixel as tinting each pixel, done once per value."""
    values = np.arange(256, dtype=np.float32)[:, None]
    rgb = np.asarray(color, dtype=np.float32)[None, :]
    return np.rint(values * (1.0 - alpha) + rgb * alpha).astype(np.uint8)[None]


def draw_overlay(
    frame_rgb: np.ndarray,
    masks: Mapping[int, np.ndarray],
    objects: Mapping[int, TrackedObject],
    style: OverlayStyle | None = None,
    trails: Mapping[int, list[tuple[float, float]]] | None = None,
    highlight: int | None = None,
) -> np.ndarray:
    """The frame with each object's mask tinted in its colour; returns a new array.

    Only objects in ``objects`` are drawn, in its order (a later object covers an earlier
    one where masks overlap). Inside a mask, pixel = (1 - opacity) * pixel + opacity *
    colour. Contours are drawn on the mask's own boundary pixels. ``trails`` maps object
    ids to recent centroids (x, y), oldest first; the last ``style.trails`` are joined.
    The object ``highlight`` (the page's active object; None for files) is outlined
    thicker, with contours on or off, and its label edged in white.
    """
    style = style or OverlayStyle()
    frame = check_frame(frame_rgb)
    h, w = frame.shape[:2]
    out = frame.copy()
    alpha = float(np.clip(style.opacity, 0.0, 1.0))
    drawn: list[tuple[TrackedObject, np.ndarray, tuple[slice, slice]]] = []
    for obj_id, obj in objects.items():
        mask = masks.get(obj_id)
        if mask is None:
            continue
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (h, w):
            raise ValueError(f"mask of object {obj_id} is {mask.shape}, frame is {(h, w)}")
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(mask.any(axis=0))
        # Work inside the mask's bounding box: same pixels, a fraction of the frame.
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        inside, region = mask[box], out[box]
        base = np.ascontiguousarray(region)
        tinted = cv2.LUT(base, _tint_table(tuple(int(c) for c in obj.color), alpha))
        # the tinted pixels where the mask is, the frame's elsewhere
        region[...] = cv2.copyTo(tinted, np.ascontiguousarray(inside).view(np.uint8), base)
        drawn.append((obj, mask, box))

    thickness = line_thickness(h, w)
    for obj, mask, box in drawn:
        if style.contours or obj.obj_id == highlight:
            # Contours of the cropped mask, shifted back: the crop holds the whole mask.
            contours, _ = cv2.findContours(
                mask[box].astype(np.uint8),
                cv2.RETR_EXTERNAL,
                cv2.CHAIN_APPROX_NONE,
                offset=(box[1].start, box[0].start),
            )
            # thickness t centred on the boundary pixels; half of it falls outside the mask
            t = 2 * thickness + 1 if obj.obj_id == highlight else thickness
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in obj.color), t)

    if trails and style.trails > 0:
        for obj_id, obj in objects.items():
            points = list(trails.get(obj_id, ()))[-style.trails :]
            if len(points) < 2:
                continue
            pts = np.array([_cv_point(x, y) for x, y in points], dtype=np.int32)
            cv2.polylines(
                out,
                [pts.reshape(-1, 1, 2)],
                False,
                tuple(int(c) for c in obj.color),
                thickness,
                cv2.LINE_AA,
                _SHIFT,
            )

    if style.labels and drawn:
        out = _draw_labels(out, [(obj, mask) for obj, mask, _ in drawn], highlight)
    return out


def _font_scale(width: int, height: int) -> float:
    return max(0.35, min(width, height) / 600)


def draw_zones(
    frame: np.ndarray, zones: Iterable[Outlined], scale: float = 1.0, names: bool = True
) -> np.ndarray:
    """``frame`` (uint8 RGB, shown at ``scale`` times the original size) with each zone's
    outline and name drawn on it; returns a new array."""
    out = np.ascontiguousarray(frame.copy())
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    for zone in zones:
        outline = zone.mask(max(1, round(h / scale)), max(1, round(w / scale))).astype(np.uint8)
        if outline.shape != (h, w):
            outline = cv2.resize(outline, (w, h), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(outline, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, ZONE_COLOR, thick)
        ys, xs = np.nonzero(outline)
        if names and len(xs):
            spot = (int(xs.min()) + 3, int(ys.max()) - 4)  # bottom left, inside the zone
            cv2.putText(
                out, zone.name, spot, cv2.FONT_HERSHEY_SIMPLEX, _font_scale(w, h), ZONE_COLOR,
                thick, cv2.LINE_AA,
            )  # fmt: skip
    return out


def _draw_labels(
    frame: np.ndarray,
    drawn: list[tuple[TrackedObject, np.ndarray]],
    highlight: int | None = None,
) -> np.ndarray:
    """Object names on filled tags in the object colour, centred above each mask's top
    edge (or just inside it when there is no room above); the ``highlight`` object's tag
    is edged in white."""
    h, w = frame.shape[:2]
    font = _font(font_size(h, w))
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    pad = max(1, font_size(h, w) // 6)
    for obj, mask in drawn:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        top, cx = int(rows[0]), (int(cols[0]) + int(cols[-1]) + 1) / 2
        text = obj.name
        left, upper, right, lower = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * pad, lower - upper + 2 * pad
        x0 = int(round(min(max(cx - tw / 2, 0), max(w - tw, 0))))
        y0 = top - th - pad if top - th - pad >= 0 else top + pad
        y0 = int(min(max(y0, 0), max(h - th, 0)))
        r, g, b = obj.color
        ink = (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)
        edge = (255, 255, 255) if obj.obj_id == highlight else None
        draw.rectangle((x0, y0, x0 + tw - 1, y0 + th - 1), fill=(r, g, b), outline=edge, width=pad)
        draw.text((x0 + pad - left, y0 + pad - upper), text, font=font, fill=ink)
    return np.asarray(image).copy()


def _star(x: float, y: float, radius: float) -> np.ndarray:
    """Vertices of a five-pointed star (point up) as OpenCV fixed-point coordinates."""
    inner = radius * 0.382  # the ratio of matplotlib's "*" marker
    pts = []
    for k in range(10):
        r = radius if k % 2 == 0 else inner
        angle = -math.pi / 2 + k * math.pi / 5
        pts.append(_cv_point(x + r * math.cos(angle), y + r * math.sin(angle)))
    return np.array(pts, dtype=np.int32).reshape(-1, 1, 2)


def draw_prompts(
    frame_rgb: np.ndarray,
    clicks: Iterable[tuple[float, float, bool]],
    box: tuple[float, float, float, float] | None,
    color: RGB,
) -> np.ndarray:
    """The frame with prompts drawn as SAM2's notebooks show them; returns a new array.

    ``clicks`` are (x, y, positive): green stars for positive, red for negative, edged in
    white. ``box`` is (x0, y0, x1, y1) and is outlined in ``color`` (the object's colour).
    """
    frame = check_frame(frame_rgb)
    h, w = frame.shape[:2]
    out = frame.copy()
    thickness = line_thickness(h, w)
    if box is not None:
        x0, y0, x1, y1 = box
        p0 = _cv_point(min(x0, x1) + 0.5, min(y0, y1) + 0.5)
        p1 = _cv_point(max(x0, x1) - 0.5, max(y0, y1) - 0.5)
        cv2.rectangle(out, p0, p1, tuple(int(c) for c in color), thickness + 1, cv2.LINE_AA, _SHIFT)
    radius = marker_radius(h, w)
    edge = max(1, round(radius / 8))
    for x, y, positive in clicks:
        star = _star(float(x), float(y), radius)
        cv2.fillPoly(
            out, [star], POSITIVE_COLOR if positive else NEGATIVE_COLOR, cv2.LINE_AA, _SHIFT
        )
        cv2.polylines(out, [star], True, (255, 255, 255), edge, cv2.LINE_AA, _SHIFT)
    return out


def recent_centroids(
    store: MaskStore, frame_idx: int, length: int, obj_ids: Iterable[int]
) -> dict[int, list[tuple[float, float]]]:
    """Centroids (x, y) of each object on frames frame_idx - length + 1 .. frame_idx that
    have a stored non-empty mask, oldest first: the ``trails`` input of draw_overlay."""
    obj_ids = list(obj_ids)
    trails: dict[int, list[tuple[float, float]]] = {i: [] for i in obj_ids}
    for f in range(max(0, frame_idx - length + 1), frame_idx + 1):
        for obj_id in obj_ids:
            c = centroid_xy(store.mask(f, obj_id))
            if c is not None:
                trails[obj_id].append(c)
    return trails


def gallery_indices(num_frames: int, max_items: int = 24) -> list[int]:
    """Up to ``max_items`` evenly spaced frame indices, first and last frame included."""
    if num_frames <= 0 or max_items <= 0:
        return []
    if num_frames <= max_items:
        return list(range(num_frames))
    if max_items == 1:
        return [0]
    picks = np.linspace(0, num_frames - 1, max_items)
    return sorted({int(round(p)) for p in picks})
