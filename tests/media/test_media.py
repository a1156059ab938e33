"""Media ingest on real files made here with real encoders: what a user would check.

Good inputs: frame count, size, frame rate, pixels close to the source (exact for lossless
paths), order, rotation, notes. Bad inputs: the right error, one plain sentence without a
server path, and no output folder left behind.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from sam2web.errors import LimitError, MediaError
from sam2web.media.folder import FrameFolder, frame_filename
from sam2web.media.ingest import ingest
from sam2web.media.limits import MediaLimits
from sam2web.media.tiff import COMPOSITE, StackChoiceError
from sam2web.settings import Settings
from tests import synth
from tests.synth import ffmpeg, has_encoder, png_bytes, write_gif, zip_of

LIMITS = MediaLimits(
    max_bytes=300 << 20,
    max_frames=500,
    max_duration_s=600,
    max_pixels=1920 * 1080,
    max_zip_ratio=200,
)
LOSSY_TOLERANCE = 4.0  # mean absolute difference (0-255) allowed after a lossy codec


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """12 frames, 160x120: two discs moving over a textured background."""
    return synth.make_frames(num_frames=12, height=120, width=160)


def needs_encoder(name: str) -> None:
    if not has_encoder(name):
        pytest.skip(f"the bundled ffmpeg has no {name} encoder")


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def read_all(folder: FrameFolder) -> np.ndarray:
    return np.stack([folder.read_rgb(i) for i in range(len(folder))])


def with_limits(**changes) -> MediaLimits:
    return dataclasses.replace(LIMITS, **changes)


@pytest.fixture
def run_ingest(tmp_path):
    """ingest() into a fresh folder; returns (info, FrameFolder)."""
    counter = iter(range(1000))

    def run(src: Path, limits: MediaLimits = LIMITS, **kwargs):
        dest = tmp_path / f"out{next(counter)}" / "frames"
        info = ingest(src, dest, limits=limits, **kwargs)
        folder = FrameFolder(dest)
        assert folder.info == info  # video.json round-trips
        return info, folder

    return run


@pytest.fixture
def expect_failure(tmp_path):
    """ingest() must fail with ``kind``, one plain sentence, and leave no folder behind."""

    def check(src: Path, kind: type[Exception], limits: MediaLimits = LIMITS, **kwargs) -> str:
        dest = tmp_path / "failed" / "frames"
        with pytest.raises(kind) as caught:
            ingest(src, dest, limits=limits, **kwargs)
        assert type(caught.value) is kind
        message = str(caught.value)
        assert message == caught.value.message
        assert "\n" not in message and "Traceback" not in message
        assert str(tmp_path) not in message and "/tmp" not in message
        assert message[0].isupper() and message.endswith("."), message
        assert not re.search(r"[.!?]\s", message[:-1]), f"more than one sentence: {message}"
        assert not dest.exists()
        return message

    return check


# --------------------------------------------------------------------------------------
# Videos


def test_mp4_frames_size_fps_pixels_and_files(tmp_path, frames, run_ingest):
    src = synth.write_video(tmp_path / "discs.mp4", frames, fps=10.0)
    calls = []
    info, folder = run_ingest(src, progress=lambda done, total: calls.append((done, total)))
    assert (info.num_frames, info.width, info.height, info.fps) == (12, 160, 120, 10.0)
    assert info.kind == "video" and not info.fps_is_nominal and info.notes == ()
    assert info.source_name == "discs.mp4"
    assert mean_abs_diff(read_all(folder), frames) < LOSSY_TOLERANCE
    names = sorted(p.name for p in folder.folder.iterdir())
    assert names == [f"{i:05d}.jpg" for i in range(12)] + ["video.json"]
    assert folder.frame_paths() == [folder.folder / frame_filename(i) for i in range(12)]
    assert calls[-1] == (12, 12) and len(calls) >= 3
    # JPEG frames are stored at quality 95 with full-resolution colour (4:4:4).
    with Image.open(folder.path(0)) as img:
        assert img.format == "JPEG" and img.layer[0][1:3] == img.layer[1][1:3] == (1, 1)
    meta = json.loads((folder.folder / "video.json").read_text())
    assert meta["notes"] == [] and meta["num_frames"] == 12


@pytest.mark.parametrize(
    ("filename", "codec", "pix_fmt", "fps", "extra"),
    [
        ("clip.mov", "libx264", "yuv420p", 10.0, []),
        ("clip.avi", "mjpeg", "yuvj444p", 10.0, ["-q:v", "2"]),
        ("clip_mpeg4.avi", "mpeg4", "yuv420p", 10.0, ["-q:v", "2"]),
        ("clip.mkv", "libx264", "yuv420p", 10.0, []),
        ("clip.webm", "libvpx-vp9", "yuv420p", 10.0, []),
        ("clip.mpg", "mpeg1video", "yuv420p", 25.0, ["-q:v", "2"]),
        ("clip_mpeg2.mpg", "mpeg2video", "yuv420p", 25.0, ["-q:v", "2"]),
    ],
)
def test_containers_and_codecs(tmp_path, frames, run_ingest, filename, codec, pix_fmt, fps, extra):
    needs_encoder(codec)
    src = synth.write_video(
        tmp_path / filename, frames, fps=fps, codec=codec, pix_fmt=pix_fmt, extra=extra
    )
    info, folder = run_ingest(src)
    assert (info.num_frames, info.width, info.height) == (12, 160, 120)
    assert info.fps == pytest.approx(fps)
    assert mean_abs_diff(read_all(folder), frames) < LOSSY_TOLERANCE


def test_kind_is_detected_from_content_not_name(tmp_path, frames, run_ingest):
    video = synth.write_video(tmp_path / "discs.mp4", frames)
    renamed = tmp_path / "holiday.png"
    renamed.write_bytes(video.read_bytes())
    info, _ = run_ingest(renamed)
    assert info.kind == "video" and info.num_frames == 12
    archive = synth.write_image_zip(tmp_path / "frames.zip", frames[:3])
    renamed = tmp_path / "frames.mp4"
    renamed.write_bytes(archive.read_bytes())
    info, _ = run_ingest(renamed, source_name="my <frames>.mp4")
    assert info.kind == "images" and info.num_frames == 3
    assert info.source_name == "my <frames>.mp4"


def test_rotation_metadata_is_applied(tmp_path, frames, run_ingest):
    plain = synth.write_video(tmp_path / "plain.mp4", frames)
    rotated = tmp_path / "phone.mp4"
    # A phone's portrait video: landscape pixels plus "display rotated 90° anticlockwise".
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    info, folder = run_ingest(rotated)
    assert (info.width, info.height, info.num_frames) == (120, 160, 12)
    upright = np.rot90(frames, k=1, axes=(1, 2))
    assert mean_abs_diff(read_all(folder), upright) < LOSSY_TOLERANCE
    assert any("orientation" in note for note in info.notes)


@pytest.mark.parametrize(("codec", "pix_fmt"), [("libx264", "yuv444p"), ("mpeg4", "yuv420p")])
def test_odd_frame_size_is_kept(tmp_path, run_ingest, codec, pix_fmt):
    odd = synth.make_frames(num_frames=8, height=121, width=161)
    src = synth.write_video(
        tmp_path / "odd.mp4",
        odd,
        codec=codec,
        pix_fmt=pix_fmt,
        extra=["-q:v", "2"] if codec == "mpeg4" else [],
    )
    info, folder = run_ingest(src)
    assert (info.width, info.height, info.num_frames) == (161, 121, 8)
    assert folder.read_rgb(0).shape == (121, 161, 3)
    assert mean_abs_diff(read_all(folder), odd) < LOSSY_TOLERANCE


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv444p", "gray"])
def test_pixel_formats_decode_to_8bit_rgb(tmp_path, frames, run_ingest, pix_fmt):
    src = synth.write_video(tmp_path / f"{pix_fmt}.mp4", frames, pix_fmt=pix_fmt)
    info, folder = run_ingest(src)
    out = read_all(folder)
    assert out.dtype == np.uint8 and out.shape == (12, 120, 160, 3)
    if pix_fmt == "gray":
        assert np.array_equal(out[..., 0], out[..., 1])
        assert np.array_equal(out[..., 1], out[..., 2])
        luma = np.stack([np.asarray(Image.fromarray(f).convert("L")) for f in frames])
        assert mean_abs_diff(out[..., 0], luma) < LOSSY_TOLERANCE
    else:
        assert mean_abs_diff(out, frames) < LOSSY_TOLERANCE


def test_variable_frame_rate_gives_every_frame_once(tmp_path, frames, run_ingest):
    # Frames 0-5 are 0.1 s apart, frames 6-11 0.4 s apart.
    src = synth.write_video(
        tmp_path / "vfr.mkv",
        frames,
        extra=["-vf", "setpts='if(lt(N,6),N,6+(N-6)*4)/10/TB'", "-fps_mode", "passthrough"],
    )
    info, folder = run_ingest(src)
    assert info.num_frames == 12
    out = read_all(folder)
    for i in range(12):  # each output frame is its own source frame, none repeated
        diffs = [mean_abs_diff(out[i], f) for f in frames]
        assert int(np.argmin(diffs)) == i
    assert not any("ends early" in note for note in info.notes)


def test_fps_override_changes_time_stamps_only(tmp_path, frames, run_ingest):
    src = synth.write_video(tmp_path / "discs.mp4", frames, fps=10.0)
    info, _ = run_ingest(src, fps=30.0)
    assert info.num_frames == 12 and info.fps == 30.0
    assert any("30 frames per second" in note for note in info.notes)


def test_truncated_fragmented_mp4_keeps_what_decodes(tmp_path, run_ingest):
    long = synth.make_frames(num_frames=40)
    full = synth.write_video(
        tmp_path / "full.mp4", long, extra=["-g", "5", "-movflags", "frag_keyframe+empty_moov"]
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.4)])
    info, folder = run_ingest(cut)
    assert 0 < info.num_frames < 40
    assert mean_abs_diff(read_all(folder), long[: info.num_frames]) < LOSSY_TOLERANCE
    assert any("ends early" in note for note in info.notes)


# --------------------------------------------------------------------------------------
# GIF


def test_gif_palette_frames_and_rate(tmp_path, frames, run_ingest):
    src = write_gif(tmp_path / "discs.gif", frames, [100] * len(frames))
    info, folder = run_ingest(src)
    assert (info.num_frames, info.width, info.height, info.fps) == (12, 160, 120, 10.0)
    assert info.notes == ()
    # The clip has few colours, so the palette holds them all and PNG frames are exact.
    info, folder = run_ingest(src, frame_format="png")
    assert np.array_equal(read_all(folder), frames)


def test_gif_with_varying_delays_uses_median(tmp_path, frames, run_ingest):
    durations = [40, 40, 40, 40, 40, 200, 200, 40, 40, 40, 80, 40]
    info, _ = run_ingest(write_gif(tmp_path / "vary.gif", frames, durations))
    assert info.num_frames == 12 and info.fps == pytest.approx(25.0)
    assert any("delays vary" in note for note in info.notes)


# --------------------------------------------------------------------------------------
# Image sequences


def test_png_zip_is_exact_and_in_natural_order(tmp_path, frames, run_ingest):
    src = synth.write_image_zip(tmp_path / "discs.zip", frames)  # frame_1 ... frame_12
    info, folder = run_ingest(src, frame_format="png")
    assert (info.num_frames, info.width, info.height) == (12, 160, 120)
    assert info.kind == "images" and info.fps == 1.0 and info.fps_is_nominal
    assert folder.path(0).name == "00000.png"
    assert np.array_equal(read_all(folder), frames)  # frame_2 before frame_10


def test_jpeg_zip_with_folders_and_extra_files(tmp_path, frames, run_ingest):
    src = tmp_path / "export.zip"
    with zipfile.ZipFile(src, "w") as zf:
        for i in reversed(range(len(frames))):
            buf = io.BytesIO()
            Image.fromarray(frames[i]).save(buf, format="JPEG", quality=95)
            zf.writestr(f"Experiment 1/run/IMG_{i + 1}.JPG", buf.getvalue())
        zf.writestr("Experiment 1/", b"")
        zf.writestr("Experiment 1/notes.txt", b"lab notes")
        zf.writestr("__MACOSX/Experiment 1/run/._IMG_1.JPG", b"\x00resource fork")
        zf.writestr("Experiment 1/.DS_Store", b"\x00\x00")
    info, folder = run_ingest(src, fps=5.0)
    assert info.num_frames == 12 and info.fps == 5.0 and not info.fps_is_nominal
    assert mean_abs_diff(read_all(folder), frames) < LOSSY_TOLERANCE
    for i in range(12):
        assert mean_abs_diff(folder.read_rgb(i), frames[i]) < LOSSY_TOLERANCE
    assert any("1 file" in note and "ignored" in note for note in info.notes)


def test_rgba_png_zip_drops_alpha_with_note(tmp_path, frames, run_ingest):
    alpha = np.full(frames.shape[:3] + (1,), 128, dtype=np.uint8)
    src = synth.write_image_zip(tmp_path / "rgba.zip", np.concatenate([frames, alpha], -1))
    info, folder = run_ingest(src, frame_format="png")
    assert np.array_equal(read_all(folder), frames)
    assert any("alpha" in note for note in info.notes)


def test_16bit_png_zip_scaled_as_one_stack(tmp_path, run_ingest):
    rng = np.random.default_rng(4)
    stack = rng.integers(1000, 3000, size=(3, 20, 30)).astype(np.uint16)
    stack[2] += 2000  # a brighter last frame keeps its brightness relative to the others
    members = {f"deep_{i + 1}.png": png_bytes(stack[i]) for i in range(3)}
    calls = []
    info, folder = run_ingest(
        zip_of(tmp_path / "deep.zip", members),
        frame_format="png",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(3, 6), (6, 6)]  # a reading pass, then a writing pass
    out = read_all(folder)[..., 0]
    assert np.array_equal(out, expected_stretch(stack))
    assert out[2].mean() > out[0].mean() + 50
    assert any(n.startswith("16-bit values scaled to 8-bit") for n in info.notes)


def test_single_png_image_is_one_frame(tmp_path, frames, run_ingest):
    src = tmp_path / "photo.png"
    Image.fromarray(frames[3]).save(src)
    info, folder = run_ingest(src, frame_format="png")
    assert (info.num_frames, info.width, info.height, info.kind) == (1, 160, 120, "images")
    assert info.fps == 1.0 and info.fps_is_nominal
    assert np.array_equal(folder.read_rgb(0), frames[3])


def test_jpeg_exif_orientation_is_applied(tmp_path, frames, run_ingest):
    src = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90° clockwise
    Image.fromarray(frames[0]).save(src, quality=95, exif=exif)
    info, folder = run_ingest(src)
    assert (info.width, info.height) == (120, 160)
    assert mean_abs_diff(folder.read_rgb(0), np.rot90(frames[0], k=-1)) < LOSSY_TOLERANCE
    assert any("EXIF" in note for note in info.notes)


def test_tiff_stack_8bit_rgb_is_exact(tmp_path, frames, run_ingest):
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, frames, photometric="rgb")
    info, folder = run_ingest(src, frame_format="png")
    assert (info.num_frames, info.width, info.height, info.kind) == (12, 160, 120, "tiff")
    assert info.notes == ()
    assert np.array_equal(read_all(folder), frames)


def expected_stretch(stack: np.ndarray) -> np.ndarray:
    """The documented rule, written out independently: percentiles of all finite values."""
    values = stack[np.isfinite(stack)].astype(np.float64)
    lo, hi = np.percentile(values, [0.1, 99.9])
    out = np.clip((stack.astype(np.float64) - lo) / (hi - lo), 0, 1) * 255
    return np.rint(np.nan_to_num(out, nan=0.0)).astype(np.uint8)


def test_tiff_16bit_gray_scaled_by_percentiles(tmp_path, run_ingest):
    rng = np.random.default_rng(1)
    stack = rng.normal(2000, 500, size=(6, 40, 50)).clip(0, 65535).astype(np.uint16)
    stack[0, 0, :5] = 65535  # a few hot pixels must not set the range
    src = tmp_path / "gray16.tif"
    tifffile.imwrite(src, stack, photometric="minisblack")
    info, folder = run_ingest(src, frame_format="png")
    out = read_all(folder)
    assert out.shape == (6, 40, 50, 3)
    assert np.array_equal(out[..., 0], out[..., 2])  # gray repeated into RGB
    assert np.array_equal(out[..., 0], expected_stretch(stack))
    lo, hi = np.percentile(stack.astype(np.float64), [0.1, 99.9])
    note = next(n for n in info.notes if "scaled to 8-bit" in n)
    assert note.startswith("16-bit values") and "0.1-99.9 percentile" in note
    assert f"{lo:.6g}-{hi:.6g}" in note
    assert 0 < lo < 2000 < hi < 65535


def test_tiff_float32_with_nan(tmp_path, run_ingest):
    rng = np.random.default_rng(2)
    stack = rng.uniform(-1.0, 3.0, size=(4, 30, 40)).astype(np.float32)
    stack[1, 5:8, 5:8] = np.nan
    src = tmp_path / "float.tif"
    tifffile.imwrite(src, stack, photometric="minisblack")  # 4 frames, not one RGBA page
    info, folder = run_ingest(src, frame_format="png")
    out = read_all(folder)[..., 0]
    assert np.array_equal(out, expected_stretch(stack))
    assert (out[1, 5:8, 5:8] == 0).all()
    assert any(n.startswith("32-bit floating-point values scaled") for n in info.notes)


@pytest.mark.parametrize(
    ("shape", "kwargs", "alpha_note"),
    [
        ((5, 3, 24, 32), {"imagej": True, "metadata": {"axes": "TCYX"}}, False),  # T,C,H,W
        ((5, 24, 32, 4), {"photometric": "rgb"}, True),  # RGBA stack
        ((24, 32), {}, False),  # one page
    ],
)
def test_tiff_layouts(tmp_path, run_ingest, shape, kwargs, alpha_note):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=shape, dtype=np.uint8)
    src = tmp_path / "layout.tif"
    tifffile.imwrite(src, data, **kwargs)
    info, folder = run_ingest(src, frame_format="png")
    out = read_all(folder)
    if len(shape) == 2:
        expected = np.repeat(data[None, :, :, None], 3, axis=3)
    elif shape[1] == 3:
        expected = np.moveaxis(data, 1, -1)
    else:
        expected = data[..., :3]
    assert np.array_equal(out, expected)
    assert any("alpha" in n for n in info.notes) == alpha_note


def test_frame_folder_bounds(tmp_path, frames, run_ingest):
    _, folder = run_ingest(synth.write_image_zip(tmp_path / "f.zip", frames[:3]))
    assert len(folder) == 3
    assert folder.read_rgb(2).shape == (120, 160, 3)
    with pytest.raises(IndexError):
        folder.path(3)
    with pytest.raises(IndexError):
        folder.path(-1)


def test_limits_from_settings():
    s = Settings.from_env({"SAM2WEB_MAX_UPLOAD_MB": "10", "SAM2WEB_MAX_FRAMES": "7"})
    limits = MediaLimits.from_settings(s)
    assert limits.max_bytes == 10 * 1024 * 1024 and limits.max_frames == 7
    assert limits.max_pixels == s.max_pixels and limits.max_zip_ratio == s.max_zip_ratio


# --------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("random.mp4", np.random.default_rng(0).bytes(20_000)),
        ("notes.mp4", b"This is not a video, just some text.\n" * 50),
        ("playlist.m3u8", b"#EXTM3U\n#EXTINF:1,\n/etc/hostname\n"),
    ],
)
def test_unreadable_files(tmp_path, expect_failure, filename, content):
    src = tmp_path / filename
    src.write_bytes(content)
    message = expect_failure(src, MediaError)
    assert "not a video or image sequence" in message and "MP4" in message


@pytest.mark.parametrize(
    ("magic", "words"),
    [
        (b"PK\x03\x04", "zip archive but is damaged"),
        (b"II*\x00", "TIFF but cannot be read"),
        (b"\x89PNG\r\n\x1a\n", "image but cannot be read"),
        (b"\xff\xd8\xff\xe0", "image but cannot be read"),
        (b"GIF89a", "GIF that cannot be read"),
    ],
)
def test_damaged_files_are_named_by_their_kind(tmp_path, expect_failure, magic, words):
    src = tmp_path / "upload.bin"
    src.write_bytes(magic + np.random.default_rng(5).bytes(3000))
    assert words in expect_failure(src, MediaError)


def test_empty_file(tmp_path, expect_failure):
    src = tmp_path / "empty.mp4"
    src.touch()
    assert "empty" in expect_failure(src, MediaError)


def test_truncated_mp4_with_index_at_end(tmp_path, frames, expect_failure):
    full = synth.write_video(tmp_path / "full.mp4", frames)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert "incomplete" in expect_failure(cut, MediaError)


@pytest.mark.parametrize("filename", ["voice.m4a", "voice.mp4"])
def test_audio_only(tmp_path, expect_failure, filename):
    src = tmp_path / filename
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(src))
    assert "only sound" in expect_failure(src, MediaError)


def test_source_name_is_escaped_in_messages(tmp_path, expect_failure):
    src = tmp_path / "upload.bin"
    src.write_bytes(b"")
    message = expect_failure(src, MediaError, source_name="<b>clip</b>.mp4")
    assert "&lt;b&gt;clip&lt;/b&gt;.mp4" in message and "<b>" not in message


def test_zip_without_images(tmp_path, expect_failure):
    src = zip_of(tmp_path / "docs.zip", {"readme.txt": b"hello", "data/table.csv": b"1,2"})
    assert "no images" in expect_failure(src, MediaError)


def test_zip_with_mixed_sizes_names_the_odd_image(tmp_path, frames, expect_failure):
    members = {f"f_{i}.png": png_bytes(frames[i]) for i in range(1, 6)}
    members["f_6.png"] = png_bytes(frames[0][:80, :100])
    message = expect_failure(zip_of(tmp_path / "mixed.zip", members), MediaError)
    assert "same size" in message and "'f_6.png' is 100x80" in message
    assert "160x120" in message


@pytest.mark.parametrize("bad_name", ["../evil.png", "frames/../../evil.png", "/etc/evil.png"])
def test_zip_with_unsafe_names(tmp_path, frames, expect_failure, bad_name):
    src = tmp_path / "evil.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("frame_1.png", png_bytes(frames[0]))
        info = zipfile.ZipInfo("placeholder.png")
        info.filename = bad_name  # ZipInfo() itself strips leading slashes
        zf.writestr(info, png_bytes(frames[1]))
    assert "unsafe file names" in expect_failure(src, MediaError)
    assert not (tmp_path / "evil.png").exists()


def test_zip_with_damaged_image(tmp_path, frames, expect_failure):
    members = {"a_1.png": png_bytes(frames[0]), "a_2.png": png_bytes(frames[1])[:200]}
    message = expect_failure(zip_of(tmp_path / "damaged.zip", members), MediaError)
    assert "'a_2.png'" in message and "cannot be read" in message


def test_zip_with_mixed_bit_depths(tmp_path, frames, expect_failure):
    deep = np.full((120, 160), 40000, dtype=np.uint16)
    members = {"a_1.png": png_bytes(frames[0]), "a_2.png": png_bytes(deep)}
    assert "bit depth" in expect_failure(zip_of(tmp_path / "depth.zip", members), MediaError)


def test_zip_member_larger_than_declared(tmp_path, expect_failure):
    src = zip_of(tmp_path / "liar.zip", {"frame_1.png": bytes(5 << 20)})
    data = bytearray(src.read_bytes())
    # Claim 1000 bytes unpacked in both the local header and the central directory.
    local = data.index(b"PK\x03\x04")
    data[local + 22 : local + 26] = (1000).to_bytes(4, "little")
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (1000).to_bytes(4, "little")
    src.write_bytes(bytes(data))
    assert "'frame_1.png'" in expect_failure(src, MediaError)


def test_zip_with_password(tmp_path, frames, expect_failure):
    src = zip_of(tmp_path / "locked.zip", {"frame_1.png": png_bytes(frames[0])})
    data = bytearray(src.read_bytes())
    # Set the "encrypted" flag bit in the local header and the central directory.
    data[data.index(b"PK\x03\x04") + 6] |= 1
    data[data.index(b"PK\x01\x02") + 8] |= 1
    src.write_bytes(bytes(data))
    assert "password" in expect_failure(src, MediaError)


def test_zip_bomb_is_refused_before_unpacking(tmp_path, expect_failure):
    src = tmp_path / "bomb.zip"
    chunk = bytes(1 << 20)
    with (
        zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("frame_1.png", "w") as member,
    ):
        for _ in range(200):  # 200 MB of zeros, about 1 MB packed
            member.write(chunk)
    limits = MediaLimits(
        max_bytes=300 << 20,
        max_frames=500,
        max_duration_s=600,
        max_pixels=100_000_000,
        max_zip_ratio=100,
    )
    assert "zip bomb" in expect_failure(src, LimitError, limits=limits)


def test_tiff_pages_of_different_sizes(tmp_path, expect_failure):
    src = tmp_path / "pages.tif"
    with tifffile.TiffWriter(src) as tw:
        tw.write(np.zeros((20, 30), np.uint8))
        tw.write(np.zeros((25, 30), np.uint8))
    assert "different sizes" in expect_failure(src, MediaError)


def test_tiff_with_two_channels_asks_which_to_show(tmp_path, expect_failure):
    src = tmp_path / "twochannel.tif"
    data = np.zeros((4, 2, 20, 30), np.uint16)
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "TCYX"})
    message = expect_failure(src, StackChoiceError)
    assert "has 2 channels (channel 0, channel 1)" in message and "composite" in message


def test_tiff_with_an_unusable_layout_is_refused(tmp_path, expect_failure):
    src = tmp_path / "five.tif"
    tifffile.imwrite(src, np.zeros((4, 5, 6, 20, 30), np.uint8))  # three unnamed axes
    message = expect_failure(src, MediaError)
    assert "layout" in message and "4x5x6x20x30" in message


def test_limits_on_videos(tmp_path, frames, expect_failure):
    src = synth.write_video(tmp_path / "discs.mp4", frames, fps=10.0)  # 12 frames, 1.2 s
    assert "larger than this server's limit" in expect_failure(
        src, LimitError, limits=with_limits(max_bytes=1000)
    )
    assert "more than 10 frames" in expect_failure(
        src, LimitError, limits=with_limits(max_frames=10)
    )
    assert "longer than this server's limit" in expect_failure(
        src, LimitError, limits=with_limits(max_duration_s=1.0)
    )
    assert "160x120 pixels" in expect_failure(
        src, LimitError, limits=with_limits(max_pixels=160 * 119)
    )


def test_limits_on_sequences(tmp_path, frames, expect_failure):
    archive = synth.write_image_zip(tmp_path / "discs.zip", frames)
    expect_failure(archive, LimitError, limits=with_limits(max_frames=11))
    expect_failure(archive, LimitError, limits=with_limits(max_pixels=1000))
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, frames[..., 0])
    expect_failure(stack, LimitError, limits=with_limits(max_frames=11))
    expect_failure(stack, LimitError, limits=with_limits(max_pixels=1000))
    gif = write_gif(tmp_path / "discs.gif", frames, [100] * 12)
    expect_failure(gif, LimitError, limits=with_limits(max_frames=11))
    expect_failure(gif, LimitError, limits=with_limits(max_duration_s=1.0))


def test_bad_fps_override(tmp_path, frames, expect_failure):
    src = synth.write_image_zip(tmp_path / "discs.zip", frames[:2])
    for bad in (0.0, -5.0, float("nan")):
        assert "frame rate" in expect_failure(src, MediaError, fps=bad)


def test_existing_files_in_destination_are_left_alone(tmp_path, frames):
    src = synth.write_image_zip(tmp_path / "discs.zip", frames[:2])
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        ingest(src, dest, limits=LIMITS)
    assert (dest / "keep.txt").read_text() == "mine"


# --------------------------------------------------------------------------------------
# Microscopy TIFF: axes, channels, time and scale from metadata


def two_channel_stack(frames: np.ndarray) -> np.ndarray:
    """(12, 2, 120, 160) uint8: channel 0 noise, channel 1 the discs' red plane."""
    noise = np.random.default_rng(7).integers(0, 256, frames.shape[:3], dtype=np.uint8)
    return np.stack([noise, frames[..., 0]], axis=1)


