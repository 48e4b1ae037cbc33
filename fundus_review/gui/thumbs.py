"""Small images cached on disk: list thumbnails and viewer previews of large photographs.

Both are keyed by the file's path, size and modification time, not by content hash: a folder
opened for the first time shows its thumbnails while the content hashes are still being computed
in the background (a replaced file gets a new key at once).

JPEG "draft" decoding reads a 4288x2848 fundus photo at 1/8 scale directly from the DCT
coefficients, so a thumbnail costs a few milliseconds instead of a full decode. A preview is a
mid-size pyramid level (longer side <= PREVIEW_MAX_SIDE) saved after the photo was first shown;
the next time, the viewer shows it at once while the full photo decodes (0.2 s for a 12-megapixel
JPEG, longer for PNG or TIFF, which have no draft mode).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fundus_review.atomic import atomic_write_bytes
from fundus_review.paths import cache_dir
from fundus_review.views.pyramid import PreviewPyramid, Pyramid, preview_level

THUMB_SIZE = 128
PREVIEW_MAX_SIDE = 1280
_PREVIEW_TAG = re.compile(rb"^fundus_review preview (\d+)x(\d+) level (\d+)$")


def _file_key(src: str | os.PathLike[str]) -> str:
    st = os.stat(src)
    ident = f"{Path(src).resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()


def _jpeg(rgb: Image.Image, quality: int, comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality, comment=comment)
    return buf.getvalue()


def thumbnail_path(
    src: str | os.PathLike[str], size: int = THUMB_SIZE, root: Path | None = None
) -> Path:
    """Where the thumbnail of `src` as it is now lives (stat's it; raises OSError)."""
    key = _file_key(src)
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
    return atomic_write_bytes(dest, _jpeg(rgb, 85), durable=False)


def preview_path(src: str | os.PathLike[str], root: Path | None = None) -> Path:
    """Where the viewer preview of `src` as it is now lives (stat's it; raises OSError)."""
    key = _file_key(src)
    return (root or cache_dir()) / "previews" / key[:2] / f"{key}.jpg"


def save_preview(
    src: str | os.PathLike[str], pyramid: Pyramid, root: Path | None = None
) -> Path | None:
    """Cache a mid-size level of `pyramid` (the decoded photo of `src`) for its next showing.

    None for photos small enough to decode at once. Raises OSError when the cache cannot be
    written (callers treat that as "no preview next time")."""
    k = preview_level(pyramid, PREVIEW_MAX_SIDE)
    if k is None:
        return None
    dest = preview_path(src, root)
    if not dest.is_file():
        h, w = pyramid.shape
        tag = f"fundus_review preview {w}x{h} level {k}".encode()
        atomic_write_bytes(dest, _jpeg(Image.fromarray(pyramid.level(k)), 90, tag), durable=False)
    return dest


def load_preview(src: str | os.PathLike[str], root: Path | None = None) -> PreviewPyramid | None:
    """The cached preview of `src` as a stand-in pyramid, or None (never cached, file changed,
    unreadable cache: the full decode follows anyway)."""
    try:
        path = preview_path(src, root)
        if not path.is_file():
            return None
        with Image.open(path) as im:
            tag = _PREVIEW_TAG.match(im.info.get("comment", b""))
            rgb = np.asarray(im.convert("RGB"))
    except OSError:
        return None
    if tag is None:
        return None
    w, h, k = (int(v) for v in tag.groups())
    lh, lw = rgb.shape[:2]
    # A level of a (h, w) photo halves k times (rounding down): anything else is not ours.
    if (lh, lw) != (h >> k, w >> k) or lh == 0 or lw == 0:
        return None
    return PreviewPyramid(rgb, (h, w), k)
