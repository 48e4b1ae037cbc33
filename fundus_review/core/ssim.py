"""Structural similarity (SSIM) between two heatmaps, as in Wang et al. 2004 (numpy only).

Source: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE Trans. Image Processing 13(4), 2004. The
model-parameter randomisation test (Adebayo et al., NeurIPS 2018; Arun et al., Radiology: AI
2021) and the repeatability check compare saliency maps with it.

Definition used here (``ssim(a, b)``):

1. Each map is min-max normalised to [0, 1]: x' = (x - min x) / (max x - min x); a constant map
   becomes all zeros (it carries no structure, only its absence).
2. Local statistics are Gaussian-weighted means over an 11 x 11 window w (sigma = 1.5 pixels,
   weights exp(-d^2 / (2 sigma^2)) normalised to sum 1; the 2-D window is the outer product of
   the 1-D one, so it is applied as two 1-D passes): mu_x = w * x, sigma_x^2 = w * x^2 - mu_x^2,
   sigma_xy = w * (x y) - mu_x mu_y (population moments, as in the paper).
3. At each window position
   SSIM = ((2 mu_x mu_y + C1) (2 sigma_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))
   with C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03 and data range L = 1.
4. The result is the mean over the VALID window positions only (the window fully inside the
   map: (H - 10) x (W - 10) positions), so no padding rule influences it. This equals
   scikit-image's ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
   use_sample_covariance=False, data_range=1)`` on the normalised maps.

Properties: ssim(a, a) = 1, ssim(a, b) = ssim(b, a), values in [-1, 1]; two constant maps are
identical after step 1 and give 1.
"""

from __future__ import annotations

import numpy as np

from fundus_review.core.metric_inputs import MetricInputError, check_heatmap

SIGMA = 1.5
WINDOW = 11  # 2 * round(3.5 sigma) + 1: the window of the paper and of scikit-image
K1 = 0.01
K2 = 0.03
DATA_RANGE = 1.0


def minmax_normalise(heatmap: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min) as float64; all zeros for a constant map."""
    a = check_heatmap(heatmap).astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """The 1-D Gaussian weights (length ``size``, centred, summing to 1)."""
    d = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(d * d) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of ``a`` with the window g g^T (no padding)."""
    k = g.size
    rows = np.lib.stride_tricks.sliding_window_view(a, k, axis=0) @ g  # (H-k+1, W)
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ g  # (H-k+1, W-k+1)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SSIM value of every valid window position ((H - 10) x (W - 10)), after step 1."""
    x, y = minmax_normalise(a), minmax_normalise(b)
    if x.shape != y.shape:
        raise MetricInputError(
            f"maps to compare must share one grid, got shapes {x.shape} and {y.shape}"
        )
    if min(x.shape) < WINDOW:
        raise MetricInputError(
            f"SSIM needs maps of at least {WINDOW} x {WINDOW} pixels (its window), got {x.shape}"
        )
    g = gaussian_window()
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x * mu_x
    var_y = _filter_valid(y * y, g) - mu_y * mu_y
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two maps of the same shape (see the module docstring for every step)."""
    return float(ssim_map(a, b).mean())
