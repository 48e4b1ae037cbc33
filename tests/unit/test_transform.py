"""Geometry between original images and model inputs: hand-computed maps, round trips, heatmaps."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.core.transform import InputTransform, make_transform

POLICIES = ["resize", "center_crop", "letterbox"]
# (orig_h, orig_w, in_h, in_w): landscape, portrait, square, non-square input, upscaling.
SIZES = [
    (300, 400, 224, 224),
    (400, 300, 64, 64),
    (128, 128, 64, 64),
    (90, 160, 48, 64),
    (20, 30, 64, 64),
]


def test_resize_is_a_plain_stretch() -> None:
    t = make_transform(100, 200, 50, 50, "resize")
    assert (t.sx, t.sy, t.tx, t.ty) == (0.25, 0.5, 0.0, 0.0)
    # Centre of pixel (row 10, col 40) -> (40.5 * 0.25, 10.5 * 0.5).
    np.testing.assert_allclose(t.to_input_points([[40.5, 10.5]]), [[10.125, 5.25]])


def test_center_crop_follows_timm_eval_convention() -> None:
    # Short side 300 -> floor(224 / 0.875) = 256; long side int(256 * 400 / 300) = 341;
    # crop offsets round((256 - 224) / 2) = 16 and round((341 - 224) / 2) = round(58.5) = 58.
    t = make_transform(300, 400, 224, 224, "center_crop", crop_pct=0.875)
    assert t.resized_size == (256, 341)
    assert t.offset == (-16, -58)
    assert t.sx == pytest.approx(341 / 400) and t.sy == pytest.approx(256 / 300)
    # The original image centre lands near the input centre.
    cx, cy = t.to_input_points([[200.0, 150.0]])[0]
    assert abs(cx - 112) < 1 and abs(cy - 112) < 1


def test_letterbox_fits_long_side_and_centres() -> None:
    t = make_transform(100, 200, 64, 64, "letterbox")
    assert t.resized_size == (32, 64)
    assert t.offset == (16, 0)
    np.testing.assert_allclose(t.to_input_points([[0.0, 0.0], [200.0, 100.0]]), [[0, 16], [64, 48]])


def test_unknown_policy_and_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown resize policy"):
        make_transform(10, 10, 8, 8, "stretch")
    with pytest.raises(ValueError, match="orig_h"):
        make_transform(0, 10, 8, 8, "resize")
    with pytest.raises(ValueError, match="crop_pct"):
        make_transform(10, 10, 8, 8, "center_crop", crop_pct=1.5)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", SIZES)
def test_points_round_trip(policy: str, size: tuple[int, int, int, int]) -> None:
    t = make_transform(*size, policy)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, [size[1], size[0]], size=(50, 2))
    np.testing.assert_allclose(t.to_original_points(t.to_input_points(pts)), pts, atol=1e-9)
    back = InputTransform.from_dict(t.to_dict())
    assert back == t


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", SIZES)
def test_linear_ramp_maps_back_exactly(policy: str, size: tuple[int, int, int, int]) -> None:
    """Bilinear interpolation reproduces a linear function, so a heatmap whose value is the
    input x coordinate of each pixel centre must come back as x_in of each original centre."""
    t = make_transform(*size, policy)
    ramp = np.tile(np.arange(t.in_w, dtype=np.float32) + 0.5, (t.in_h, 1))
    out = t.heatmap_to_original(ramp)
    assert out.shape == (t.orig_h, t.orig_w) and out.dtype == np.float32
    xs = (np.arange(t.orig_w) + 0.5) * t.sx + t.tx
    expected = np.clip(xs, 0.5, t.in_w - 0.5)
    vis = t.visible_mask()
    rows, cols = np.nonzero(vis)
    np.testing.assert_allclose(out[rows, cols], expected[cols], atol=1e-4)
    assert np.all(out[~vis] == 0.0)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", SIZES)
def test_bump_peaks_at_the_mapped_original_pixel(
    policy: str, size: tuple[int, int, int, int]
) -> None:
    t = make_transform(*size, policy)
    # A bump centred on an input pixel that shows the image (inside the letterbox content).
    (x0, y0), (x1, y1) = t.to_input_points([[0, 0], [t.orig_w, t.orig_h]])
    cx = int(np.clip((x0 + 2 * x1) / 3, 1, t.in_w - 2))
    cy = int(np.clip((2 * y0 + y1) / 3, 1, t.in_h - 2))
    yy, xx = np.mgrid[0 : t.in_h, 0 : t.in_w]
    # Wide enough that point sampling on a coarser original grid still sees the top.
    sigma = max(1.0, t.sx, t.sy)
    bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    out = t.heatmap_to_original(bump)
    peak_row, peak_col = np.unravel_index(np.argmax(out), out.shape)
    ex, ey = t.to_original_points([[cx + 0.5, cy + 0.5]])[0]
    assert abs(peak_col + 0.5 - ex) <= 1.0
    assert abs(peak_row + 0.5 - ey) <= 1.0
    assert 0.5 < out.max() <= 1.0


def test_center_crop_visible_region_is_hand_computed() -> None:
    # 100x200 -> 50x50 with crop_pct 1: resize to 50x100, crop columns 25..74 of the resized
    # image, i.e. original columns whose centre (j + 0.5) / 2 - 25 lies in [0, 50): j = 50..149.
    t = make_transform(100, 200, 50, 50, "center_crop", crop_pct=1.0)
    vis = t.visible_mask()
    cols = np.nonzero(vis.any(axis=0))[0]
    assert cols[0] == 50 and cols[-1] == 149 and len(cols) == 100
    assert vis.all(axis=0)[50:150].all()
    out = t.heatmap_to_original(np.ones((50, 50), np.float32))
    assert out[:, :50].max() == 0.0 and out[:, 150:].max() == 0.0
    np.testing.assert_array_equal(out[:, 50:150], 1.0)


def test_letterbox_sees_every_original_pixel() -> None:
    t = make_transform(90, 160, 64, 64, "letterbox")
    assert t.visible_mask().all()
    hm = np.zeros((64, 64), np.float32)
    hm[:, :] = 0.25
    out = t.heatmap_to_original(hm)
    np.testing.assert_allclose(out, 0.25)


def test_heatmap_validation() -> None:
    t = make_transform(10, 20, 8, 8, "resize")
    with pytest.raises(ValueError, match="shape"):
        t.heatmap_to_original(np.zeros((8, 9), np.float32))
    bad = np.zeros((8, 8), np.float32)
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        t.heatmap_to_original(bad)


def test_large_original_grid_is_mapped() -> None:
    """A 224 map onto a full-size fundus photograph (4288x2848) keeps its values' range."""
    t = make_transform(2848, 4288, 224, 224, "center_crop")
    hm = np.random.default_rng(1).random((224, 224), dtype=np.float32)
    out = t.heatmap_to_original(hm)
    assert out.shape == (2848, 4288)
    vis = t.visible_mask()
    assert out[vis].min() >= hm.min() - 1e-6 and out[vis].max() <= hm.max() + 1e-6
    assert np.all(out[~vis] == 0.0)


