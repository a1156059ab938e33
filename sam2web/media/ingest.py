"""Media ingest: an uploaded file becomes a folder of numbered RGB frames.

:func:`ingest` reads a video, a GIF, a zip of images, a TIFF stack or a single image and
writes ``00000.jpg``, ``00001.jpg``, ... (or ``.png``) plus ``video.json`` into a folder the
server chose. :class:`FrameFolder` opens such a folder again.

What a user can rely on:

* Every frame of the file is written exactly once, at its original size (odd sizes stay
  odd), upright (rotation metadata of phone videos and EXIF orientation of photos applied),
  as 8-bit RGB. The frame rate is never resampled: time stamps use the file's rate.
* The kind of file is recognised from its content, not its name. Paths inside the output
  folder never come from the upload's name or from names inside a zip.
* On any failure the output folder is removed and a :class:`~sam2web.errors.MediaError` or
  :class:`~sam2web.errors.LimitError` says, in one sentence, what is wrong and what to do.
* Anything ingest changed or guessed is listed in ``VideoInfo.notes``.

Conversion to 8-bit, one rule for a whole stack (TIFF stacks, 16-bit PNG or TIFF images in
a zip): 8-bit data is kept as is. 16-bit, 32-bit integer and floating-point data are
scaled with ``lo, hi`` = the 0.1 and 99.9 percentiles of all pixel values of all frames
(an even sample of at most 5 million values; NaN and infinities left out)::

    out = round(clip((v - lo) / (hi - lo), 0, 1) * 255)

If ``hi <= lo`` the minimum and maximum are used instead; if those are equal too, every
pixel becomes 0. NaN becomes 0. The range used is reported in ``VideoInfo.notes``.

Channels: gray becomes RGB by repeating the channel; an alpha channel is dropped (noted).
TIFF layouts accepted, by shape: (H, W), (T, H, W), (H, W, 3|4), (T, H, W, 3|4) and
(T, C, H, W) with C = 3 colour planes; other layouts are refused with a message.

Microscopy TIFF (OME-TIFF, ImageJ hyperstacks): the axes come from the file's metadata
(tifffile's ``series[0].axes``, e.g. TCYX, TZCYX, ZYX, CYX).

* Frames run along T when the file has a time axis, else along Z; ``ingest(axis="Z")``
  makes the slices of a time-lapse the frames. The other of T and Z, when present, is
  merged into each frame by maximum-intensity projection (noted).
* Channels: ``ingest(channel=i)`` shows channel i (from 0) as gray, ``channel="name"`` the
  channel of that name (OME channel names; case is ignored when no name matches
  exactly), ``channel=COMPOSITE`` an RGB composite of channels 0, 1, 2 as red, green,
  blue (a third channel left black with two; channels beyond the third left out). High
  bit depths in a composite are scaled channel by channel, each with the rule above. A
  file with 3 channels and no choice is shown as that composite; with 2 or more than 3
  channels and no choice, ingest raises :class:`StackChoiceError`, which carries the
  channel names and axes for the page to offer.
* Time and scale: OME ``TimeIncrement`` (with its unit) or ImageJ ``finterval`` give the
  frame rate (1 / interval, not nominal) when frames run along T; OME ``PhysicalSizeX``
  with its unit, or ImageJ's X resolution with its ``unit``, give ``VideoInfo.pixel_size``
  and ``pixel_unit``. Unreadable metadata is ignored.

PIL's guard against decompression bombs stays in force; an image it refuses gets the
pixel limit's message, with the size read from the file's header.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import logging
import math
import re
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, ImageSequence

from ..errors import LimitError, MediaError, StorageFullError
from ..types import Progress, VideoInfo

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

INFO_FILE = "video.json"
FRAME_DIGITS = 5
FRAME_EXTENSIONS = {"jpeg": ".jpg", "png": ".png"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
STACK_FRAME_AXES = ("T", "Z")  # axes of a TIFF whose positions can become frames
COMPOSITE = "composite"  # ingest(channel=COMPOSITE): channels 0, 1, 2 as red, green, blue
SUPPORTED = "upload an MP4, MOV, AVI, MKV, WEBM, MPG, GIF, a zip of images or a TIFF stack"

JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 1
SEQUENCE_FPS = 1.0  # time stamps of image sequences unless the user gives a rate
FALLBACK_FPS = 25.0  # for videos that state no usable frame rate
STRETCH_PERCENTILES = (0.1, 99.9)
STRETCH_SAMPLE = 5_000_000  # most pixel values looked at to find the scaling range
PROGRESS_EVERY = 5  # frames between progress callbacks

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


def frame_filename(index: int, frame_format: str = "jpeg") -> str:
    """File name of frame ``index`` (from 0): ``00012.jpg``; SAM2's loader sorts by number."""
    return f"{index:0{FRAME_DIGITS}d}{FRAME_EXTENSIONS[frame_format]}"


# --------------------------------------------------------------------------------------
# Reading an ingested folder