def write_ome(path: Path, data: np.ndarray, axes: str = "TCYX", **meta) -> Path:
    metadata = {
        "axes": axes,
        "TimeIncrement": 0.5,
        "TimeIncrementUnit": "s",
        "PhysicalSizeX": 0.65,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": 0.65,
        "PhysicalSizeYUnit": "µm",
        "Channel": {"Name": ["DAPI", "GFP"]},
        **meta,
    }
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata=metadata)
    return path


def test_ome_tiff_chosen_channel_time_and_scale(tmp_path, frames, run_ingest):
    data = two_channel_stack(frames)
    src = write_ome(tmp_path / "cells.ome.tif", data)
    for choice in (1, "GFP", "gfp"):
        info, folder = run_ingest(src, frame_format="png", channel=choice)
        out = read_all(folder)
        assert out.shape == (12, 120, 160, 3)
        assert np.array_equal(out[..., 1], data[:, 1])
        assert (info.fps, info.fps_is_nominal) == (2.0, False)
        assert info.pixel_size == pytest.approx(0.65) and info.pixel_unit == "µm"
        assert any("channel 1 (GFP)" in n for n in info.notes)
    info, folder = run_ingest(src, frame_format="png", channel=0)
    assert np.array_equal(read_all(folder)[..., 2], data[:, 0])
    info, _ = run_ingest(src, channel=0, fps=5.0)
    assert (info.fps, info.fps_is_nominal) == (5.0, False)


