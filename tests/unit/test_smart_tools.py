"""The Qt-free smart tools: live-wire paths follow a known edge; GrabCut finds a bright disc."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.core.geometry import shape_mask
from fundus_review.review import livewire
from fundus_review.review.grabcut import GrabCutError, box_region
from fundus_review.review.livewire import LiveWire, LiveWireUnavailable, simplify_path

H, W, CX, CY, R = 240, 320, 160.0, 120.0, 60.0


def _disc_photo(noise: float = 8.0, seed: int = 0, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc (radius R) on a dark, noisy background; and its exact mask."""
    rng = np.random.default_rng(seed)
    h, w = H * scale, W * scale
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(xx + 0.5 - CX * scale, yy + 0.5 - CY * scale)
    truth = d < R * scale
    img = np.where(truth, 180.0, 60.0) + rng.normal(0, noise, (h, w))
    gray = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2), truth


def _edge_distance(pts: np.ndarray, scale: int = 1) -> np.ndarray:
    return np.abs(np.hypot(pts[:, 0] - CX * scale, pts[:, 1] - CY * scale) - R * scale)


def test_livewire_path_follows_the_edge_not_the_chord() -> None:
    rgb, _ = _disc_photo()
    lw = LiveWire(rgb)
    lw.set_anchor(CX + R, CY)  # a quarter of the circle apart: the chord is 17.6 px off the edge
    path = lw.path_to(CX, CY + R)
    assert np.allclose(path[0], [CX + R + 0.5, CY + 0.5])  # anchor first, pixel centres
    assert np.allclose(path[-1], [CX + 0.5, CY + R + 0.5])
    assert _edge_distance(path).mean() < 2.0
    # The straight line would be far from the edge: the test can tell them apart.
    t = np.linspace(0, 1, 50)[:, None]
    chord = (1 - t) * np.array([CX + R, CY]) + t * np.array([CX, CY + R])
    assert _edge_distance(chord).mean() > 8.0
    # Roughly the arc's length (pi/2 * R = 94 px), one vertex per pixel step.
    steps = np.hypot(*np.diff(path, axis=0).T)
    assert 85 < steps.sum() < 115 and steps.max() <= np.sqrt(2) + 1e-9


def test_livewire_on_a_downscaled_photo_returns_original_coordinates() -> None:
    rgb, _ = _disc_photo(scale=4)  # 1280 x 960: prepared at 1024 px
    lw = LiveWire(rgb, max_side=320)
    assert lw.scale == pytest.approx(0.25)
    lw.set_anchor(4 * (CX + R), 4 * CY)
    path = lw.path_to(4 * CX, 4 * (CY + R))
    assert _edge_distance(path, scale=4).mean() < 2.0 / lw.scale  # 2 px of the prepared grid
    assert path[:, 0].max() <= 4 * W and path[:, 1].max() <= 4 * H


def test_livewire_needs_an_anchor_and_an_rgb_image() -> None:
    rgb, _ = _disc_photo()
    with pytest.raises(ValueError, match="set_anchor"):
        LiveWire(rgb).path_to(10, 10)
    with pytest.raises(ValueError, match="RGB uint8"):
        LiveWire(rgb[..., 0])


def test_livewire_without_the_opencv_module_says_what_to_do(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(livewire, "available", lambda: False)
    with pytest.raises(LiveWireUnavailable, match="polygon tool"):
        LiveWire(_disc_photo()[0])


def test_simplify_path_keeps_the_shape_with_fewer_vertices() -> None:
    a = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = np.c_[100 + 50 * np.cos(a), 100 + 50 * np.sin(a)]
    simple = simplify_path(circle, tolerance=0.75)
    assert 10 < len(simple) < 80
    # Every kept vertex lies on the circle (within the tolerance).
    assert np.abs(np.hypot(simple[:, 0] - 100, simple[:, 1] - 100) - 50).max() < 0.75


def test_grabcut_box_finds_the_bright_disc() -> None:
    rgb, truth = _disc_photo()
    res = box_region(rgb, (CX - R - 12, CY - R - 12, CX + R + 12, CY + R + 12))
    mask = shape_mask(res.polygon, truth.shape)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.8
    assert (res.mask & truth).sum() / (res.mask | truth).sum() > 0.8
    # An editable outline, not one vertex per boundary pixel (the circumference is 377 px).
    assert 8 <= len(res.polygon.points) < 120


def test_grabcut_on_a_large_photo_works_on_a_downscaled_crop() -> None:
    rgb, truth = _disc_photo(scale=4)  # disc radius 240 px: the crop (600 px) is downscaled
    box = (4 * (CX - R) - 40, 4 * (CY - R) - 40, 4 * (CX + R) + 40, 4 * (CY + R) + 40)
    res = box_region(rgb, box, max_side=256)
    mask = shape_mask(res.polygon, truth.shape)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8


def test_grabcut_refuses_unusable_boxes() -> None:
    rgb, _ = _disc_photo()
    with pytest.raises(GrabCutError, match="at least"):
        box_region(rgb, (10, 10, 12, 40))
    with pytest.raises(GrabCutError, match="whole photo"):
        box_region(rgb, (-5, -5, W + 5, H + 5))


def test_grabcut_polygon_covers_the_pixels_it_found_on_a_small_lesion() -> None:
    """A contour runs through the border pixels' centres; the stored polygon must not lose that
    ring (a fifth of a 10 x 10 lesion): it rasterises to GrabCut's own mask."""
    rgb = np.full((80, 80, 3), (120, 40, 20), np.uint8)
    rgb[35:45, 30:40] = (240, 200, 120)  # a bright 10 x 10 lesion
    res = box_region(rgb, (24, 29, 46, 51))
    assert res.mask.sum() > 0
    mask = shape_mask(res.polygon, res.mask.shape)
    dice = 2 * (mask & res.mask).sum() / (mask.sum() + res.mask.sum())
    assert dice > 0.95, (mask.sum(), res.mask.sum())
