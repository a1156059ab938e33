"""Label images as a starting point: objects segmented elsewhere become masks.

A label image holds one integer per pixel: 0 is background, any other value is the number
of the object covering that pixel, e.g. a Cellpose or StarDist result, or a frame of the
masks zip sam2web exports (:func:`sam2web.outputs.maskfiles.write_masks_zip`: 8-bit greyscale PNGs,
16-bit when an id is 256 or more). Accepted: PNG (1-, 8- or 16-bit greyscale, or palette,
whose indices are the labels) and TIFF (8-, 16- or 32-bit integer, or floating point holding
whole numbers; one frame per page). A colour image whose red, green and blue are equal
everywhere is read as greyscale; any other colour image is refused. Masks are boolean
(H, W) arrays indexed [row, col].

Files are read from the bytes or the one path handed in; nothing else is opened.
"""

from __future__ import annotations

import html
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from .limits import DECODE_ERRORS

DEFAULT_MAX_LABELS = 100
# Most pixels a label image may claim when no frame size is given to compare it with: an
# 8192 x 8192 image becomes a 512 MiB int64 array, so a header claiming more is refused
# before any pixel is decoded.
MAX_LABEL_PIXELS = 8192 * 8192

_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_JPEG = b"\xff\xd8\xff"


class LabelImageError(UserError):
    """A label image that cannot be used: unreadable, the wrong size, or not labels."""


def _the(name: str | None) -> str:
    if not name:
        return "The label image"
    if len(name) > 80:
        name = name[:79] + "…"
    return f"The label image '{html.escape(name)}'"


def _damaged(name: str | None) -> LabelImageError:
    return LabelImageError(
        f"{_the(name)} cannot be read (it may be damaged or not a PNG or TIFF); save it "
        "again as PNG or TIFF and load it."
    )


def _colour(name: str | None) -> LabelImageError:
    return LabelImageError(
        f"{_the(name)} is a colour picture, not a label image; save the labels as a "
        "greyscale 8- or 16-bit PNG or TIFF in which each pixel holds its object's number."
    )


def _missing_frame(name: str | None, frame: int, count: int) -> LabelImageError:
    return LabelImageError(
        f"{_the(name)} has {count} frame{'s' if count != 1 else ''}, so it has no frame "
        f"{frame} (counted from 0); choose a frame from 0 to {count - 1}."
    )


def _wrong_size(name: str | None, found: tuple[int, int], size: tuple[int, int]) -> LabelImageError:
    return LabelImageError(
        f"{_the(name)} is {found[0]}x{found[1]} pixels but the video's frames are "
        f"{size[0]}x{size[1]}; use a label image made from this video's frames."
    )


def _check_claimed_size(
    width: int, height: int, size: tuple[int, int] | None, name: str | None
) -> None:
    """Refuse a frame whose header claims another size than ``size`` (width, height), or
    more than MAX_LABEL_PIXELS pixels, before anything is decoded."""
    if size is not None and (width, height) != size:
        raise _wrong_size(name, (width, height), size)
    if width * height > MAX_LABEL_PIXELS:
        raise LabelImageError(
            f"{_the(name)} is {width}x{height} pixels, more than the {MAX_LABEL_PIXELS:,} "
            "pixels this server reads in one label image; use a label image the size of the "
            "video's frames."
        )


def _grey(arr: np.ndarray, name: str | None) -> np.ndarray:
    """(H, W) as is; (H, W, C) when its colour channels are equal (alpha ignored)."""
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[2] == 0:
        raise _damaged(name)
    colour = arr[:, :, : 3 if arr.shape[2] >= 3 else 1]
    if not (colour == colour[:, :, :1]).all():
        raise _colour(name)
    return colour[:, :, 0]


def _read_png(
    data: bytes, frame: int, name: str | None, size: tuple[int, int] | None
) -> np.ndarray:
    if len(data) >= 24 and data[12:16] == b"IHDR":  # before Pillow's own, larger guard
        _check_claimed_size(*struct.unpack(">II", data[16:24]), size, name)
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_claimed_size(*img.size, size, name)
            count = getattr(img, "n_frames", 1)
            if not 0 <= frame < count:
                raise _missing_frame(name, frame, count)
            if frame:
                img.seek(frame)
                _check_claimed_size(*img.size, size, name)
            mode = img.mode
            if mode == "1":
                arr = np.asarray(img.convert("L")) // 255
            elif mode in ("L", "P", "I", "F", "LA", "RGB", "RGBA"):
                arr = np.asarray(img)  # P: palette indices are the labels
            elif mode.startswith("I;16"):
                arr = np.asarray(img).astype(np.uint16, copy=False)
            else:
                arr = np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError:
        raise LabelImageError(
            f"{_the(name)} has more pixels than this server reads in one image; use a label "
            "image the size of the video's frames."
        ) from None
    except LabelImageError:
        raise
    except DECODE_ERRORS:
        raise _damaged(name) from None
    return _grey(arr, name)


