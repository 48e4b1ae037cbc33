"""Reading fundus photographs into the project's image convention.

Every image leaves this module as an (H, W, 3) uint8 C-contiguous RGB array on the pixel grid the
user sees (EXIF orientation applied), or as an `ImageLoadError` that names the file and says in
plain words what is wrong with it. Masks, heatmaps and annotations are all drawn on this grid, so
the orientation and size rules here are the ones the whole project relies on.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from fundus_review.errors import ImageLoadError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageLoadError",
    "file_sha256",
    "image_size",
    "is_image_file",
    "load_image",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})

# The largest fundus cameras write ~4288x2848 (12 MP) and ultra-widefield ones ~4000x4000;
# 150 MP leaves ten-fold headroom while refusing files that would need gigabytes to decode.
MAX_PIXELS = 150_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_EXIF_ORIENTATION = 0x0112

# Magic numbers, so a file that PIL cannot identify can still be told apart into "a damaged
# JPEG" and "not an image at all" - the user fixes those two very differently.
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name has one of `IMAGE_EXTENSIONS` (any letter case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes, read in chunks so large files never sit in memory."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(chunk_size):
                digest.update(chunk)
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of the image as `load_image` will return it, read from the header only.

    PIL's order, i.e. ``load_image(path).shape[1::-1]``; EXIF rotations by 90 degrees swap the
    two, exactly as the loaded array does. Raises `ImageLoadError` like `load_image`.
    """
    try:
        with _open(path) as im:
            w, h = im.size
            if _orientation(im, path) in (5, 6, 7, 8):
                w, h = h, w
    except _PilCannotDecode:
        h, w = _load_tiff_with_opencv(path).shape[:2]
    return w, h


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 C-contiguous RGB array.

    - EXIF orientation is applied, so the array is what a viewer shows.
    - 16-bit and 32-bit integer images are scaled by their declared bit depth (a 12-bit sensor
      in a 16-bit PNG with an sBIT chunk uses 4095 as white); float images in [0, 1] are scaled
      by 255, other float ranges are min-max stretched.
    - Gray, LA, RGBA, palette, CMYK and friends become RGB; transparency is composited on black,
      the colour of a fundus camera's border.

    Raises `ImageLoadError(path, reason)` for missing, empty, truncated, corrupt, oversized or
    non-image files; no PIL exception escapes.
    """
    try:
        with _open(path) as im:
            orientation = _orientation(im, path)
            rgb = _decode_guarded(im, path)
    except _PilCannotDecode:
        return _load_tiff_with_opencv(path)
    out = _apply_orientation(rgb, orientation)
    # Callers draw into the array; arrays viewed from PIL buffers can be read-only.
    if not (out.flags.c_contiguous and out.flags.writeable):
        out = np.array(out, order="C")
    return out


# --- opening and error wording ---------------------------------------------------------------


class _PilCannotDecode(Exception):
    """A TIFF whose sample format PIL lacks (e.g. float RGB); OpenCV gets a second try."""


@contextmanager
def _open(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """Image.open with every failure turned into an ImageLoadError that says what is wrong."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError as exc:
        raise ImageLoadError(path, "file not found") from exc
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if Path(path).is_dir():
        raise ImageLoadError(path, "is a folder, not an image file")
    if size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    with warnings.catch_warnings():
        # Corrupt EXIF blocks and near-limit sizes only warn in PIL; we report what matters.
        warnings.simplefilter("ignore")
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(path, f"image too large to decode safely ({exc})") from exc
        except UnidentifiedImageError as exc:
            if _sniff_format(path) == "TIFF":
                raise _PilCannotDecode(path) from exc
            raise ImageLoadError(path, _unidentified_reason(path)) from exc
        except PermissionError as exc:
            raise ImageLoadError(path, "permission denied") from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            fmt = _sniff_format(path)
            what = f"{fmt} file" if fmt else "image file"
            raise ImageLoadError(path, f"truncated or corrupt {what} header ({exc})") from exc
        with im:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise ImageLoadError(path, f"image has zero size ({w}x{h} pixels)")
            if w * h > MAX_PIXELS:
                raise ImageLoadError(
                    path,
                    f"image too large: {w}x{h} = {w * h / 1e6:.0f} megapixels exceeds the "
                    f"{MAX_PIXELS / 1e6:.0f} MP limit (a decompression bomb or not a photograph)",
                )
            yield im


