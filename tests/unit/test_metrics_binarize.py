"""Binarization rules, IoU/Dice and reviewer agreement: hand-computed cases and OpenCV's Otsu."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.core.binarize import (
    binarize,
    dice,
    iou,
    mask_agreement,
    otsu_level,
    top_n_count,
)
from fundus_review.core.metric_inputs import MetricInputError


def test_fixed_threshold_is_inclusive_and_respects_the_fov() -> None:
    h = np.array([[0.2, 0.5], [0.7, 0.4]])
    assert binarize(h, "fixed").tolist() == [[False, True], [True, False]]
    assert binarize(h, "fixed", threshold=0.3).tolist() == [[False, True], [True, True]]
    fov = np.array([[True, True], [False, True]])
    assert binarize(h, "fixed", fov=fov).tolist() == [[False, True], [False, False]]


def test_otsu_separates_two_clusters() -> None:
    h = np.array([[0.0, 0.0, 0.0], [0.1, 0.9, 1.0]])
    assert binarize(h, "otsu").tolist() == [[False, False, False], [False, True, True]]


def test_otsu_is_computed_on_fov_values_only() -> None:
    # Inside the fov: {0.2, 0.3, 0.8, 0.9}; the outside 1.0 would otherwise move the normalization.
    h = np.array([[0.2, 0.3, 1.0], [0.8, 0.9, 0.0]])
    fov = np.array([[True, True, False], [True, True, False]])
    assert binarize(h, "otsu", fov=fov).tolist() == [[False, False, False], [True, True, False]]


def test_otsu_on_a_constant_heatmap_is_empty() -> None:
    assert not binarize(np.full((4, 4), 0.7), "otsu").any()
    assert otsu_level(np.full(10, 0.3)) is None


@pytest.mark.parametrize("seed", range(6))
def test_otsu_matches_opencv_on_the_chexlocalize_quantization(seed: int) -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(seed)
    # bimodal-ish heatmaps with many ties after quantization, like real CAMs
    h = np.clip(rng.normal(0.25, 0.1, (60, 80)) + (rng.random((60, 80)) < 0.2) * 0.5, 0, 1)
    lo, hi = h.min(), h.max()
    q = np.floor((h - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    _, ref = cv2.threshold(q, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert np.array_equal(binarize(h, "otsu"), ref > 0)


def test_top_k_takes_the_largest_values() -> None:
    h = np.arange(10, dtype=float).reshape(2, 5)
    assert np.flatnonzero(binarize(h, "top_k", top_percent=30)).tolist() == [7, 8, 9]
    assert not binarize(h, "top_k", top_percent=0).any()
    assert binarize(h, "top_k", top_percent=100).all()
    assert top_n_count(25, 10) == 3  # 2.5 rounds half up
    with pytest.raises(MetricInputError, match="top_percent"):
        binarize(h, "top_k", top_percent=120)


def test_top_k_tie_group_goes_in_only_when_that_is_closer_to_the_target() -> None:
    h = np.array([[9, 8, 8, 8, 1, 0, 0, 0, 0, 0]], dtype=float)
    # 2 wanted: 9 alone (1 px, off by 1) beats 9 + three 8s (4 px, off by 2)
    assert np.flatnonzero(binarize(h, "top_k", top_percent=20)).tolist() == [0]
    # 3 wanted: 9 + three 8s (off by 1) beats 9 alone (off by 2)
    assert np.flatnonzero(binarize(h, "top_k", top_percent=30)).tolist() == [0, 1, 2, 3]


def test_top_k_counts_fov_pixels_and_stays_inside_the_fov() -> None:
    h = np.arange(20, dtype=float).reshape(4, 5)
    fov = np.zeros((4, 5), bool)
    fov[:2] = True  # values 0..9
    region = binarize(h, "top_k", top_percent=20, fov=fov)
    assert np.flatnonzero(region).tolist() == [8, 9]


def test_area_match_equals_the_target_area() -> None:
    h = np.arange(12, dtype=float).reshape(3, 4)
    region = binarize(h, "area_match", target_area=5)
    assert region.sum() == 5 and h[region].min() == 7
    assert not binarize(np.full((3, 4), 0.5), "area_match", target_area=5).any()
    assert binarize(np.full((3, 4), 0.5), "area_match", target_area=7).all()
    with pytest.raises(MetricInputError, match="target_area"):
        binarize(h, "area_match")


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(MetricInputError, match="unknown binarization"):
        binarize(np.zeros((2, 2)), "kmeans")


def test_iou_and_dice_hand_computed() -> None:
    a = np.array([[1, 1, 1, 0]], dtype=bool)
    b = np.array([[0, 0, 1, 1]], dtype=bool)
    assert iou(a, b) == pytest.approx(1 / 4)
    assert dice(a, b) == pytest.approx(2 / 5)
    assert iou(a, a) == 1.0 and dice(a, ~a) == 0.0


def test_both_empty_masks_agree_perfectly_one_empty_not_at_all() -> None:
    empty = np.zeros((3, 3), bool)
    assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0
    one = empty.copy()
    one[1, 1] = True
    assert iou(one, empty) == 0.0 and dice(empty, one) == 0.0


def test_mask_agreement_between_two_reviewers() -> None:
    a = np.zeros((6, 6), bool)
    a[1:4, 1:4] = True  # 9 px
    b = np.zeros((6, 6), bool)
    b[2:5, 2:5] = True  # 9 px, 4 shared
    assert mask_agreement(a, b) == pytest.approx({"iou": 4 / 14, "dice": 8 / 18})
    with pytest.raises(MetricInputError, match="shape"):
        mask_agreement(a, b[:5])
