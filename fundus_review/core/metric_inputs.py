"""Validation of the arrays handed to the localization metrics.

Every metric goes through these checks so that a bad heatmap (NaN from a failed CAM, a mask of the
wrong size) fails loudly with a message naming the argument and the problem, instead of producing a
plausible-looking number. NaN is never silently replaced: a NaN heatmap means the CAM computation
failed, and scoring it as anything would hide that failure in the aggregate statistics.
"""

from __future__ import annotations

import numpy as np

from fundus_review.errors import FundusReviewError


class MetricInputError(FundusReviewError, ValueError):
    """A heatmap, mask or field of view cannot be scored (NaN, wrong shape, wrong dtype...).

    It is also a ``ValueError`` so that numeric callers can catch it the usual way; batch jobs catch
    it per image, record the problem with the image's file name, and go on.
    """


def check_heatmap(heatmap: np.ndarray, name: str = "heatmap") -> np.ndarray:
    """Return ``heatmap`` as a finite 2-D float array (float32 kept, float16/int promoted).

    Raises MetricInputError for a non-2-D, empty, non-numeric array or any NaN/inf value.
    """
    a = np.asarray(heatmap)
    if a.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D (H, W) array, got shape {a.shape}")
    if a.size == 0:
        raise MetricInputError(f"{name} is empty (shape {a.shape})")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise MetricInputError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    elif not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        n_nan = int(np.isnan(a).sum())
        n_inf = int(finite.size - finite.sum()) - n_nan
        row, col = np.unravel_index(int(np.argmin(finite)), a.shape)
        raise MetricInputError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite value(s) (first at row {row}, "
            f"col {col}); a heatmap must be finite everywhere, NaN is never replaced silently"
        )
    return a


def check_mask(
    mask: np.ndarray, shape: tuple[int, ...] | None = None, name: str = "mask"
) -> np.ndarray:
    """Return ``mask`` as a 2-D bool array; 0/1 integer or float arrays are accepted too.

    Raises MetricInputError when the mask is not 2-D, holds values other than 0/1, or its shape
    differs from ``shape`` (the heatmap's).
    """
    a = np.asarray(mask)
    if a.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D (H, W) array, got shape {a.shape}")
    if shape is not None and a.shape != tuple(shape):
        raise MetricInputError(
            f"{name} has shape {a.shape} but the heatmap has shape {tuple(shape)}; both must be "
            "on the same (original image) pixel grid"
        )
    if a.dtype == np.bool_:
        return a
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise MetricInputError(f"{name} must be boolean, got dtype {a.dtype}")
    binary = (a == 0) | (a == 1)
    if not binary.all():
        bad = np.unique(a[~binary])[:5]
        raise MetricInputError(
            f"{name} must be boolean or hold only 0/1, found values {bad.tolist()}"
            " (a 0/255 PNG must be converted with load_mask first)"
        )
    return a == 1


def check_fov(fov: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """Validate an optional field-of-view mask; an empty field of view is an error.

    An empty FOV means FOV detection failed on that image; scoring against no pixels would turn
    that failure into silent ``None`` scores.
    """
    if fov is None:
        return None
    f = check_mask(fov, shape, name="fov")
    if not f.any():
        raise MetricInputError("fov is empty: no pixel lies inside the field of view")
    return f


def require_nonnegative(heatmap: np.ndarray, name: str = "heatmap") -> None:
    """Mass-based metrics read the heatmap as a density, which cannot be negative."""
    low = float(heatmap.min())
    if low < 0:
        raise MetricInputError(
            f"{name} has negative values (minimum {low:g}); mass-based metrics need a "
            "non-negative heatmap (CAMs are normalized to [0, 1])"
        )


def check_tolerance(tolerance_px: float) -> float:
    t = float(tolerance_px)
    if not np.isfinite(t) or t < 0:
        raise MetricInputError(f"tolerance_px must be a finite number >= 0, got {tolerance_px!r}")
    return t
