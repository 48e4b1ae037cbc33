"""Dataset-level views of heatmaps and scores: similarity, resampling, report groupings.

- ``heatmap_rank_correlation``: Spearman's rho between two heatmaps of the same image (two CAM
  methods, two layers) over the pixels of the field of view. Rank-based, so it compares where
  each method puts its emphasis, not their (arbitrary) normalizations.
- ``heatmap_top_overlap``: IoU of the two heatmaps' top-k % regions, the "do they highlight the
  same place" reading of the same question.
- ``resample_heatmap``: a heatmap on another grid (area, bilinear or nearest, pixel centres).
- Grouping helpers for the report: confidence bands and prediction outcomes. (The report's
  dataset-mean heatmaps are ``core.mean_maps``, registered to a common frame; its grouped
  summaries are ``core.score_tables.grouped_summaries``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fundus_review.core.binarize import top_n_count, top_n_region
from fundus_review.core.metric_inputs import MetricInputError, check_fov, check_heatmap
from fundus_review.core.stats import spearman_rho

RESAMPLE_METHODS = ("auto", "area", "bilinear", "nearest")


def _fov_values(
    h1: np.ndarray, h2: np.ndarray, fov: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    a = check_heatmap(h1, "first heatmap")
    b = check_heatmap(h2, "second heatmap")
    if a.shape != b.shape:
        raise MetricInputError(
            f"heatmaps to compare must share one grid, got shapes {a.shape} and {b.shape}"
        )
    f = check_fov(fov, a.shape)
    if f is None:
        return a, b, a.ravel(), b.ravel(), None
    return a, b, a[f], b[f], f


def heatmap_rank_correlation(
    h1: np.ndarray,
    h2: np.ndarray,
    fov: np.ndarray | None = None,
    *,
    max_pixels: int = 200_000,
    seed: int = 0,
) -> float | None:
    """Spearman's rho between the pixel values of two heatmaps (within ``fov``).

    Above ``max_pixels`` pixels a fixed random subset (``default_rng(seed)``, without
    replacement, the same for every pair of heatmaps of that size) is used: rho's sampling error
    at 2e5 pixels is far below the differences between methods, and the ranking stays cheap at
    full fundus resolution. None when either heatmap is constant on the pixels used.
    """
    _, _, va, vb, _ = _fov_values(h1, h2, fov)
    if va.size > max_pixels:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(va.size, size=int(max_pixels), replace=False))
        va, vb = va[pick], vb[pick]
    return spearman_rho(va, vb)


def heatmap_top_overlap(
    h1: np.ndarray, h2: np.ndarray, fov: np.ndarray | None = None, top_percent: float = 15.0
) -> float:
    """IoU of the top ``top_percent`` % regions of two heatmaps (tie rule of ``binarize``)."""
    a, b, va, vb, f = _fov_values(h1, h2, fov)
    n = top_n_count(top_percent, va.size)
    ra = top_n_region(a, f, va, n)
    rb = top_n_region(b, f, vb, n)
    union = int(np.count_nonzero(ra | rb))
    return 1.0 if union == 0 else int(np.count_nonzero(ra & rb)) / union


def _resample_axis(a: np.ndarray, n_out: int, axis: int, method: str) -> np.ndarray:
    n_in = a.shape[axis]
    if method == "auto":
        method = "area" if n_out < n_in else "bilinear"
    scale = n_in / n_out
    if method == "nearest":
        src = np.minimum(np.floor((np.arange(n_out) + 0.5) * scale).astype(np.intp), n_in - 1)
        return np.take(a, src, axis=axis)
    shape = [1] * a.ndim
    shape[axis] = n_out
    if method == "bilinear":
        # Pixel-centre convention: output centre k + 0.5 maps to input coordinate (k + 0.5) * scale.
        u = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0.0, n_in - 1)
        i0 = np.floor(u).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = (u - i0).reshape(shape)
        return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i1, axis=axis) * w
    if method == "area":
        # Exact box average: the running integral of a piecewise-constant row is piecewise
        # linear, so interpolating the cumulative sum at fractional edges integrates exactly.
        pad = [(0, 0)] * a.ndim
        pad[axis] = (1, 0)
        cum = np.pad(np.cumsum(a, axis=axis, dtype=np.float64), pad)
        edges = np.arange(n_out + 1) * scale
        lo = np.minimum(np.floor(edges).astype(np.intp), n_in - 1)
        frac = (edges - lo).reshape([n_out + 1 if d == axis else 1 for d in range(a.ndim)])
        left, right = np.take(cum, lo, axis=axis), np.take(cum, lo + 1, axis=axis)
        integral = left + frac * (right - left)
        return np.diff(integral, axis=axis) / scale
    raise MetricInputError(f"unknown resampling method {method!r}; expected {RESAMPLE_METHODS}")


def resample_heatmap(
    heatmap: np.ndarray, shape: tuple[int, int], method: str = "auto"
) -> np.ndarray:
    """Resample a 2-D heatmap to ``shape`` (h, w) on the pixel-centre grid, as float64.

    "area" averages the input pixels each output pixel covers (right for shrinking: a small hot
    spot keeps its mass), "bilinear" interpolates (right for enlarging), "nearest" copies, "auto"
    picks area or bilinear per axis.
    """
    h = check_heatmap(heatmap)
    out_h, out_w = (int(s) for s in shape)
    if out_h <= 0 or out_w <= 0:
        raise MetricInputError(f"target shape must be positive, got {shape}")
    if method not in RESAMPLE_METHODS:
        raise MetricInputError(f"unknown resampling method {method!r}; expected {RESAMPLE_METHODS}")
    out = h.astype(np.float64)
    if out.shape[0] != out_h:
        out = _resample_axis(out, out_h, 0, method)
    if out.shape[1] != out_w:
        out = _resample_axis(out, out_w, 1, method)
    return out


def confidence_band(confidence: float | None, thresholds: Sequence[float] = (0.5, 0.8)) -> str:
    """Label of the band holding ``confidence``: "< 0.5", "0.5-0.8", ">= 0.8" for the default.

    Bands are half-open [t_i, t_i+1), so a confidence equal to a threshold goes to the upper
    band. None gives "unknown".
    """
    cuts = sorted(float(t) for t in thresholds)
    if confidence is None or not np.isfinite(confidence):
        return "unknown"
    if not cuts:
        return "all"
    c = float(confidence)
    if c < cuts[0]:
        return f"< {cuts[0]:g}"
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        if c < hi:
            return f"{lo:g}-{hi:g}"
    return f">= {cuts[-1]:g}"


def prediction_outcome(
    true_label: str | None, predicted_label: str, negative_label: str | None = None
) -> str:
    """ "correct", "false positive", "false negative", "misclassified" or "unlabeled".

    With ``negative_label`` (e.g. "normal"): a negative image predicted as a disease is a false
    positive, a diseased image predicted negative a false negative, one disease for another is
    "misclassified". Without it every error is "misclassified".
    """
    if true_label is None:
        return "unlabeled"
    if true_label == predicted_label:
        return "correct"
    if negative_label is not None:
        if true_label == negative_label:
            return "false positive"
        if predicted_label == negative_label:
            return "false negative"
    return "misclassified"