class FrameFolder:
    """An ingested folder: ``info`` plus frame files ``path(0)`` ... ``path(len - 1)``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        meta = json.loads((self.folder / INFO_FILE).read_text(encoding="utf-8"))
        frame_format = meta.get("frame_format", "jpeg")
        if frame_format not in FRAME_EXTENSIONS:
            raise ValueError(f"unknown frame format {frame_format!r} in {INFO_FILE}")
        self.frame_format: str = frame_format
        self.info = info_from_dict(meta)

    def __len__(self) -> int:
        return self.info.num_frames

    def path(self, index: int) -> Path:
        if not 0 <= index < self.info.num_frames:
            raise IndexError(f"frame {index} is outside 0..{self.info.num_frames - 1}")
        return self.folder / frame_filename(index, self.frame_format)

    def frame_paths(self) -> list[Path]:
        return [self.path(i) for i in range(len(self))]

    def read_rgb(self, index: int) -> np.ndarray:
        """Frame ``index`` as a writable (H, W, 3) uint8 RGB array."""
        with Image.open(self.path(index)) as img:
            return np.array(img.convert("RGB"))


def info_to_dict(info: VideoInfo) -> dict:
    data = dataclasses.asdict(info)
    data["notes"] = list(info.notes)
    return data


def info_from_dict(data: dict) -> VideoInfo:
    names = {f.name for f in dataclasses.fields(VideoInfo)}
    values = {k: v for k, v in data.items() if k in names}
    values["notes"] = tuple(values.get("notes", ()))
    return VideoInfo(**values)


# --------------------------------------------------------------------------------------
# Ingest


def ingest(
    src: Path,
    dest_dir: Path,
    *,
    limits: MediaLimits,
    frame_format: str = "jpeg",
    source_name: str | None = None,
    fps: float | None = None,
    progress: Progress | None = None,
    max_output_bytes: int | None = None,
    channel: int | str | None = None,
    axis: str | None = None,
) -> VideoInfo:
    """Decode ``src`` into frame files in ``dest_dir`` (created here; must not hold files).

    ``source_name`` is the name shown to the user (default: ``src``'s name); it is never
    used as a path. ``fps`` overrides the frame rate used for time stamps (frames are never
    dropped or repeated); image sequences default to 1 frame per second.
    ``progress(done, total)`` is called every few frames; ``total`` is None when unknown.
    ``max_output_bytes`` bounds the bytes of frame files written (None: no bound); going
    beyond it stops decoding with StorageFullError.
    ``channel`` and ``axis`` choose what a multi-dimensional TIFF shows (see "Microscopy
    TIFF" in the module doc): ``channel`` a channel index from 0, a channel name, or
    :data:`COMPOSITE`; ``axis`` "T" or "Z", the axis whose positions become frames. Other
    kinds of file ignore them.
    Raises MediaError (:class:`StackChoiceError` when a TIFF needs a choice), LimitError or
    StorageFullError with a message fit for the user; nothing is left behind.
    """
    src = Path(src)
    dest_dir = Path(dest_dir)
    if frame_format not in FRAME_EXTENSIONS:
        raise ValueError(f"frame_format must be one of {sorted(FRAME_EXTENSIONS)}")
    if axis not in (None, *STACK_FRAME_AXES):
        raise ValueError(f"axis must be None or one of {STACK_FRAME_AXES}, got {axis!r}")
    if isinstance(channel, bool) or not isinstance(channel, (int, str, type(None))):
        raise TypeError(f"channel must be an int, a str or None, got {type(channel).__name__}")
    choice = _StackChoice(channel, axis)
    name = src.name if source_name is None else source_name
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise MediaError(
            "The frame rate must be a positive number of frames per second, "
            "for example 10 or 29.97."
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    if any(dest_dir.iterdir()):
        raise FileExistsError(f"{dest_dir} already holds files")
    try:
        writer = _FrameWriter(
            dest_dir, frame_format, _Progress(progress), max_bytes=max_output_bytes
        )
        info = _ingest_into(src, writer, _Limiter(limits, name), name, fps, choice)
        meta = info_to_dict(info)
        meta["frame_format"] = frame_format
        (dest_dir / INFO_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    except BaseException:
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise
    log.info(
        "ingested %r: %d frames %dx%d at %.3g fps (%s)",
        name,
        info.num_frames,
        info.width,
        info.height,
        info.fps,
        info.kind,
    )
    return info


def _ingest_into(
    src: Path,
    writer: _FrameWriter,
    lim: _Limiter,
    name: str,
    fps: float | None,
    choice: _StackChoice,
) -> VideoInfo:
    try:
        size = src.stat().st_size if src.is_file() else -1
    except OSError:
        size = -1
    if size < 0:
        raise MediaError(
            f"{_the_file(name)} is missing or is not a file (an upload may have been cut "
            "off); choose the file again and upload it."
        )
    if size == 0:
        raise MediaError(
            f"{_the_file(name)} is empty (0 bytes); choose the file again and upload it."
        )
    lim.check_bytes(size)
    with open(src, "rb") as fh:
        head = fh.read(4096)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _ingest_zip(src, writer, lim, name, fps, choice)
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return _ingest_tiff(src, writer, lim, name, fps, choice)
    if head.startswith(b"GIF8"):
        return _ingest_gif(src, writer, lim, name, fps)
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        seq = _SingleImage(src, name, lim)
        return _ingest_sequence(seq, writer, lim, name, fps, kind="images")
    if _looks_like_text(head):
        # Text is never a video; ffmpeg would read playlists and the like, which may
        # point at other files or the network.
        raise MediaError(_unsupported(name))
    return _ingest_video(src, writer, lim, name, fps, head)


# --------------------------------------------------------------------------------------
# Shared pieces


class _Progress:
    def __init__(self, callback: Progress | None):
        self.callback = callback
        self.total: int | None = None
        self.base = 0  # added to ``done`` (two-pass sequences report both passes)

    def update(self, done: int, final: bool = False) -> None:
        if self.callback is None:
            return
        if final or done % PROGRESS_EVERY == 0:
            self.callback(self.base + done, self.total)


class _FrameWriter:
    """Writes RGB uint8 frames as numbered files; all frames must have one size."""

    def __init__(
        self, folder: Path, frame_format: str, progress: _Progress, max_bytes: int | None = None
    ):
        self.folder = folder
        self.frame_format = frame_format
        self.progress = progress
        self.max_bytes = max_bytes
        self.count = 0
        self.bytes = 0  # written so far
        self.size: tuple[int, int] | None = None  # (width, height)

    def add(self, rgb: np.ndarray) -> None:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, rgb.shape
        h, w = rgb.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif self.size != (w, h):
            raise MediaError(
                f"The frames change size part-way (frame {self.count + 1} is "
                f"{w}x{h}, the first is {self.size[0]}x{self.size[1]}); "
                "convert the file to one frame size and upload it again."
            )
        img = Image.fromarray(np.ascontiguousarray(rgb))
        path = self.folder / frame_filename(self.count, self.frame_format)
        if self.frame_format == "png":
            img.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        else:
            img.save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
        self.bytes += path.stat().st_size
        if self.max_bytes is not None and self.bytes > self.max_bytes:
            raise StorageFullError(
                "The server's storage for sessions is full (this upload's frames do not fit "
                "in the space left); try again later or upload a shorter video."
            )
        self.count += 1
        self.progress.update(self.count)

    def finish(self) -> None:
        self.progress.update(self.count, final=True)


class _Limiter:
    """Checks an upload against MediaLimits; every message names the file and the limit."""

    def __init__(self, limits: MediaLimits, name: str):
        self.limits = limits
        self.name = name

    def check_bytes(self, size: int) -> None:
        if size > self.limits.max_bytes:
            raise LimitError(
                f"{_the_file(self.name)} is {_fmt_bytes(size)}, larger than this "
                f"server's limit of {_fmt_bytes(self.limits.max_bytes)}; trim or "
                "compress it and upload it again."
            )

    def check_frames(self, count: int) -> None:
        if count > self.limits.max_frames:
            raise LimitError(
                f"{_the_file(self.name)} has more than {self.limits.max_frames} "
                "frames, the most this server accepts; trim it or upload "
                "fewer frames."
            )

    def check_duration(self, seconds: float) -> None:
        if seconds > self.limits.max_duration_s:
            raise LimitError(
                f"{_the_file(self.name)} is {_fmt_duration(seconds)} long, "
                "longer than this server's limit of "
                f"{_fmt_duration(self.limits.max_duration_s)}; trim it and "
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
            f"{_the_file(self.name)} {size} this server's limit of {limit:,} pixels per "
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


def _display_name(name: str, limit: int = 80) -> str:
    if len(name) > limit:
        name = name[: limit - 1] + "…"
    return html.escape(name)


def _the_file(name: str) -> str:
    return f"The file '{_display_name(name)}'" if name else "The file"


def _unsupported(name: str) -> str:
    return f"{_the_file(name)} is not a video or image sequence sam2web can read; {SUPPORTED}."


def _fmt_bytes(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.0f} kB"
    return f"{int(n)} bytes"


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.3g} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.3g} minutes"
    return f"{seconds / 3600:.3g} hours"


def _fmt_num(v: float) -> str:
    return f"{v:.6g}"


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the end of the head is still text.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\r\n\f")
    return controls <= len(text) // 100


# --------------------------------------------------------------------------------------
# Videos (OpenCV's FFmpeg backend)


def _ingest_video(
    src: Path,
    writer: _FrameWriter,
    lim: _Limiter,
    name: str,
    fps_override: float | None,
    head: bytes,
) -> VideoInfo:
    import cv2

    notes: list[str] = []
    cap = cv2.VideoCapture(str(src), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise MediaError(_unopenable_video_message(src, name, head))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width > 0 and height > 0:
            lim.check_pixels(width, height)
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not (math.isfinite(fps) and 0 < fps <= 1000):
            fps = FALLBACK_FPS
            notes.append(
                f"The video states no usable frame rate; {FALLBACK_FPS:g} frames "
                "per second is assumed for time stamps."
            )
        claimed = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        claimed = int(claimed) if math.isfinite(claimed) and claimed > 0 else 0
        if claimed:
            lim.check_frames(claimed)
            lim.check_duration(claimed / fps)
            writer.progress.total = claimed
        rotation = cap.get(cv2.CAP_PROP_ORIENTATION_META)
        if (
            math.isfinite(rotation)
            and int(rotation) % 360
            and cap.get(cv2.CAP_PROP_ORIENTATION_AUTO)
        ):
            notes.append(
                f"Frames were turned upright as the video's orientation metadata "
                f"asks (rotation {int(rotation) % 360} degrees)."
            )

        count = 0
        last_time_s = 0.0
        while True:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            if count == 0:
                lim.check_pixels(bgr.shape[1], bgr.shape[0])
            count += 1
            lim.check_frames(count)
            lim.check_duration(count / fps)
            pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            if math.isfinite(pos_ms):
                last_time_s = max(last_time_s, pos_ms / 1000.0)
            writer.add(_bgr_to_rgb(bgr))
    finally:
        cap.release()

    if count == 0:
        raise MediaError(
            f"{_the_file(name)} contains no video frames; upload a video with picture content."
        )
    writer.finish()
    if claimed and count <= claimed - 2:
        # Frame counts of some containers are estimates (duration x rate), so a shortfall
        # only means a cut-off file when the frames read also stop well before the end.
        claimed_end = claimed / fps
        if last_time_s + 1.0 / fps < 0.9 * claimed_end:
            notes.append(
                f"The file ends early: {count} of the {claimed} frames it announces could be read."
            )
    return _finish_info(writer, name, "video", fps, fps_override, notes, nominal=False)


def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit BGR (its default for every pixel format) -> RGB."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(frame[:, :, 2::-1])


def _unopenable_video_message(src: Path, name: str, head: bytes) -> str:
    """Why ffmpeg cannot open ``src`` as a video, in words, from ffmpeg's own report."""
    report = ""
    try:
        import imageio_ffmpeg

        done = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(src.resolve())],
            capture_output=True,
            timeout=30,
            check=False,
        )
        report = done.stderr.decode("utf-8", "replace")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.info("could not run ffmpeg to describe %r: %s", name, exc)
    streams = re.findall(r"Stream #\S+.*?: (Video|Audio|Subtitle|Data)", report)
    if "Audio" in streams and "Video" not in streams:
        return (
            f"{_the_file(name)} contains only sound and no picture; upload a video file "
            "(MP4, MOV, AVI, MKV, WEBM or MPG)."
        )
    # MP4/MOV files are a chain of boxes: size (4 bytes) and type; "ftyp" or "mdat" first.
    is_mp4 = head[4:8] in (b"ftyp", b"mdat", b"moov", b"free", b"wide", b"skip")
    if is_mp4 and "Input #0" in report and not streams:
        return f"{_the_file(name)} contains no video frames; upload a video with picture content."
    if is_mp4 and "moov atom not found" in report:
        return (
            f"{_the_file(name)} is incomplete or damaged (its index is missing, which "
            "happens when a recording or an upload is cut off); upload the whole file "
            "again or export the video anew."
        )
    return _unsupported(name)


