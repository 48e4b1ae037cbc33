"""Broken and unusual files, made small and fast, for the drills in this folder."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Every file name a dataset folder must survive.
HOSTILE_NAMES = ("with space.png", "fündus_眼底.png", "<script>alert(1)<.script>.png")
XSS_NAME = "<img src=x onerror=alert(1)>.jpg"


def rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, **kwargs: object) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(rgb(64, 64)).save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def png_16bit(path: Path) -> Path:
    a = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80).astype("<u2")
    Image.frombytes("I;16", (32, 24), a.tobytes()).save(path)
    return path


def cmyk_jpeg(path: Path) -> Path:
    Image.fromarray(rgb()).convert("CMYK").save(path, format="JPEG")
    return path


def exif_rotated_jpeg(path: Path, stored: np.ndarray, orientation: int = 6) -> Path:
    """A JPEG whose pixels are stored as `stored` with an EXIF orientation tag (6: a viewer
    rotates it 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, format="JPEG", quality=98, exif=exif.tobytes())
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bilevel_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """An all-black 1-bit PNG of any size, streamed (15000x15000: ~0.2 s, 27 KB). With `rows`,
    only that many rows of pixel data follow the header: a decompression bomb in miniature."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts, block = [], row * 256
    n = height if rows is None else rows
    for _ in range(n // 256):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * (n % 256)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
    path.write_bytes(data + _chunk(b"IEND", b""))
    return path


def symlink_loop(folder: Path) -> list[Path]:
    """A file link to itself and a folder link back to its parent."""
    (folder / "sub").mkdir(exist_ok=True)
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("..", folder / "sub" / "up")
    return [folder / "loop.jpg", folder / "sub" / "up"]


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file or folder unwritable for this process, even as root (`chattr +i`)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    try:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:
        done = False
    if not done:
        pytest.skip("running as root where `chattr +i` is unavailable: nothing is read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
