"""Pixel-grid primitives shared by the shapes and the brush (numpy only).

Pixel (row i, col j) covers [j, j+1) x [i, i+1) of continuous (x, y) image coordinates; every
test here is made at pixel centres (j + 0.5, i + 0.5). All work is confined to the bounding box
of what changes, so painting on a 4288x2848 photograph costs what it costs on a small image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fundus_review.errors import FundusReviewError

# (row0, row1, col0, col1), half-open, inside the image.
Box = tuple[int, int, int, int]


class GeometryError(FundusReviewError, ValueError):
    """A shape's geometry is malformed (bad JSON, too few vertices, non-finite numbers...)."""


# ---------------------------------------------------------------------------- pixel grid
def _row_range(lo: float, hi: float, n: int) -> tuple[int, int]:
    """Indices i in [0, n) whose centre i + 0.5 may lie in [lo, hi]."""
    return max(0, math.floor(lo - 0.5)), min(n, math.ceil(hi - 0.5) + 1)


def grid_box(ylo: float, yhi: float, xlo: float, xhi: float, shape: tuple[int, int]) -> Box | None:
    r0, r1 = _row_range(ylo, yhi, shape[0])
    c0, c1 = _row_range(xlo, xhi, shape[1])
    return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None


def centres(box: Box) -> tuple[np.ndarray, np.ndarray]:
    r0, r1, c0, c1 = box
    ys = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
    return xs, ys


def mask_box(mask: np.ndarray) -> Box | None:
    """The tight box of a mask's set pixels, None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# ------------------------------------------------------------------------- painting primitives
def paint_segment(
    mask: np.ndarray, p0: Sequence[float], p1: Sequence[float], radius: float, value: bool = True
) -> Box | None:
    """Set (or clear) every pixel whose centre lies within ``radius`` of the segment p0-p1.

    Works in place on the segment's bounding box only, so a stroke on a 4288x2848 image costs
    as much as on a small one. Returns the box that may have changed (None: nothing on the image).
    """
    (x0, y0), (x1, y1) = (float(p0[0]), float(p0[1])), (float(p1[0]), float(p1[1]))
    r = float(radius)
    box = grid_box(min(y0, y1) - r, max(y0, y1) + r, min(x0, x1) - r, max(x0, x1) + r, mask.shape)
    if box is None:
        return None
    xs, ys = centres(box)
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    if length2 > 0:
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0)
        px, py = x0 + t * dx - xs, y0 + t * dy - ys
    else:
        px, py = x0 - xs, y0 - ys
    hit = px * px + py * py <= r * r
    r0, r1, c0, c1 = box
    view = mask[r0:r1, c0:c1]
    if value:
        view |= hit
    else:
        view &= ~hit
    return box


def paint_stroke(
    mask: np.ndarray, points: Iterable[Sequence[float]], radius: float, value: bool = True
) -> Box | None:
    """A polyline stroke = the segments between consecutive points (one point = a disc)."""
    pts = [tuple(p) for p in points]
    if len(pts) == 1:
        pts = pts * 2
    boxes = [paint_segment(mask, a, b, radius, value) for a, b in zip(pts, pts[1:], strict=False)]
    return union_box(boxes)


def union_box(boxes: Iterable[Box | None]) -> Box | None:
    real = [b for b in boxes if b is not None]
    if not real:
        return None
    return (min(b[0] for b in real), max(b[1] for b in real),
            min(b[2] for b in real), max(b[3] for b in real))  # fmt: skip


def flood_fill(free: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 4-connected component of True pixels of ``free`` containing (row, col).

    Works on horizontal runs (one Python step per run, not per pixel), so filling a large area of
    a full-resolution photo takes milliseconds.
    """
    h, w = free.shape
    out = np.zeros((h, w), dtype=bool)
    if not (0 <= row < h and 0 <= col < w) or not free[row, col]:
        return out
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = free
    d = np.diff(padded, axis=1)
    starts, ends = np.nonzero(d == 1), np.nonzero(d == -1)  # row-major: starts/ends pair up
    run_row, run_start, run_end = starts[0], starts[1], ends[1]
    first = np.searchsorted(run_row, np.arange(h + 1))  # runs of row r: first[r]:first[r+1]
    seed = first[row] + int(np.searchsorted(run_end[first[row] : first[row + 1]], col, "right"))
    seen = {seed}
    todo = [seed]
    while todo:
        k = todo.pop()
        r, s, e = run_row[k], run_start[k], run_end[k]
        out[r, s:e] = True
        for nr in (r - 1, r + 1):
            if not 0 <= nr < h:
                continue
            lo, hi = first[nr], first[nr + 1]
            # Runs of row nr overlapping [s, e): their end > s and their start < e.
            a = lo + int(np.searchsorted(run_end[lo:hi], s, "right"))
            b = lo + int(np.searchsorted(run_start[lo:hi], e, "left"))
            for nk in range(a, b):
                if nk not in seen:
                    seen.add(nk)
                    todo.append(nk)
    return out


def enclosed_area(mask: np.ndarray, x: float, y: float) -> tuple[Box, np.ndarray]:
    """The hole of ``mask`` around (x, y): the 4-connected unset area containing that pixel,
    which must not reach the image border. Returns (box, crop) of the hole.

    Raises GeometryError when the point is on the mask itself or the outline is not closed.
    """
    h, w = mask.shape
    row, col = math.floor(y), math.floor(x)
    if not (0 <= row < h and 0 <= col < w):
        raise GeometryError(f"fill: ({x:.1f}, {y:.1f}) is outside the image")
    if mask[row, col]:
        raise GeometryError("fill: click inside a closed outline, not on the outline itself")
    box = mask_box(mask)
    if box is None or not (box[0] <= row < box[1] and box[2] <= col < box[3]):
        raise GeometryError("fill: the point is not inside a closed outline")
    # One free pixel of margin around the mask's box: a component reaching the crop's edge
    # reaches either that margin (outside) or the image border; either way it is not enclosed.
    r0, r1 = max(0, box[0] - 1), min(h, box[1] + 1)
    c0, c1 = max(0, box[2] - 1), min(w, box[3] + 1)
    comp = flood_fill(~mask[r0:r1, c0:c1], row - r0, col - c0)
    if comp[0].any() or comp[-1].any() or comp[:, 0].any() or comp[:, -1].any():
        raise GeometryError("fill: the outline around this point is not closed")
    return (r0, r1, c0, c1), comp


def apply_op(mask: np.ndarray, op: dict[str, Any]) -> Box | None:
    """Apply one brush op to ``mask`` in place; returns the box that may have changed."""
    if op["op"] == "fill":
        box, hole = enclosed_area(mask, op["x"], op["y"])
        r0, r1, c0, c1 = box
        mask[r0:r1, c0:c1] |= hole
        return box
    return paint_stroke(mask, op["points"], op["radius"], value=op["op"] == "paint")