def _read_tiff(
    source: bytes | Path, frame: int, name: str | None, size: tuple[int, int] | None
) -> np.ndarray:
    import tifffile

    try:
        fh = io.BytesIO(source) if isinstance(source, bytes) else source
        with tifffile.TiffFile(fh) as tif:
            count = len(tif.pages)
            if count == 0:
                raise _damaged(name)
            if not 0 <= frame < count:
                raise _missing_frame(name, frame, count)
            page = tif.pages[frame]
            _check_claimed_size(int(page.imagewidth), int(page.imagelength), size, name)
            samples = int(getattr(page, "samplesperpixel", 1) or 1)
            if samples > 4 or getattr(page, "imagedepth", 1) != 1:
                raise _damaged(name)  # not a label image: volumes or many samples per pixel
            arr = page.asarray()
            if page.samplesperpixel > 1 and arr.ndim == 3 and page.planarconfig == 2:
                arr = np.moveaxis(arr, 0, -1)  # planar samples first
    except LabelImageError:
        raise
    except DECODE_ERRORS:
        raise _damaged(name) from None
    arr = np.squeeze(arr) if arr.ndim > 2 and 1 in arr.shape[:-2] else arr
    return _grey(arr, name)


def read_label_array(
    source: bytes | Path,
    frame: int = 0,
    name: str | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """One frame of a label image as an int64 (H, W) array [row, col] (0 = background).

    ``source`` is the file's bytes or a :class:`pathlib.Path` (a plain string is refused,
    so user text is never taken for a path); ``frame`` counts pages of a TIFF (or frames
    of an animated PNG) from 0; ``name`` is the file name shown in messages; ``size``, the
    (width, height) the frame must have, is compared with the size the file's header
    claims before any pixel is decoded (without it, at most MAX_LABEL_PIXELS). Raises
    :class:`LabelImageError`.
    """
    if isinstance(source, str) or not isinstance(source, (bytes, Path)):
        raise TypeError("source must be bytes or a pathlib.Path")
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise TypeError("frame must be an int")
    frame = int(frame)
    if size is not None:
        size = (int(size[0]), int(size[1]))
    if isinstance(source, Path):
        try:
            with open(source, "rb") as fh:
                head = fh.read(8)
        except OSError:
            raise _damaged(name) from None
    else:
        head = source[:8]
    if head.startswith(_JPEG):
        raise LabelImageError(
            f"{_the(name)} is a JPEG, whose lossy compression changes pixel values; save the "
            "labels as PNG or TIFF and load them."
        )
    if head.startswith(_TIFF):
        arr = _read_tiff(source, frame, name, size)
    elif head.startswith(_PNG):
        data = source if isinstance(source, bytes) else source.read_bytes()
        arr = _read_png(data, frame, name, size)
    else:
        raise _damaged(name)
    if arr.ndim != 2 or 0 in arr.shape:
        raise _colour(name) if arr.ndim == 3 else _damaged(name)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all() or (arr != np.floor(arr)).any() or arr.max(initial=0) >= 2**53:
            raise _not_numbers(name)
    elif arr.dtype.kind not in "uib":
        raise _damaged(name)
    arr = arr.astype(np.int64)
    if arr.min(initial=0) < 0:
        raise _not_numbers(name)
    return arr


def _not_numbers(name: str | None) -> LabelImageError:
    return LabelImageError(
        f"{_the(name)} holds values that are not object numbers (negative, fractional or "
        "not a number); save the labels as whole numbers, 0 for background."
    )


def split_labels(
    labels: np.ndarray, max_labels: int = DEFAULT_MAX_LABELS, name: str | None = None
) -> dict[int, np.ndarray]:
    """{object id: bool mask (H, W)} for every non-zero value of an integer (H, W) label
    array, ids ascending. Raises :class:`LabelImageError` when there is no label or more
    than ``max_labels``."""
    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if ids.size == 0:
        raise LabelImageError(
            f"{_the(name)} holds no labels (every pixel is 0); use an image in which each "
            "object's pixels hold its number (1, 2, 3 and so on)."
        )
    if ids.size > max_labels:
        raise LabelImageError(
            f"{_the(name)} holds {ids.size} labels, more than the {max_labels} allowed; "
            "keep fewer objects in it and load it again."
        )
    return {int(i): labels == i for i in ids}


def read_label_image(
    source: bytes | Path,
    *,
    frame: int = 0,
    size: tuple[int, int] | None = None,
    max_labels: int = DEFAULT_MAX_LABELS,
    name: str | None = None,
) -> dict[int, np.ndarray]:
    """{object id: bool mask (H, W)} from one frame of a label image (see
    :func:`read_label_array`), ids ascending.

    ``size`` is the (width, height) the masks must have, e.g. the video's frame size.
    Every problem a user can cause raises :class:`LabelImageError` with one sentence.
    """
    labels = read_label_array(source, frame=frame, name=name, size=size)
    if size is not None:
        width, height = (int(v) for v in size)
        if labels.shape != (height, width):  # e.g. a page whose samples squeezed away
            raise _wrong_size(name, (labels.shape[1], labels.shape[0]), (width, height))
    return split_labels(labels, max_labels=max_labels, name=name)
