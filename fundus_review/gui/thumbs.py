"""Thumbnails cached on disk, keyed by the file's path, size and modification time.

Not by content hash: a folder opened for the first time shows its thumbnails while the content
hashes are still being computed in the background (a replaced file gets a new key at once).

JPEG "draft" decoding reads a 4288x2848 fundus photo at 1/8 scale directly from the DCT
coefficients, so a thumbnail costs a few milliseconds instead of a full decode.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from fundus_review.paths import cache_dir

THUMB_SIZE = 128


def thumbnail_path(
    src: str | os.PathLike[str], size: int = THUMB_SIZE, root: Path | None = None
) -> Path:
    """Where the thumbnail of `src` as it is now lives (stat's it; raises OSError)."""
    st = os.stat(src)
    ident = f"{Path(src).resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    key = hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()
    return (root or cache_dir()) / "thumbnails" / f"{size}" / key[:2] / f"{key}.jpg"


def make_thumbnail(
    src: str | os.PathLike[str], size: int = THUMB_SIZE, root: Path | None = None
) -> Path:
    """The cached thumbnail of `src` (written on first use, atomically); raises OSError."""
    dest = thumbnail_path(src, size, root)
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
