"""Synthetic clips with known ground truth: coloured discs moving on a textured background.

Everything here writes real files (MP4/AVI/GIF/zip/TIFF) with real encoders, so media tests
exercise the same decoders a user's upload does.
"""

from __future__ import annotations

import functools
import io
import re
import subprocess
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


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: float = 10.0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    extra: list[str] | None = None,
) -> Path:
    """Encode frames with the bundled ffmpeg (even sizes for yuv420p)."""
    import imageio_ffmpeg

    h, w = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec=codec,
        pix_fmt_out=pix_fmt,
        macro_block_size=1,
        output_params=(extra or []) + ["-loglevel", "error"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def write_image_zip(
    path: Path,
    frames: np.ndarray,
    fmt: str = "png",
    prefix: str = "frame_",
    shuffle_names: bool = True,
) -> Path:
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
            Image.fromarray(frames[i]).save(
                buf, format="PNG" if fmt == "png" else "JPEG", quality=95
            )
            zf.writestr(names[i], buf.getvalue())
    return path


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    """A deflated zip holding ``members`` ({name inside the zip: bytes}) in this order.
    Names are stored as given, including ``../`` or a leading ``/``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # ZipInfo() itself strips leading slashes
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def zip_bomb(path: Path, megabytes: int, name: str = "frame_1.png") -> Path:
    """One member of ``megabytes`` MB of zeros: a few kB packed."""
    chunk = bytes(1 << 20)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open(name, "w") as member,
    ):
        for _ in range(megabytes):
            member.write(chunk)
    return path


def write_gif(path: Path, frames: np.ndarray, durations: list[int]) -> Path:
    """A palette GIF with one delay (ms) per frame."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


@functools.cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly; raises when it fails."""
    subprocess.run(
        [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


@functools.cache
def has_encoder(name: str) -> bool:
    out = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return re.search(rf"^\s*\S+\s+{re.escape(name)}\s", out, re.MULTILINE) is not None


def rotated_video(path: Path, frames: np.ndarray, degrees: int = 90) -> Path:
    """A phone-style video: landscape pixels plus display-rotation metadata."""
    plain = write_video(path.with_name(f"plain_{path.name}"), frames)
    ffmpeg("-display_rotation", str(degrees), "-i", str(plain), "-c", "copy", str(path))
    plain.unlink()
    return path


def variable_rate_video(path: Path, frames: np.ndarray) -> Path:
    """Frames 0.1 s apart for the first half, 0.4 s apart after (Matroska keeps the times)."""
    half = len(frames) // 2
    expr = f"setpts='if(lt(N,{half}),N,{half}+(N-{half})*4)/10/TB'"
    return write_video(path, frames, extra=["-vf", expr, "-fps_mode", "passthrough"])


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", str(path))
    return path


def video_without_frames(path: Path) -> Path:
    """An MP4 container that holds no frame at all."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x48:r=10",
        "-frames:v",
        "0",
        "-c:v",
        "libx264",
        str(path),
    )
    return path


def truncated(path: Path, source: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``source``'s bytes, as an upload cut off part-way."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@dataclass(frozen=True)
class Shape:
    """An ellipse following ``centers`` ((x, y) per frame), semi-axes ``a`` along x and
    ``b`` along y before turning by ``angle`` degrees; a disc when a == b."""

    centers: tuple[tuple[float, float], ...]
    a: float
    b: float
    color: tuple[int, int, int]
    angle: float = 0.0


def shape_mask(height: int, width: int, shape: Shape, t: int) -> np.ndarray:
    """Ground-truth boolean mask [row, col] of ``shape`` at frame ``t``."""
    cx, cy = shape.centers[t]
    yy, xx = np.mgrid[0:height, 0:width]
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    c, s = np.cos(np.radians(shape.angle)), np.sin(np.radians(shape.angle))
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / shape.a) ** 2 + (v / shape.b) ** 2 <= 1.0


def arena_frames(
    shapes: tuple[Shape, ...],
    height: int,
    width: int,
    noise: float = 3.0,
    drift: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of ``shapes`` moving over the textured still background,
    with fresh Gaussian noise of ``noise`` grey levels on every frame and a lighting drift
    of ``drift`` grey levels per frame (the whole frame brightens)."""
    num_frames = len(shapes[0].centers)
    bg = background(height, width, seed).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = bg.copy()
        for shape in shapes:
            frame[shape_mask(height, width, shape, t)] = shape.color
        frame += drift * t + rng.normal(0, noise, size=(height, width, 1))
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames
