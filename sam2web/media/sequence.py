"""Image sequences (a single image, a zip of images, a TIFF stack) become frames.

A :class:`FrameSequence` reads its frames one at a time in their own dtype;
:func:`ingest_sequence` checks that they all have one size and one bit depth and writes
them as 8-bit RGB with one rule for the whole sequence (:mod:`.stretch`). Gray becomes RGB
by repeating the channel; an alpha channel is dropped (noted). Without a rate from the file
or the user, time stamps use one frame per second.
"""

from __future__ import annotations

import numpy as np

from ..errors import MediaError
from ..types import VideoInfo
from .folder import FrameWriter, finish_info
from .limits import Limiter, display_name
from .stretch import depth_words, gray_to_rgb, stretch_channels, stretch_stack

SEQUENCE_FPS = 1.0  # time stamps of image sequences unless the user gives a rate


class FrameSequence:
    """Frames of an image sequence, read one at a time in native dtype.

    ``read(i)`` returns (H, W) or (H, W, C) with C in 1..4, upright. ``label(i)`` names the
    frame in messages (not escaped)."""

    count: int
    notes: list[str]
    fps: float | None = None  # frame rate the file states, if any
    pixel_size: float | None = None  # pixel width in pixel_unit the file states, if any
    pixel_unit: str | None = None
    stretch_per_channel = False  # scale each colour channel with its own range

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def final_notes(self) -> list[str]:
        """Notes known once every frame was read."""
        return list(self.notes)

    def label(self, index: int) -> str:
        return f"frame {index + 1}"


def ingest_sequence(
    seq: FrameSequence,
    writer: FrameWriter,
    lim: Limiter,
    name: str,
    fps_override: float | None,
    kind: str,
) -> VideoInfo:
    """Writes every frame of ``seq``, scaling high bit depths with one rule (:mod:`.stretch`)."""
    lim.check_frames(seq.count)
    notes: list[str] = []
    alpha_dropped = False
    first: np.ndarray | None = None

    def prepared(index: int) -> np.ndarray:
        nonlocal alpha_dropped, first
        if index == 0 and first is not None:
            return first
        raw = seq.read(index)
        if raw.ndim not in (2, 3) or 0 in raw.shape:
            raise MediaError(
                f"Image '{display_name(seq.label(index))}' holds no picture sam2web can "
                "show (it may be damaged); save it again and upload it."
            )
        img, had_alpha = _drop_alpha(raw)
        alpha_dropped |= had_alpha
        if first is None:
            lim.check_pixels(img.shape[1], img.shape[0])
            first = img
        elif img.shape[:2] != first.shape[:2]:
            raise MediaError(
                f"All images must have the same size; image "
                f"'{display_name(seq.label(index))}' is {img.shape[1]}x{img.shape[0]} but "
                f"the first is {first.shape[1]}x{first.shape[0]}; resize them to one size "
                "and upload them again."
            )
        elif img.dtype != first.dtype:
            raise MediaError(
                f"All images must have the same bit depth; image "
                f"'{display_name(seq.label(index))}' is {depth_words(img.dtype)} but the "
                f"first is {depth_words(first.dtype)}; save them alike and upload them "
                "again."
            )
        return img

    head = prepared(0)
    progress = writer.progress
    if head.dtype == np.uint8:
        progress.total = seq.count
        for i in range(seq.count):
            writer.add(gray_to_rgb(prepared(i)))
    elif head.dtype == np.bool_:
        progress.total = seq.count
        for i in range(seq.count):
            writer.add(gray_to_rgb(prepared(i).astype(np.uint8) * 255))
    elif seq.stretch_per_channel and head.ndim == 3:
        notes.extend(stretch_channels(seq.count, prepared, writer, head))
    else:
        notes.append(stretch_stack(seq.count, prepared, writer, head))
    writer.finish()
    if alpha_dropped:
        notes.append(
            "The alpha (transparency) channel was dropped; sam2web works on opaque RGB frames."
        )
    notes = seq.final_notes() + notes
    fps, nominal = (seq.fps, False) if seq.fps else (SEQUENCE_FPS, fps_override is None)
    return finish_info(
        writer,
        name,
        kind,
        fps,
        fps_override,
        notes,
        nominal=nominal,
        pixel_size=seq.pixel_size,
        pixel_unit=seq.pixel_unit,
    )


def _drop_alpha(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """(H, W), (H, W, 1..4) -> (H, W) gray or (H, W, 3) colour, and whether alpha was cut."""
    if img.ndim == 2:
        return img, False
    channels = img.shape[2]
    if channels == 1:
        return img[:, :, 0], False
    if channels == 2:
        return img[:, :, 0], True
    if channels == 3:
        return img, False
    if channels == 4:
        return img[:, :, :3], True
    raise MediaError(
        f"Images with {channels} channels cannot be shown; save them as gray, "
        "RGB or RGBA images and upload them again."
    )
