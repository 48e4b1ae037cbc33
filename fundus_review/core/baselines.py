"""Baseline heatmaps: what a score means only next to what a map with no knowledge scores.

A heatmap that simply peaks at the image centre wins the pointing game on disc-centred crops
(every DRISHTI-GS1 photograph), and a constant map "hits" every non-empty target because all its
pixels are maxima. So every score is shown beside the same score of maps that know nothing about
the image (Arun et al., "Assessing the trustworthiness of saliency maps", Radiology: AI 2021, who
compare against such low-information baselines; Saporta et al., Nature MI 2022, CheXlocalize):

- ``centre``: an isotropic Gaussian at the image centre, sigma = ``SIGMA_FRACTION`` x the shorter
  side (a prior on where the photographer put the structure);
- ``fov-centre``: the same Gaussian at the centroid of the field-of-view mask, sigma from the FOV's
  equivalent radius (knows where the retina is, nothing about what is on it);
- ``uniform``: a constant map (every pixel is a maximum: the pointing game's degenerate hit);
- ``random``: seeded uniform noise on a coarse ``RANDOM_CELLS`` x ``RANDOM_CELLS`` grid, bilinearly
  enlarged, so that it has the blob size of a CAM at a 7 x 7 feature map; the seed and the image
  key fix it, so the same image always gets the same map;
- ``mean-map``: the leave-one-out mean of a run's own heatmaps, (sum - own) / (n - 1): the
  model's "average look" without the image in question (an image must not predict itself).

All maps are float32, finite, on the grid they are asked for, and peak at 1 (except the constant
and an all-zero mean, which are constant).
"""

from __future__ import annotations

import hashlib

import numpy as np

from fundus_review.core.metric_inputs import MetricInputError

SIGMA_FRACTION = 0.125
RANDOM_CELLS = 7
FIXED_BASELINES = ("centre", "fov-centre", "uniform", "random")
MEAN_MAP = "mean-map"
BASELINE_KINDS = (*FIXED_BASELINES, MEAN_MAP)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(s) for s in shape)
    if h <= 0 or w <= 0:
        raise MetricInputError(f"a baseline map needs a positive shape, got {shape}")
    return h, w


def gaussian_at(shape: tuple[int, int], centre_yx: tuple[float, float], sigma: float) -> np.ndarray:
    """exp(-d^2 / (2 sigma^2)) with d the distance of each pixel centre to ``centre_yx``
    (continuous (y, x): pixel (i, j) has its centre at (i + 0.5, j + 0.5))."""
    h, w = _check_shape(shape)
    if not np.isfinite(sigma) or sigma <= 0:
        raise MetricInputError(f"Gaussian sigma must be positive, got {sigma}")
    cy, cx = float(centre_yx[0]), float(centre_yx[1])
    ys = (np.arange(h, dtype=np.float64) + 0.5 - cy) ** 2
    xs = (np.arange(w, dtype=np.float64) + 0.5 - cx) ** 2
    # Separable: exp(a + b) = exp(a) * exp(b) avoids an (h, w) distance array in float64.
    gy = np.exp(-ys / (2.0 * sigma**2))
    gx = np.exp(-xs / (2.0 * sigma**2))
    out = np.outer(gy, gx).astype(np.float32)
    return out / out.max()


def centre_gaussian(shape: tuple[int, int]) -> np.ndarray:
    """Gaussian at the image centre, sigma = SIGMA_FRACTION x the shorter side."""
    h, w = _check_shape(shape)
    return gaussian_at((h, w), (h / 2.0, w / 2.0), SIGMA_FRACTION * min(h, w))


def fov_centre_gaussian(fov: np.ndarray) -> np.ndarray:
    """Gaussian at the centroid of the field of view ``fov`` (bool, the map's grid); sigma =
    2 x SIGMA_FRACTION x the FOV's equivalent radius sqrt(area / pi), which equals the centre
    baseline's sigma when the FOV is the disk inscribed in a square image. An empty FOV falls
    back to the image centre (the centroid is undefined)."""
    f = np.asarray(fov, dtype=bool)
    if f.ndim != 2:
        raise MetricInputError(f"field of view must be 2-D, got shape {f.shape}")
    if not f.any():
        return centre_gaussian(f.shape)
    rows, cols = np.nonzero(f)
    radius = float(np.sqrt(rows.size / np.pi))
    centre = (rows.mean() + 0.5, cols.mean() + 0.5)
    return gaussian_at(f.shape, centre, max(2.0 * SIGMA_FRACTION * radius, 0.5))


def uniform_map(shape: tuple[int, int]) -> np.ndarray:
    return np.ones(_check_shape(shape), dtype=np.float32)


def image_seed(seed: int, key: str) -> int:
    """A 64-bit seed from the user's seed and a stable image key (e.g. its sha256), so that a
    random baseline does not depend on the order images are processed in."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def random_map(
    shape: tuple[int, int], seed: int, key: str, cells: int = RANDOM_CELLS
) -> np.ndarray:
    """Seeded uniform noise on a ``cells`` x ``cells`` grid, bilinearly enlarged to ``shape``."""
    h, w = _check_shape(shape)
    if cells < 1:
        raise MetricInputError(f"random baseline needs at least one cell, got {cells}")
    coarse = np.random.default_rng(image_seed(seed, key)).random((cells, cells))

    # Bilinear on pixel centres, edge-clamped: coarse cell k has its centre at (k + 0.5) / cells.
    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n) + 0.5) / n * cells - 0.5, 0.0, cells - 1.0)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, cells - 1)
        return lo, hi, pos - lo

    r0, r1, fr = axis(h)
    c0, c1, fc = axis(w)
    rows = coarse[r0] * (1 - fr)[:, None] + coarse[r1] * fr[:, None]
    out = rows[:, c0] * (1 - fc)[None, :] + rows[:, c1] * fc[None, :]
    out = out.astype(np.float32)
    return out / out.max()


def leave_one_out_mean(total: np.ndarray, count: int, own: np.ndarray | None) -> np.ndarray:
    """Mean of the other maps: (total - own) / (count - 1), or total / count when ``own`` is
    None (the image has no map in the run, so nothing is left out).

    Raises MetricInputError when no other map is left (a one-image run has no mean-map baseline).
    """
    t = np.asarray(total, dtype=np.float64)
    if own is None:
        if count < 1:
            raise MetricInputError("a mean-map baseline needs at least one heatmap")
        out = t / count
    else:
        if count < 2:
            raise MetricInputError(
                "a leave-one-out mean map needs at least two heatmaps in the run"
            )
        out = (t - np.asarray(own, dtype=np.float64)) / (count - 1)
    peak = out.max()
    out = out.astype(np.float32)
    return out / peak if peak > 0 else out
