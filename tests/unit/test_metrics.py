"""Hand-computed cases for the localization metrics: pointing, energy, AUC, mass, score set."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.metrics import (
    METRIC_DESCRIPTIONS,
    METRIC_NAMES,
    describe_metric,
    energy_pointing,
    mass_outside_fov,
    metric_names,
    pixel_auc,
    pointing_game,
    scaled_tolerance,
    score_heatmap,
    tolerance_from_transform,
)
from fundus_review.errors import FundusReviewError


def _mask(shape: tuple[int, int], *pixels: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for r, c in pixels:
        m[r, c] = True
    return m


def _peak(shape: tuple[int, int], *pixels: tuple[int, int]) -> np.ndarray:
    h = np.full(shape, 0.1, dtype=np.float32)
    for r, c in pixels:
        h[r, c] = 1.0
    return h


# -- pointing game ----------------------------------------------------------------------------


def test_pointing_horizontal_distance_and_tolerance_edge() -> None:
    h = _peak((5, 5), (1, 1))
    m = _mask((5, 5), (1, 3))
    miss = pointing_game(h, m, tolerance_px=1.9)
    assert miss is not None and not miss.hit
    assert miss.distance_px == 2.0
    assert miss.point == (1.5, 1.5) and (miss.row, miss.col) == (1, 1)
    assert miss.n_maxima == 1
    hit = pointing_game(h, m, tolerance_px=2.0)
    assert hit is not None and hit.hit and hit.distance_px == 2.0


def test_pointing_diagonal_distance_is_euclidean() -> None:
    h = _peak((6, 6), (0, 0))
    m = _mask((6, 6), (3, 4))
    assert pointing_game(h, m, 5.0).hit  # 3-4-5 triangle between pixel centres
    r = pointing_game(h, m, 4.99)
    assert not r.hit and r.distance_px == pytest.approx(5.0)


def test_pointing_inside_mask_is_distance_zero_even_with_zero_tolerance() -> None:
    h = _peak((4, 4), (2, 1))
    m = _mask((4, 4), (2, 1))  # a 1-pixel mask
    r = pointing_game(h, m, 0.0)
    assert r.hit and r.distance_px == 0.0 and r.point == (1.5, 2.5)


def test_pointing_ties_any_maximum_counts_and_closest_is_reported() -> None:
    h = _peak((5, 5), (0, 0), (4, 4))
    m = _mask((5, 5), (4, 2))
    r = pointing_game(h, m, 2.0)
    assert r.hit and r.n_maxima == 2
    assert (r.row, r.col) == (4, 4) and r.distance_px == 2.0
    assert not pointing_game(h, m, 1.5).hit


def test_pointing_equally_close_maxima_report_the_row_major_first() -> None:
    h = _peak((5, 5), (4, 2), (0, 2))
    m = _mask((5, 5), (2, 2))
    r = pointing_game(h, m, 1.0)
    assert not r.hit and (r.row, r.col) == (0, 2) and r.distance_px == 2.0


def test_pointing_maximum_is_taken_inside_the_fov_only() -> None:
    h = np.zeros((4, 6), dtype=np.float32)
    h[0, 0] = 1.0  # global maximum, but on the black border
    h[2, 4] = 0.7
    m = _mask((4, 6), (2, 4))
    fov = np.ones((4, 6), dtype=bool)
    fov[0, 0] = False
    assert not pointing_game(h, m, 1.0).hit
    r = pointing_game(h, m, 1.0, fov=fov)
    assert r.hit and (r.row, r.col) == (2, 4)


def test_pointing_empty_mask_or_mask_outside_fov_gives_no_score() -> None:
    h = _peak((4, 4), (1, 1))
    assert pointing_game(h, np.zeros((4, 4), bool), 3.0) is None
    fov = np.ones((4, 4), bool)
    fov[3, 3] = False
    assert pointing_game(h, _mask((4, 4), (3, 3)), 3.0, fov=fov) is None


def test_pointing_constant_heatmap_is_a_hit_with_every_fov_pixel_maximal() -> None:
    h = np.full((6, 7), 0.3, dtype=np.float32)
    fov = np.zeros((6, 7), bool)
    fov[1:5, 1:6] = True
    m = _mask((6, 7), (4, 5), (0, 0))
    r = pointing_game(h, m, 0.0, fov=fov)
    assert r.hit and r.n_maxima == 20 and r.distance_px == 0.0 and (r.row, r.col) == (4, 5)


def test_pointing_mask_touching_the_border() -> None:
    h = _peak((5, 8), (4, 3))
    m = np.zeros((5, 8), bool)
    m[:, 7] = True  # the right image edge
    r = pointing_game(h, m, 3.9)
    assert not r.hit and r.distance_px == 4.0
    assert pointing_game(h, m, 4.0).hit


def test_pointing_plateau_distance_uses_the_closest_plateau_pixel() -> None:
    yy, xx = np.mgrid[0:120, 0:160]
    h = np.minimum(1.0, 1.5 * np.exp(-((yy - 30) ** 2 + (xx - 40) ** 2) / (2 * 15.0**2)))
    m = (yy - 90) ** 2 + (xx - 120) ** 2 <= 10**2
    plateau = h == 1.0
    r = pointing_game(h, m, 0.0)
    assert r.n_maxima == int(plateau.sum()) > 1
    ref = min(
        math.dist(p, q) for p in np.argwhere(plateau).tolist() for q in np.argwhere(m).tolist()
    )
    assert r.distance_px == pytest.approx(ref)


def test_pointing_with_many_scattered_maxima_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:60, 0:80]
    h = rng.integers(0, 3, (60, 80)) / 2.0  # a third of the pixels share the maximum
    h[(yy - 30) ** 2 + (xx - 40) ** 2 <= 12**2] = 0.0  # keep the maxima off the mask
    m = (yy - 30) ** 2 + (xx - 40) ** 2 <= 6**2
    r = pointing_game(h, m, 6.0)
    maxima = np.argwhere(h == 1.0)
    d = np.sqrt(((maxima[:, None] - np.argwhere(m)[None]) ** 2).sum(-1)).min(axis=1)
    assert r.n_maxima == len(maxima)
    assert r.distance_px == pytest.approx(d.min())
    assert (r.row, r.col) == tuple(maxima[np.argmin(d)])
    assert r.hit == (d.min() <= 6.0)


def test_scaled_tolerance_scales_with_the_image() -> None:
    assert scaled_tolerance(224, 224) == 15.0
    assert scaled_tolerance(448, 448) == 30.0
    assert scaled_tolerance(448, 1792) == pytest.approx(60.0)  # sqrt(2 * 8) = 4
    assert scaled_tolerance(680, 1024, model_input=(340, 512), tolerance_at_model=10) == 20.0
    with pytest.raises(MetricInputError):
        scaled_tolerance(0, 10)


def test_tolerance_from_transform_uses_the_model_scale() -> None:
    assert tolerance_from_transform(SimpleNamespace(sx=0.5, sy=0.5)) == 30.0
    assert tolerance_from_transform(SimpleNamespace(sx=0.25, sy=1.0), 10.0) == 20.0


# -- energy, AUC, mass outside the FOV --------------------------------------------------------

H22 = np.array([[1.0, 2.0], [3.0, 4.0]])


def test_energy_pointing_hand_computed() -> None:
    m = np.array([[True, False], [False, True]])
    assert energy_pointing(H22, m) == pytest.approx(5 / 10)
    fov = np.array([[True, True], [True, False]])
    assert energy_pointing(H22, m, fov) == pytest.approx(1 / 6)


def test_energy_of_zero_or_constant_heatmap_is_the_area_fraction() -> None:
    m = _mask((4, 5), (0, 0), (3, 4))
    assert energy_pointing(np.zeros((4, 5)), m) == pytest.approx(2 / 20)
    assert energy_pointing(np.full((4, 5), 0.7), m) == pytest.approx(2 / 20)


def test_energy_rejects_negative_heatmaps_and_empty_masks_give_none() -> None:
    assert energy_pointing(H22, np.zeros((2, 2), bool)) is None
    with pytest.raises(MetricInputError, match="negative"):
        energy_pointing(H22 - 2, np.ones((2, 2), bool))


def test_pixel_auc_hand_computed_with_ties() -> None:
    h = np.array([[0.4, 0.2, 0.3], [0.2, 0.1, 0.0]])
    m = np.array([[True, True, False], [False, False, False]])
    # positives {0.4, 0.2} vs negatives {0.3, 0.2, 0.1, 0.0}: 4 + (0 + 0.5 + 1 + 1) = 6.5 of 8
    assert pixel_auc(h, m) == pytest.approx(6.5 / 8)
    fov = np.ones((2, 3), bool)
    fov[1, 2] = False  # drop the 0.0 negative
    assert pixel_auc(h, m, fov) == pytest.approx(4.5 / 6)


def test_pixel_auc_extremes_and_undefined_cases() -> None:
    m = _mask((3, 3), (1, 1))
    assert pixel_auc(m.astype(float), m) == 1.0
    assert pixel_auc(1.0 - m, m) == 0.0
    assert pixel_auc(np.full((3, 3), 0.2), m) == 0.5
    assert pixel_auc(H22, np.zeros((2, 2), bool)) is None
    assert pixel_auc(H22, np.ones((2, 2), bool)) is None


def test_mass_outside_fov_hand_computed() -> None:
    fov = np.array([[False, True], [True, True]])
    assert mass_outside_fov(H22, fov) == pytest.approx(0.1)
    assert mass_outside_fov(np.zeros((2, 2)), fov) == pytest.approx(0.25)
    assert mass_outside_fov(H22, np.ones((2, 2), bool)) == 0.0


# -- input validation ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_heatmap_is_a_clear_error(bad: float) -> None:
    h = np.full((3, 4), 0.5, dtype=np.float32)
    h[2, 1] = bad
    m = _mask((3, 4), (0, 0))
    for call in (
        lambda: pointing_game(h, m, 1.0),
        lambda: energy_pointing(h, m),
        lambda: pixel_auc(h, m),
        lambda: score_heatmap(h, m, None, tolerance_px=1.0),
    ):
        with pytest.raises(MetricInputError, match=r"row 2, col 1") as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, FundusReviewError)
        assert ("NaN" in str(info.value)) and ("1 NaN" in str(info.value)) == np.isnan(bad)


def test_shape_mismatch_and_bad_masks_are_clear_errors() -> None:
    h = np.zeros((3, 4))
    with pytest.raises(MetricInputError, match=r"mask has shape \(4, 3\).*\(3, 4\)"):
        pointing_game(h, np.zeros((4, 3), bool), 1.0)
    with pytest.raises(MetricInputError, match="fov has shape"):
        energy_pointing(h, np.ones((3, 4), bool), fov=np.ones((3, 3), bool))
    with pytest.raises(MetricInputError, match="255"):
        pixel_auc(h, np.full((3, 4), 255, np.uint8))
    with pytest.raises(MetricInputError, match="2-D"):
        pixel_auc(np.zeros((3, 4, 3)), np.ones((3, 4), bool))
    with pytest.raises(MetricInputError, match="fov is empty"):
        pixel_auc(h, np.ones((3, 4), bool), fov=np.zeros((3, 4), bool))
    with pytest.raises(MetricInputError, match="tolerance"):
        pointing_game(h, np.ones((3, 4), bool), -1.0)
    # 0/1 integer masks are accepted as booleans
    assert energy_pointing(H22, np.array([[1, 0], [0, 1]], np.uint8)) == pytest.approx(0.5)


# -- the standard set --------------------------------------------------------------------------


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = np.full((10, 10), 0.1)
    h[2, 2] = h[2, 3] = 1.0
    h[3, 2] = h[3, 3] = h[5, 5] = 0.6
    h[:, 0] = 0.2  # on the black border, outside the fov
    m = np.zeros((10, 10), bool)
    m[2:4, 2:4] = True
    fov = np.ones((10, 10), bool)
    fov[:, 0] = False
    return h, m, fov


def test_score_heatmap_hand_computed_scene() -> None:
    h, m, fov = _scene()
    s = score_heatmap(h, m, fov, tolerance_px=2.0)
    assert tuple(s) == METRIC_NAMES
    # fov mass: 1 + 1 + 3 * 0.6 + 85 * 0.1 = 12.3; mask mass 3.2; border mass 10 * 0.2 = 2.0
    expected = {
        "pointing_hit": 1.0,
        "pointing_distance_px": 0.0,
        "pointing_n_maxima": 2.0,
        "energy_in_mask": 3.2 / 12.3,
        "mask_area_fraction": 4 / 90,
        # >= 0.5 keeps the 4 mask pixels and (5, 5): IoU 4/5, Dice 8/9
        "iou_fixed50": 0.8,
        "dice_fixed50": 8 / 9,
        # Otsu on {85 x 0, 3 x 141, 2 x 255} splits off 0 (sigma 1827 vs 1360 for the other split)
        "iou_otsu": 0.8,
        "dice_otsu": 8 / 9,
        # top 15 % of 90 = 14 pixels: the cut falls inside the 85 tied 0.1s, which stay out
        "iou_top15": 0.8,
        "dice_top15": 8 / 9,
        # 4 pixels: the cut falls in the three 0.6s (2 above + 3 tied = 5, closer than 2)
        "iou_area_match": 0.8,
        "dice_area_match": 8 / 9,
        # positives {1, 1, .6, .6} vs negatives {.6, 85 x .1}: (86 + 86 + 85.5 + 85.5) / 344
        "pixel_auc": 343 / 344,
        "mass_outside_fov": 2.0 / 14.3,
    }
    assert s == pytest.approx(expected)


def test_score_heatmap_without_mask_in_fov_keeps_mask_free_metrics() -> None:
    h, _, fov = _scene()
    s = score_heatmap(h, np.zeros_like(fov), fov, tolerance_px=2.0)
    assert s["mass_outside_fov"] == pytest.approx(2.0 / 14.3)
    assert s["pointing_n_maxima"] == 2.0
    assert all(
        v is None for k, v in s.items() if k not in ("mass_outside_fov", "pointing_n_maxima")
    )
    assert score_heatmap(h, np.zeros_like(fov), None, tolerance_px=1)["mass_outside_fov"] is None


def test_score_heatmap_constant_heatmap_documented_behaviour() -> None:
    h = np.full((8, 8), 0.4, dtype=np.float32)
    m = np.zeros((8, 8), bool)
    m[0:2, 0:2] = True
    s = score_heatmap(h, m, None, tolerance_px=0.0)
    assert s["pointing_hit"] == 1.0 and s["pointing_n_maxima"] == 64
    assert s["energy_in_mask"] == pytest.approx(4 / 64) == s["mask_area_fraction"]
    assert s["iou_otsu"] == 0.0 and s["iou_top15"] == 0.0 and s["iou_area_match"] == 0.0
    assert s["iou_fixed50"] == 0.0  # 0.4 < 0.5: empty region
    assert s["pixel_auc"] == 0.5


def test_metric_names_follow_the_parameters_and_are_described() -> None:
    names = metric_names(fixed_threshold=0.3, top_percent=2.5)
    assert "iou_fixed30" in names and "dice_top2p5" in names
    h, m, fov = _scene()
    s = score_heatmap(h, m, fov, tolerance_px=1, fixed_threshold=0.3, top_percent=2.5)
    assert tuple(s) == names
    assert "0.3" in describe_metric("iou_fixed30").description
    assert "2.5 %" in describe_metric("dice_top2p5").description
    assert set(METRIC_DESCRIPTIONS) == set(METRIC_NAMES)
    assert describe_metric("mass_outside_fov").higher_is_better is False
    with pytest.raises(KeyError):
        describe_metric("nonsense")
    with pytest.raises(MetricInputError, match="multiple of 0.01"):
        metric_names(fixed_threshold=0.333)
