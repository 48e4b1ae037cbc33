"""The baseline maps of core/baselines: where each peaks, that it is reproducible, leave-one-out."""

import numpy as np
import pytest

from fundus_review.core import baselines as bl
from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.pointing import pointing_game


def _argmax(a: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(np.argmax(a), a.shape))


def test_centre_gaussian_peaks_at_the_centre_with_the_documented_width() -> None:
    m = bl.centre_gaussian((100, 200))
    assert m.dtype == np.float32 and m.shape == (100, 200)
    assert m.max() == pytest.approx(1.0)
    assert _argmax(m) in {(49, 99), (49, 100), (50, 99), (50, 100)}
    sigma = bl.SIGMA_FRACTION * 100
    # One sigma from the centre along a row: exp(-1/2) of the peak (pixel centres at +0.5).
    assert m[50, 100 + int(sigma)] / m[50, 100] == pytest.approx(np.exp(-0.5), rel=2e-3)
    assert np.allclose(m, m[::-1, ::-1])  # symmetric about the centre


def test_fov_centre_gaussian_follows_the_field_of_view() -> None:
    fov = np.zeros((120, 120), bool)
    yy, xx = np.mgrid[:120, :120]
    fov[(yy - 40) ** 2 + (xx - 80) ** 2 <= 30**2] = True
    m = bl.fov_centre_gaussian(fov)
    assert _argmax(m) == (40, 80)
    assert m.max() == pytest.approx(1.0)
    # An empty FOV falls back to the image centre instead of a NaN centroid.
    assert np.array_equal(
        bl.fov_centre_gaussian(np.zeros((50, 50), bool)), bl.centre_gaussian((50, 50))
    )


def test_uniform_map_is_the_pointing_games_degenerate_hit() -> None:
    u = bl.uniform_map((30, 40))
    assert np.all(u == 1.0)
    mask = np.zeros((30, 40), bool)
    mask[2:4, 35:38] = True  # a tiny target in a corner
    assert pointing_game(u, mask, tolerance_px=0.0).hit  # every pixel is a maximum


def test_random_map_is_seeded_per_image_and_coarse() -> None:
    a = bl.random_map((64, 64), seed=3, key="sha-a")
    assert np.array_equal(a, bl.random_map((64, 64), seed=3, key="sha-a"))
    assert not np.array_equal(a, bl.random_map((64, 64), seed=3, key="sha-b"))
    assert not np.array_equal(a, bl.random_map((64, 64), seed=4, key="sha-a"))
    assert a.max() == pytest.approx(1.0) and a.min() >= 0
    # Smooth like a 7x7 CAM: neighbouring pixels differ far less than independent noise would.
    assert np.abs(np.diff(a, axis=1)).mean() < 0.1


