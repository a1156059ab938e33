"""Crafted files that claim huge sizes, and a runner that opens them under an address-space
limit.

Each file is a few hundred bytes whose header claims a size that would take GiBs if a
decoder allocated it. :func:`bounded` runs a snippet in a fresh interpreter that first
imports what it needs, then limits its own address space to what it has mapped plus
``headroom_mib``: an allocation from the claimed size fails there with ``MemoryError``
instead of swapping the machine, and the snippet's printed outcome says which happened.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PRELUDE = """
import json, resource, sys
sys.path.insert(0, {root!r})
DATA = sys.stdin.buffer.read()
{imports}
def _mapped():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
_limit = _mapped() + {headroom} * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
_rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    _value = None
{body}
    _out = {{"outcome": "returned", "value": repr(_value)[:300]}}
except MemoryError:
    _out = {{"outcome": "MemoryError"}}
except Exception as exc:  # the outcome is what the test checks
    _out = {{"outcome": type(exc).__name__, "message": str(exc)}}
_out["rss_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _rss0) / 1024
print(json.dumps(_out))
"""


def bounded(imports: str, body: str, data: bytes, headroom_mib: int = 256) -> dict:
    """Run ``body`` (statements; ``DATA`` holds ``data``; assign ``_value``) after
    ``imports`` under an address-space limit of what is mapped plus ``headroom_mib``.
    Returns {"outcome": "returned" | "MemoryError" | exception name, "message",
    "rss_growth_mib"}."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    code = _PRELUDE.format(
        root=str(ROOT), imports=imports.strip(), headroom=headroom_mib, body=indented
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=data,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
        # glibc reserves 64 MiB of address space per thread arena, which decoders' threads
        # would spend against the cap without using it; one arena keeps the cap honest.
        env={**os.environ, "MALLOC_ARENA_MAX": "1"},
    )
    lines = out.stdout.decode().strip().splitlines()
    assert out.returncode == 0 and lines, out.stderr.decode()[-3000:]
    return json.loads(lines[-1])


def tiff_claiming(width: int, height: int, bits: int = 16, pages: int = 1) -> bytes:
    """A little-endian TIFF of ``pages`` greyscale pages that each claim ``width`` x
    ``height`` pixels of ``bits`` bits, uncompressed, with 16 bytes of pixel data in all."""
    entries_per_ifd = 9
    ifd_size = 2 + entries_per_ifd * 12 + 4
    data_offset = 8
    first_ifd = data_offset + 16
    out = bytearray(b"II*\x00" + struct.pack("<I", first_ifd) + bytes(16))
    for page in range(pages):
        offset = first_ifd + page * ifd_size
        next_ifd = offset + ifd_size if page + 1 < pages else 0
        tags = [
            (256, 4, 1, width),  # ImageWidth
            (257, 4, 1, height),  # ImageLength
            (258, 3, 1, bits),  # BitsPerSample
            (259, 3, 1, 1),  # Compression: none
            (262, 3, 1, 1),  # PhotometricInterpretation: black is zero
            (273, 4, 1, data_offset),  # StripOffsets
            (277, 3, 1, 1),  # SamplesPerPixel
            (278, 4, 1, height),  # RowsPerStrip
            (279, 4, 1, 16),  # StripByteCounts
        ]
        out += struct.pack("<H", len(tags))
        for tag, kind, count, value in tags:
            packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, count) + packed
        out += struct.pack("<I", next_ifd)
    return bytes(out)


def png_claiming(width: int, height: int, bit_depth: int = 16) -> bytes:
    """A greyscale PNG whose IHDR claims ``width`` x ``height`` with a few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def png_of_zeros(width: int, height: int) -> bytes:
    """An 8-bit greyscale PNG that really holds ``width`` x ``height`` black pixels (they
    compress to about a thousandth of their size), so a decoder makes all of them."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the row
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def polygon_corners(count: int) -> list[list[int]]:
    """``count`` distinct corners, in order, of a polygon with an area (on a circle of
    40000 pixels' radius)."""
    return [
        [
            round(5e4 + 4e4 * math.cos(2 * math.pi * i / count)),
            round(5e4 + 4e4 * math.sin(2 * math.pi * i / count)),
        ]
        for i in range(count)
    ]


def pretty(result: dict) -> str:
    return json.dumps(result, indent=1)
