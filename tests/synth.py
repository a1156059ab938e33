"""Synthetic clips with known ground truth: coloured discs moving on a textured background.

Everything here writes real files (MP4/AVI/GIF/zip/TIFF) with real encoders, so media tests
exercise the same decoders a user's upload does.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Disc:
    x0: float  # centre at frame 0, pixels
    y0: float
    vx: float  # pixels per frame
    vy: float
    radius: float
    color: tuple[int, int, int]

    def center(self, t: int) -> tuple[float, float]:
        return self.x0 + self.vx * t, self.y0 + self.vy * t


DEFAULT_DISCS = (
    Disc(x0=40, y0=60, vx=3.0, vy=0.5, radius=14, color=(230, 60, 40)),
    Disc(x0=120, y0=40, vx=-1.5, vy=2.0, radius=11, color=(40, 90, 230)),
)


def background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, slightly textured grey background (uint8 HxWx3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 110 + 25 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    noise = rng.normal(0, 4, size=(height, width))
    grey = np.clip(base + noise, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def disc_mask(height: int, width: int, disc: Disc, t: int) -> np.ndarray:
    """Ground-truth boolean mask [row, col] of ``disc`` at frame ``t``."""
    cx, cy = disc.center(t)
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= disc.radius**2


def make_frames(
    num_frames: int = 8,
    height: int = 120,
    width: int = 160,
    discs: tuple[Disc, ...] = DEFAULT_DISCS,
    seed: int = 0,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of discs moving over the background."""
    bg = background(height, width, seed)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = bg.copy()
        for disc in discs:
            frame[disc_mask(height, width, disc, t)] = disc.color
        frames[t] = frame
    return frames


def write_video(path: Path, frames: np.ndarray, fps: float = 10.0, codec: str = "libx264",
                pix_fmt: str = "yuv420p", extra: list[str] | None = None) -> Path:
    """Encode frames with the bundled ffmpeg (even sizes for yuv420p)."""
    import imageio_ffmpeg

    h, w = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec=codec, pix_fmt_out=pix_fmt,
        macro_block_size=1, output_params=(extra or []) + ["-loglevel", "error"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def write_image_zip(path: Path, frames: np.ndarray, fmt: str = "png", prefix: str = "frame_",
                    shuffle_names: bool = True) -> Path:
    """A zip of one image per frame, named frame_1, frame_2, ..., frame_10 (natural order),
    written to the archive in a scrambled order so sorting matters."""
    from PIL import Image

    names = [f"{prefix}{i + 1}.{fmt}" for i in range(len(frames))]
    order = list(range(len(frames)))
    if shuffle_names:
        order = order[::-1]
    with zipfile.ZipFile(path, "w") as zf:
        for i in order:
            buf = io.BytesIO()
            Image.fromarray(frames[i]).save(buf, format="PNG" if fmt == "png" else "JPEG",
                                            quality=95)
            zf.writestr(names[i], buf.getvalue())
    return path
