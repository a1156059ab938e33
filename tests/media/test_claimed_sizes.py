"""Small files that claim huge sizes: each is refused in one sentence that names the limit,
before anything is decoded from the size it claims.

Every case runs in a fresh interpreter whose address space is capped at what it has mapped
after its imports plus 256 MiB (:func:`hostile.bounded`), so an allocation from the claimed
size ends in ``MemoryError`` there, and the test reports it, instead of taking the machine.
Recorded run, before label images checked their header: the 60000 x 60000 TIFF ended in
``MemoryError`` under the cap (it asks for 6.7 GiB).
"""

from __future__ import annotations

import io
import struct
import zipfile

import pytest
from hostile import bounded, png_claiming, tiff_claiming

HEADROOM_MIB = 256
LABELS = "from sam2web.media.labels import read_label_image"
INGEST = """
import tempfile
from pathlib import Path
from sam2web.media.ingest import MediaLimits, ingest
LIMITS = MediaLimits(max_bytes=50 << 20, max_frames=100, max_duration_s=60.0,
                     max_pixels=1280 * 720, max_zip_ratio=100.0)
"""
INGEST_BODY = """
work = Path(tempfile.mkdtemp())
src = work / NAME
src.write_bytes(DATA)
_value = ingest(src, work / "frames", limits=LIMITS, source_name=NAME)
"""


def _refused(result: dict, *words: str) -> str:
    assert result["outcome"].endswith("Error") and result["outcome"] != "MemoryError", result
    message = result["message"]
    for word in words:
        assert word in message, message
    assert result["rss_growth_mib"] < HEADROOM_MIB, result
    return message


def _labels(data: bytes, size: str) -> dict:
    return bounded(LABELS, f"_value = read_label_image(DATA, size={size}, name='x')", data)


def test_a_label_tiff_claiming_60000_pixels_square_is_compared_with_the_frame_first():
    data = tiff_claiming(60000, 60000)
    assert len(data) < 300
    _refused(_labels(data, "(64, 48)"), "60000x60000", "64x48")


def test_a_label_tiff_claiming_too_many_pixels_is_refused_without_a_frame_size():
    _refused(_labels(tiff_claiming(60000, 60000), "None"), "67,108,864 pixels")


def test_a_label_png_claiming_60000_pixels_square_is_refused():
    _refused(_labels(png_claiming(60000, 60000), "(64, 48)"), "60000x60000", "64x48")
    _refused(_labels(png_claiming(20000, 20000), "None"), "67,108,864 pixels")


def test_a_label_tiff_of_the_right_size_still_reads():
    """The check does not refuse what it should pass: the same crafted header at the frame's
    own size decodes (16 bytes of pixels, the rest zero-padded by the reader or refused as
    damaged, never a size error)."""
    result = _labels(tiff_claiming(4, 2), "(4, 2)")
    assert "pixels but the video" not in result.get("message", ""), result


def _ingest(name: str, data: bytes, headroom_mib: int = HEADROOM_MIB) -> dict:
    body = f"NAME = {name!r}\n" + INGEST_BODY
    return bounded(INGEST, body, data, headroom_mib)


def test_a_tiff_stack_claiming_60000_pixels_square_is_refused():
    _refused(_ingest("stack.tif", tiff_claiming(60000, 60000, pages=3)), "60000")


def test_a_png_in_a_zip_claiming_60000_pixels_square_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("frame_000.png", png_claiming(60000, 60000, bit_depth=8))
        zf.writestr("frame_001.png", png_claiming(60000, 60000, bit_depth=8))
    _refused(_ingest("frames.zip", buf.getvalue()), "60000")


def test_a_zip_bomb_is_refused_from_its_stated_sizes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("frame_000.png", b"\0" * (200 << 20))  # 200 MiB that pack to ~200 KiB
    data = buf.getvalue()
    assert len(data) < 1 << 20
    _refused(_ingest("bomb.zip", data))


def _gif_claiming(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)  # no global colour table
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0x80)  # local table of 2
    table = b"\0\0\0\xff\xff\xff"
    data = b"\x02\x02\x44\x01\x00"  # LZW minimum code size 2, one tiny sub-block
    return b"GIF89a" + screen + image + table + data + b"\x3b"


def test_a_gif_claiming_65535_pixels_square_is_refused():
    _refused(_ingest("big.gif", _gif_claiming(65535, 65535)), "65535")


@pytest.mark.parametrize("name", ["claims.mp4", "claims.avi"])
def test_random_bytes_named_as_video_stay_within_memory(name):
    """FFmpeg's decoder threads reserve stacks and arenas beyond 256 MiB of address space
    that they never touch, so the cap is wider here; the resident growth still has to stay
    under 256 MiB."""
    _refused(_ingest(name, b"\0\0\0\x18ftypmp42" + b"\xff" * 200, headroom_mib=768))
