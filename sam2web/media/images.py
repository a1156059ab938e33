"""Single images and zips of images (PNG, JPEG or TIFF), one image per frame.

A zip's members are checked before they are used: a zip with absolute paths, drive letters
or ``..`` in a name is refused; hidden files and folders (``.*``, ``__MACOSX``) are skipped
and files that are not images ignored (noted); the unpacked size is bounded for each image
and as a ratio of the zip's own size (zip bombs); frames follow the natural order of the
members' paths. Photos are turned upright as their EXIF orientation asks. A TIFF in a zip
is read as a :class:`~.tiff.TiffStack` and must hold one frame.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import LimitError, MediaError
from ..types import VideoInfo
from .folder import FrameWriter
from .limits import DECODE_ERRORS, Limiter, display_name, fmt_bytes, the_file
from .sequence import FrameSequence, ingest_sequence
from .tiff import StackChoice, TiffStack

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def _decode_image(
    data: bytes, label: str, lim: Limiter, choice: StackChoice | None = None
) -> tuple[np.ndarray, bool]:
    """One image file's bytes -> (array (H, W) or (H, W, C) in native dtype, rotated?).

    TIFF goes through tifffile (16-bit, float, multi-channel); everything else through
    PIL with EXIF orientation applied. PIL's guard against decompression bombs stays in
    force; an image it refuses gets the pixel limit's message."""
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            stack = TiffStack(tif, label, lim, choice or StackChoice())
            if stack.count != 1:
                raise MediaError(
                    f"Image '{display_name(label)}' holds {stack.count} pages; "
                    "a zip must hold one image per frame, so upload a TIFF "
                    "stack on its own instead."
                )
            return stack.read(0), False
    try:
        opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise lim.decoder_refused(data) from None
    with opened as img:
        lim.check_pixels(*img.size)
        orientation = img.getexif().get(0x0112, 1)
        upright = ImageOps.exif_transpose(img)
        return _pil_to_array(upright), orientation not in (1, None)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(img)
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16, copy=False)
    if mode in ("I", "F"):
        return np.asarray(img)
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    return np.asarray(img.convert("RGB"))


class _SingleImage(FrameSequence):
    def __init__(self, src: Path, name: str, lim: Limiter):
        self.src = src
        self.name = name
        self.lim = lim
        self.count = 1
        self.notes = []

    def label(self, index: int) -> str:
        return self.name

    def read(self, index: int) -> np.ndarray:
        try:
            img, rotated = _decode_image(self.src.read_bytes(), self.name, self.lim)
        except DECODE_ERRORS:
            log.info("cannot decode image %r", self.name, exc_info=True)
            raise MediaError(
                f"{the_file(self.name)} looks like an image but cannot be read "
                "(it may be damaged); save it again and upload it."
            ) from None
        if rotated:
            self.notes.append("The image was turned upright as its EXIF orientation asks.")
        return img


def ingest_image(
    src: Path, writer: FrameWriter, lim: Limiter, name: str, fps_override: float | None
) -> VideoInfo:
    """One PNG or JPEG file: a sequence of one frame."""
    seq = _SingleImage(src, name, lim)
    return ingest_sequence(seq, writer, lim, name, fps_override, kind="images")


def _is_unsafe_member(filename: str) -> bool:
    parts = re.split(r"[\\/]", filename)
    return (
        filename.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", filename) is not None
        or ".." in parts
    )


def _is_hidden_member(filename: str) -> bool:
    parts = [p for p in re.split(r"[\\/]", filename) if p]
    return not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