def _sniff_format(path: str | os.PathLike[str]) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _unidentified_reason(path: str | os.PathLike[str]) -> str:
    fmt = _sniff_format(path)
    if fmt:
        return f"truncated or corrupt {fmt} file (PIL cannot parse its header)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        head = b""
    if head and b"\x00" not in head:
        try:
            # Incremental decoding tolerates a multi-byte character cut at byte 512.
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            return "not an image file (it contains text)"
        except UnicodeDecodeError:
            pass
    return "not an image file (unrecognised format)"


def _decode_failure_reason(im: Image.Image, exc: BaseException) -> str:
    fmt = im.format or "image"
    msg = str(exc)
    if isinstance(exc, (EOFError, struct.error)) or re.search(r"truncat", msg, re.I):
        return f"truncated {fmt} file ({msg})" if msg else f"truncated {fmt} file"
    if "broken data stream" in msg or "decoder error" in msg:
        return f"corrupt {fmt} data ({msg})"
    return f"cannot decode {fmt} file ({type(exc).__name__}: {msg})"


def _dims(im: Image.Image) -> str:
    return f"{im.size[0]}x{im.size[1]}"


def _orientation(im: Image.Image, path: str | os.PathLike[str]) -> int:
    try:
        if im.format == "PNG":
            # PIL's getexif() decodes a whole PNG to look for an eXIf chunk after the pixels;
            # walking the chunks keeps image_size() a header-only read.
            raw = _png_chunk(path, b"eXIf", before_idat=False)
            exif = Image.Exif()
            if raw:
                exif.load(raw)
        else:
            exif = im.getexif()
        value = int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block must not make the picture unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Same result as PIL.ImageOps.exif_transpose, done on the decoded array."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(a, k=-1)
    if orientation == 7:
        return a[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(a, k=1)
    return a


# --- decoding to RGB uint8 -------------------------------------------------------------------


def _decode_guarded(im: Image.Image, path: str | os.PathLike[str]) -> np.ndarray:
    # If anything in the process told PIL to pad damaged files with gray, a half-gray fundus
    # image would be silently analysed; this module always wants the truncation error.
    pad_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        return _decode_rgb(im, path)
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageLoadError(path, f"not enough memory to decode a {_dims(im)} image") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise ImageLoadError(path, _decode_failure_reason(im, exc)) from exc
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = pad_truncated


def _decode_rgb(im: Image.Image, path: str | os.PathLike[str]) -> np.ndarray:
    if _is_multichannel_16bit(im):
        return _decode_16bit_colour(im, path)
    im.load()
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(im.convert("L"), dtype=np.uint8))
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _gray_to_rgb(_high_depth_to_uint8(np.asarray(im), _declared_bits(im, path)))
    if mode == "P" and "transparency" not in im.info:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA", "P"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        return _composite_on_black(rgba[..., :3], rgba[..., 3], 255)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)  # CMYK, YCbCr, LAB, HSV


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _composite_on_black(rgb: np.ndarray, alpha: np.ndarray, alpha_max: int) -> np.ndarray:
    out = rgb.astype(np.float32) * (alpha.astype(np.float32)[..., None] / alpha_max)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _high_depth_to_uint8(a: np.ndarray, bits: int | None) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return _float_to_uint8(a)
    a = a.astype(np.float64)
    if bits is None:
        peak = float(a.max()) if a.size else 0.0
        bits = 16 if peak <= 65535 else 32
    white = float((1 << bits) - 1)
    return np.clip(np.rint(a * (255.0 / white)), 0, 255).astype(np.uint8)


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    a = np.where(finite, a, lo)
    if lo >= 0.0 and hi <= 1.0:
        scaled = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = a
    else:
        # Unknown physical units (e.g. radiance): stretch, since any fixed mapping would clip.
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _declared_bits(im: Image.Image, path: str | os.PathLike[str]) -> int | None:
    """Significant bits per sample from the file itself (PNG sBIT, TIFF BitsPerSample)."""
    if im.format == "PNG":
        sbit = _png_sbit(path)
        if sbit:
            return max(sbit)
        return 16 if im.mode.startswith("I;16") or im.mode == "I" else None
    if im.format == "TIFF":
        tag = getattr(im, "tag_v2", {}).get(258)
        if isinstance(tag, tuple):
            tag = tag[0] if tag else None
        if isinstance(tag, int) and 1 <= tag <= 32:
            return tag
    if im.mode.startswith("I;16"):
        return 16
    return None