# --------------------------------------------------------------------------------------
# GIF


def _ingest_gif(
    src: Path, writer: _FrameWriter, lim: _Limiter, name: str, fps_override: float | None
) -> VideoInfo:
    notes: list[str] = []
    delays: list[int] = []
    transparent = False
    try:
        with Image.open(src) as im:
            lim.check_pixels(*im.size)
            total = getattr(im, "n_frames", None)
            if total:
                lim.check_frames(total)
                writer.progress.total = total
            try:
                for frame in ImageSequence.Iterator(im):
                    lim.check_frames(len(delays) + 1)
                    delays.append(int(frame.info.get("duration") or 0))
                    transparent |= frame.mode in ("RGBA", "PA", "LA") or (
                        "transparency" in frame.info
                    )
                    writer.add(np.asarray(frame.convert("RGB")))
            except DECODE_ERRORS as exc:
                if not delays or writer.count == 0:
                    raise
                log.info("GIF %r stops after %d frames: %s", name, writer.count, exc)
                notes.append(f"The file ends early: only {writer.count} frames could be read.")
                delays = delays[: writer.count]
    except Image.DecompressionBombError as exc:
        # PIL refuses to open pictures of hundreds of megapixels before we learn the size.
        with open(src, "rb") as fh:
            raise lim.decoder_refused(fh.read(1 << 16)) from exc
    except DECODE_ERRORS as exc:
        log.info("cannot read GIF %r: %s", name, exc)
        raise MediaError(
            f"{_the_file(name)} is a GIF that cannot be read (it may be "
            "damaged); export it again or upload it as a video."
        ) from exc
    if writer.count == 0:
        raise MediaError(
            f"{_the_file(name)} contains no frames; upload a GIF with at least one frame."
        )
    writer.finish()

    # Browsers show delays of 10 ms or less as 100 ms; use what a viewer would see.
    shown = [d if d > 10 else 100 for d in delays]
    median = float(np.median(shown))
    fps = 1000.0 / median
    lim.check_duration(writer.count / fps)
    if min(shown) != max(shown):
        notes.append(
            f"The GIF's frame delays vary ({min(shown)}-{max(shown)} ms); time "
            f"stamps use the median delay, {median:g} ms ({fps:.3g} frames per "
            "second)."
        )
    if transparent:
        notes.append("Transparency was removed; sam2web works on opaque RGB frames.")
    return _finish_info(writer, name, "video", fps, fps_override, notes, nominal=False)


