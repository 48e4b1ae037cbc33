"""Localization agreement between a heatmap and an expert mask (issue 4), numpy only.

Notation: H is the heatmap (H x W, finite; CAMs are in [0, 1]) on the original image grid, M the
expert mask of one structure by one reviewer, F the field of view (all pixels when not given) and
T = M n F. Every metric only looks at the pixels of F, except ``mass_outside_fov`` which is about
what lies outside it. A metric that needs the mask returns None when T is empty: no score, never a
zero.

- ``energy_pointing`` (Wang et al., Score-CAM, CVPRW 2020): E = sum_T H / sum_F H, the share of the
  heatmap's mass inside the structure. Chance level is |T| / |F|, reached by any constant heatmap;
  an all-zero heatmap has no mass and is treated as the constant it is (E = |T| / |F|), so failed
  CAMs score as uninformative instead of silently dropping out of the averages.
- ``pixel_auc``: ROC-AUC of H as a score separating T from F \\ T, ties counted half
  (Mann-Whitney): AUC = (R_T - |T| (|T| + 1) / 2) / (|T| |F \\ T|), R_T the sum of the average
  ranks (1-based, ascending) of the pixels of T among all pixels of F. None when T or F \\ T is
  empty. A constant heatmap gives 0.5.
- ``mass_outside_fov`` = sum_{not F} H / sum H, the mass on the black border (corner artifacts);
  an all-zero heatmap gives |not F| / (H W) (the constant-heatmap value).
- pointing game: :mod:`fundus_review.core.pointing`; binarization, IoU, Dice and reviewer
  agreement: :mod:`fundus_review.core.binarize`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from fundus_review.core.binarize import (
    BINARIZE_METHODS,
    binarize,
    binarize_checked,
    dice,
    dice_from_counts,
    iou,
    iou_from_counts,
    mask_agreement,
    otsu_level,
)
from fundus_review.core.metric_inputs import (
    MetricInputError,
    check_fov,
    check_heatmap,
    check_mask,
    check_tolerance,
    require_nonnegative,
)
from fundus_review.core.pointing import (
    PointingResult,
    maximal_pixels,
    pointing_from_maxima,
    pointing_game,
    scaled_tolerance,
    tolerance_from_transform,
)

__all__ = [
    "BINARIZE_METHODS",
    "METRIC_DESCRIPTIONS",
    "METRIC_INFO",
    "METRIC_NAMES",
    "MetricInfo",
    "MetricInputError",
    "PointingResult",
    "binarize",
    "describe_metric",
    "dice",
    "energy_pointing",
    "iou",
    "mask_agreement",
    "mass_outside_fov",
    "metric_names",
    "otsu_level",
    "pixel_auc",
    "pointing_game",
    "scaled_tolerance",
    "score_heatmap",
    "tolerance_from_transform",
]


@dataclass(frozen=True)
class MetricInfo:
    """What a stored metric means; ``higher_is_better`` is None for diagnostics."""

    description: str
    higher_is_better: bool | None
    low: float | None
    high: float | None


_FIXED_RE = re.compile(r"^(iou|dice)_fixed(\d+)$")
_TOP_RE = re.compile(r"^(iou|dice)_top(\d+(?:p\d+)?)$")


def _info(
    description: str,
    higher_is_better: bool | None = True,
    low: float = 0.0,
    high: float | None = 1.0,
) -> MetricInfo:
    return MetricInfo(description, higher_is_better, low, high)


METRIC_INFO: dict[str, MetricInfo] = {
    "pointing_hit": _info(
        "Pointing game: 1 if a maximal heatmap pixel lies within the tolerance radius of the "
        "mask (any maximal pixel counts), 0 otherwise."
    ),
    "pointing_distance_px": _info(
        "Distance in original pixels from the heatmap maximum closest to the mask to the mask "
        "(0 inside).",
        higher_is_better=False,
        high=None,
    ),
    "pointing_n_maxima": _info(
        "Diagnostic: number of pixels sharing the heatmap maximum; large values flag flat or "
        "saturated heatmaps for which the pointing game is uninformative.",
        higher_is_better=None,
        low=1.0,
        high=None,
    ),
    "energy_in_mask": _info(
        "Energy-based pointing game: share of the heatmap's mass (inside the field of view) "
        "that falls inside the mask."
    ),
    "mask_area_fraction": _info(
        "Reference: share of the field of view covered by the mask, the chance level of "
        "energy_in_mask.",
        higher_is_better=None,
    ),
    "iou_otsu": _info("IoU of the Otsu-thresholded heatmap with the mask."),
    "dice_otsu": _info("Dice of the Otsu-thresholded heatmap with the mask."),
    "iou_area_match": _info(
        "IoU with the mask of the heatmap's top pixels, as many as the mask has."
    ),
    "dice_area_match": _info(
        "Dice with the mask of the heatmap's top pixels, as many as the mask has."
    ),
    "pixel_auc": _info(
        "ROC-AUC of the heatmap values as a score for the mask's pixels within the field of "
        "view (0.5 = chance)."
    ),
    "mass_outside_fov": _info(
        "Share of the heatmap's mass outside the field of view (black border, corner artifacts).",
        higher_is_better=False,
    ),
}


def _percent_tag(top_percent: float) -> str:
    text = f"{float(top_percent):g}"
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise MetricInputError(f"top_percent must be a plain number in [0, 100], got {text}")
    return text.replace(".", "p")


def _fixed_tag(threshold: float) -> str:
    hundredths = round(float(threshold) * 100)
    if not 0 <= hundredths <= 100 or abs(hundredths - float(threshold) * 100) > 1e-9:
        raise MetricInputError(
            f"fixed_threshold must be a multiple of 0.01 in [0, 1] (it names the metric), "
            f"got {threshold!r}"
        )
    return str(hundredths)


def metric_names(fixed_threshold: float = 0.5, top_percent: float = 15.0) -> tuple[str, ...]:
    """The keys :func:`score_heatmap` returns, in a stable order, for these parameters.

    The fixed threshold and the top percentage are part of the names ("iou_fixed50", "iou_top15",
    "iou_top2p5" for 2.5 %), so scores computed with other settings never mix in one column.
    """
    fixed, top = _fixed_tag(fixed_threshold), _percent_tag(top_percent)
    return (
        "pointing_hit",
        "pointing_distance_px",
        "pointing_n_maxima",
        "energy_in_mask",
        "mask_area_fraction",
        f"iou_fixed{fixed}",
        f"dice_fixed{fixed}",
        "iou_otsu",
        "dice_otsu",
        f"iou_top{top}",
        f"dice_top{top}",
        "iou_area_match",
        "dice_area_match",
        "pixel_auc",
        "mass_outside_fov",
    )


METRIC_NAMES: tuple[str, ...] = metric_names()


def describe_metric(name: str) -> MetricInfo:
    """Meaning of a metric name, including parameterized ones ("iou_fixed30", "dice_top10")."""
    if name in METRIC_INFO:
        return METRIC_INFO[name]
    kind = {"iou": "IoU", "dice": "Dice"}
    fixed = _FIXED_RE.match(name)
    if fixed:
        t = int(fixed.group(2)) / 100
        return _info(
            f"{kind[fixed.group(1)]} with the mask of the heatmap thresholded at >= {t:g}."
        )
    top = _TOP_RE.match(name)
    if top:
        p = top.group(2).replace("p", ".")
        return _info(
            f"{kind[top.group(1)]} with the mask of the top {p} % of the field of view's pixels "
            "by heatmap value."
        )
    raise KeyError(f"unknown metric name {name!r}")


METRIC_DESCRIPTIONS: dict[str, str] = {n: describe_metric(n).description for n in METRIC_NAMES}


def _target(mask: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    return mask & fov if fov is not None else mask


def _energy(h: np.ndarray, target: np.ndarray, fov: np.ndarray | None, n_fov: int) -> float:
    total = (
        float(np.sum(h, where=fov, dtype=np.float64))
        if fov is not None
        else float(np.sum(h, dtype=np.float64))
    )
    if total == 0.0:
        return int(np.count_nonzero(target)) / n_fov
    return float(np.sum(h, where=target, dtype=np.float64)) / total


def energy_pointing(
    heatmap: np.ndarray, mask: np.ndarray, fov: np.ndarray | None = None
) -> float | None:
    """Energy-based pointing game E = sum_{M n F} H / sum_F H (None when M n F is empty)."""
    h = check_heatmap(heatmap)
    m = check_mask(mask, h.shape)
    f = check_fov(fov, h.shape)
    require_nonnegative(h)
    target = _target(m, f)
    if not target.any():
        return None
    n_fov = int(np.count_nonzero(f)) if f is not None else h.size
    return _energy(h, target, f, n_fov)


def _auc(values: np.ndarray, labels: np.ndarray, sorted_values: np.ndarray) -> float | None:
    n_pos = int(np.count_nonzero(labels))
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    pos = values[labels]
    below = np.searchsorted(sorted_values, pos, side="left").astype(np.int64)
    upto = np.searchsorted(sorted_values, pos, side="right").astype(np.int64)
    # Twice the rank sum, so that average ranks of ties ((below + 1 + upto) / 2) stay integers.
    twice_rank_sum = int(np.sum(below + upto + 1))
    return (twice_rank_sum - n_pos * (n_pos + 1)) / (2.0 * n_pos * n_neg)


def pixel_auc(heatmap: np.ndarray, mask: np.ndarray, fov: np.ndarray | None = None) -> float | None:
    """ROC-AUC of H for the pixels of M n F against F \\ M (Mann-Whitney, ties count 1/2).

    None when M n F or F \\ M is empty.
    """
    h = check_heatmap(heatmap)
    m = check_mask(mask, h.shape)
    f = check_fov(fov, h.shape)
    values = h[f] if f is not None else h.ravel()
    labels = m[f] if f is not None else m.ravel()
    if labels.all() or not labels.any():
        return None
    return _auc(values, labels, np.sort(values))


def mass_outside_fov(heatmap: np.ndarray, fov: np.ndarray) -> float:
    """Share of the heatmap's mass outside the field of view: sum_{not F} H / sum H."""
    h = check_heatmap(heatmap)
    f = check_fov(fov, h.shape)
    require_nonnegative(h)
    return _mass_outside(h, f)