def test_mask_to_input_is_hand_computed_for_letterbox_and_resize() -> None:
    # letterbox 100x200 -> 64x64: the image fills rows 16..47; padding rows are False.
    t = make_transform(100, 200, 64, 64, "letterbox")
    full = t.mask_to_input(np.ones((100, 200), bool))
    assert full[16:48].all() and not full[:16].any() and not full[48:].any()
    # resize 4x: input pixel (i, j) shows original pixel (i // 4... ) -> a left half stays a half.
    t = make_transform(32, 32, 8, 8, "resize")
    left = np.zeros((32, 32), bool)
    left[:, :16] = True
    np.testing.assert_array_equal(t.mask_to_input(left), np.tile([True] * 4 + [False] * 4, (8, 1)))
    with pytest.raises(ValueError, match="does not match"):
        t.mask_to_input(np.ones((8, 8), bool))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", SIZES)
def test_mask_to_input_agrees_with_the_heatmap_map_back(
    policy: str, size: tuple[int, int, int, int]
) -> None:
    """An input pixel is in the mapped mask iff the original pixel under its centre is in it."""
    oh, ow, ih, iw = size
    t = make_transform(oh, ow, ih, iw, policy)
    yy, xx = np.mgrid[0:oh, 0:ow]
    disc = (yy - oh / 2) ** 2 + (xx - ow / 2) ** 2 <= (min(oh, ow) / 3) ** 2
    got = t.mask_to_input(disc)
    centres = np.stack(np.meshgrid(np.arange(iw) + 0.5, np.arange(ih) + 0.5), -1).reshape(-1, 2)
    orig = np.floor(t.to_original_points(centres)).astype(int)
    inside = (orig[:, 0] >= 0) & (orig[:, 0] < ow) & (orig[:, 1] >= 0) & (orig[:, 1] < oh)
    expected = np.zeros(len(orig), bool)
    expected[inside] = disc[orig[inside, 1], orig[inside, 0]]
    np.testing.assert_array_equal(got.ravel(), expected)