# --------------------------------------------------------------------------------------
# Image sequences: zip of images, TIFF stack, single image


class _Sequence:
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


def _ingest_sequence(
    seq: _Sequence,
    writer: _FrameWriter,
    lim: _Limiter,
    name: str,
    fps_override: float | None,
    kind: str,
) -> VideoInfo:
    """Writes every frame of ``seq``, scaling high bit depths with one rule (module doc)."""
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
                f"Image '{_display_name(seq.label(index))}' holds no picture sam2web can "
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
                f"'{_display_name(seq.label(index))}' is {img.shape[1]}x{img.shape[0]} but "
                f"the first is {first.shape[1]}x{first.shape[0]}; resize them to one size "
                "and upload them again."
            )
        elif img.dtype != first.dtype:
            raise MediaError(
                f"All images must have the same bit depth; image "
                f"'{_display_name(seq.label(index))}' is {_depth_words(img.dtype)} but the "
                f"first is {_depth_words(first.dtype)}; save them alike and upload them "
                "again."
            )
        return img

    head = prepared(0)
    progress = writer.progress
    if head.dtype == np.uint8:
        progress.total = seq.count
        for i in range(seq.count):
            writer.add(_gray_to_rgb(prepared(i)))
    elif head.dtype == np.bool_:
        progress.total = seq.count
        for i in range(seq.count):
            writer.add(_gray_to_rgb(prepared(i).astype(np.uint8) * 255))
    elif seq.stretch_per_channel and head.ndim == 3:
        notes.extend(_stretch_channels(seq, prepared, writer, head))
    else:
        notes.append(_stretch_stack(seq, prepared, writer, head))
    writer.finish()
    if alpha_dropped:
        notes.append(
            "The alpha (transparency) channel was dropped; sam2web works on opaque RGB frames."
        )
    notes = seq.final_notes() + notes
    fps, nominal = (seq.fps, False) if seq.fps else (SEQUENCE_FPS, fps_override is None)
    return _finish_info(
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


def _stretch_stack(
    seq: _Sequence, prepared: Callable[[int], np.ndarray], writer: _FrameWriter, head: np.ndarray
) -> str:
    """Two passes: find one scaling range for the whole stack, then convert; returns the
    note that says which range was used."""
    progress = writer.progress
    progress.total = 2 * seq.count
    stride = max(1, math.ceil(seq.count * head.size / STRETCH_SAMPLE))
    samples = []
    offset = 0
    for i in range(seq.count):
        flat = prepared(i).reshape(-1)
        samples.append(flat[(-offset) % stride :: stride].astype(np.float64))
        offset += flat.size
        progress.update(i + 1, final=i + 1 == seq.count)
    lo, hi, how = _stretch_range(np.concatenate(samples))
    progress.base = seq.count
    for i in range(seq.count):
        writer.add(_gray_to_rgb(_stretch(prepared(i), lo, hi)))
    depth = _depth_words(head.dtype).capitalize()
    if how:
        return f"{depth} values scaled to 8-bit: {how} range {_fmt_range(lo, hi)} mapped to 0-255."
    return f"{depth} values are all equal (or not numbers); every pixel was set to 0."


_CHANNEL_COLOURS = ("red", "green", "blue")


def _stretch_channels(
    seq: _Sequence, prepared: Callable[[int], np.ndarray], writer: _FrameWriter, head: np.ndarray
) -> list[str]:
    """Two passes like the one-range rule, but each of the 3 colour channels gets its own
    range (for composites of microscope channels, whose brightness differs widely)."""
    progress = writer.progress
    progress.total = 2 * seq.count
    channels = head.shape[2]
    stride = max(1, math.ceil(seq.count * head.shape[0] * head.shape[1] / STRETCH_SAMPLE))
    samples: list[list[np.ndarray]] = [[] for _ in range(channels)]
    offset = 0
    for i in range(seq.count):
        flat = prepared(i).reshape(-1, channels)
        for c in range(channels):
            samples[c].append(flat[(-offset) % stride :: stride, c].astype(np.float64))
        offset += flat.shape[0]
        progress.update(i + 1, final=i + 1 == seq.count)
    ranges = [_stretch_range(np.concatenate(s)) for s in samples]
    progress.base = seq.count
    for i in range(seq.count):
        img = prepared(i)
        writer.add(
            np.stack(
                [_stretch(img[..., c], lo, hi) for c, (lo, hi, _) in enumerate(ranges)], axis=-1
            )
        )
    depth = _depth_words(head.dtype).capitalize()
    parts = [
        f"{how} range {_fmt_range(lo, hi)} ({_CHANNEL_COLOURS[c]})"
        for c, (lo, hi, how) in enumerate(ranges)
        if how
    ]
    if not parts:
        return [f"{depth} values are all equal (or not numbers); every pixel was set to 0."]
    return [f"{depth} values scaled to 8-bit for each channel: {', '.join(parts)} mapped to 0-255."]


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


def _gray_to_rgb(img: np.ndarray) -> np.ndarray:
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
        return f"{_fmt_num(lo)} to {_fmt_num(hi)}"
    return f"{_fmt_num(lo)}-{_fmt_num(hi)}"


def _depth_words(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    bits = dtype.itemsize * 8
    if dtype.kind == "f":
        return f"{bits}-bit floating-point"
    if dtype.kind == "b":
        return "1-bit"
    if dtype.kind == "i":
        return f"{bits}-bit signed integer" if bits == 8 else f"{bits}-bit integer"
    return f"{bits}-bit"


def _finish_info(
    writer: _FrameWriter,
    name: str,
    kind: str,
    fps: float,
    fps_override: float | None,
    notes: list[str],
    *,
    nominal: bool,
    pixel_size: float | None = None,
    pixel_unit: str | None = None,
) -> VideoInfo:
    assert writer.size is not None
    if fps_override is not None:
        if kind == "video" and not math.isclose(fps_override, fps, rel_tol=1e-6):
            notes.append(
                f"Time stamps use {fps_override:g} frames per second as requested "
                f"(the file says {fps:.4g})."
            )
        fps = fps_override
    return VideoInfo(
        num_frames=writer.count,
        width=writer.size[0],
        height=writer.size[1],
        fps=float(fps),
        source_name=name,
        kind=kind,
        fps_is_nominal=nominal,
        notes=tuple(dict.fromkeys(notes)),
        pixel_size=pixel_size,
        pixel_unit=pixel_unit,
    )


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


def _decode_image(
    data: bytes, label: str, lim: _Limiter, choice: _StackChoice | None = None
) -> tuple[np.ndarray, bool]:
    """One image file's bytes -> (array (H, W) or (H, W, C) in native dtype, rotated?).

    TIFF goes through tifffile (16-bit, float, multi-channel); everything else through
    PIL with EXIF orientation applied. PIL's guard against decompression bombs stays in
    force; an image it refuses gets the pixel limit's message."""
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            stack = _TiffStack(tif, label, lim, choice or _StackChoice())
            if stack.count != 1:
                raise MediaError(
                    f"Image '{_display_name(label)}' holds {stack.count} pages; "
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


class _SingleImage(_Sequence):
    def __init__(self, src: Path, name: str, lim: _Limiter):
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
                f"{_the_file(self.name)} looks like an image but cannot be read "
                "(it may be damaged); save it again and upload it."
            ) from None
        if rotated:
            self.notes.append("The image was turned upright as its EXIF orientation asks.")
        return img


# --- zip ---


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


class _ZipImages(_Sequence):
    def __init__(
        self,
        zf: zipfile.ZipFile,
        members: list[zipfile.ZipInfo],
        lim: _Limiter,
        byte_budget: float,
        choice: _StackChoice | None = None,
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
                f"Image '{_display_name(label)}' in the zip is password-"
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
                f"Image '{_display_name(label)}' in the zip is damaged; create "
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
                f"Image '{_display_name(label)}' in the zip cannot be read (it "
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


def _ingest_zip(
    src: Path,
    writer: _FrameWriter,
    lim: _Limiter,
    name: str,
    fps_override: float | None,
    choice: _StackChoice | None = None,
) -> VideoInfo:
    from natsort import natsorted, ns

    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, *DECODE_ERRORS) as exc:
        log.info("bad zip %r: %s", name, exc)
        raise MediaError(
            f"{_the_file(name)} looks like a zip archive but is damaged; create "
            "the zip again and upload it."
        ) from exc
    with zf:
        infos = zf.infolist()
        unsafe = [i.filename for i in infos if _is_unsafe_member(i.filename)]
        if unsafe:
            raise MediaError(
                f"{_the_file(name)} contains unsafe file names (such as "
                f"'{_display_name(unsafe[0])}'); make the zip from a plain "
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
                f"{_the_file(name)} contains no images; the zip must hold "
                "JPEG, PNG or TIFF frames (.jpg, .jpeg, .png, .tif, .tiff)."
            )
        lim.check_frames(len(images))
        packed = max(1, src.stat().st_size)
        unpacked = sum(i.file_size for i in images)
        allowed = lim.limits.max_zip_ratio * packed
        if unpacked > allowed:
            raise LimitError(
                f"{_the_file(name)} unpacks to {unpacked / packed:.0f} times its "
                "size, more than this server allows "
                f"({lim.limits.max_zip_ratio:g} times), so it was refused as a "
                "possible zip bomb; upload a zip of ordinary image files."
            )
        too_big = [i for i in images if i.file_size > lim.max_image_bytes()]
        if too_big:
            raise LimitError(
                f"Image '{_display_name(too_big[0].filename)}' in the zip is "
                f"{_fmt_bytes(too_big[0].file_size)} unpacked, larger than an "
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
        return _ingest_sequence(seq, writer, lim, name, fps_override, kind="images")


# --- TIFF ---


class StackChoiceError(MediaError):
    """A microscopy TIFF needs a choice ingest cannot make alone: which channel to show, or
    along which axis frames run. ``str(err)`` is one sentence; the attributes tell a page
    what to offer: ``axes`` (the file's axes, e.g. "TCYX"), ``channels`` (display names,
    index = channel number from 0) and ``frame_axes`` (axes frames can run along, from
    :data:`STACK_FRAME_AXES`)."""

    def __init__(
        self, message: str, *, axes: str, channels: tuple[str, ...], frame_axes: tuple[str, ...]
    ):
        super().__init__(message)
        self.axes = axes
        self.channels = channels
        self.frame_axes = frame_axes


@dataclass(frozen=True)
class _StackChoice:
    channel: int | str | None = None
    axis: str | None = None


_MAX_PLANES_PER_FRAME = 64  # channels x slices one frame may merge (bounds the page count)
_TIME_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "µs": 1e-6,
    "us": 1e-6,
    "min": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


def _tiff_unreadable(name: str) -> str:
    return (
        f"{_the_file(name)} looks like a TIFF but cannot be read (it may be damaged); "
        "save it again and upload it."
    )


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


class _TiffStack(_Sequence):
    """Frames of one TIFF file, laid out as described in the module doc."""

    def __init__(self, tif, label: str, lim: _Limiter, choice: _StackChoice | None = None):
        self.tif = tif
        self.name = label
        self.notes = []
        self.choice = choice or _StackChoice()
        try:
            self._read_layout(tif, label, lim)
        except DECODE_ERRORS as exc:
            log.info("cannot read the structure of TIFF %r", label, exc_info=True)
            raise MediaError(_tiff_unreadable(label)) from exc
        try:
            self._read_metadata(tif)
        except (*DECODE_ERRORS, AttributeError):
            # Metadata only adds time and scale; a file whose pictures read is still used.
            log.info("ignoring unreadable metadata of TIFF %r", label, exc_info=True)

    # ------------------------------------------------------------------ layout
    def _read_layout(self, tif, label: str, lim: _Limiter) -> None:
        # Counting the pages first walks the whole page chain once; tifffile's own walk
        # (in ``series``) can otherwise run on forever through a damaged chain.
        lim.check_frames(math.ceil(len(tif.pages) / _MAX_PLANES_PER_FRAME))
        series = tif.series
        if not series:
            raise MediaError(_tiff_unreadable(label))
        if len(series) == 1:
            pages = list(series[0].pages)
            shape = tuple(series[0].shape)
            axes = series[0].axes
        else:
            pages = list(tif.pages)
            shapes = {getattr(p, "shape", None) for p in pages}
            if len(shapes) != 1:
                raise MediaError(
                    f"The pages of '{_display_name(label)}' have different "
                    "sizes; every frame of a TIFF stack must have the same width "
                    "and height, so save it again that way and upload it."
                )
            shape = (len(pages), *pages[0].shape)
            axes = ""
        self.shape_text = "x".join(map(str, shape))
        if not pages or any(p is None for p in pages):
            raise MediaError(self._layout_message())
        key = pages[0].keyframe if hasattr(pages[0], "keyframe") else pages[0]
        self.page_axes = key.axes
        page_shape = tuple(key.shape)
        if len(page_shape) == 3 and "S" not in self.page_axes:
            raise MediaError(self._layout_message())
        n_lead = len(shape) - len(page_shape)
        if n_lead < 0 or shape[n_lead:] != page_shape:
            raise MediaError(self._layout_message())
        lead_shape = shape[:n_lead]
        lead_axes = axes[:n_lead] if len(axes) == len(shape) else "Q" * n_lead
        self.axes = (lead_axes + self.page_axes) if len(axes) != len(shape) else axes
        samples = page_shape[self.page_axes.index("S")] if "S" in self.page_axes else 1
        if samples not in (1, 3, 4) or math.prod(lead_shape) != len(pages):
            raise MediaError(self._layout_message())

        named: dict[str, int] = {}  # "T", "Z", "C" -> position among the leading axes
        generic: list[int] = []
        for i, (a, n) in enumerate(zip(lead_axes, lead_shape, strict=True)):
            if n == 1:
                continue
            if a in "TZC" and a not in named:
                named[a] = i
            else:
                generic.append(i)
        legacy_colour = (
            not named and len(generic) == 2 and lead_shape[generic[1]] == 3 and samples == 1
        )
        if legacy_colour:  # (frames, 3, H, W): three colour planes per frame
            named["C"] = generic.pop()
        if len(generic) > 1 or (generic and ("T" in named or "Z" in named)):
            raise MediaError(self._layout_message())
        if samples > 1 and "C" in named:
            raise MediaError(self._layout_message())
        self.pages = pages
        self.lead_shape = lead_shape
        frame_axes = tuple(a for a in STACK_FRAME_AXES if a in named)
        self.frame_axes = frame_axes

        frame_pos = self._choose_frame_axis(label, named, generic, lead_shape)
        self.count = 1 if frame_pos is None else lead_shape[frame_pos]
        lim.check_frames(self.count)
        self.channel_pos = named.get("C")
        n_channels = 1 if self.channel_pos is None else lead_shape[self.channel_pos]
        self.channel_names = self._channel_names(tif, n_channels)
        self.channels = self._choose_channels(n_channels, samples, legacy_colour)
        self.stretch_per_channel = len(self.channels) > 1 and not legacy_colour
        plane = [d for a, d in zip(self.page_axes, page_shape, strict=True) if a in "YX"]
        if len(plane) != 2 or 0 in plane:
            raise MediaError(self._layout_message())
        lim.check_pixels(plane[1], plane[0])

    def _choose_frame_axis(
        self, label: str, named: dict[str, int], generic: list[int], lead_shape: tuple
    ) -> int | None:
        """Which leading axis runs through the frames (its position, None for a single
        frame); the other of T and Z is max-projected (noted)."""
        frame_axes = self.frame_axes
        wanted = self.choice.axis
        if wanted is not None and wanted not in named and not generic and frame_axes:
            raise StackChoiceError(
                f"{_the_file(label)} has no {wanted} axis to take frames from (its axes are "
                f"{self.axes}); choose {' or '.join(frame_axes)}.",
                axes=self.axes,
                channels=(),
                frame_axes=frame_axes,
            )
        if wanted in named:
            frame_pos = named[wanted]
        elif generic:
            frame_pos = generic[0]
        else:
            first = next((a for a in STACK_FRAME_AXES if a in named), None)
            frame_pos = None if first is None else named[first]
        self.frame_pos = frame_pos
        self.frame_axis = next((a for a, i in named.items() if i == frame_pos), None)
        self.project_pos = None
        for a in STACK_FRAME_AXES:
            if a in named and named[a] != frame_pos:
                self.project_pos = named[a]
                what = "slices" if a == "Z" else "time points"
                self.notes.append(
                    f"Each frame is the maximum-intensity projection of the "
                    f"{lead_shape[named[a]]} {what} along {a}."
                )
        return frame_pos

    def _layout_message(self) -> str:
        return (
            f"The TIFF '{_display_name(self.name)}' has a layout sam2web cannot use "
            f"({self.shape_text}); save it as one stack of gray frames (frames x height x "
            "width) or RGB frames (frames x height x width x 3) and upload it again."
        )

    def _choice_error(self, message: str) -> StackChoiceError:
        return StackChoiceError(
            message,
            axes=self.axes,
            channels=tuple(self.channel_names),
            frame_axes=self.frame_axes,
        )

    def _listed_channels(self) -> str:
        names = [_display_name(n, 30) for n in self.channel_names[:8]]
        if len(self.channel_names) > 8:
            names.append("…")
        return ", ".join(names)

    def _choose_channels(self, n: int, samples: int, legacy_colour: bool) -> list[int | None]:
        """Channel indices shown as gray (one) or as red, green, blue (up to three)."""
        wanted = self.choice.channel
        the = _the_file(self.name)
        if n == 1:
            if wanted in (None, 0, COMPOSITE) or wanted in self.channel_names:
                return [None if self.channel_pos is None else 0]
            raise self._choice_error(
                f"{the} has no channel {_display_name(str(wanted), 30)} (it has one "
                f"{'colour picture' if samples > 1 else 'channel'} per frame); load it "
                "without choosing a channel."
            )
        if wanted is None:
            if n == 3:
                if not legacy_colour:
                    self.notes.append(
                        f"The 3 channels ({self._listed_channels()}) are shown as red, "
                        "green and blue."
                    )
                return [0, 1, 2]
            raise self._choice_error(
                f"{the} has {n} channels ({self._listed_channels()}); choose the channel to "
                "track, or the colour composite of the first three, and load it again."
            )
        if wanted == COMPOSITE:
            shown = list(range(min(3, n)))
            colours = ", ".join(
                f"{_display_name(self.channel_names[c], 30)} as {_CHANNEL_COLOURS[c]}"
                for c in shown
            )
            self.notes.append(f"Channels are shown as a colour composite: {colours}.")
            if n > 3:
                self.notes[-1] = self.notes[-1][:-1] + f"; the other {n - 3} are left out."
            return shown
        index = None
        if isinstance(wanted, int) and 0 <= wanted < n:
            index = wanted
        elif isinstance(wanted, str):
            exact = [i for i, c in enumerate(self.channel_names) if c == wanted]
            loose = [i for i, c in enumerate(self.channel_names) if c.lower() == wanted.lower()]
            index = (exact or loose or [None])[0]
        if index is None:
            raise self._choice_error(
                f"{the} has no channel {_display_name(str(wanted), 30)}; choose one of its "
                f"{n} channels ({self._listed_channels()}) or the colour composite."
            )
        self.notes.append(
            f"Frames show channel {index} ({_display_name(self.channel_names[index], 30)}) of {n}."
        )
        return [index]

    def _channel_names(self, tif, n: int) -> list[str]:
        names = [f"channel {i}" for i in range(n)]
        if n > 1 and getattr(tif, "is_ome", False):
            try:
                found = [
                    el.get("Name")
                    for el in self._ome_pixels(tif) or ()
                    if el.tag.rsplit("}", 1)[-1] == "Channel"
                ]
            except (*DECODE_ERRORS, AttributeError):
                found = []
            if len(found) == n:
                names = [f or names[i] for i, f in enumerate(found)]
        return names

    # ------------------------------------------------------------------ metadata
    @staticmethod
    def _ome_pixels(tif):
        import xml.etree.ElementTree as ElementTree

        root = ElementTree.fromstring(tif.ome_metadata)
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "Pixels":
                return el
        return None

    def _read_metadata(self, tif) -> None:
        from ..units import normalize_length_unit

        interval = size = unit = None
        if getattr(tif, "is_ome", False) and tif.ome_metadata:
            pixels = self._ome_pixels(tif)
            if pixels is not None:
                step = _positive(pixels.get("TimeIncrement"))
                scale = _TIME_UNITS.get(pixels.get("TimeIncrementUnit", "s"))
                interval = step * scale if step and scale else None
                size = _positive(pixels.get("PhysicalSizeX"))
                unit = normalize_length_unit(pixels.get("PhysicalSizeXUnit", "µm"))
        elif getattr(tif, "is_imagej", False):
            ij = tif.imagej_metadata or {}
            step = _positive(ij.get("finterval"))
            scale = _TIME_UNITS.get(str(ij.get("tunit", "s")).strip().lower())
            interval = step * scale if step and scale else None
            unit = normalize_length_unit(ij.get("unit"))
            tag = tif.pages[0].tags.get("XResolution")
            if tag is not None and unit:
                num, den = tag.value
                size = _positive(den / num) if num else None
        if size and unit:
            self.pixel_size, self.pixel_unit = float(size), unit
        if interval and self.frame_axis == "T":
            self.fps = 1.0 / interval
            self.notes.append(
                f"Time stamps use the file's frame interval of {_fmt_num(interval)} seconds."
            )

    # ------------------------------------------------------------------ pixels
    def label(self, index: int) -> str:
        return f"{self.name} frame {index + 1}"

    def _page(self, j: int) -> np.ndarray:
        try:
            arr = self.pages[j].asarray()
        except DECODE_ERRORS as exc:
            log.info("cannot decode TIFF %r page %d", self.name, j, exc_info=True)
            raise MediaError(
                f"The TIFF '{_display_name(self.name)}' cannot be read (it may "
                "be damaged or use an unusual compression); save it again "
                "uncompressed or with LZW/zlib and upload it."
            ) from exc
        if self.page_axes.startswith("S") and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        return arr

    def _plane(self, index: int, channel: int | None) -> np.ndarray:
        """One channel of frame ``index``, projected along the other of T and Z."""
        idx = [0] * len(self.lead_shape)
        if self.frame_pos is not None:
            idx[self.frame_pos] = index
        if channel is not None:
            idx[self.channel_pos] = channel
        steps = range(self.lead_shape[self.project_pos]) if self.project_pos is not None else [0]
        planes = []
        for k in steps:
            if self.project_pos is not None:
                idx[self.project_pos] = k
            planes.append(self._page(int(np.ravel_multi_index(idx, self.lead_shape))))
        return planes[0] if len(planes) == 1 else np.fmax.reduce(planes)

    def read(self, index: int) -> np.ndarray:
        planes = [self._plane(index, c) for c in self.channels]
        if len(planes) == 1:
            return planes[0]
        while len(planes) < 3:
            planes.append(np.zeros_like(planes[0]))
        return np.stack(planes, axis=-1)


def _ingest_tiff(
    src: Path,
    writer: _FrameWriter,
    lim: _Limiter,
    name: str,
    fps_override: float | None,
    choice: _StackChoice | None = None,
) -> VideoInfo:
    import tifffile

    try:
        tif = tifffile.TiffFile(src)
    except DECODE_ERRORS as exc:
        log.info("cannot open TIFF %r", name, exc_info=True)
        raise MediaError(_tiff_unreadable(name)) from exc
    with tif:
        stack = _TiffStack(tif, name, lim, choice)
        return _ingest_sequence(stack, writer, lim, name, fps_override, kind="tiff")
