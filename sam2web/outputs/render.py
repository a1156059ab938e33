"""Drawing masks and prompts on frames, and writing browser-playable MP4 files.

Frames are uint8 RGB arrays (H, W, 3) indexed [row, col]; masks are boolean (H, W). Points
are (x, y) in original-frame pixels with the origin at the top-left pixel's corner (see
:mod:`sam2web.types`); OpenCV draws in pixel-centre coordinates, so :func:`_cv_point`
subtracts half a pixel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import numbers
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..analysis.results import FrameSink, centroid_xy
from ..tracking.maskstore import MaskStore
from ..types import RGB, Progress, TrackedObject

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


def _check_frame(frame_rgb: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame_rgb)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB frame (H, W, 3), got {frame.dtype} {frame.shape}")
    return frame


# ---------------------------------------------------------------------- overlays
def draw_overlay(
    frame_rgb: np.ndarray,
    masks: Mapping[int, np.ndarray],
    objects: Mapping[int, TrackedObject],
    style: OverlayStyle | None = None,
    trails: Mapping[int, list[tuple[float, float]]] | None = None,
) -> np.ndarray:
    """The frame with each object's mask tinted in its colour; returns a new array.

    Only objects in ``objects`` are drawn, in its order (a later object covers an earlier
    one where masks overlap). Inside a mask, pixel = (1 - opacity) * pixel + opacity *
    colour. Contours are drawn on the mask's own boundary pixels. ``trails`` maps object
    ids to recent centroids (x, y), oldest first; the last ``style.trails`` are joined.
    """
    style = style or OverlayStyle()
    frame = _check_frame(frame_rgb)
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
        color = np.asarray(obj.color, dtype=np.float32)
        pixels = region[inside].astype(np.float32)
        region[inside] = np.rint(pixels * (1.0 - alpha) + color * alpha).astype(np.uint8)
        drawn.append((obj, mask, box))

    thickness = line_thickness(h, w)
    if style.contours:
        for obj, mask, box in drawn:
            # Contours of the cropped mask, shifted back: the crop holds the whole mask.
            contours, _ = cv2.findContours(
                mask[box].astype(np.uint8),
                cv2.RETR_EXTERNAL,
                cv2.CHAIN_APPROX_NONE,
                offset=(box[1].start, box[0].start),
            )
            # thickness t centred on the boundary pixels; half of it falls outside the mask
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in obj.color), thickness)

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
        out = _draw_labels(out, [(obj, mask) for obj, mask, _ in drawn])
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


def _draw_labels(frame: np.ndarray, drawn: list[tuple[TrackedObject, np.ndarray]]) -> np.ndarray:
    """Object names on filled tags in the object colour, centred above each mask's top
    edge (or just inside it when there is no room above)."""
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
        draw.rectangle((x0, y0, x0 + tw - 1, y0 + th - 1), fill=(r, g, b))
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
    frame = _check_frame(frame_rgb)
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


# ---------------------------------------------------------------------- video
class Mp4Writer:
    """H.264 MP4 that browsers play: yuv420p, moov atom first (+faststart), the given fps.

    Frames are (height, width, 3) uint8 RGB. H.264 4:2:0 needs even sizes, so an odd width
    or height gets one black column / row added on the right / bottom (the picture is never
    rescaled, so overlays stay aligned with the original pixels). imageio-ffmpeg's bundled
    ffmpeg encodes, with the command ``imageio_ffmpeg.write_frames`` builds for
    ``macro_block_size=2``; it is run directly so that ffmpeg's exit status and messages are
    checked. The file appears at ``path`` only once encoding succeeded.
    """

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 20):
        if width <= 0 or height <= 0:
            raise ValueError(f"video size must be positive, got {width}x{height}")
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        import imageio_ffmpeg

        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.out_width, self.out_height = self.width + self.width % 2, self.height + self.height % 2
        self.fps = fps
        self.frames_written = 0
        rate = (
            fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1_000_000)
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=".mp4.part", dir=self.path.parent
        )
        os.close(fd)
        self._canvas = np.zeros((self.out_height, self.out_width, 3), dtype=np.uint8)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _cleanup()
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error"]
        cmd += ["-f", "rawvideo", "-vcodec", "rawvideo", "-pix_fmt", "rgb24"]
        cmd += ["-s", f"{self.out_width}x{self.out_height}", "-r", str(rate), "-i", "-", "-an"]
        cmd += ["-vcodec", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
        cmd += ["-crf", str(crf), "-preset", "veryfast", "-f", "mp4", self._tmp]
        try:
            self._proc: subprocess.Popen | None = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
        except BaseException:
            self._cleanup()
            raise

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 RGB frame."""
        if self._proc is None:
            raise RuntimeError("this video writer is already closed")
        frame = _check_frame(frame_rgb)
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"frame is {frame.shape[1]}x{frame.shape[0]}, the video is "
                f"{self.width}x{self.height}"
            )
        self._canvas[: self.height, : self.width] = frame
        try:
            self._proc.stdin.write(self._canvas.tobytes())
        except (BrokenPipeError, OSError) as err:
            message = self._failure("ffmpeg stopped while frames were being written")
            self.abort()
            raise RuntimeError(message) from err
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file; raises RuntimeError (and leaves no file) when encoding failed."""
        proc = self._proc
        if proc is None:
            return
        if self.frames_written == 0:
            self.abort()
            raise RuntimeError(f"no frames were written to {self.path.name}")
        with contextlib.suppress(OSError):
            proc.stdin.close()
        code = proc.wait()
        self._proc = None
        if code != 0 or os.path.getsize(self._tmp) == 0:
            message = self._failure(f"ffmpeg exited with status {code}")
            self._cleanup()
            raise RuntimeError(message)
        os.replace(self._tmp, self.path)
        self._cleanup()

    def abort(self) -> None:
        """Stop encoding and remove the unfinished file."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._cleanup()

    def _failure(self, what: str) -> str:
        try:
            self._stderr.seek(0)
            detail = self._stderr.read().decode("utf-8", "replace").strip()[-800:]
        except (OSError, ValueError):
            detail = ""
        return f"Writing the video {self.path.name} failed: {what}." + (
            f" ffmpeg said: {detail}" if detail else ""
        )

    def _cleanup(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
        with contextlib.suppress(OSError, ValueError):
            self._stderr.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        if getattr(self, "_proc", None) is not None:
            self.abort()


def render_overlay_video(
    frames: Iterable[tuple[int, np.ndarray]],
    store: MaskStore,
    objects: Mapping[int, TrackedObject] | Iterable[TrackedObject],
    style: OverlayStyle,
    path: Path,
    fps: float,
    progress: Progress | None = None,
    total: int | None = None,
    sinks: Iterable[FrameSink] = (),
) -> Path:
    """Write an MP4 of ``frames`` ((frame_idx, rgb) pairs) with stored masks drawn on them.

    Every frame is written, so the video keeps the source's length and frame rate; frames
    without stored results are written unchanged. ``progress(done, total)`` is called after
    each frame (total from ``total`` or ``len(frames)``, else None). Each frame's stored
    result is also handed to ``sinks`` (their ``add`` only: the caller finishes them), so
    one read of the store serves the video and every other export.
    """
    sinks = list(sinks)
    if not isinstance(objects, Mapping):
        objects = {o.obj_id: o for o in objects}
    if total is None and hasattr(frames, "__len__"):
        total = len(frames)  # type: ignore[arg-type]
    history: dict[int, deque[tuple[int, tuple[float, float]]]] = {i: deque() for i in objects}
    writer: Mp4Writer | None = None
    try:
        for done, (frame_idx, rgb) in enumerate(frames, start=1):
            rgb = _check_frame(rgb)
            if writer is None:
                writer = Mp4Writer(path, rgb.shape[1], rgb.shape[0], fps)
            result = store.read(frame_idx)
            for sink in sinks:
                sink.add(frame_idx, result)
            masks = result.masks if result is not None else {}
            trails = None
            if style.trails > 0:
                trails = {}
                for obj_id, points in history.items():
                    while points and points[0][0] <= frame_idx - style.trails:
                        points.popleft()
                    c = centroid_xy(masks.get(obj_id))
                    if c is not None:
                        points.append((frame_idx, c))
                    trails[obj_id] = [p for _, p in points]
            drawn = draw_overlay(rgb, masks, objects, style, trails) if masks else rgb
            writer.write(draw_zones(drawn, style.zones) if style.zones else drawn)
            if progress is not None:
                progress(done, total)
        if writer is None:
            raise ValueError("there are no frames to write")
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return Path(path)


class _Stopped(Exception):
    """Raised inside the writer thread of :class:`LiveOverlayVideo` when it is aborted."""


class LiveOverlayVideo:
    """Writes the overlay video in a background thread while tracking is still running.

    An MP4 is written in frame order, so frame ``i`` is rendered as soon as it is final:
    when it is not among ``pending`` (the frames the running propagation will still
    track; a frame a run tracks twice counts twice) or once :meth:`frame_done` reported it. A forward run from the first frame thus
    renders and encodes each frame right behind the tracker, and the video is ready moments
    after the last frame is tracked; frames that wait for a later pass (backward runs) are
    rendered when it reaches them. The file is the same as :func:`render_overlay_video`
    would write after tracking, since each frame is read from the store only once it is
    final.

    Call :meth:`finish` when tracking ended (finished or cancelled): every frame still
    pending is then final as it stands. :meth:`abort` stops and leaves no file. ``sinks``
    get every frame's result from the same read (see :func:`render_overlay_video`).
    """

    def __init__(
        self,
        read_rgb: Callable[[int], np.ndarray],
        num_frames: int,
        store: MaskStore,
        objects: Mapping[int, TrackedObject],
        style: OverlayStyle,
        path: Path,
        fps: float,
        pending: Iterable[int] = (),
        sinks: Iterable[FrameSink] = (),
    ):
        self.path = Path(path)
        self.num_frames = int(num_frames)
        self.style = style
        self._read_rgb = read_rgb
        self._pending = Counter(int(i) for i in pending)  # frame -> times still to track
        self._cond = threading.Condition()
        self._stopped = False
        self._written = 0
        self._error: BaseException | None = None
        self._result: Path | None = None
        args = (store, dict(objects), style, fps, list(sinks))
        self._thread = threading.Thread(
            target=self._run, args=args, name="overlay-video", daemon=True
        )
        self._thread.start()

    @property
    def frames_written(self) -> int:
        return self._written

    def frame_done(self, frame_idx: int) -> None:
        """The propagation stored its final masks for ``frame_idx``."""
        with self._cond:
            frame_idx = int(frame_idx)
            if self._pending[frame_idx] > 1:
                self._pending[frame_idx] -= 1
            else:
                self._pending.pop(frame_idx, None)
            self._cond.notify_all()

    def finish(self, progress: Progress | None = None, timeout: float | None = None) -> Path:
        """Render what is left and return the finished file (raises what rendering raised).
        ``progress(done, total)`` reports frames written while this waits."""
        with self._cond:
            self._pending.clear()
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            self._thread.join(0.25)
            if progress is not None:
                progress(self._written, self.num_frames)
            if deadline is not None and time.monotonic() > deadline:
                self.abort()
                raise TimeoutError("the overlay video was not finished in time")
        if progress is not None:  # at least once, also when it was done before this call
            progress(self._written, self.num_frames)
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError("the overlay video was aborted")
        return self._result

    def abort(self) -> None:
        """Stop rendering; the unfinished file is removed."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _frames(self) -> Iterator[tuple[int, np.ndarray]]:
        for frame_idx in range(self.num_frames):
            with self._cond:
                while frame_idx in self._pending and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    raise _Stopped
            yield frame_idx, self._read_rgb(frame_idx)

    def _count(self, done: int, total: int | None) -> None:
        self._written = done

    def _run(self, store, objects, style, fps, sinks) -> None:
        # Tracking has priority: on Linux a thread has its own nice value, which the ffmpeg
        # process started from it inherits, so rendering and encoding take the CPU time
        # tracking leaves and never slow it down.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            self._result = render_overlay_video(
                self._frames(),
                store,
                objects,
                style,
                self.path,
                fps,
                progress=self._count,
                total=self.num_frames,
                sinks=sinks,
            )
        except _Stopped:
            pass
        except BaseException as err:  # handed to finish()
            self._error = err
