"""Field-of-view masks on synthetic discs with known geometry and on the real fundus photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.data import fov as fov_module
from fundus_review.data.fov import FovCache, fov_mask
from fundus_review.data.images import file_sha256, load_image
from fundus_review.data.masks_io import load_mask


def _disc(
    h: int,
    w: int,
    r: float,
    centre: tuple[float, float] | None = None,
    colour: tuple[int, int, int] = (170, 80, 35),
    border_noise: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A fundus-like disc on black (anti-aliased edge, vignetted), and the true disc mask."""
    cx, cy = centre if centre is not None else (w / 2 + 0.3, h / 2 - 0.2)
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
    truth = d < r
    coverage = np.clip(r - d + 0.5, 0.0, 1.0)
    vignette = 1.0 - 0.6 * (d / r) ** 2  # periphery much darker than the centre
    img = coverage[..., None] * vignette[..., None] * np.array(colour, float)
    rng = np.random.default_rng(seed)
    if border_noise:
        img += (~truth)[..., None] * np.abs(rng.normal(0, border_noise, img.shape))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), truth


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize(
    ("h", "w", "r"),
    [(300, 400, 130), (480, 640, 230), (680, 1024, 330), (1200, 1800, 560)],
)
def test_synthetic_disc_matches_true_disc(h: int, w: int, r: float) -> None:
    img, truth = _disc(h, w, r)
    mask = fov_mask(img)
    assert mask.dtype == bool and mask.shape == (h, w)
    assert _iou(mask, truth) > 0.98
    assert not mask[0, 0] and not mask[-1, -1] and mask[h // 2, w // 2]


def test_off_centre_disc_cut_at_top_and_bottom() -> None:
    # The common camera crop: the circle is wider than the sensor is tall.
    img, truth = _disc(400, 600, 240, centre=(280.0, 205.0))
    mask = fov_mask(img)
    assert truth[0].any() and truth[-1].any()  # really cut
    assert _iou(mask, truth) > 0.98
    assert mask[0, 280] and mask[-1, 280]  # the FOV runs to the top and bottom edges
    assert not mask[0, 0] and not mask[-1, -1]


def test_dark_lesions_and_vessels_inside_stay_in_the_fov() -> None:
    img, truth = _disc(480, 640, 220)
    cy, cx = 240, 320
    img[cy - 30 : cy + 30, cx - 60 : cx - 10] = 0  # a black haemorrhage in the middle
    img[cy - 2 : cy + 2, cx - 200 : cx + 200] = 5  # a dark vessel crossing the disc
    yy, xx = np.mgrid[0:480, 0:640]
    edge_blob = np.hypot(xx - (cx + 205), yy - cy) < 25  # dark patch touching the FOV edge
    img[edge_blob & truth] = 0
    mask = fov_mask(img)
    assert mask[cy - 30 : cy + 30, cx - 60 : cx - 10].all()
    assert mask[cy - 2 : cy + 2, cx - 200 : cx + 200].all()
    assert mask[edge_blob & truth].mean() > 0.97
    assert _iou(mask, truth) > 0.98


def test_dim_halo_outside_the_aperture_is_excluded() -> None:
    # Some cameras (IDRiD's) leave a dim glow just outside the aperture; it is not retina.
    img, truth = _disc(480, 640, 200)
    yy, xx = np.mgrid[0:480, 0:640]
    d = np.hypot(xx + 0.5 - 320.3, yy + 0.5 - 239.8)
    halo = (d >= 200) & (d < 235)
    img[halo] = np.maximum(img[halo], 22)
    mask = fov_mask(img)
    assert mask[halo & (d > 205)].mean() < 0.01
    assert _iou(mask, truth) > 0.98


def test_gradual_dark_periphery_touching_the_edge_stays_in() -> None:
    img, truth = _disc(480, 640, 200)
    yy, xx = np.mgrid[0:480, 0:640]
    d = np.hypot(xx + 0.5 - 320.3, yy + 0.5 - 239.8)
    wedge = np.abs(np.arctan2(yy - 240, xx - 320) - 1.0) < 0.6  # a 70-degree sector
    shade = np.where(wedge, 0.12 + 0.88 * np.clip((200 - d) / 120, 0, 1), 1.0)
    img = (img * shade[..., None]).astype(np.uint8)
    assert img[wedge & truth & (d > 195)].max(axis=1).mean() < 12  # nearly black at the rim
    mask = fov_mask(img)
    assert mask[wedge & truth].all()
    assert _iou(mask, truth) > 0.98


def test_bright_optic_disc_at_the_edge_is_not_taken_for_the_edge() -> None:
    img, truth = _disc(480, 640, 200)
    yy, xx = np.mgrid[0:480, 0:640]
    disc = np.hypot(xx + 0.5 - 480, yy + 0.5 - 240) < 40  # touches the FOV edge at x ~ 520
    img[disc & truth] = (250, 235, 190)
    mask = fov_mask(img)
    assert mask[disc & truth].all()
    assert _iou(mask, truth) > 0.98


def test_noise_and_specks_in_the_border_are_excluded() -> None:
    img, truth = _disc(480, 640, 200, border_noise=6.0, seed=3)
    rng = np.random.default_rng(4)
    ys = rng.integers(0, 480, 300)
    xs = rng.integers(0, 640, 300)
    outside = ~truth[ys, xs]
    img[ys[outside], xs[outside]] = 255  # salt specks in the black border
    img[10:30, 10:90] = 200  # a burned-in text label in a corner
    mask = fov_mask(img)
    assert not mask[10:30, 10:90].any()
    assert not mask[ys[outside], xs[outside]].any()
    assert _iou(mask, truth) > 0.98


def test_gray_border_with_dim_fundus() -> None:
    # Some cameras leave a dark-gray (not black) border; the fundus is under-exposed.
    img, truth = _disc(360, 480, 160, colour=(60, 28, 12))
    img[~truth] = 18
    assert _iou(fov_mask(img), truth) > 0.98


def test_no_border_means_everything_is_fov() -> None:
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(120, 25, (200, 300, 3)), 0, 255).astype(np.uint8)
    img[50:80, 60:200] = 40  # dark structure, but no black border anywhere
    assert fov_mask(img).all()
    assert fov_mask(np.zeros((50, 60, 3), np.uint8)).all()  # nothing to tell apart


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        fov_mask(np.zeros((10, 10), np.uint8))


