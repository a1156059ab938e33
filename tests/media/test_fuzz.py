"""Random and damaged uploads: ingest either succeeds or says, in one sentence, what is wrong.

Hypothesis feeds :func:`sam2web.media.ingest.ingest` random bytes and mutated copies of valid
files (MP4, image zip, TIFF stack, GIF, PNG) under every upload suffix. The only outcomes
allowed are a frame folder or a MediaError/LimitError with one plain sentence and no folder
left behind. A few random payloads also go through the running app's ``/upload``, which
must keep answering. The runs are derandomized and bounded so the file takes about a minute.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sam2web.errors import LimitError, MediaError, UserError
from sam2web.media.folder import FrameFolder
from sam2web.media.ingest import ingest
from sam2web.media.limits import MediaLimits
from tests import synth
from tests.appserver import start_app

SUFFIXES = [
    ".mp4",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".gif",
    ".zip",
    ".tif",
    ".png",
    ".jpg",
    ".bin",
    "",
]

# Small limits keep a mutated header that claims a huge picture or length cheap to refuse.
LIMITS = MediaLimits(
    max_bytes=4 << 20, max_frames=60, max_duration_s=120, max_pixels=640 * 480, max_zip_ratio=200
)

# A mutated GIF may claim a huge size: PIL warns before the pixel limit refuses it.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """Valid files of every kind, small enough to mutate quickly."""
    folder = tmp_path_factory.mktemp("seeds")
    frames = synth.make_frames(num_frames=4, height=48, width=64)
    out = {"mp4": synth.write_video(folder / "s.mp4", frames, fps=10).read_bytes()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, frame in enumerate(frames[:3]):
            zf.writestr(f"frames/f_{i + 1}.png", _png(frame))
    out["zip"] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, (frames[..., 0].astype(np.uint16) * 200), photometric="minisblack")
    out["tiff"] = buf.getvalue()
    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=[40, 80, 40, 120],
        loop=0,
    )
    out["gif"] = buf.getvalue()
    out["png"] = _png(frames[0])
    return out


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few random edits: flipped bytes, overwritten runs, cuts, insertions."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "delete"]))
        # Headers matter most; bias half of the edits into the first 64 bytes.
        limit = len(out) if draw(st.booleans()) else min(len(out), 64)
        pos = draw(st.integers(0, max(0, limit - 1)))
        if kind == "flip" and out:
            out[pos] ^= draw(st.integers(1, 255))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            out[pos : pos + len(chunk)] = chunk
        elif kind == "truncate":
            del out[max(1, pos) :]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del out[pos : pos + draw(st.integers(1, 64))]
    return bytes(out)


def check_ingest(tmp_path: Path, data: bytes, suffix: str) -> None:
    src = tmp_path / f"upload{suffix}"
    src.write_bytes(data)
    dest = tmp_path / "session" / "frames"
    shutil.rmtree(dest.parent, ignore_errors=True)
    try:
        info = ingest(src, dest, limits=LIMITS, source_name=f"clip{suffix}")
    except UserError as err:
        assert isinstance(err, (MediaError, LimitError)), repr(err)
        message = str(err)
        assert message and message == err.message
        assert message[0].isupper() and message.endswith("."), message
        assert "\n" not in message and "Traceback" not in message, message
        assert str(tmp_path) not in message, message
        assert not re.search(r"[.!?]\s", message[:-1]), f"more than one sentence: {message}"
        assert not dest.exists()
        return
    folder = FrameFolder(dest)
    assert folder.info == info and info.num_frames >= 1
    assert folder.read_rgb(info.num_frames - 1).shape == (info.height, info.width, 3)


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes(tmp_path, data, suffix):
    check_ingest(tmp_path, data, suffix)


@pytest.mark.parametrize("kind", ["mp4", "zip", "tiff", "gif", "png"])
def test_mutated_files(tmp_path, seeds, kind):
    @FUZZ
    @given(data=mutated(seeds[kind]), suffix=st.sampled_from(SUFFIXES))
    def run(data, suffix):
        check_ingest(tmp_path, data, suffix)

    run()


# --------------------------------------------------------------------------------------
# Damaged headers that fuzzing found: each once crashed ingest or made it loop for ever


def _gif_of_absurd_size() -> bytes:
    buf = io.BytesIO()
    images = [Image.fromarray(np.zeros((8, 8, 3), np.uint8)) for _ in range(2)]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=100)
    data = bytearray(buf.getvalue())
    struct.pack_into("<HH", data, 6, 65535, 65535)  # logical screen of 4.3 gigapixels
    return bytes(data)


def _tiff_with_looping_pages() -> bytes:
    """A page with a size and nothing else, then an empty page that names itself next."""
    tags = [(256, 4, 1, 64), (257, 4, 1, 48)]  # ImageWidth, ImageLength (LONG)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)))
    for tag in tags:
        out += struct.pack("<HHII", *tag)
    out += struct.pack("<I", 256)
    out += bytes(256 - len(out)) + struct.pack("<HI", 0, 256) + bytes(38)
    return bytes(out)


def _tiff_with_tag(code: int, value: int) -> bytes:
    """A valid 64x48 TIFF with one tag's value replaced."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((48, 64), np.uint8))
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, first)[0]):
        entry = first + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == code:
            struct.pack_into("<I", data, entry + 8, value)
    return bytes(data)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("build", "kind", "words"),
    [
        (_gif_of_absurd_size, LimitError, "pixels per frame"),
        (_tiff_with_looping_pages, MediaError, "cannot be read"),
        (lambda: _tiff_with_tag(257, 0), MediaError, "cannot be read"),  # no rows
        (lambda: _tiff_with_tag(256, 0), MediaError, "cannot be read"),  # no columns
        (lambda: _tiff_with_tag(258, 0), MediaError, "holds no picture"),  # 0 bits per sample
    ],
    ids=["gif-4-gigapixels", "tiff-page-loop", "tiff-no-rows", "tiff-no-columns", "tiff-0-bits"],
)
def test_damaged_headers_found_by_fuzzing(tmp_path, build, kind, words):
    src = tmp_path / "damaged.bin"
    src.write_bytes(build())
    with pytest.raises(kind, match=words):
        ingest(src, tmp_path / "out" / "frames", limits=LIMITS)
    assert not (tmp_path / "out" / "frames").exists()