def test_random_map_peaks_spread_over_the_image() -> None:
    peaks = [_argmax(bl.random_map((70, 70), seed=0, key=str(i))) for i in range(200)]
    rows = np.array([p[0] for p in peaks])
    # Not glued to one spot: peaks land in every third of the image.
    assert {int(r // (70 / 3)) for r in rows} == {0, 1, 2}


def test_leave_one_out_mean_excludes_the_own_map() -> None:
    maps = [np.full((4, 4), v, np.float32) for v in (1.0, 2.0, 3.0)]
    maps[0][0, 0] = 9.0
    total = np.sum(maps, axis=0)
    loo = bl.leave_one_out_mean(total, 3, maps[0])
    expected = (maps[1] + maps[2]) / 2
    assert np.allclose(loo, expected / expected.max())
    # Without an own map (image not in the run) it is the plain mean.
    plain = bl.leave_one_out_mean(total, 3, None)
    assert np.allclose(plain, (total / 3) / (total / 3).max())
    with pytest.raises(MetricInputError, match="at least two"):
        bl.leave_one_out_mean(maps[0], 1, maps[0])


def test_bad_shapes_are_refused_with_a_message() -> None:
    with pytest.raises(MetricInputError, match="positive shape"):
        bl.centre_gaussian((0, 10))
    with pytest.raises(MetricInputError, match="2-D"):
        bl.fov_centre_gaussian(np.ones(5, bool))


def test_seeded_sample_is_stable_under_order_and_growth() -> None:
    from fundus_review.core.sampling import seeded_sample

    keys = [f"img{i}" for i in range(100)]
    a = seeded_sample(keys, 10, seed=1)
    assert len(a) == 10 and a == seeded_sample(list(reversed(keys)), 10, seed=1)
    assert a != seeded_sample(keys, 10, seed=2)
    grown = seeded_sample([*keys, *(f"new{i}" for i in range(100))], 10, seed=1)
    # Growth only swaps in better-ranked new keys; no old key of the sample is replaced by an old one.
    assert [k for k in grown if k.startswith("img")] == a[: sum(k.startswith("img") for k in grown)]
    assert seeded_sample(keys, None) == seeded_sample(keys, 1000)


def _rows(run: str, hits: list[float], dist: list[float]) -> list[dict]:
    return [
        {
            "run": run,
            "image_id": i,
            "structure": "optic_disc",
            "reviewer": "reference",
            "pointing_hit": h,
            "pointing_distance_px": d,
        }
        for i, (h, d) in enumerate(zip(hits, dist, strict=True))
    ]


def test_run_is_compared_with_its_best_baseline_in_each_direction() -> None:
    from fundus_review.core.baseline_tables import best_baseline_comparisons

    n = 40
    rows = (
        _rows("model", [1.0] * 30 + [0.0] * 10, [0.0] * 30 + [9.0] * 10)
        + _rows("centre", [1.0] * n, [0.0] * n)  # disc-centred crops: the centre always hits
        + _rows("random", [0.0] * 36 + [1.0] * 4, [50.0] * n)
    )
    out = best_baseline_comparisons(
        rows,
        ["pointing_hit", "pointing_distance_px"],
        {"model": ["centre", "random"]},
        n_resamples=500,
    )
    by_metric = {r["metric"]: r for r in out}
    hit = by_metric["pointing_hit"]
    assert hit["versus"] == "centre" and hit["table"] == "versus_best_baseline"
    assert hit["estimate"] == pytest.approx(-0.25)
    assert hit["group"] == "worse" and hit["n"] == n
    dist = by_metric["pointing_distance_px"]
    # Lower is better: the best baseline is again the centre (distance 0), and the model is worse.
    assert dist["versus"] == "centre" and dist["estimate"] == pytest.approx(90 / 40)
    assert dist["group"] == "worse"
    # Against the random map alone the model wins, in both directions of "better".
    only_random = best_baseline_comparisons(
        rows, ["pointing_hit", "pointing_distance_px"], {"model": ["random"]}, n_resamples=500
    )
    assert {r["metric"]: r["group"] for r in only_random} == {
        "pointing_hit": "beats",
        "pointing_distance_px": "beats",
    }


def test_verdict_needs_the_whole_interval_on_one_side() -> None:
    from fundus_review.core.baseline_tables import verdict

    assert verdict(0.1, 0.02, 0.2, higher=True) == "beats"
    assert verdict(0.1, -0.01, 0.2, higher=True) == "no better"
    assert verdict(-0.1, -0.2, -0.01, higher=False) == "beats"
    assert verdict(None, None, None, higher=True) == "no better"


def test_the_constant_map_is_no_pointing_game_candidate() -> None:
    from fundus_review.core.baseline_tables import POINTING_METRICS, best_baseline_comparisons

    rows = _rows("model", [1.0] * 18 + [0.0] * 2, [0.0] * 20) + _rows(
        "uniform", [1.0] * 20, [0.0] * 20
    )
    rows += _rows("random", [0.0] * 20, [40.0] * 20)
    cands = {"model": ["uniform", "random"]}
    naive = best_baseline_comparisons(rows, ["pointing_hit"], cands, n_resamples=200)
    assert naive[0]["versus"] == "uniform"  # every pixel is a maximum: a "hit" by definition
    fair = best_baseline_comparisons(
        rows,
        ["pointing_hit"],
        cands,
        skip=dict.fromkeys(POINTING_METRICS, ["uniform"]),
        n_resamples=200,
    )
    assert fair[0]["versus"] == "random" and fair[0]["group"] == "beats"