def _real_images(shared_data: Path) -> list[Path]:
    return sorted(shared_data.glob("*/images/*.jpg"))


@pytest.mark.slow
def test_real_fov_contains_every_expert_optic_disc_pixel(shared_data: Path) -> None:
    paths = _real_images(shared_data)
    assert len(paths) == 62
    for path in paths:
        rgb = load_image(path)
        mask = fov_mask(rgb)
        disc_path = path.parent.parent / "masks" / "optic_disc" / f"{path.stem}.png"
        disc = load_mask(disc_path, expected_shape=rgb.shape)
        assert disc.any()
        assert mask[disc].all(), f"{path.name}: optic disc pixels outside the FOV"
        # Plausible: these cameras' circles fill 60-90 % of the frame; corners are black.
        assert 0.6 < mask.mean() < 0.9, f"{path.name}: FOV fraction {mask.mean():.2f}"
        assert not mask[0, 0] and not mask[-1, -1]
        # Bright pixels (well above the border level) are almost all inside.
        bright = rgb.max(axis=2) > 60
        assert mask[bright].mean() > 0.995, path.name


def test_real_fov_is_stable_under_exposure_change(shared_data: Path) -> None:
    rgb = load_image(shared_data / "idrid_seg" / "images" / "IDRiD_05.jpg")
    dim = (rgb.astype(np.float32) * 0.35).astype(np.uint8)
    assert _iou(fov_mask(dim), fov_mask(rgb)) > 0.99


def test_fov_cache_computes_once_then_reads_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    img, truth = _disc(120, 160, 55)
    path = tmp_path / "eye.png"
    Image.fromarray(img).save(path)
    sha = file_sha256(path)
    cache = FovCache(tmp_path / "cache")

    first = cache.get(path, sha)  # no rgb given: the image is loaded from path
    assert _iou(first, truth) > 0.97
    cached = cache.path_for(sha)
    assert cached.is_file() and sha in cached.name and cached.parent.name == sha[:2]
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp file left

    def must_not_run(rgb: np.ndarray) -> np.ndarray:
        raise AssertionError("cache hit expected")

    monkeypatch.setattr(fov_module, "fov_mask", must_not_run)
    np.testing.assert_array_equal(cache.get(path, sha, rgb=img), first)
    np.testing.assert_array_equal(cache.get(tmp_path / "moved.png", sha), first)  # keyed by hash


def test_fov_cache_recomputes_a_corrupt_or_mismatched_entry(tmp_path: Path) -> None:
    img, truth = _disc(100, 140, 45)
    sha = "ab" * 32
    cache = FovCache(tmp_path)
    cached = cache.path_for(sha)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage")
    mask = cache.get(tmp_path / "unused.png", sha, rgb=img)
    assert _iou(mask, truth) > 0.97
    np.testing.assert_array_equal(load_mask(cached), mask)  # repaired on disk

    Image.fromarray(np.zeros((10, 10), np.uint8)).save(cached)  # wrong size for this image
    np.testing.assert_array_equal(cache.get(tmp_path / "unused.png", sha, rgb=img), mask)


def test_fov_cache_rejects_non_hash_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        FovCache(tmp_path).path_for("../../etc/passwd")