def test_ome_tiff_asks_for_a_channel(tmp_path, frames, expect_failure):
    src = write_ome(tmp_path / "cells.ome.tif", two_channel_stack(frames))
    with pytest.raises(StackChoiceError) as caught:
        ingest(src, tmp_path / "out", limits=LIMITS)
    err = caught.value
    assert err.channels == ("DAPI", "GFP") and err.axes == "TCYX" and err.frame_axes == ("T",)
    assert "has 2 channels (DAPI, GFP)" in str(err)
    assert not (tmp_path / "out").exists()
    assert "no channel 2" in expect_failure(src, StackChoiceError, channel=2)
    assert "no channel RFP" in expect_failure(src, StackChoiceError, channel="RFP")
    assert "no Z axis" in expect_failure(src, StackChoiceError, channel=0, axis="Z")


def test_composite_of_two_channels(tmp_path, frames, run_ingest):
    data = two_channel_stack(frames)
    src = write_ome(tmp_path / "cells.ome.tif", data)
    info, folder = run_ingest(src, frame_format="png", channel=COMPOSITE)
    out = read_all(folder)
    assert np.array_equal(out[..., 0], data[:, 0]) and np.array_equal(out[..., 1], data[:, 1])
    assert not out[..., 2].any()
    assert any("DAPI as red, GFP as green" in n for n in info.notes)


