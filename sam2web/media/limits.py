"""What one upload may be, and the sentences that refuse it.

:class:`MediaLimits` holds the server's limits on one upload (file size, frames, duration,
pixels per frame, zip ratio); :class:`Limiter` checks a file against them, and every refusal
names the file and the limit in one sentence, with sizes and durations written for people
(``12.3 MB``, ``4.5 minutes``) and the file's name shortened and HTML-escaped.
:data:`DECODE_ERRORS` is what decoders raise for damaged or unusual data: every reader of
uploads and label images catches exactly these and says what is wrong instead.

PIL's guard against decompression bombs stays in force; an image it refuses gets the pixel
limit's message, with the size read from the file's header.
"""

from __future__ import annotations

import html
import io
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from ..errors import LimitError

if TYPE_CHECKING:
    from ..settings import Settings

SUPPORTED = "upload an MP4, MOV, AVI, MKV, WEBM, MPG, GIF, a zip of images or a TIFF stack"


# What decoders raise for damaged or unusual data (tifffile alone raises most of these).
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    RuntimeError,
    NotImplementedError,
    TypeError,
    ArithmeticError,  # a damaged header can hold zero or absurd sizes and offsets
    AssertionError,  # tifffile checks some page chains with assert
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class MediaLimits:
    """What one upload may be: file size in bytes, frame count, duration in seconds,
    pixels per frame, and the unpacked/packed size ratio of zips."""

    max_bytes: int
    max_frames: int
    max_duration_s: float
    max_pixels: int
    max_zip_ratio: float

    @classmethod
    def from_settings(cls, s: Settings) -> MediaLimits:
        return cls(
            max_bytes=s.max_upload_mb * 1024 * 1024,
            max_frames=s.max_frames,
            max_duration_s=s.max_duration_s,
            max_pixels=s.max_pixels,
            max_zip_ratio=s.max_zip_ratio,
        )


class Limiter:
    """Checks an upload against MediaLimits; every message names the file and the limit."""

    def __init__(self, limits: MediaLimits, name: str):
        self.limits = limits
        self.name = name

    def check_bytes(self, size: int) -> None:
        if size > self.limits.max_bytes:
            raise LimitError(
                f"{the_file(self.name)} is {fmt_bytes(size)}, larger than this "
                f"server's limit of {fmt_bytes(self.limits.max_bytes)}; trim or "
                "compress it and upload it again."
            )

    def check_frames(self, count: int) -> None:
        if count > self.limits.max_frames:
            raise LimitError(
                f"{the_file(self.name)} has more than {self.limits.max_frames} "
                "frames, the most this server accepts; trim it or upload "
                "fewer frames."
            )

    def check_duration(self, seconds: float) -> None:
        if seconds > self.limits.max_duration_s:
            raise LimitError(
                f"{the_file(self.name)} is {fmt_duration(seconds)} long, "
                "longer than this server's limit of "
                f"{fmt_duration(self.limits.max_duration_s)}; trim it and "
                "upload it again."
            )

    def check_pixels(self, width: int, height: int) -> None:
        if width * height > self.limits.max_pixels:
            raise self.too_many_pixels(width, height)

    def too_many_pixels(
        self, width: int | None, height: int | None, limit: int | None = None
    ) -> LimitError:
        """The error for frames of ``width`` x ``height`` pixels (None: size unknown) over
        ``limit`` pixels (default: the configured limit)."""
        limit = self.limits.max_pixels if limit is None else limit
        size = (
            f"has frames of {width}x{height} pixels, more than"
            if width and height
            else "has frames larger than"
        )
        return LimitError(
            f"{the_file(self.name)} {size} this server's limit of {limit:,} pixels per "
            "frame; scale it down and upload it again."
        )

    def decoder_refused(self, data: bytes) -> LimitError:
        """The error for an image PIL refuses to open as a possible decompression bomb:
        its size read from the header, the limit the lower of ours and PIL's."""
        width, height = _unchecked_image_size(data) or (None, None)
        limit = self.limits.max_pixels
        if Image.MAX_IMAGE_PIXELS:
            limit = min(limit, 2 * int(Image.MAX_IMAGE_PIXELS))
        return self.too_many_pixels(width, height, limit)

    def max_image_bytes(self) -> int:
        """Most bytes one packed image may take: an uncompressed 4-channel 16-bit image of
        the largest allowed size, plus room for headers."""
        return self.limits.max_pixels * 8 + (1 << 20)


def display_name(name: str, limit: int = 80) -> str:
    if len(name) > limit:
        name = name[: limit - 1] + "…"
    return html.escape(name)


def the_file(name: str) -> str:
    return f"The file '{display_name(name)}'" if name else "The file"


def unsupported(name: str) -> str:
    return f"{the_file(name)} is not a video or image sequence sam2web can read; {SUPPORTED}."


def fmt_bytes(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.0f} kB"
    return f"{int(n)} bytes"


def fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.3g} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.3g} minutes"
    return f"{seconds / 3600:.3g} hours"


def fmt_num(v: float) -> str:
    return f"{v:.6g}"


def _unchecked_image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or GIF header, read without PIL's pixel-count guard
    (only the header is parsed; nothing is decoded); None when unreadable."""
    from PIL import GifImagePlugin, JpegImagePlugin, PngImagePlugin

    for factory in (
        PngImagePlugin.PngImageFile,
        JpegImagePlugin.JpegImageFile,
        GifImagePlugin.GifImageFile,
    ):
        try:
            with factory(io.BytesIO(data)) as img:
                return img.size
        except DECODE_ERRORS:
            continue
    return None
