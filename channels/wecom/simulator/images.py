"""Tiny PNG images for the simulator's qr_code and avatar URLs (stdlib only).

The QR code is QR-*looking* (finder patterns and modules derived from the config_id),
not a scannable code: nothing in the demo scans it, and a real encoder would be a new
dependency. What matters is that the URL serves a real, stable image.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

QR_MODULES = 25
QR_SCALE = 8
QR_QUIET = 4


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(width: int, height: int, rows: list[bytes], color_type: int) -> bytes:
    """Encode rows of raw pixels (8-bit gray = type 0, RGB = type 2) as a PNG."""
    raw = b"".join(b"\x00" + row for row in rows)  # filter byte 0 (None) per row
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _finder(grid: list[list[bool]], top: int, left: int) -> None:
    for r in range(7):
        for c in range(7):
            ring = max(abs(r - 3), abs(c - 3))
            grid[top + r][left + c] = ring != 2
    for k in range(-1, 8):  # white separator
        for r, c in (
            (top - 1, left + k),
            (top + 7, left + k),
            (top + k, left - 1),
            (top + k, left + 7),
        ):
            if 0 <= r < QR_MODULES and 0 <= c < QR_MODULES:
                grid[r][c] = False


@lru_cache(maxsize=256)
def qr_png(payload: str) -> bytes:
    """A stable QR-looking PNG for ``payload`` (a contact way's config_id)."""
    bits = hashlib.sha256(payload.encode()).digest() * 3
    grid = [
        [
            bool(bits[(r * QR_MODULES + c) // 8] >> ((r * QR_MODULES + c) % 8) & 1)
            for c in range(QR_MODULES)
        ]
        for r in range(QR_MODULES)
    ]
    for top, left in ((0, 0), (0, QR_MODULES - 7), (QR_MODULES - 7, 0)):
        _finder(grid, top, left)
    size = (QR_MODULES + 2 * QR_QUIET) * QR_SCALE
    rows = []
    for y in range(size):
        r = y // QR_SCALE - QR_QUIET
        row = bytearray(b"\xff" * size)
        if 0 <= r < QR_MODULES:
            for c in range(QR_MODULES):
                if grid[r][c]:
                    x = (c + QR_QUIET) * QR_SCALE
                    row[x : x + QR_SCALE] = b"\x00" * QR_SCALE
        rows.append(bytes(row))
    return png(size, size, rows, 0)


@lru_cache(maxsize=1024)
def avatar_png(key: str, size: int = 64) -> bytes:
    """A solid pastel square whose colour is derived from ``key``."""
    d = hashlib.md5(key.encode()).digest()
    pixel = bytes((128 + d[0] // 2, 128 + d[1] // 2, 128 + d[2] // 2))
    row = pixel * size
    return png(size, size, [row] * size, 2)