def test_composite_scales_16bit_channels_separately(tmp_path, run_ingest):
    rng = np.random.default_rng(4)
    bright = rng.normal(30000, 3000, (4, 30, 40)).clip(0, 65535).astype(np.uint16)
    dim = rng.normal(300, 30, (4, 30, 40)).clip(0, 65535).astype(np.uint16)
    src = write_ome(tmp_path / "two.ome.tif", np.stack([bright, dim], axis=1))
    info, folder = run_ingest(src, frame_format="png", channel=COMPOSITE)
    out = read_all(folder)
    assert np.array_equal(out[..., 0], expected_stretch(bright))
    assert np.array_equal(out[..., 1], expected_stretch(dim))
    assert any("for each channel" in n for n in info.notes)


def test_imagej_hyperstack_time_z_and_channels(tmp_path, run_ingest):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, (3, 4, 2, 24, 32), dtype=np.uint8)  # T, Z, C, Y, X
    src = tmp_path / "hyper.tif"
    tifffile.imwrite(
        src,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "TZCYX", "finterval": 2.0, "unit": "um"},
    )
    info, folder = run_ingest(src, frame_format="png", channel=1)
    assert info.num_frames == 3 and (info.fps, info.fps_is_nominal) == (0.5, False)
    assert info.pixel_size == pytest.approx(0.25) and info.pixel_unit == "µm"
    assert np.array_equal(read_all(folder)[..., 0], data[:, :, 1].max(axis=1))
    assert any("projection of the 4 slices along Z" in n for n in info.notes)
    info, folder = run_ingest(src, frame_format="png", channel=0, axis="Z")
    assert info.num_frames == 4 and info.fps_is_nominal
    assert np.array_equal(read_all(folder)[..., 0], data[:, :, 0].max(axis=0))


