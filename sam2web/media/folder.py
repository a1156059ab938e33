"""A folder of frames: ``00000.jpg``, ``00001.jpg``, ... (or ``.png``) and ``video.json``.

:class:`FrameWriter` writes the frames of one upload as numbered 8-bit RGB files, all of one
size, within a bound on the bytes written; :func:`write_info` writes the ``video.json`` that
describes them, and :class:`FrameFolder` opens such a folder again. File names come from
frame numbers only, never from the upload's name or from names inside it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MediaError, StorageFullError
from ..types import Progress, VideoInfo

INFO_FILE = "video.json"
FRAME_DIGITS = 5
FRAME_EXTENSIONS = {"jpeg": ".jpg", "png": ".png"}
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 1
PROGRESS_EVERY = 5  # frames between progress callbacks


def frame_filename(index: int, frame_format: str = "jpeg") -> str:
    """File name of frame ``index`` (from 0): ``00012.jpg``; SAM2's loader sorts by number."""
    return f"{index:0{FRAME_DIGITS}d}{FRAME_EXTENSIONS[frame_format]}"


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


def write_info(folder: Path, info: VideoInfo, frame_format: str) -> None:
    """Write ``video.json`` into ``folder``: ``info`` and the frame files' format, as
    :class:`FrameFolder` reads them."""
    meta = info_to_dict(info)
    meta["frame_format"] = frame_format
    (folder / INFO_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


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


class FrameWriter:
    """Writes RGB uint8 frames as numbered files; all frames must have one size.

    ``progress(done, total)`` is called every few frames (None: not at all); readers set
    ``self.progress.total`` when they know it. Going beyond ``max_bytes`` of frame files
    (None: no bound) raises StorageFullError.

    With ``step`` N > 1 only every N-th frame given is written (the original's frames 0, N,
    2N, ...), as file 0, 1, 2, ...; ``count`` counts the frames given, ``kept`` those
    written. A reader that can skip a frame cheaply asks :meth:`wants_next` first and
    calls :meth:`skip` instead of decoding it."""

    def __init__(
        self,
        folder: Path,
        frame_format: str,
        progress: Progress | None = None,
        max_bytes: int | None = None,
        step: int = 1,
    ):
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be a whole number >= 1, got {step!r}")
        self.folder = folder
        self.frame_format = frame_format
        self.progress = _Progress(progress)
        self.max_bytes = max_bytes
        self.step = step
        self.count = 0  # frames given (the original's frames read so far)
        self.kept = 0  # frames written
        self.bytes = 0  # written so far
        self.size: tuple[int, int] | None = None  # (width, height)

    def wants_next(self) -> bool:
        """True when the next frame given will be written (it is a multiple of the step)."""
        return self.count % self.step == 0

    def skip(self) -> None:
        """Count a frame that is not written (the reader did not decode it)."""
        assert not self.wants_next()
        self.count += 1
        self.progress.update(self.count)

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
        if not self.wants_next():
            self.skip()
            return
        img = Image.fromarray(np.ascontiguousarray(rgb))
        path = self.folder / frame_filename(self.kept, self.frame_format)
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
        self.kept += 1
        self.progress.update(self.count)

    def finish(self) -> None:
        self.progress.update(self.count, final=True)


def finish_info(
    writer: FrameWriter,
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
    if writer.step > 1:
        notes.append(
            f"One frame in every {writer.step} was kept ({writer.kept} of {writer.count}); "
            "frame numbers and times are the original's."
        )
    return VideoInfo(
        num_frames=writer.kept,
        width=writer.size[0],
        height=writer.size[1],
        fps=float(fps),
        source_name=name,
        kind=kind,
        fps_is_nominal=nominal,
        notes=tuple(dict.fromkeys(notes)),
        pixel_size=pixel_size,
        pixel_unit=pixel_unit,
        frame_step=writer.step,
        source_frames=writer.count,
    )
