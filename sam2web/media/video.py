"""Videos and GIFs: every frame decoded once, at the file's own rate.

Containers (MP4, MOV, AVI, MKV, WEBM, MPG) are read with OpenCV's FFmpeg backend, rotation
metadata of phone videos applied; a file ffmpeg cannot open gets a sentence built from
ffmpeg's own report (sound only, no picture, a missing index). GIFs are read with PIL; their
rate is the median of the frame delays a browser would show.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from ..errors import MediaError
from ..types import VideoInfo
from .folder import FrameWriter, finish_info
from .limits import DECODE_ERRORS, Limiter, the_file, unsupported

log = logging.getLogger(__name__)

FALLBACK_FPS = 25.0  # for videos that state no usable frame rate


def ingest_video(
    src: Path,
    writer: FrameWriter,
    lim: Limiter,
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
            lim.check_frames(-(-claimed // writer.step))
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
            keep = writer.wants_next()
            ok, bgr = _next_frame(cap, keep)
            if not ok:
                break
            if count == 0:
                lim.check_pixels(bgr.shape[1], bgr.shape[0])
            count += 1
            if keep:
                lim.check_frames(writer.kept + 1)
            lim.check_duration(count / fps)
            pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            if math.isfinite(pos_ms):
                last_time_s = max(last_time_s, pos_ms / 1000.0)
            if keep:
                writer.add(_bgr_to_rgb(bgr))
            else:
                writer.skip()
    finally:
        cap.release()

    if writer.kept == 0:
        raise MediaError(
            f"{the_file(name)} contains no video frames; upload a video with picture content."
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
    return finish_info(writer, name, "video", fps, fps_override, notes, nominal=False)


def _next_frame(cap, keep: bool) -> tuple[bool, np.ndarray | None]:
    """(read, BGR frame): a frame the step leaves out is only grabbed (demuxed and decoded,
    not converted), so frames are counted as decoded and the frames kept are exact."""
    if keep:
        ok, bgr = cap.read()
        return ok and bgr is not None, bgr
    return bool(cap.grab()), None


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
            f"{the_file(name)} contains only sound and no picture; upload a video file "
            "(MP4, MOV, AVI, MKV, WEBM or MPG)."
        )
    # MP4/MOV files are a chain of boxes: size (4 bytes) and type; "ftyp" or "mdat" first.
    is_mp4 = head[4:8] in (b"ftyp", b"mdat", b"moov", b"free", b"wide", b"skip")
    if is_mp4 and "Input #0" in report and not streams:
        return f"{the_file(name)} contains no video frames; upload a video with picture content."
    if is_mp4 and "moov atom not found" in report:
        return (
            f"{the_file(name)} is incomplete or damaged (its index is missing, which "
            "happens when a recording or an upload is cut off); upload the whole file "
            "again or export the video anew."
        )
    return unsupported(name)


def ingest_gif(
    src: Path, writer: FrameWriter, lim: Limiter, name: str, fps_override: float | None
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
            f"{the_file(name)} is a GIF that cannot be read (it may be "
            "damaged); export it again or upload it as a video."
        ) from exc
    if writer.count == 0:
        raise MediaError(
            f"{the_file(name)} contains no frames; upload a GIF with at least one frame."
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
    return finish_info(writer, name, "video", fps, fps_override, notes, nominal=False)
