"""core.ssim: SSIM of Wang et al. 2004 between two heatmaps, checked against independent sums."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.ssim import ssim, ssim_map

C1, C2 = 0.01**2, 0.03**2


def _window2d() -> np.ndarray:
    # Written out again here (not imported) so the test does not share the code it checks.
    d = np.arange(11) - 5.0
    g = np.exp(-(d**2) / (2 * 1.5**2))
    w = np.outer(g, g)
    return w / w.sum()


def _brute_force_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Direct per-window sums of the paper's formula, one 11 x 11 window at a time."""

    def norm(m: np.ndarray) -> np.ndarray:
        m = m.astype(np.float64)
        span = m.max() - m.min()
        return np.zeros_like(m) if span == 0 else (m - m.min()) / span

    x, y, w = norm(a), norm(b), _window2d()
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * (px - mx) ** 2).sum()
            vy = (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append(
                ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
            )
    return float(np.mean(values))


def _pair(seed: int = 0, shape: tuple[int, int] = (20, 23)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    a = np.exp(-((yy - 8) ** 2 + (xx - 9) ** 2) / 20.0) + 0.1 * rng.random(shape)
    b = np.exp(-((yy - 11) ** 2 + (xx - 14) ** 2) / 30.0) + 0.1 * rng.random(shape)
    return a.astype(np.float32), b.astype(np.float32)


def test_a_map_is_identical_to_itself_and_to_any_rescaling_of_itself() -> None:
    a, _ = _pair()
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # min-max normalisation first: an affine rescaling of a map is the same map.
    assert ssim(a, 3.0 * a + 2.0) == pytest.approx(1.0, abs=1e-9)


def test_symmetric_and_below_one_for_different_maps() -> None:
    a, b = _pair()
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    assert ssim(a, b) < 0.9
    # An inverted map is anti-correlated structure: SSIM goes negative.
    assert ssim(a, -a) < 0


def test_matches_the_direct_window_sums() -> None:
    a, b = _pair(seed=3)
    assert ssim(a, b) == pytest.approx(_brute_force_ssim(a, b), abs=1e-10)
    assert ssim_map(a, b).shape == (20 - 10, 23 - 10)  # valid positions only


def test_matches_scipy_gaussian_filter_on_the_valid_region() -> None:
    """scikit-image's recipe (scipy's gaussian_filter, sigma 1.5, truncate 3.5 -> 11 taps, then
    the border of half a window cropped) gives the same mean on the same normalised maps."""
    ndimage = pytest.importorskip("scipy.ndimage")
    a, b = _pair(seed=5, shape=(31, 27))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    x = (a64 - a64.min()) / (a64.max() - a64.min())
    y = (b64 - b64.min()) / (b64.max() - b64.min())

    def f(m: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(m, sigma=1.5, truncate=3.5)

    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    s = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    assert ssim(a, b) == pytest.approx(float(s[5:-5, 5:-5].mean()), abs=1e-10)


def test_constant_map_against_a_structured_one_has_a_closed_form_value() -> None:
    """One 11 x 11 window: the constant map normalises to zeros, the other is all ones but one
    corner pixel (weight w_c = g_0^2). Then mu_x = sigma_x = sigma_xy = 0, mu_y = 1 - w_c and
    sigma_y^2 = mu_y (1 - mu_y), so SSIM = C1 C2 / ((mu_y^2 + C1) (sigma_y^2 + C2))."""
    const = np.full((11, 11), 7.0)
    b = np.ones((11, 11))
    b[0, 0] = 0.0
    w_c = _window2d()[0, 0]
    mu = 1.0 - w_c
    expected = C1 * C2 / ((mu**2 + C1) * (mu * (1 - mu) + C2))
    assert ssim(const, b) == pytest.approx(expected, rel=1e-9)
    assert expected < 0.01  # a constant map shares no structure with a structured one
    assert ssim(const, np.zeros((11, 11))) == pytest.approx(1.0)  # both constant: identical


def test_bad_inputs_raise() -> None:
    a, _ = _pair()
    with pytest.raises(MetricInputError, match="one grid"):
        ssim(a, a[:-1])
    with pytest.raises(MetricInputError, match="at least 11"):
        ssim(a[:10], a[:10])
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MetricInputError, match="NaN"):
        ssim(bad, a)