class _ZipImages(FrameSequence):
    def __init__(
        self,
        zf: zipfile.ZipFile,
        members: list[zipfile.ZipInfo],
        lim: Limiter,
        byte_budget: float,
        choice: StackChoice | None = None,
    ):
        self.zf = zf
        self.choice = choice
        self.members = members
        self.lim = lim
        self.count = len(members)
        self.notes = []
        self.byte_budget = byte_budget  # total unpacked bytes allowed to be read, all passes
        self.rotated: set[int] = set()

    def label(self, index: int) -> str:
        return self.members[index].filename

    def read(self, index: int) -> np.ndarray:
        info = self.members[index]
        label = info.filename
        cap = min(info.file_size, self.lim.max_image_bytes())
        try:
            with self.zf.open(info) as fh:
                data = fh.read(cap + 1)
        except RuntimeError as exc:  # encrypted member
            raise MediaError(
                f"Image '{display_name(label)}' in the zip is password-"
                "protected; upload a zip without a password."
            ) from exc
        except NotImplementedError as exc:
            raise MediaError(
                "The zip uses a compression method sam2web cannot read; "
                "create it again with standard (deflate) compression."
            ) from exc
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            log.info("cannot unpack %r: %s", label, exc)
            raise MediaError(
                f"Image '{display_name(label)}' in the zip is damaged; create "
                "the zip again and upload it."
            ) from exc
        self.byte_budget -= len(data)
        if len(data) > cap or self.byte_budget < 0:
            raise LimitError(
                "The zip unpacks to more data than it declares; upload a zip "
                "made from a plain folder of images."
            )
        try:
            img, rotated = _decode_image(data, label, self.lim, self.choice)
        except DECODE_ERRORS as exc:
            log.info("cannot decode zip member %r", label, exc_info=True)
            raise MediaError(
                f"Image '{display_name(label)}' in the zip cannot be read (it "
                "may be damaged); replace it and upload the zip again."
            ) from exc
        if rotated:
            self.rotated.add(index)
        return img

    def final_notes(self) -> list[str]:
        notes = list(self.notes)
        if self.rotated:
            notes.append(
                f"{len(self.rotated)} of the images were turned upright as their "
                "EXIF orientation asks."
            )
        return notes


def ingest_zip(
    src: Path,
    writer: FrameWriter,
    lim: Limiter,
    name: str,
    fps_override: float | None,
    choice: StackChoice | None = None,
) -> VideoInfo:
    from natsort import natsorted, ns

    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, *DECODE_ERRORS) as exc:
        log.info("bad zip %r: %s", name, exc)
        raise MediaError(
            f"{the_file(name)} looks like a zip archive but is damaged; create "
            "the zip again and upload it."
        ) from exc
    with zf:
        infos = zf.infolist()
        unsafe = [i.filename for i in infos if _is_unsafe_member(i.filename)]
        if unsafe:
            raise MediaError(
                f"{the_file(name)} contains unsafe file names (such as "
                f"'{display_name(unsafe[0])}'); make the zip from a plain "
                "folder of images and upload it again."
            )
        images: list[zipfile.ZipInfo] = []
        ignored = 0
        for info in infos:
            if info.is_dir() or _is_hidden_member(info.filename):
                continue
            if info.filename.lower().endswith(IMAGE_SUFFIXES):
                images.append(info)
            else:
                ignored += 1
        if not images:
            raise MediaError(
                f"{the_file(name)} contains no images; the zip must hold "
                "JPEG, PNG or TIFF frames (.jpg, .jpeg, .png, .tif, .tiff)."
            )
        lim.check_frames(len(images))
        packed = max(1, src.stat().st_size)
        unpacked = sum(i.file_size for i in images)
        allowed = lim.limits.max_zip_ratio * packed
        if unpacked > allowed:
            raise LimitError(
                f"{the_file(name)} unpacks to {unpacked / packed:.0f} times its "
                "size, more than this server allows "
                f"({lim.limits.max_zip_ratio:g} times), so it was refused as a "
                "possible zip bomb; upload a zip of ordinary image files."
            )
        too_big = [i for i in images if i.file_size > lim.max_image_bytes()]
        if too_big:
            raise LimitError(
                f"Image '{display_name(too_big[0].filename)}' in the zip is "
                f"{fmt_bytes(too_big[0].file_size)} unpacked, larger than an "
                "image this server accepts; use smaller images."
            )
        images = natsorted(images, key=lambda i: i.filename, alg=ns.PATH | ns.IGNORECASE)
        # Two passes read each member twice at most (high bit depth).
        seq = _ZipImages(zf, images, lim, byte_budget=2 * allowed, choice=choice)
        if ignored:
            seq.notes.append(
                f"{ignored} file{'s' if ignored > 1 else ''} in the zip that "
                f"{'are' if ignored > 1 else 'is'} not an image "
                f"({', '.join(IMAGE_SUFFIXES)}) {'were' if ignored > 1 else 'was'} "
                "ignored."
            )
        return ingest_sequence(seq, writer, lim, name, fps_override, kind="images")
