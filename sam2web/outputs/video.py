"""Browser-playable MP4 files and the overlay videos written with them.

:class:`Mp4Writer` encodes frames to H.264; :func:`render_overlay_video` writes a video with
the stored masks drawn on every frame (see :mod:`sam2web.outputs.render`), and
:class:`LiveOverlayVideo` writes the same file in a background thread while tracking runs.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..analysis.results import FrameSink, centroid_xy
from ..tracking.maskstore import MaskStore
from ..types import FrameResult, Progress, TrackedObject
from .render import OverlayStyle, check_frame, draw_overlay, draw_zones


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
        frame = check_frame(frame_rgb)
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
    read: Callable[[int], FrameResult | None] | None = None,
) -> Path:
    """Write an MP4 of ``frames`` ((frame_idx, rgb) pairs) with stored masks drawn on them.

    Every frame is written, so the video keeps the source's length and frame rate; frames
    without stored results are written unchanged. ``progress(done, total)`` is called after
    each frame (total from ``total`` or ``len(frames)``, else None). Each frame's stored
    result is also handed to ``sinks`` (their ``add`` only: the caller finishes them), so
    one read of the store serves the video and every other export. ``read(frame_idx)``
    gives a frame's result in place of ``store.read``.
    """
    sinks = list(sinks)
    read = store.read if read is None else read
    if not isinstance(objects, Mapping):
        objects = {o.obj_id: o for o in objects}
    if total is None and hasattr(frames, "__len__"):
        total = len(frames)  # type: ignore[arg-type]
    history: dict[int, deque[tuple[int, tuple[float, float]]]] = {i: deque() for i in objects}
    writer: Mp4Writer | None = None
    try:
        for done, (frame_idx, rgb) in enumerate(frames, start=1):
            rgb = check_frame(rgb)
            if writer is None:
                writer = Mp4Writer(path, rgb.shape[1], rgb.shape[0], fps)
            result = read(frame_idx)
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

    A result handed to :meth:`frame_done` is used in place of reading the frame back from
    the store (the caller vouches that it is what the store holds for the objects drawn);
    at most :data:`HANDED_FRAMES` wait at a time, the frames beyond are read.
    """

    HANDED_FRAMES = 32

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
        self._handed: dict[int, FrameResult] = {}  # final results not yet rendered
        self._store = store
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

    def frame_done(self, frame_idx: int, result: FrameResult | None = None) -> None:
        """The propagation stored its masks for ``frame_idx`` (``result``: as stored)."""
        with self._cond:
            frame_idx = int(frame_idx)
            if self._pending[frame_idx] > 1:
                self._pending[frame_idx] -= 1
                self._handed.pop(frame_idx, None)  # not final yet
            else:
                self._pending.pop(frame_idx, None)
                if result is not None and len(self._handed) < self.HANDED_FRAMES:
                    self._handed[frame_idx] = result
            self._cond.notify_all()

    def _read(self, frame_idx: int) -> FrameResult | None:
        with self._cond:
            handed = self._handed.pop(frame_idx, None)
        return self._store.read(frame_idx) if handed is None else handed

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
                read=self._read,
            )
        except _Stopped:
            pass
        except BaseException as err:  # handed to finish()
            self._error = err
