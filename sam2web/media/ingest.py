"""Media ingest: an uploaded file becomes a folder of numbered RGB frames.

:func:`ingest` reads a video, a GIF, a zip of images, a TIFF stack or a single image and
writes ``00000.jpg``, ``00001.jpg``, ... (or ``.png``) plus ``video.json`` into a folder the
server chose. :class:`~.folder.FrameFolder` opens such a folder again.

What a user can rely on:

* Every frame of the file (or, with a frame step N, every N-th frame: the original's
  frames 0, N, 2N, ..., counted exactly as decoded, never by time) is written exactly once, at its original size (odd sizes stay
  odd), upright (rotation metadata of phone videos and EXIF orientation of photos applied),
  as 8-bit RGB. The frame rate is never resampled: time stamps use the file's rate.
* The kind of file is recognised from its content, not its name. Paths inside the output
  folder never come from the upload's name or from names inside a zip.
* On any failure the output folder is removed and a :class:`~sam2web.errors.MediaError` or
  :class:`~sam2web.errors.LimitError` says, in one sentence, what is wrong and what to do.
* Anything ingest changed or guessed is listed in ``VideoInfo.notes``.

This module tells the kind of file from its first bytes and hands it to its family:
:mod:`.video` (video containers and GIFs), :mod:`.images` (single images and zips of
images) or :mod:`.tiff` (TIFF stacks, with the choice of channel and axis for microscopy
files). Image sequences share :mod:`.sequence` and its conversion to 8-bit,
:mod:`.stretch`; :mod:`.limits` holds the limits every upload is checked against, and
:mod:`.folder` writes and reads the folder of frames.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

from ..errors import MediaError
from ..types import Progress, VideoInfo
from .folder import FRAME_EXTENSIONS, FrameWriter, write_info
from .images import ingest_image, ingest_zip
from .limits import Limiter, MediaLimits, the_file, unsupported
from .tiff import STACK_FRAME_AXES, StackChoice, ingest_tiff
from .video import ingest_gif, ingest_video

log = logging.getLogger(__name__)


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
    frame_step: int = 1,
) -> VideoInfo:
    """Decode ``src`` into frame files in ``dest_dir`` (created here; must not hold files).

    ``source_name`` is the name shown to the user (default: ``src``'s name); it is never
    used as a path. ``fps`` overrides the frame rate used for time stamps (frames are never
    dropped or repeated); image sequences default to 1 frame per second.
    ``progress(done, total)`` is called every few frames; ``total`` is None when unknown.
    ``max_output_bytes`` bounds the bytes of frame files written (None: no bound); going
    beyond it stops decoding with StorageFullError.
    ``channel`` and ``axis`` choose what a multi-dimensional TIFF shows (see "Microscopy
    TIFF" in :mod:`sam2web.media.tiff`): ``channel`` a channel index from 0, a channel name,
    or :data:`~sam2web.media.tiff.COMPOSITE`; ``axis`` "T" or "Z", the axis whose positions
    become frames. Other kinds of file ignore them.
    ``frame_step`` N keeps every N-th frame (see :func:`check_frame_step`); the info's
    ``frame_step`` and ``source_frames`` say so, and its times are the original's.
    Raises MediaError (:class:`~sam2web.media.tiff.StackChoiceError` when a TIFF needs a
    choice), LimitError or StorageFullError with a message fit for the user; nothing is
    left behind.
    """
    src = Path(src)
    dest_dir = Path(dest_dir)
    if frame_format not in FRAME_EXTENSIONS:
        raise ValueError(f"frame_format must be one of {sorted(FRAME_EXTENSIONS)}")
    if axis not in (None, *STACK_FRAME_AXES):
        raise ValueError(f"axis must be None or one of {STACK_FRAME_AXES}, got {axis!r}")
    if isinstance(channel, bool) or not isinstance(channel, (int, str, type(None))):
        raise TypeError(f"channel must be an int, a str or None, got {type(channel).__name__}")
    choice = StackChoice(channel, axis)
    name = src.name if source_name is None else source_name
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise MediaError(
            "The frame rate must be a positive number of frames per second, "
            "for example 10 or 29.97."
        )
    frame_step = check_frame_step(frame_step)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if any(dest_dir.iterdir()):
        raise FileExistsError(f"{dest_dir} already holds files")
    try:
        writer = FrameWriter(
            dest_dir, frame_format, progress, max_bytes=max_output_bytes, step=frame_step
        )
        info = _ingest_into(src, writer, Limiter(limits, name), name, fps, choice)
        write_info(dest_dir, info, frame_format)
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


MAX_FRAME_STEP = 1000


def check_frame_step(value: object) -> int:
    """A frame step as a whole number from 1 (every frame) to :data:`MAX_FRAME_STEP`, or
    MediaError with one sentence."""
    try:
        step = int(value)  # type: ignore[call-overload]
        exact = not isinstance(value, bool) and float(value) == step  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact or not 1 <= step <= MAX_FRAME_STEP:
        raise MediaError(
            f"The frame step must be a whole number from 1 (every frame) to "
            f"{MAX_FRAME_STEP}, for example 5 to track every 5th frame; got {value!r}."
        )
    return step


def _ingest_into(
    src: Path,
    writer: FrameWriter,
    lim: Limiter,
    name: str,
    fps: float | None,
    choice: StackChoice,
) -> VideoInfo:
    try:
        size = src.stat().st_size if src.is_file() else -1
    except OSError:
        size = -1
    if size < 0:
        raise MediaError(
            f"{the_file(name)} is missing or is not a file (an upload may have been cut "
            "off); choose the file again and upload it."
        )
    if size == 0:
        raise MediaError(
            f"{the_file(name)} is empty (0 bytes); choose the file again and upload it."
        )
    lim.check_bytes(size)
    with open(src, "rb") as fh:
        head = fh.read(4096)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return ingest_zip(src, writer, lim, name, fps, choice)
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return ingest_tiff(src, writer, lim, name, fps, choice)
    if head.startswith(b"GIF8"):
        return ingest_gif(src, writer, lim, name, fps)
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        return ingest_image(src, writer, lim, name, fps)
    if _looks_like_text(head):
        # Text is never a video; ffmpeg would read playlists and the like, which may
        # point at other files or the network.
        raise MediaError(unsupported(name))
    return ingest_video(src, writer, lim, name, fps, head)


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
