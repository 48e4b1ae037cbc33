"""Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016).

Definitions (pixel (row i, col j) has its centre at (x, y) = (j + 0.5, i + 0.5)):

- Field of view F (all pixels when not given); target T = M n F, the expert mask inside F.
- Maxima X = {p in F : H(p) = max over F of H}.
- d(p, T) = min over t in T of ||centre(p) - centre(t)||_2 (0 when p is in T).
- hit  <=>  min over p in X of d(p, T) <= r, with r the tolerance radius in original pixels;
  equivalently: some maximal pixel lies inside T dilated by the closed disk of radius r.
- T empty  ->  None: no score (the structure is not there to be pointed at), never a miss.

Ties (several maximal pixels): the game is a hit if ANY maximal pixel is within the tolerance.
Every maximal pixel is an equally valid "maximum" of the heatmap, so no scan-order choice may
decide the outcome. The reported point is the maximal pixel closest to T (first in row-major order
among equally close ones), so that ``hit == (distance_px <= tolerance_px)`` always holds; a centroid
of the maxima could fall between two blobs and contradict the hit. ``n_maxima`` is reported so that
degenerate heatmaps can be flagged: a constant heatmap has every pixel of F maximal and is therefore
a hit whenever T is non-empty (with n_maxima = |F|).

Tolerance: Zhang et al. use 15 px at the 224-px model scale; :func:`scaled_tolerance` and
:func:`tolerance_from_transform` convert it to original pixels.

Cost: no per-pixel Python loop and no dilation of the whole mask. d is only evaluated on the
outline of X against the outline of T (a closest pair of two disjoint pixel sets always lies on
their 4-neighbour outlines: stepping from a non-outline pixel towards the other set stays inside
its own set and gets strictly closer), with per-column nearest-row lookups (exact Euclidean).
When X is huge and scattered (noisy or saturated maps) the closest distance is first found from
T's side, and only maxima within that distance of T's bounding box are examined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fundus_review.core.metric_inputs import (
    MetricInputError,
    check_fov,
    check_heatmap,
    check_mask,
    check_tolerance,
)

DEFAULT_MODEL_INPUT = 224
DEFAULT_TOLERANCE_AT_MODEL = 15.0
# Elements per temporary block in the distance search; bounds memory at full fundus resolution.
_BLOCK = 1 << 21


@dataclass(frozen=True)
class PointingResult:
    """Outcome of one pointing game.

    ``point`` is the centre (x, y) of the chosen maximal pixel in continuous original-image
    coordinates, ``row``/``col`` its integer indices; ``distance_px`` its Euclidean distance to
    the nearest pixel of the target (0.0 inside).
    """

    hit: bool
    point: tuple[float, float]
    distance_px: float
    n_maxima: int
    tolerance_px: float
    row: int
    col: int


def scaled_tolerance(
    orig_h: int,
    orig_w: int,
    model_input: int | tuple[int, int] = DEFAULT_MODEL_INPUT,
    tolerance_at_model: float = DEFAULT_TOLERANCE_AT_MODEL,
) -> float:
    """Tolerance in original pixels: r = r_model * sqrt((orig_h / in_h) * (orig_w / in_w)).

    The geometric mean of the two axis scales keeps the tolerance disk's area when the image was
    stretched ("resize" policy); for square-preserving policies both factors are equal. With the
    exact model geometry at hand prefer :func:`tolerance_from_transform`.
    """
    in_h, in_w = (model_input, model_input) if np.isscalar(model_input) else model_input
    if min(orig_h, orig_w, in_h, in_w) <= 0:
        raise MetricInputError(
            f"sizes must be positive, got original {orig_h}x{orig_w}, model input {in_h}x{in_w}"
        )
    return float(tolerance_at_model) * math.sqrt((orig_h / in_h) * (orig_w / in_w))


def tolerance_from_transform(
    transform: object, tolerance_at_model: float = DEFAULT_TOLERANCE_AT_MODEL
) -> float:
    """Tolerance in original pixels for a heatmap made through ``transform`` (an InputTransform).

    With x_in = x_orig * sx + tx, one model pixel spans 1/sx original pixels: r = r_model /
    sqrt(sx * sy). This is exact for "center_crop" and "letterbox", whose scale is not orig/in.
    """
    sx, sy = float(transform.sx), float(transform.sy)  # type: ignore[attr-defined]
    if not (sx > 0 and sy > 0):
        raise MetricInputError(f"transform scales must be positive, got sx={sx}, sy={sy}")
    return float(tolerance_at_model) / math.sqrt(sx * sy)


def maximal_pixels(heatmap: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    """Bool map of the pixels of ``fov`` where the (validated) heatmap reaches its maximum."""
    if fov is None:
        return heatmap == heatmap.max()
    top = heatmap[fov].max()
    return (heatmap == top) & fov


def pointing_game(
    heatmap: np.ndarray,
    mask: np.ndarray,
    tolerance_px: float,
    fov: np.ndarray | None = None,
) -> PointingResult | None:
    """Pointing game of ``heatmap`` against ``mask`` (see the module docstring for the rule).

    Returns None when the mask has no pixel inside the field of view.
    """
    h = check_heatmap(heatmap)
    m = check_mask(mask, h.shape)
    f = check_fov(fov, h.shape)
    tol = check_tolerance(tolerance_px)
    target = m & f if f is not None else m
    if not target.any():
        return None
    return pointing_from_maxima(maximal_pixels(h, f), target, tol)


def pointing_from_maxima(maxima: np.ndarray, target: np.ndarray, tol: float) -> PointingResult:
    """Pointing game from the bool map of maximal pixels and a non-empty target."""
    n_maxima = int(np.count_nonzero(maxima))
    width = maxima.shape[1]
    inside = maxima & target
    if inside.any():
        row, col = divmod(int(np.argmax(inside)), width)
        return PointingResult(True, (col + 0.5, row + 0.5), 0.0, n_maxima, tol, row, col)
    rows, cols = _outline_coords(maxima)
    t_rows, t_cols = _outline_coords(target)
    if rows.size * np.unique(t_cols).size > t_rows.size * np.unique(cols).size:
        # Many scattered maxima (a noisy or saturated map): find the closest distance from the
        # target's side first, then only maxima within it of the target's box can be closest.
        reach = math.isqrt(int(_squared_distances(rows, cols, t_rows, t_cols).min()))
        keep = (
            (rows >= t_rows.min() - reach)
            & (rows <= t_rows.max() + reach)
            & (cols >= t_cols.min() - reach)
            & (cols <= t_cols.max() + reach)
        )
        rows, cols = rows[keep], cols[keep]
    d2 = _squared_distances(t_rows, t_cols, rows, cols)
    best = int(np.argmin(d2))  # first minimum = row-major first, since outlines are row-major
    row, col, best_d2 = int(rows[best]), int(cols[best]), int(d2[best])
    # d2 is an exact integer; the slack only absorbs rounding of tol * tol (e.g. tol = sqrt(2)).
    hit = best_d2 <= tol * tol + 1e-9
    return PointingResult(hit, (col + 0.5, row + 0.5), math.sqrt(best_d2), n_maxima, tol, row, col)


def _outline_coords(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-major (rows, cols) of the pixels of ``region`` with a 4-neighbour outside it."""
    rows_any = np.flatnonzero(region.any(axis=1))
    cols_any = np.flatnonzero(region.any(axis=0))
    r0, r1, c0, c1 = rows_any[0], rows_any[-1] + 1, cols_any[0], cols_any[-1] + 1
    padded = np.pad(region[r0:r1, c0:c1], 1, constant_values=False)
    core = padded[1:-1, 1:-1]
    interior = core & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    rows, cols = np.nonzero(core & ~interior)
    return rows.astype(np.int64) + r0, cols.astype(np.int64) + c0