def _png_sbit(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """Significant bits from the sBIT chunk, which PIL does not expose."""
    data = _png_chunk(path, b"sBIT", before_idat=True) or b""
    bits = tuple(b for b in data if 0 < b <= 16)
    return bits or None


def _png_chunk(path: str | os.PathLike[str], wanted: bytes, before_idat: bool) -> bytes | None:
    """The payload of the first `wanted` chunk, found by seeking over the others (no decoding)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                header = fh.read(8)
                if len(header) < 8:
                    return None
                length, ctype = struct.unpack(">I4s", header)
                if ctype == wanted:
                    return fh.read(length)
                if ctype == b"IEND" or (before_idat and ctype == b"IDAT"):
                    return None
                fh.seek(length + 4, os.SEEK_CUR)
    except (OSError, struct.error):
        return None


def _is_multichannel_16bit(im: Image.Image) -> bool:
    # PIL decodes 16-bit RGB(A) PNG/TIFF by dropping the low byte, which is wrong when the data
    # has fewer significant bits than 16 (sBIT / BitsPerSample); those files go through OpenCV.
    if im.mode not in ("RGB", "RGBA") or not im.tile:
        return False
    rawmode = im.tile[0].args[0] if isinstance(im.tile[0].args, tuple) else im.tile[0].args
    return isinstance(rawmode, str) and ";16" in rawmode


def _load_tiff_with_opencv(path: str | os.PathLike[str]) -> np.ndarray:
    import cv2

    try:
        a = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except (cv2.error, OSError, ValueError) as exc:
        raise ImageLoadError(path, f"cannot decode TIFF file ({exc})") from exc
    if a is None or a.size == 0:
        raise ImageLoadError(path, "truncated or corrupt TIFF file (no decoder can read it)")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] not in (1, 3, 4):
        raise ImageLoadError(path, f"unsupported TIFF with {a.shape[2]} channels")
    bits = 8 * a.dtype.itemsize if a.dtype.kind in "ui" else None
    rgb = a[..., :1].repeat(3, axis=2) if a.shape[2] == 1 else a[..., 2::-1]
    rgb8 = rgb.astype(np.uint8) if a.dtype == np.uint8 else _high_depth_to_uint8(rgb, bits)
    if a.shape[2] == 4:
        alpha = a[..., 3].astype(np.float64)
        alpha_max = 1.0 if a.dtype.kind == "f" else float(np.iinfo(a.dtype).max)
        rgb8 = _composite_on_black(rgb8, np.clip(alpha / alpha_max, 0, 1), 1)
    return np.ascontiguousarray(rgb8)


def _decode_16bit_colour(im: Image.Image, path: str | os.PathLike[str]) -> np.ndarray:
    import cv2  # only 16-bit colour files need it; keeps the common path PIL-only

    data = np.fromfile(path, dtype=np.uint8)  # imdecode copes with non-ASCII paths, imread not
    a = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if a is None or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ImageLoadError(path, f"truncated or corrupt 16-bit {im.format or 'image'} file")
    if a.shape[:2] != (im.size[1], im.size[0]):
        raise ImageLoadError(path, f"corrupt {im.format} file (header and pixel sizes differ)")
    bits = _declared_bits(im, path) or 16
    if a.dtype != np.uint16:
        bits = 8 * a.dtype.itemsize
    rgb = _high_depth_to_uint8(a[..., 2::-1], bits)
    if a.shape[2] == 4:
        alpha = a[..., 3].astype(np.float64) / float(np.iinfo(a.dtype).max)
        rgb = _composite_on_black(rgb, alpha, 1)
    return rgb
