"""Binarization of heatmaps and overlap of binary masks (IoU, Dice).

A heatmap H (H x W, finite) is turned into a binary region B before it is compared with an expert
mask M. With a field of view F, only the pixels of F are considered: thresholds are computed from
the values H[F] and B is always a subset of F. Methods:

- ``"fixed"``: B = {p in F : H(p) >= threshold}, on the raw heatmap values (CAMs are in [0, 1]).
- ``"otsu"``: as CheXlocalize (``cam_to_segmentation`` in heatmap_to_segmentation.py): H[F] is
  min-max normalized and quantized like ``np.uint8(255 * (H - min) / (max - min))``, i.e.
  q = floor(255 * (H - min) / (max - min)); Otsu's level L maximizes the between-class variance
  w0 * w1 * (mu0 - mu1)^2 of the 256-bin histogram of q, and B = {q > L}: exactly
  ``cv2.threshold(q, 0, q.max(), cv2.THRESH_OTSU)`` (first maximum on ties). A heatmap constant on
  F has no two classes, so its Otsu region is EMPTY (nothing stands out).
- ``"top_k"``: the n = round(top_percent / 100 * |F|) pixels of F with the largest values.
- ``"area_match"``: the n = ``target_area`` pixels with the largest values, where target_area is
  the expert mask's area |M n F|: the binarization that would be perfect if the heatmap ranked the
  pixels perfectly (so IoU = Dice = 1 iff the top-|M| pixels are exactly M).

Ties at the cut of ``top_k`` / ``area_match``: let v be the n-th largest value. Pixels > v are in;
the whole group of pixels equal to v is put in when that brings the area at least as close to n as
leaving it out. No pixel among equals is preferred over another by position, so the result does
not depend on scan order; the area differs from n only by ties. A constant heatmap therefore gives
an empty region when n < |F| / 2 and the whole F otherwise.

IoU(A, B) = |A n B| / |A u B|, Dice(A, B) = 2 |A n B| / (|A| + |B|), so Dice = 2 IoU / (1 + IoU).
Both empty: IoU = Dice = 1.0 (the two agree that there is nothing); this is what reviewer-vs-reviewer
agreement needs when both reviewers mark a structure absent. Heatmap scoring never reaches it: an
empty expert mask gives no score at all.
"""

from __future__ import annotations

import math

import numpy as np

from fundus_review.core.metric_inputs import MetricInputError, check_fov, check_heatmap, check_mask

BINARIZE_METHODS = ("fixed", "otsu", "top_k", "area_match")

# OpenCV skips class splits whose weight is below float epsilon; copied so that a near-empty class
# cannot win because of rounding, and so results match cv2.threshold(..., THRESH_OTSU).
_OTSU_EPS = float(np.finfo(np.float32).eps)