def _squared_distances(
    set_rows: np.ndarray, set_cols: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Exact squared Euclidean distance from each (row, col), rows non-decreasing, to a pixel set.

    The set is given by the coordinates of its outline (or all its pixels). d^2(i, j) = min over
    the set's columns k of ((j - k)^2 + g(i, k)^2), where g(i, k) is the distance from row i to the
    set's nearest row in column k, found by binary search in the set sorted by (column, row).
    """
    stride = int(max(set_rows.max(), rows.max())) + 2
    keys = np.sort(set_cols * stride + set_rows)
    t_columns = np.unique(set_cols)
    n_cols = t_columns.size
    far = stride + int(max(set_cols.max(), cols.max())) + 2  # longer than any real distance
    out = np.empty(rows.size, dtype=np.int64)
    unique_rows, first = np.unique(rows, return_index=True)
    bounds = np.append(first, rows.size)
    step = max(1, _BLOCK // n_cols)
    for a in range(0, unique_rows.size, step):
        block_rows = unique_rows[a : a + step]
        query = t_columns[None, :] * stride + block_rows[:, None]
        idx = np.searchsorted(keys, query)
        after = keys[np.minimum(idx, keys.size - 1)]
        before = keys[np.maximum(idx - 1, 0)]
        g_after = np.where(
            (idx < keys.size) & (after // stride == t_columns),
            after % stride - block_rows[:, None],
            far,
        )
        g_before = np.where(
            (idx > 0) & (before // stride == t_columns), block_rows[:, None] - before % stride, far
        )
        g2 = np.minimum(g_after, g_before) ** 2
        start, stop = bounds[a], bounds[min(a + step, unique_rows.size)]
        local = np.searchsorted(block_rows, rows[start:stop])
        for s in range(start, stop, step):
            e = min(s + step, stop)
            dc = cols[s:e, None] - t_columns[None, :]
            out[s:e] = (dc * dc + g2[local[s - start : e - start]]).min(axis=1)
    return out
