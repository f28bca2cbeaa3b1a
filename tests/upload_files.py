"""Hostile and odd image files for the upload tests, written without decoding big images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_grey_png(path: Path, side: int = 12000) -> Path:
    """A real, valid ``side`` x ``side`` 8-bit greyscale PNG (black), compressed row by row
    so the test never holds the decoded image (144 MB at 12000 px) in memory."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


def eps_file(path: Path) -> Path:
    """A minimal EPS: Pillow would hand it to Ghostscript to decode."""
    path.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nnewpath 0 0 moveto 32 32 lineto stroke\n"
                    "showpage\n%%EOF\n")
    return path