def test_z_stack_loads_along_z(tmp_path, run_ingest):
    data = np.random.default_rng(6).integers(0, 256, (7, 20, 30), dtype=np.uint8)
    src = tmp_path / "zstack.tif"
    tifffile.imwrite(
        src, data, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "ZYX", "unit": "micron"}
    )
    info, folder = run_ingest(src, frame_format="png")
    assert info.num_frames == 7 and info.fps_is_nominal
    assert info.pixel_size == pytest.approx(0.5) and info.pixel_unit == "µm"
    assert np.array_equal(read_all(folder)[..., 0], data)
    ome = write_ome(tmp_path / "z.ome.tif", data, axes="ZYX", Channel={"Name": ["DAPI"]})
    info, folder = run_ingest(ome, frame_format="png", axis="Z")
    assert info.num_frames == 7 and info.fps_is_nominal  # TimeIncrement is not a Z step
    assert np.array_equal(read_all(folder)[..., 0], data)


def test_single_multichannel_image(tmp_path, run_ingest):
    data = np.random.default_rng(8).integers(0, 256, (4, 20, 30), dtype=np.uint8)
    src = tmp_path / "cyx.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "CYX"})
    info, folder = run_ingest(src, frame_format="png", channel=2)
    assert info.num_frames == 1
    assert np.array_equal(folder.read_rgb(0)[..., 0], data[2])


def huge_png(width: int, height: int) -> bytes:
    """A PNG header announcing width x height pixels; only the header is ever read."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(1000)))
        + chunk(b"IEND", b"")
    )


def test_image_over_the_pixel_limit_is_named_by_the_limit(tmp_path, expect_failure):
    guard = Image.MAX_IMAGE_PIXELS
    src = tmp_path / "huge.png"
    src.write_bytes(huge_png(30000, 30000))
    message = expect_failure(src, LimitError)
    assert "has frames of 30000x30000 pixels, more than this server's limit" in message
    assert "damaged" not in message
    archive = zip_of(tmp_path / "huge.zip", {"f_1.png": huge_png(30000, 30000)})
    message = expect_failure(archive, LimitError)
    assert "30000x30000 pixels" in message
    # A server allowing more than PIL does still gets a size sentence, with PIL's bound.
    message = expect_failure(src, LimitError, limits=with_limits(max_pixels=10**12))
    assert f"limit of {2 * guard:,} pixels" in message
    assert guard == Image.MAX_IMAGE_PIXELS  # the guard itself is untouched
