"""Expert masks on disk: the `masks/<structure>/<image stem>.png` layout, reading and writing.

A mask is only useful if it lies on exactly the pixel grid of its photograph, so a mask whose
size differs from the image is refused with both sizes named, never resized behind the user's
back (a resized mask would silently shift every agreement score).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fundus_review.atomic import atomic_write_bytes
from fundus_review.data.images import IMAGE_EXTENSIONS
from fundus_review.errors import DatasetError

__all__ = ["MASK_EXTENSIONS", "find_mask_files", "load_mask", "write_mask_atomic"]

# DRIVE ships its masks as GIF; everything else in the field uses PNG, TIFF or BMP.
MASK_EXTENSIONS: frozenset[str] = IMAGE_EXTENSIONS | {".gif"}

# Lossless formats come first: when two files claim the same image, the exact one wins.
_PREFERENCE = (".png", ".tif", ".tiff", ".bmp", ".gif", ".jpg", ".jpeg")


def find_mask_files(masks_dir: str | os.PathLike[str]) -> dict[str, dict[str, Path]]:
    """Map image stem -> {structure: mask path} for the layout `masks_dir/<structure>/<stem>.png`.

    Structure names are the sub-folder names (e.g. "optic_disc", "hemorrhage"); an image
    appears only under the structures that have a file for it. Hidden files and folders are
    ignored. Both levels are sorted, so the result is deterministic.
    """
    root = Path(masks_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: masks folder not found")
    structures = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not structures:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in MASK_EXTENSIONS]
        hint = (
            f"; found {len(loose)} mask file(s) directly inside it - point at the folder that "
            f"holds one sub-folder per structure"
            if loose
            else ""
        )
        raise DatasetError(
            f"{root}: expected the layout <masks>/<structure>/<image stem>.png "
            f"(one sub-folder per structure, e.g. optic_disc){hint}"
        )
    found: dict[str, dict[str, Path]] = {}
    for folder in structures:
        by_stem: dict[str, Path] = {}
        files = sorted(
            (p for p in folder.iterdir() if _is_mask_file(p)),
            key=lambda p: (p.stem, _rank(p)),
        )
        for path in files:
            # A stem seen twice (a.png + a.tif): keep the lossless, preferred one.
            by_stem.setdefault(path.stem, path)
        for stem, path in by_stem.items():
            found.setdefault(stem, {})[folder.name] = path
    return {stem: dict(sorted(found[stem].items())) for stem in sorted(found)}


def load_mask(
    path: str | os.PathLike[str], expected_shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Read a mask as an (H, W) bool array: any non-zero pixel is the structure.

    Accepts 0/255, 0/1 and any other non-zero coding; colour masks count a pixel as set when
    any colour channel is non-zero (and, with transparency, when it is not fully transparent).
    JPEG masks are thresholded at mid-gray because compression noise is never exactly zero.
    `expected_shape` is the image's shape ((H, W) or (H, W, 3)); a different mask size raises
    `DatasetError` naming both sizes.
    """
    path = Path(path)
    mask = _read_mask(path)
    if expected_shape is not None:
        want = (int(expected_shape[0]), int(expected_shape[1]))
        if mask.shape != want:
            hint = (
                " (the mask looks rotated by 90 degrees - check the EXIF orientation)"
                if mask.shape == want[::-1]
                else ""
            )
            raise DatasetError(
                f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} (width x height) but its image "
                f"is {want[1]}x{want[0]}; masks must be drawn on the original image{hint}"
            )
    return mask


def write_mask_atomic(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write an (H, W) mask as a uint8 0/255 PNG; readers never see a half-written file."""
    path = Path(path)
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"a mask must be a non-empty 2-D array, got shape {m.shape}")
    data = np.where(m.astype(bool), np.uint8(255), np.uint8(0))
    buf = io.BytesIO()
    Image.fromarray(data).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _is_mask_file(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in MASK_EXTENSIONS
    )


def _rank(path: Path) -> int:
    ext = path.suffix.lower()
    return _PREFERENCE.index(ext) if ext in _PREFERENCE else len(_PREFERENCE)


def _read_mask(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path}: mask file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                lossy = im.format == "JPEG"
                if not lossy:
                    _check_two_levels(im, path)
                # Same orientation rule as load_image, so mask and photo share one grid.
                return _to_bool(ImageOps.exif_transpose(im), lossy)
    except UnidentifiedImageError as exc:
        raise DatasetError(f"{path}: not an image file, cannot read it as a mask") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: truncated or corrupt mask file ({exc})") from exc


def _check_two_levels(im: Image.Image, path: Path) -> None:
    """A gray mask with more than two values is a probability map, anti-aliased drawing or a
    label map (0/128/255 cup and disc): "any non-zero" would silently grow the structure."""
    if im.mode not in ("L", "I", "I;16", "I;16B", "I;16L"):
        return  # colour, palette and 1-bit masks: any non-zero colour is the structure
    a = np.asarray(im)
    if a.dtype.kind == "u" and a.dtype.itemsize <= 2:
        levels = int(np.count_nonzero(np.bincount(a.ravel(), minlength=2)))
    else:
        levels = len(np.unique(a))
    if levels > 2:
        raise DatasetError(
            f"{path}: mask is not binary ({levels} gray levels, e.g. a probability map, "
            "anti-aliased edges or several structures in one file); save it with two values, "
            "0 for background"
        )


def _to_bool(im: Image.Image, lossy: bool) -> np.ndarray:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        a = np.asarray(im.convert("RGBA"))
        visible = a[..., 3] > 0
        return visible & _nonzero(a[..., :3], lossy).any(axis=2)
    a = np.asarray(
        im if mode in ("1", "L", "I", "F") or mode.startswith("I;16") else im.convert("RGB")
    )
    if a.ndim == 3:
        return _nonzero(a, lossy).any(axis=2)
    return _nonzero(a, lossy)


def _nonzero(a: np.ndarray, lossy: bool) -> np.ndarray:
    if lossy and a.size and a.max() > 1:
        return a > 127
    return a != 0
