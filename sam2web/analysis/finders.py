"""Finding objects without clicks: moving objects over a still background, and bright or
dark objects on a plain field.

* :func:`find_moving`: a background model made from frames sampled evenly across the video
  (their per-pixel median; OpenCV's MOG2 fed with the same samples kept a ghost of the
  first sample and missed objects, as ``benchmarks/bench_finders.py`` measures), the chosen frame's difference from it with
  the global brightness change taken out (a slow lighting drift), cleaned with a morphological
  opening and closing and its holes filled, touching objects split, and the ``count`` largest
  blobs of ``min_area`` to ``max_area`` pixels as numbered :class:`Proposal` records.
* :func:`find_contrast`: a threshold (Otsu's, or the user's) for bright or dark objects,
  the same cleaning, touching objects split, small ones dropped: a label image (uint16,
  0 = background, labels 1..n by decreasing area).

Touching objects are split with a distance transform and a watershed from its maxima that
stand out by at least ``split_depth`` pixels (scikit-image's ``h_maxima`` and
``watershed``), so one convex object is never cut. Every refusal is one sentence
(:class:`~sam2web.errors.PromptError`) and nothing else happens. Arrays are [row, col];
boxes and centroids are (x, y) pixels of the original frame (:mod:`sam2web.types`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import PromptError

BACKGROUNDS = ("median", "mog2")
POLARITIES = ("bright", "dark")
# A pixel whose difference from the background exceeds this many grey levels (or this many
# times the noise, whichever is larger) moves.
MOTION_LEVEL = 25.0
NOISE_FACTOR = 5.0
# The sampled frames must differ from the background somewhere, on this fraction of pixels
# at least, or the video is still.
STILL_FRACTION = 1e-4


@dataclass(frozen=True)
class FinderSettings:
    """What the user chose. ``count``: how many objects to propose (the largest);
    ``min_area`` / ``max_area``: blob sizes in pixels kept (None: no upper limit);
    ``max_blobs``: more blobs than this in the size range is refused (noise, not
    animals); ``split_depth``: pixels a distance-transform peak must stand out to start an
    object of its own (0: never split)."""

    count: int = 1
    min_area: int = 30
    max_area: int | None = None
    max_blobs: int = 50
    split_depth: float = 2.0
    samples: int = 25  # motion: frames sampled for the background
    threshold: float | None = None  # contrast: grey level; None: Otsu's
    polarity: str = "bright"  # contrast: "bright" or "dark" objects

    def check(self) -> FinderSettings:
        if not isinstance(self.count, int) or not 1 <= self.count <= self.max_blobs:
            raise PromptError(f"Ask for 1 to {self.max_blobs} objects.")
        if self.min_area < 1 or (self.max_area is not None and self.max_area < self.min_area):
            raise PromptError("The minimum area must be at least 1 pixel and at most the maximum.")
        if self.polarity not in POLARITIES:
            raise PromptError("Choose bright or dark objects.")
        if self.threshold is not None and not 0 <= self.threshold <= 255:
            raise PromptError("The threshold must be a grey level from 0 to 255.")
        if self.samples < 3:
            raise PromptError("Sample at least 3 frames for the background.")
        return self


@dataclass(frozen=True)
class Proposal:
    """One found object: ``number`` from 1 (largest first), its ``box`` (x0, y0, x1, y1)
    enclosing its pixels, ``centroid`` (x, y) and ``area`` in pixels, and its ``mask``
    (bool [row, col] of the frame's size)."""

    number: int
    box: tuple[float, float, float, float]
    centroid: tuple[float, float]
    area: int
    mask: np.ndarray


# ---------------------------------------------------------------------------- motion
def sample_indices(num_frames: int, samples: int) -> list[int]:
    """``samples`` frame indices spread evenly over the video (all frames if fewer)."""
    if num_frames <= samples:
        return list(range(num_frames))
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, samples)})


def background_model(frames: list[np.ndarray], method: str = "median") -> np.ndarray:
    """The still background (float32 H x W x 3) of RGB ``frames``: their per-pixel median,
    or what OpenCV's MOG2 learns from them."""
    if method == "mog2":
        mog = cv2.createBackgroundSubtractorMOG2(
            history=len(frames), varThreshold=16, detectShadows=False
        )
        for frame in frames:
            mog.apply(frame, learningRate=1.0 / len(frames))
        return mog.getBackgroundImage().astype(np.float32)
    return np.median(np.stack(frames), axis=0).astype(np.float32)


