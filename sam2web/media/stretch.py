"""Conversion to 8-bit, one rule for a whole stack (TIFF stacks, 16-bit PNG or TIFF images in
a zip).

8-bit data is kept as is. 16-bit, 32-bit integer and floating-point data are scaled with
``lo, hi`` = the 0.1 and 99.9 percentiles of all pixel values of all frames (an even sample
of at most 5 million values; NaN and infinities left out)::

    out = round(clip((v - lo) / (hi - lo), 0, 1) * 255)

If ``hi <= lo`` the minimum and maximum are used instead; if those are equal too, every
pixel becomes 0. NaN becomes 0. The range used is reported in ``VideoInfo.notes``. A colour
composite of microscope channels is scaled channel by channel, each with this rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .folder import FrameWriter
from .limits import fmt_num

STRETCH_PERCENTILES = (0.1, 99.9)
STRETCH_SAMPLE = 5_000_000  # most pixel values looked at to find the scaling range


def stretch_stack(
    count: int, prepared: Callable[[int], np.ndarray], writer: FrameWriter, head: np.ndarray
) -> str:
    """Two passes over the ``count`` frames ``prepared(i)`` gives: find one scaling range
    for the whole stack, then convert; returns the note that says which range was used."""
    progress = writer.progress
    progress.total = 2 * count
    stride = max(1, math.ceil(count * head.size / STRETCH_SAMPLE))
    samples = []
    offset = 0
    for i in range(count):
        flat = prepared(i).reshape(-1)
        samples.append(flat[(-offset) % stride :: stride].astype(np.float64))
        offset += flat.size
        progress.update(i + 1, final=i + 1 == count)
    lo, hi, how = _stretch_range(np.concatenate(samples))
    progress.base = count
    for i in range(count):
        writer.add(gray_to_rgb(_stretch(prepared(i), lo, hi)))
    depth = depth_words(head.dtype).capitalize()
    if how:
        return f"{depth} values scaled to 8-bit: {how} range {_fmt_range(lo, hi)} mapped to 0-255."
    return f"{depth} values are all equal (or not numbers); every pixel was set to 0."


CHANNEL_COLOURS = ("red", "green", "blue")


def stretch_channels(
    count: int, prepared: Callable[[int], np.ndarray], writer: FrameWriter, head: np.ndarray
) -> list[str]:
    """Two passes like the one-range rule, but each of the 3 colour channels gets its own
    range (for composites of microscope channels, whose brightness differs widely)."""
    progress = writer.progress
    progress.total = 2 * count
    channels = head.shape[2]
    stride = max(1, math.ceil(count * head.shape[0] * head.shape[1] / STRETCH_SAMPLE))
    samples: list[list[np.ndarray]] = [[] for _ in range(channels)]
    offset = 0
    for i in range(count):
        flat = prepared(i).reshape(-1, channels)
        for c in range(channels):
            samples[c].append(flat[(-offset) % stride :: stride, c].astype(np.float64))
        offset += flat.shape[0]
        progress.update(i + 1, final=i + 1 == count)
    ranges = [_stretch_range(np.concatenate(s)) for s in samples]
    progress.base = count
    for i in range(count):
        img = prepared(i)
        writer.add(
            np.stack(
                [_stretch(img[..., c], lo, hi) for c, (lo, hi, _) in enumerate(ranges)], axis=-1
            )
        )
    depth = depth_words(head.dtype).capitalize()
    parts = [
        f"{how} range {_fmt_range(lo, hi)} ({CHANNEL_COLOURS[c]})"
        for c, (lo, hi, how) in enumerate(ranges)
        if how
    ]
    if not parts:
        return [f"{depth} values are all equal (or not numbers); every pixel was set to 0."]
    return [f"{depth} values scaled to 8-bit for each channel: {', '.join(parts)} mapped to 0-255."]


def gray_to_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return img


def _stretch_range(sample: np.ndarray) -> tuple[float, float, str]:
    """(lo, hi, description) from a sample of pixel values; description is '' when all
    values are equal or there are none."""
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 0.0, ""
    lo, hi = (float(v) for v in np.percentile(sample, STRETCH_PERCENTILES))
    how = f"{STRETCH_PERCENTILES[0]:g}-{STRETCH_PERCENTILES[1]:g} percentile"
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
        how = "minimum-maximum"
    if hi <= lo:
        return lo, hi, ""
    return lo, hi, how


def _stretch(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """out = round(clip((v - lo) / (hi - lo), 0, 1) * 255); NaN -> 0; hi <= lo -> 0."""
    if hi <= lo:
        return np.zeros(img.shape, dtype=np.uint8)
    values = img.astype(np.float64)
    with np.errstate(invalid="ignore"):
        scaled = np.clip((values - lo) / (hi - lo), 0.0, 1.0) * 255.0
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.rint(scaled).astype(np.uint8)


def _fmt_range(lo: float, hi: float) -> str:
    if lo < 0:
        return f"{fmt_num(lo)} to {fmt_num(hi)}"
    return f"{fmt_num(lo)}-{fmt_num(hi)}"


def depth_words(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    bits = dtype.itemsize * 8
    if dtype.kind == "f":
        return f"{bits}-bit floating-point"
    if dtype.kind == "b":
        return "1-bit"
    if dtype.kind == "i":
        return f"{bits}-bit signed integer" if bits == 8 else f"{bits}-bit integer"
    return f"{bits}-bit"
