"""Thumbnails cached on disk, keyed by the image's content hash (renames cost nothing).

JPEG "draft" decoding reads a 4288x2848 fundus photo at 1/8 scale directly from the DCT
coefficients, so a thumbnail costs a few milliseconds instead of a full decode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from fundus_review.paths import cache_dir

THUMB_SIZE = 128


def thumbnail_path(sha256: str, size: int = THUMB_SIZE, root: Path | None = None) -> Path:
    base = (root or cache_dir()) / "thumbnails" / f"{size}" / sha256[:2]
    return base / f"{sha256}.jpg"


def make_thumbnail(
    src: Path, sha256: str, size: int = THUMB_SIZE, root: Path | None = None
) -> Path:
    """The cached thumbnail of `src` (written on first use, atomically); raises OSError."""
    dest = thumbnail_path(sha256, size, root)
    if dest.is_file():
        return dest
    with Image.open(src) as im:
        im.draft("RGB", (size, size))
        im = ImageOps.exif_transpose(im)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.BILINEAR)
        rgb = im.convert("RGB")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            rgb.save(fh, format="JPEG", quality=85)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
