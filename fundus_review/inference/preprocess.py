"""Turn original RGB images into a normalised model batch, with the exact geometry of each.

The resampling follows `core.transform.make_transform` to the pixel: resize to the transform's
integer size (Pillow bilinear, which is antialiased when downscaling and uses the pixel-centre
convention), then paste at the transform's integer offset; padding is the mean colour (exactly 0
after normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from fundus_review.core.transform import InputTransform, make_transform


class PreprocessSpec(Protocol):
    """What preprocessing needs from a ModelCard."""

    input_size: tuple[int, int]
    resize: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _check_image(image: np.ndarray, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image {index}: expected an (H, W, 3) RGB array, got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image {index}: expected dtype uint8, got {image.dtype}")


def resample_to_input(
    image: np.ndarray, transform: InputTransform, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """(in_h, in_w, 3) float32, normalised: the image resized and placed as `transform` says.

    Input pixels outside the image are exactly 0, i.e. the mean colour (set after normalising,
    so float rounding cannot leave a faint border).
    """
    rh, rw = transform.resized_size
    oy, ox = transform.offset
    if (rh, rw) == image.shape[:2]:
        resized = image
    else:
        resized = np.asarray(
            Image.fromarray(image).resize((rw, rh), resample=Image.Resampling.BILINEAR)
        )
    canvas = np.zeros((transform.in_h, transform.in_w, 3), dtype=np.float32)
    # Overlap of the resized image (placed at oy, ox) with the canvas; handles crop and pad.
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + rh, transform.in_h), min(ox + rw, transform.in_w)
    if y1 > y0 and x1 > x0:
        part = resized[y0 - oy : y1 - oy, x0 - ox : x1 - ox].astype(np.float32)
        part *= 1.0 / 255.0
        part -= mean
        part /= std
        canvas[y0:y1, x0:x1] = part
    return canvas


def prepare_image(image: np.ndarray, card: PreprocessSpec) -> tuple[np.ndarray, InputTransform]:
    """One image -> ((3, h, w) float32 normalised array, its InputTransform).

    Separate from `prepare_batch` so that loader threads can preprocess images in parallel.
    """
    _check_image(image, 0)
    in_h, in_w = (int(v) for v in card.input_size)
    transform = make_transform(
        image.shape[0], image.shape[1], in_h, in_w, card.resize, float(card.crop_pct)
    )
    mean = np.asarray(card.mean, dtype=np.float32)
    std = np.asarray(card.std, dtype=np.float32)
    canvas = resample_to_input(image, transform, mean, std)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)), transform


def prepare_batch(
    images: Sequence[np.ndarray], card: PreprocessSpec
) -> tuple[torch.Tensor, list[InputTransform]]:
    """Images of any sizes -> (float32 tensor [B, 3, h, w], one InputTransform per image)."""
    if len(images) == 0:
        raise ValueError("prepare_batch needs at least one image")
    for i, image in enumerate(images):
        _check_image(image, i)
    arrays: list[np.ndarray] = []
    transforms: list[InputTransform] = []
    for image in images:
        arr, transform = prepare_image(image, card)
        arrays.append(arr)
        transforms.append(transform)
    return torch.from_numpy(np.stack(arrays)), transforms