def motion_map(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """|frame - background| (float32 H x W), the largest over the colour channels, after
    each channel's median difference (a global brightness change) is taken out."""
    diff = frame.astype(np.float32) - background
    offset = np.median(diff.reshape(-1, diff.shape[-1]), axis=0)
    return np.abs(diff - offset).max(axis=2)


def moving_pixels(change: np.ndarray) -> np.ndarray:
    """Pixels that moved: a change above :data:`MOTION_LEVEL` and above
    :data:`NOISE_FACTOR` times the noise (the median absolute change, as a sigma)."""
    sigma = 1.4826 * float(np.median(change))
    return change > max(MOTION_LEVEL, NOISE_FACTOR * sigma)


def find_moving(
    read_frame: Callable[[int], np.ndarray],
    num_frames: int,
    frame_idx: int,
    settings: FinderSettings,
) -> list[Proposal]:
    """The moving objects on frame ``frame_idx`` (see the module docstring); ``read_frame(i)``
    gives frame i as RGB uint8 (H, W, 3). Refused in one sentence: a still video, a frame
    without motion, more blobs than ``settings.max_blobs``."""
    settings.check()
    indices = sample_indices(num_frames, settings.samples)
    if len(indices) < 3:
        raise PromptError("Finding moving objects needs a video of at least 3 frames.")
    frames = [read_frame(i) for i in indices]
    background = background_model(frames)
    if not any(moving_pixels(motion_map(f, background)).mean() > STILL_FRACTION for f in frames):
        raise PromptError(
            "Nothing moves in this video (its frames match the background), so moving "
            "objects cannot be found; use the contrast finder or click the objects."
        )
    chosen = frames[indices.index(frame_idx)] if frame_idx in indices else read_frame(frame_idx)
    foreground = clean(moving_pixels(motion_map(chosen, background)))
    labels = split_touching(foreground, settings.split_depth)
    blobs = _blobs(labels, settings)
    if not blobs:
        raise PromptError(
            f"Nothing moves on frame {frame_idx} (no moving blob of {_sizes(settings)}); "
            "choose a frame where the objects are away from where they rest, or change the areas."
        )
    return _proposals(labels, blobs[: settings.count])


# ---------------------------------------------------------------------------- contrast
def find_contrast(image: np.ndarray, settings: FinderSettings) -> np.ndarray:
    """A label image (uint16 [row, col], 0: background, 1..n by decreasing area) of the
    bright or dark objects of ``image`` (RGB or grey uint8), at most ``settings.count``
    of them. Refused in one sentence: no object, more than ``settings.max_blobs``."""
    from skimage.filters import threshold_otsu

    settings.check()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    grey = cv2.GaussianBlur(grey, (0, 0), 1.0)
    if settings.threshold is None and grey.min() == grey.max():
        raise PromptError("The frame is one flat grey, so no object stands out on it.")
    level = threshold_otsu(grey) if settings.threshold is None else settings.threshold
    objects = grey > level if settings.polarity == "bright" else grey < level
    labels = split_touching(clean(objects), settings.split_depth)
    blobs = _blobs(labels, settings)
    if not blobs:
        raise PromptError(
            f"No {settings.polarity} object of {_sizes(settings)} stands out at grey level "
            f"{level:.0f}; change the threshold, the polarity or the areas."
        )
    out = np.zeros(labels.shape, dtype=np.uint16)
    for new, (label, _area) in enumerate(blobs[: settings.count], start=1):
        out[labels == label] = new
    return out


def proposals_from_labels(labels: np.ndarray) -> list[Proposal]:
    """The labels of a label image as proposals, numbered by label."""
    return _proposals(labels, [(int(v), 0) for v in np.unique(labels) if v])


# ---------------------------------------------------------------------------- shared
def clean(mask: np.ndarray) -> np.ndarray:
    """``mask`` with specks removed (opening), gaps closed (closing) and holes filled."""
    from scipy.ndimage import binary_fill_holes

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    return binary_fill_holes(m)


def split_touching(mask: np.ndarray, depth: float) -> np.ndarray:
    """Labels (int32) of ``mask``'s connected parts, each part cut by a watershed of its
    distance transform where it has several maxima standing ``depth`` pixels out."""
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    parts = label(mask, connectivity=2)
    if depth <= 0 or not parts.any():
        return parts
    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # The top of one peak can fall on pixels a little apart (a rasterised ridge): pixels
    # of the maxima within ``depth`` of each other start one object.
    size = 2 * int(np.ceil(depth)) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    tops = cv2.dilate(h_maxima(distance, depth).astype(np.uint8), kernel).astype(bool) & mask
    peaks = label(tops, connectivity=2)
    split = watershed(-distance, peaks, mask=mask)
    # A part without a peak of its own (smaller than ``depth``) keeps its own label.
    lost = (split == 0) & mask
    if lost.any():
        split[lost] = parts[lost] + split.max()
    return split


def _blobs(labels: np.ndarray, settings: FinderSettings) -> list[tuple[int, int]]:
    """(label, area) of the labels in the size range, largest first (ties by label);
    more than ``max_blobs`` is refused."""
    areas = np.bincount(labels.ravel())
    kept = [
        (int(v), int(a))
        for v, a in enumerate(areas)
        if v and a >= settings.min_area and (settings.max_area is None or a <= settings.max_area)
    ]
    if len(kept) > settings.max_blobs:
        raise PromptError(
            f"The frame has {len(kept)} blobs of {_sizes(settings)}, more than the "
            f"{settings.max_blobs} allowed; raise the minimum area or choose another frame."
        )
    return sorted(kept, key=lambda b: (-b[1], b[0]))


def _proposals(labels: np.ndarray, blobs: list[tuple[int, int]]) -> list[Proposal]:
    out = []
    for number, (label, _area) in enumerate(blobs, start=1):
        mask = labels == label
        rows, cols = np.nonzero(mask)
        box = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
        centroid = (float(cols.mean() + 0.5), float(rows.mean() + 0.5))
        out.append(Proposal(number, box, centroid, int(mask.sum()), mask))
    return out


def _sizes(settings: FinderSettings) -> str:
    if settings.max_area is None:
        return f"at least {settings.min_area} pixels"
    return f"{settings.min_area} to {settings.max_area} pixels"