# --------------------------------------------------------------------------------------
# Through the running app


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    server = start_app(
        tmp_path_factory.mktemp("fuzz-app"),
        random_checkpoint,
        resolution=128,
        extra_env={"SAM2WEB_MAX_UPLOAD_MB": "2"},
    )
    yield server
    server.stop()


def test_random_payloads_through_the_app(app, tmp_path, seeds):
    from gradio_client import Client, handle_file

    rng = np.random.default_rng(7)
    client = Client(app.url, verbose=False)
    kinds = list(seeds)
    for i in range(10):
        if i % 2:
            data = rng.bytes(int(rng.integers(1, 5000)))
        else:
            data = bytearray(seeds[kinds[i // 2 % len(kinds)]])
            for pos in rng.integers(0, len(data), size=8):
                data[pos] = int(rng.integers(0, 256))
            data = bytes(data)
        src = tmp_path / f"payload_{i}{SUFFIXES[i % len(SUFFIXES)]}"
        src.write_bytes(data)
        try:
            info = client.predict(handle_file(str(src)), api_name="/upload")[-1]
        except Exception as err:  # gradio_client's AppError carries the page's message
            message = str(err)
            assert "Something went wrong" not in message, message
            assert "Traceback" not in message and str(app.data_dir) not in message
        else:
            assert info["num_frames"] >= 1
    # The server still answers, only the last successful upload keeps a folder, and no
    # payload stays in Gradio's upload cache.
    assert client.predict(0, api_name="/frame") is not None
    assert len(list(app.data_dir.iterdir())) <= 1
    assert not list((app.data_dir.parent / "gradio-cache").rglob("payload_*"))