def otsu_level(values: np.ndarray) -> tuple[int, np.ndarray] | None:
    """Otsu's level on the CheXlocalize quantization of ``values`` (1-D, finite).

    Returns (L, q) with q the uint8 quantized values (foreground = q > L), or None when the values
    are constant (no split exists).
    """
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        return None
    scaled = values.astype(np.float64)  # in place below: full-resolution maps are 12 Mpx
    scaled -= lo
    scaled *= 255.0 / (hi - lo)
    np.floor(scaled, out=scaled)
    q = np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
    hist = np.bincount(q, minlength=256).astype(np.float64)
    p = hist / q.size
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(p)
    w1 = 1.0 - w0
    cum_mu = np.cumsum(levels * p)
    mu_total = cum_mu[-1]
    valid = (np.minimum(w0, w1) >= _OTSU_EPS) & (np.maximum(w0, w1) <= 1.0 - _OTSU_EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = cum_mu / w0
        mu1 = (mu_total - w0 * mu0) / w1
        sigma = w0 * w1 * (mu0 - mu1) ** 2
    sigma = np.where(valid, sigma, -1.0)
    if sigma.max() <= 0:
        return None
    return int(np.argmax(sigma)), q


def top_n_count(top_percent: float, n_pixels: int) -> int:
    """Number of pixels in the top ``top_percent`` % of ``n_pixels`` (rounded half up)."""
    p = float(top_percent)
    if not 0 <= p <= 100:
        raise MetricInputError(f"top_percent must be within [0, 100], got {top_percent!r}")
    return int(math.floor(p * n_pixels / 100.0 + 0.5))


def top_n_region(
    heatmap: np.ndarray,
    fov: np.ndarray | None,
    values: np.ndarray,
    n: int,
    sorted_values: np.ndarray | None = None,
) -> np.ndarray:
    """The ``n`` largest pixels of ``values`` (= heatmap[fov]) with the tie rule of the module."""
    total = values.size
    if n <= 0:
        return np.zeros(heatmap.shape, dtype=bool)
    if n >= total:
        return fov.copy() if fov is not None else np.ones(heatmap.shape, dtype=bool)
    if sorted_values is not None:
        v = sorted_values[total - n]
        n_gt = total - int(np.searchsorted(sorted_values, v, side="right"))
        n_ge = total - int(np.searchsorted(sorted_values, v, side="left"))
    else:
        v = np.partition(values, total - n)[total - n]
        n_gt = int(np.count_nonzero(values > v))
        n_ge = int(np.count_nonzero(values >= v))
    region = heatmap >= v if n_ge - n <= n - n_gt else heatmap > v
    if fov is not None:
        region &= fov
    return region


def binarize_checked(
    heatmap: np.ndarray,
    method: str,
    fov: np.ndarray | None,
    *,
    threshold: float = 0.5,
    top_percent: float = 15.0,
    target_area: int | None = None,
    values: np.ndarray | None = None,
    sorted_values: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`binarize` on already validated arrays; ``values`` = heatmap[fov] may be passed in."""
    if values is None and method != "fixed":
        values = heatmap[fov] if fov is not None else heatmap.ravel()
    if method == "fixed":
        region = heatmap >= float(threshold)
    elif method == "otsu":
        found = otsu_level(values)
        if found is None:
            return np.zeros(heatmap.shape, dtype=bool)
        level, q = found
        if fov is None:
            return (q > level).reshape(heatmap.shape)
        region = np.zeros(heatmap.shape, dtype=bool)
        region[fov] = q > level
        return region
    elif method == "top_k":
        n = top_n_count(top_percent, values.size)
        return top_n_region(heatmap, fov, values, n, sorted_values)
    elif method == "area_match":
        if target_area is None or int(target_area) < 0:
            raise MetricInputError(
                f"binarize(method='area_match') needs target_area >= 0, got {target_area!r}"
            )
        return top_n_region(heatmap, fov, values, int(target_area), sorted_values)
    else:
        raise MetricInputError(
            f"unknown binarization method {method!r}; expected one of {BINARIZE_METHODS}"
        )
    if fov is not None:
        region &= fov
    return region


def binarize(
    heatmap: np.ndarray,
    method: str,
    *,
    threshold: float = 0.5,
    top_percent: float = 15.0,
    target_area: int | None = None,
    fov: np.ndarray | None = None,
) -> np.ndarray:
    """Binary region of ``heatmap`` by ``method`` (see the module docstring for each rule).

    ``threshold`` is used by "fixed", ``top_percent`` (0-100) by "top_k", ``target_area`` (pixels,
    usually ``(mask & fov).sum()``) by "area_match". Returns a bool array of the heatmap's shape,
    False outside ``fov``.
    """
    h = check_heatmap(heatmap)
    f = check_fov(fov, h.shape)
    return binarize_checked(
        h, method, f, threshold=threshold, top_percent=top_percent, target_area=target_area
    )


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    a = check_mask(a, name="first mask")
    b = check_mask(b, a.shape, name="second mask")
    inter = int(np.count_nonzero(a & b))
    return inter, int(np.count_nonzero(a)), int(np.count_nonzero(b))


def iou_from_counts(inter: int, area_a: int, area_b: int) -> float:
    union = area_a + area_b - inter
    return 1.0 if union == 0 else inter / union


def dice_from_counts(inter: int, area_a: int, area_b: int) -> float:
    total = area_a + area_b
    return 1.0 if total == 0 else 2.0 * inter / total


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union |A n B| / |A u B| of two bool masks; 1.0 when both are empty."""
    return iou_from_counts(*_overlap(a, b))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2 |A n B| / (|A| + |B|) of two bool masks; 1.0 when both are empty."""
    return dice_from_counts(*_overlap(a, b))


def mask_agreement(mask_a: np.ndarray, mask_b: np.ndarray) -> dict[str, float]:
    """Reviewer-vs-reviewer agreement on one structure: {"iou": ..., "dice": ...}.

    This is the human benchmark heatmap scores are read against. Two empty masks (both reviewers
    say the structure is absent) agree perfectly: iou = dice = 1.0.
    """
    counts = _overlap(mask_a, mask_b)
    return {"iou": iou_from_counts(*counts), "dice": dice_from_counts(*counts)}