def _mass_outside(h: np.ndarray, f: np.ndarray) -> float:
    total = float(np.sum(h, dtype=np.float64))
    if total == 0.0:
        return 1.0 - int(np.count_nonzero(f)) / h.size
    return float(np.sum(h, where=~f, dtype=np.float64)) / total


def score_heatmap(
    heatmap: np.ndarray,
    mask: np.ndarray,
    fov: np.ndarray | None,
    *,
    tolerance_px: float,
    fixed_threshold: float = 0.5,
    top_percent: float = 15.0,
) -> dict[str, float | None]:
    """The standard metric set of one heatmap against one expert mask, keyed by stable names.

    Keys are ``metric_names(fixed_threshold, top_percent)`` (``METRIC_NAMES`` for the defaults).
    When the mask has no pixel in the field of view every mask-based score is None, while
    ``pointing_n_maxima`` and ``mass_outside_fov`` (None without a fov) are still computed.
    Binarized regions use the rules of :mod:`fundus_review.core.binarize`; "area_match" matches
    |M n F|. Raises MetricInputError for NaN/inf, negative values, or mismatched shapes.
    """
    names = metric_names(fixed_threshold, top_percent)
    h = check_heatmap(heatmap)
    m = check_mask(mask, h.shape)
    f = check_fov(fov, h.shape)
    tol = check_tolerance(tolerance_px)
    require_nonnegative(h)
    out: dict[str, float | None] = dict.fromkeys(names)

    maxima = maximal_pixels(h, f)
    out["pointing_n_maxima"] = float(np.count_nonzero(maxima))
    out["mass_outside_fov"] = _mass_outside(h, f) if f is not None else None
    target = _target(m, f)
    n_target = int(np.count_nonzero(target))
    if n_target == 0:
        return out

    n_fov = int(np.count_nonzero(f)) if f is not None else h.size
    pointing = pointing_from_maxima(maxima, target, tol)
    out["pointing_hit"] = 1.0 if pointing.hit else 0.0
    out["pointing_distance_px"] = pointing.distance_px
    out["energy_in_mask"] = _energy(h, target, f, n_fov)
    out["mask_area_fraction"] = n_target / n_fov

    values = h[f] if f is not None else h.ravel()
    sorted_values = np.sort(values)
    labels = target[f] if f is not None else target.ravel()
    out["pixel_auc"] = _auc(values, labels, sorted_values)

    regions = {
        f"fixed{_fixed_tag(fixed_threshold)}": dict(method="fixed", threshold=fixed_threshold),
        "otsu": dict(method="otsu"),
        f"top{_percent_tag(top_percent)}": dict(method="top_k", top_percent=top_percent),
        "area_match": dict(method="area_match", target_area=n_target),
    }
    for tag, kwargs in regions.items():
        region = binarize_checked(h, fov=f, values=values, sorted_values=sorted_values, **kwargs)
        inter = int(np.count_nonzero(region & target))
        area = int(np.count_nonzero(region))
        out[f"iou_{tag}"] = iou_from_counts(inter, area, n_target)
        out[f"dice_{tag}"] = dice_from_counts(inter, area, n_target)
    return out
