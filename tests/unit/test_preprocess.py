"""prepare_batch: pixels land where the InputTransform says; timm/torchvision equivalence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from fundus_review.inference.preprocess import prepare_batch, prepare_image


@dataclass
class Spec:
    input_size: tuple[int, int] = (64, 64)
    resize: str = "resize"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


POLICIES = ["resize", "center_crop", "letterbox"]


def _dot_image(h: int, w: int, row: int, col: int, radius: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[row - radius : row + radius + 1, col - radius : col + radius + 1] = 255
    return img


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    ("h", "w", "in_size", "row", "col"),
    [(150, 240, (64, 64), 50, 150), (240, 150, (64, 64), 130, 40), (90, 120, (48, 80), 30, 70)],
)
def test_bright_dot_lands_where_the_transform_says(policy, h, w, in_size, row, col) -> None:
    spec = Spec(input_size=in_size, resize=policy)
    img = _dot_image(h, w, row, col, radius=4)
    batch, transforms = prepare_batch([img], spec)
    assert batch.shape == (1, 3, *in_size) and batch.dtype == torch.float32
    t = transforms[0]
    # Resampling is linear: the dot's own contribution is the difference to a blank image.
    blank, _ = prepare_batch([np.zeros_like(img)], spec)
    dot = (batch[0] - blank[0]).sum(0).numpy()
    assert dot.min() >= -1e-4
    ex, ey = t.to_input_points([[col + 0.5, row + 0.5]])[0]
    yy, xx = np.mgrid[0 : in_size[0], 0 : in_size[1]]
    cx = (dot * (xx + 0.5)).sum() / dot.sum()
    cy = (dot * (yy + 0.5)).sum() / dot.sum()
    assert abs(cx - ex) < 0.05 and abs(cy - ey) < 0.05


def test_letterbox_padding_is_zero_after_normalisation() -> None:
    spec = Spec(resize="letterbox", mean=(0.3, 0.4, 0.5), std=(0.2, 0.2, 0.2))
    img = np.full((100, 200, 3), 255, np.uint8)
    batch, (t,) = prepare_batch([img], spec)
    assert t.offset == (16, 0) and t.resized_size == (32, 64)
    assert torch.all(batch[0, :, :16] == 0) and torch.all(batch[0, :, 48:] == 0)
    # White content: (1 - mean) / std per channel.
    expected = torch.tensor([(1 - 0.3) / 0.2, (1 - 0.4) / 0.2, (1 - 0.5) / 0.2])
    torch.testing.assert_close(batch[0, :, 16:48].mean(dim=(1, 2)), expected)


def test_uniform_colour_normalises_exactly() -> None:
    spec = Spec(resize="center_crop")
    img = np.empty((70, 90, 3), np.uint8)
    img[...] = (51, 102, 204)
    arr, _ = prepare_image(img, spec)
    for ch, value in enumerate((51, 102, 204)):
        expected = (value / 255 - spec.mean[ch]) / spec.std[ch]
        np.testing.assert_allclose(arr[ch], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("h", "w", "in_size"), [(150, 240, (64, 64)), (240, 150, (64, 64)), (90, 160, (48, 64))]
)
def test_center_crop_matches_timm_eval_transform(h: int, w: int, in_size: tuple[int, int]) -> None:
    from timm.data import create_transform

    spec = Spec(input_size=in_size, resize="center_crop", crop_pct=0.875)
    img = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours, _ = prepare_batch([img], spec)
    tf = create_transform(
        input_size=(3, *in_size), is_training=False, crop_pct=0.875,
        interpolation="bilinear", mean=spec.mean, std=spec.std,
    )  # fmt: skip
    theirs = tf(Image.fromarray(img))
    torch.testing.assert_close(ours[0], theirs, atol=1e-5, rtol=0)


def test_resize_matches_torchvision_resize() -> None:
    from torchvision import transforms as T

    spec = Spec(input_size=(48, 64), resize="resize")
    img = np.random.default_rng(4).integers(0, 256, (150, 240, 3), dtype=np.uint8)
    ours, _ = prepare_batch([img], spec)
    tf = T.Compose([T.Resize((48, 64)), T.ToTensor(), T.Normalize(spec.mean, spec.std)])
    torch.testing.assert_close(ours[0], tf(Image.fromarray(img)), atol=1e-5, rtol=0)


def test_batch_of_mixed_sizes_keeps_one_transform_each() -> None:
    imgs = [np.zeros((50, 80, 3), np.uint8), np.zeros((80, 50, 3), np.uint8)]
    batch, transforms = prepare_batch(imgs, Spec(resize="letterbox"))
    assert batch.shape == (2, 3, 64, 64)
    assert [(t.orig_h, t.orig_w) for t in transforms] == [(50, 80), (80, 50)]
    assert transforms[0].offset == (12, 0) and transforms[1].offset == (0, 12)


def test_bad_images_are_rejected() -> None:
    with pytest.raises(ValueError, match="uint8"):
        prepare_batch([np.zeros((10, 10, 3), np.float32)], Spec())
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        prepare_batch([np.zeros((10, 10), np.uint8)], Spec())
    with pytest.raises(ValueError, match="at least one"):
        prepare_batch([], Spec())
