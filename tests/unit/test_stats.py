"""Bootstrap CIs, paired differences, Spearman and Wilson: known answers and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fundus_review.core import stats as core_stats
from fundus_review.core.stats import (
    average_ranks,
    bootstrap_ci,
    drop_missing,
    paired_difference,
    proportion_ci,
    spearman,
    spearman_rho,
    summarize,
)

finite = st.floats(-1e3, 1e3, allow_nan=False)


def test_drop_missing_counts_none_nan_and_inf() -> None:
    x, dropped = drop_missing([1.0, None, float("nan"), 2.0, float("inf")])
    assert x.tolist() == [1.0, 2.0] and dropped == 3


def test_bootstrap_of_a_constant_is_degenerate() -> None:
    assert bootstrap_ci([0.4] * 10) == pytest.approx((0.4, 0.4, 0.4))


def test_bootstrap_ci_of_the_mean_matches_the_normal_approximation() -> None:
    x = np.random.default_rng(1).normal(2.0, 1.0, 400)
    est, low, high = bootstrap_ci(x, n_resamples=4000, seed=3)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert est == pytest.approx(x.mean())
    assert low == pytest.approx(x.mean() - 1.96 * se, abs=0.15 * se)
    assert high == pytest.approx(x.mean() + 1.96 * se, abs=0.15 * se)


def test_bootstrap_is_seeded_and_drops_missing_values() -> None:
    vals = [0.13, 0.57, None, 0.91, float("nan"), 0.32, 0.74]
    a = bootstrap_ci(vals, n_resamples=500, seed=7)
    assert a == bootstrap_ci(vals, n_resamples=500, seed=7)
    assert a != bootstrap_ci(vals, n_resamples=500, seed=8)
    assert a == bootstrap_ci([0.13, 0.57, 0.91, 0.32, 0.74], n_resamples=500, seed=7)
    assert all(math.isnan(v) for v in bootstrap_ci([None, float("nan")]))


def test_bootstrap_with_a_custom_statistic_without_axis() -> None:
    def trimmed_max(a: np.ndarray) -> float:
        return float(np.sort(a)[-2]) if a.size > 1 else float(a[0])

    est, low, high = bootstrap_ci([1, 2, 3, 4, 100], stat=trimmed_max, n_resamples=300)
    assert est == 4.0 and 1.0 <= low <= high <= 100.0
    med = bootstrap_ci([1, 2, 3, 4, 100], stat=np.median, n_resamples=300)
    assert med[0] == 3.0 and med[1] <= 3.0 <= med[2]


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40), st.integers(0, 2**31 - 1))
def test_bootstrap_interval_contains_the_mean_and_is_reproducible(vals: list, seed: int) -> None:
    est, low, high = bootstrap_ci(vals, n_resamples=300, seed=seed)
    tol = 1e-9 * (1 + max(abs(v) for v in vals))
    assert low - tol <= est <= high + tol
    assert min(vals) - tol <= low and high <= max(vals) + tol
    assert bootstrap_ci(vals, n_resamples=300, seed=seed) == (est, low, high)


def test_wilson_known_values() -> None:
    p, low, high = proportion_ci(5, 10)
    assert (p, low, high) == pytest.approx((0.5, 0.2366, 0.7634), abs=1e-4)
    p, low, high = proportion_ci(0, 10)
    assert (p, low, high) == pytest.approx((0.0, 0.0, 0.2775), abs=1e-4)
    assert proportion_ci(10, 10)[1] == pytest.approx(0.7225, abs=1e-4)
    assert all(math.isnan(v) for v in proportion_ci(0, 0))
    with pytest.raises(ValueError):
        proportion_ci(11, 10)


def test_summarize_bootstrap_and_wilson() -> None:
    s = summarize([1, 0, 1, 1, None], method="wilson")
    assert (s.n, s.n_dropped, s.mean, s.method) == (4, 1, 0.75, "wilson")
    assert s.ci_low == pytest.approx(proportion_ci(3, 4)[1])
    b = summarize([0.2, 0.4, 0.6], seed=5)
    assert b.mean == pytest.approx(0.4) and b.seed == 5 and b.n_resamples == 2000
    assert b.ci_low < 0.4 < b.ci_high
    empty = summarize([None])
    assert (empty.n, empty.n_dropped, empty.mean, empty.ci_low) == (0, 1, None, None)
    assert set(b.to_dict()) >= {"n", "mean", "ci_low", "ci_high", "seed"}
    with pytest.raises(ValueError, match="0/1"):
        summarize([0.5], method="wilson")


def test_paired_difference_constant_shift() -> None:
    b = np.linspace(0, 1, 20)
    r = paired_difference(b + 0.1, b, seed=2)
    assert (r.estimate, r.ci_low, r.ci_high) == pytest.approx((0.1, 0.1, 0.1))
    assert r.n == 20 and r.p_value < 0.005


def test_paired_difference_no_difference_and_missing_pairs() -> None:
    r = paired_difference([0.3, 0.5, None, 0.1], [0.3, 0.5, 0.9, float("nan")])
    assert (r.n, r.n_dropped, r.estimate, r.p_value) == (2, 2, 0.0, 1.0)
    empty = paired_difference([None], [1.0])
    assert empty.n == 0 and empty.estimate is None and empty.p_value is None
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1, 2], [1])


def test_paired_difference_detects_a_noisy_effect_and_not_noise() -> None:
    rng = np.random.default_rng(4)
    base = rng.random(60)
    effect = paired_difference(base + 0.05 + rng.normal(0, 0.05, 60), base, seed=1)
    assert effect.ci_low > 0 and effect.p_value < 0.01
    noise = paired_difference(base + rng.normal(0, 0.05, 60), base, seed=1)
    assert noise.ci_low < 0 < noise.ci_high and noise.p_value > 0.05


def test_average_ranks_with_ties_rowwise() -> None:
    assert average_ranks(np.array([10, 20, 20, 5])).tolist() == [2, 3.5, 3.5, 1]
    rows = average_ranks(np.array([[1, 1, 1], [3, 2, 1]]))
    assert rows.tolist() == [[2, 2, 2], [3, 2, 1]]


def test_spearman_hand_computed_with_ties() -> None:
    # ranks y = [1, 2, 3.5, 5, 3.5]: sum(cx cy) = 8, sxx = 10, syy = 9.5
    assert spearman_rho([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman_rho([1, 2, 3], [30, 20, 10]) == -1.0
    assert spearman_rho([1, 2, 3], [4, 4, 4]) is None


def test_spearman_matches_scipy_on_tied_data() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 50)
    y = x + rng.integers(0, 4, 50)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_spearman_with_ci_drops_incomplete_pairs_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    conf = rng.random(80)
    score = conf + rng.normal(0, 0.3, 80)
    x = list(conf) + [None, 0.4]
    y = list(score) + [0.5, float("nan")]
    r = spearman(x, y, seed=9)
    assert r.n == 80 and r.n_dropped == 2
    assert r.rho == pytest.approx(spearman_rho(conf, score))
    assert r.ci_low < r.rho < r.ci_high and r.ci_low > 0
    assert spearman(x, y, seed=9) == r
    none = spearman([1, 2, 3], [1, 1, 1])
    assert none.rho is None and none.ci_low is None


def _rerank_bootstrap(x, y, n_resamples: int, seed: int) -> tuple[np.ndarray, int]:
    """The plain reference: same draws, each resample re-ranked by average_ranks (argsort)."""
    a, b, _ = core_stats._paired(x, y)
    rng = np.random.default_rng(seed)
    boot = np.concatenate(
        [
            core_stats._pearson_rows(average_ranks(a[idx]), average_ranks(b[idx]))
            for idx in core_stats._resample_indices(rng, a.size, n_resamples)
        ]
    )
    return boot, a.size


def _assert_matches_rerank(x, y, n_resamples: int, seed: int) -> np.ndarray:
    boot, n = _rerank_bootstrap(x, y, n_resamples, seed)
    a, b, _ = core_stats._paired(x, y)
    codes_a, codes_b = core_stats._value_codes(a), core_stats._value_codes(b)
    rng = np.random.default_rng(seed)
    for idx in core_stats._resample_indices(rng, n, n_resamples):
        for v, codes in ((a, codes_a), (b, codes_b)):
            fast = core_stats._resample_ranks(*codes, idx)
            np.testing.assert_allclose(fast, average_ranks(v[idx]), rtol=0, atol=1e-12)
    r = spearman(x, y, n_resamples=n_resamples, seed=seed)
    low, high = core_stats._percentile_interval(boot, r.ci)
    assert r.n == n and r.n_resamples == n_resamples
    assert r.ci_low == pytest.approx(low, abs=1e-12)
    assert r.ci_high == pytest.approx(high, abs=1e-12)
    return boot


def test_spearman_bootstrap_equals_reranking_with_many_ties() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, 300).astype(float)
    y = x + rng.integers(0, 3, 300)
    boot = _assert_matches_rerank(x, y, 500, seed=2)
    assert np.isfinite(boot).all() and np.unique(boot).size > 20


def test_spearman_bootstrap_drops_missing_like_reranking() -> None:
    rng = np.random.default_rng(6)
    x = [None if i % 7 == 0 else float(v) for i, v in enumerate(rng.integers(0, 6, 120))]
    y = [float("nan") if i % 11 == 0 else float(v) for i, v in enumerate(rng.random(120))]
    _assert_matches_rerank(x, y, 300, seed=4)
    missing = sum(1 for i in range(120) if i % 7 == 0 or i % 11 == 0)
    assert spearman(x, y, n_resamples=300, seed=4).n_dropped == missing


@pytest.mark.parametrize("n", [2, 3])
def test_spearman_bootstrap_small_n_skips_constant_resamples(n: int) -> None:
    x, y = np.arange(n, dtype=float), np.arange(n, dtype=float)[::-1] * 2
    boot = _assert_matches_rerank(x, y, 400, seed=1)
    # Resamples that repeat one pair are constant: NaN in both, left out of the interval.
    assert np.isnan(boot).any() and np.isfinite(boot).any()


def test_spearman_bootstrap_large_n_across_blocks() -> None:
    rng = np.random.default_rng(8)
    n = 40_000  # _BLOCK // n = 26 rows per block: 70 resamples span 3 blocks, the last partial
    x = np.round(rng.random(n), 2)
    y = x + rng.normal(0, 0.5, n)
    _assert_matches_rerank(x, y, 70, seed=3)


def test_spearman_ci_of_known_case_unchanged() -> None:
    rng = np.random.default_rng(3)
    conf = rng.random(80)
    score = conf + rng.normal(0, 0.3, 80)
    _assert_matches_rerank(list(conf) + [None], list(score) + [0.5], 2000, seed=9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-2, 2)), min_size=2, max_size=30))
def test_spearman_bootstrap_equals_reranking_property(pairs: list[tuple[int, int]]) -> None:
    x, y = zip(*pairs, strict=True)
    if spearman_rho(x, y) is not None:
        _assert_matches_rerank(list(x), list(y), 50, seed=0)


def test_bad_ci_arguments() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([1, 2], ci=1.5)
    with pytest.raises(ValueError):
        bootstrap_ci([1, 2], n_resamples=0)
