"""Property tests (hypothesis) of the localization metrics against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fundus_review.core.binarize import binarize, dice, iou
from fundus_review.core.metrics import (
    energy_pointing,
    mass_outside_fov,
    pixel_auc,
    pointing_game,
    score_heatmap,
)

SETTINGS = settings(max_examples=60, deadline=None)
shapes = st.tuples(st.integers(1, 9), st.integers(1, 9))


@st.composite
def scenes(draw: st.DrawFn, with_fov: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small heatmaps on a coarse value grid (many ties and plateaus), a mask and a fov."""
    shape = draw(shapes)
    levels = draw(st.integers(1, 6))
    h = draw(arrays(np.int64, shape, elements=st.integers(0, levels))).astype(float) / levels
    m = draw(arrays(np.bool_, shape))
    fov = draw(arrays(np.bool_, shape)) if with_fov else np.ones(shape, bool)
    assume(fov.any())
    return h, m, fov


def _brute_pointing(h: np.ndarray, m: np.ndarray, tol: float, fov: np.ndarray):
    target = m & fov
    if not target.any():
        return None
    maxima = np.argwhere((h == h[fov].max()) & fov)  # row-major order
    pts = np.argwhere(target)
    d = np.sqrt(((maxima[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).min(axis=1)
    best = int(np.argmin(d))
    return bool(d[best] <= tol + 1e-9), float(d[best]), tuple(maxima[best]), len(maxima)


@SETTINGS
@given(scenes(), st.floats(0, 6))
def test_pointing_game_equals_the_brute_force_definition(scene, tol: float) -> None:
    h, m, fov = scene
    got = pointing_game(h, m, tol, fov=fov)
    ref = _brute_pointing(h, m, tol, fov)
    if ref is None:
        assert got is None
        return
    hit, dist, (row, col), n = ref
    assert (got.hit, got.row, got.col, got.n_maxima) == (hit, row, col, n)
    assert math.isclose(got.distance_px, dist, abs_tol=1e-9)
    assert got.point == (col + 0.5, row + 0.5)


@SETTINGS
@given(scenes(), st.floats(0.01, 100), st.floats(0, 6))
def test_pointing_game_is_invariant_to_positive_scaling(scene, c: float, tol: float) -> None:
    h, m, fov = scene
    assert pointing_game(h, m, tol, fov) == pointing_game(h * c, m, tol, fov)


@SETTINGS
@given(scenes(), st.floats(0, 5), st.floats(0, 5))
def test_pointing_hit_is_monotone_in_the_tolerance(scene, t1: float, t2: float) -> None:
    h, m, fov = scene
    small, large = pointing_game(h, m, min(t1, t2), fov), pointing_game(h, m, max(t1, t2), fov)
    if small is not None:
        assert small.hit <= large.hit
        assert small.distance_px == large.distance_px


@SETTINGS
@given(arrays(np.bool_, shapes), st.data())
def test_iou_dice_symmetric_bounded_and_related(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(arrays(np.bool_, a.shape))
    i, d = iou(a, b), dice(a, b)
    assert i == iou(b, a) and d == dice(b, a)
    assert 0.0 <= i <= 1.0 and 0.0 <= d <= 1.0
    assert math.isclose(d, 2 * i / (1 + i), rel_tol=1e-12)
    assert i <= d


@SETTINGS
@given(scenes())
def test_energy_and_mass_outside_are_shares(scene) -> None:
    h, m, fov = scene
    e = energy_pointing(h, m, fov)
    assert (e is None) == (not (m & fov).any())
    if e is not None:
        assert 0.0 <= e <= 1.0 + 1e-12
    out = mass_outside_fov(h, fov)
    assert 0.0 <= out <= 1.0 + 1e-12
    if fov.all():
        assert out == 0.0


def _brute_auc(h: np.ndarray, m: np.ndarray) -> float:
    pos, neg = h[m], h[~m]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


@SETTINGS
@given(scenes(with_fov=False))
def test_pixel_auc_equals_pairwise_definition_and_is_rank_invariant(scene) -> None:
    h, m, _ = scene
    assume(m.any() and not m.all())
    auc = pixel_auc(h, m)
    assert math.isclose(auc, _brute_auc(h, m), abs_tol=1e-12)
    # strictly increasing transforms keep the ranks; reversing them mirrors the AUC
    assert math.isclose(pixel_auc(np.exp(3 * h) + 2.0, m), auc, abs_tol=1e-12)
    assert math.isclose(pixel_auc(h**2, m), auc, abs_tol=1e-12)
    assert math.isclose(pixel_auc(1.0 - h, m), 1.0 - auc, abs_tol=1e-12)


@SETTINGS
@given(arrays(np.bool_, shapes))
def test_auc_of_the_mask_itself_is_one(m: np.ndarray) -> None:
    assume(m.any() and not m.all())
    assert pixel_auc(m.astype(np.float32), m) == 1.0


@SETTINGS
@given(scenes(), st.floats(0, 100))
def test_top_k_region_stays_in_fov_and_misses_the_target_only_by_ties(scene, p: float) -> None:
    h, _, fov = scene
    region = binarize(h, "top_k", top_percent=p, fov=fov)
    assert not (region & ~fov).any()
    n = math.floor(p * fov.sum() / 100 + 0.5)
    values = np.sort(h[fov])[::-1]
    if 0 < n < values.size and values[n - 1] != values[n]:
        assert region.sum() == n  # no tie at the cut: exactly n pixels
    if region.any() and (fov & ~region).any():
        assert h[region].min() > h[fov & ~region].max()  # never splits a tie group


@SETTINGS
@given(scenes(), st.floats(0, 5))
def test_score_set_matches_the_single_metric_functions(scene, tol: float) -> None:
    h, m, fov = scene
    s = score_heatmap(h, m, fov, tolerance_px=tol)
    p = pointing_game(h, m, tol, fov)
    assert s["pointing_hit"] == (None if p is None else float(p.hit))
    assert s["energy_in_mask"] == energy_pointing(h, m, fov)
    assert s["pixel_auc"] == pixel_auc(h, m, fov)
    if p is not None:
        target = m & fov
        region = binarize(h, "area_match", target_area=int(target.sum()), fov=fov)
        assert s["iou_area_match"] == iou(region, target)
        assert s["dice_otsu"] == dice(binarize(h, "otsu", fov=fov), target)
        for key in ("iou_fixed50", "iou_otsu", "iou_top15", "iou_area_match", "energy_in_mask"):
            assert 0.0 <= s[key] <= 1.0 + 1e-12
