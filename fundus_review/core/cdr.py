"""Cup-to-disc ratio (CDR) from boolean optic disc and optic cup masks.

Definitions (masks are bool (H, W), True inside the structure):

- vertical CDR = vertical extent of the cup / vertical extent of the disc, where the vertical
  extent is the number of rows from the first to the last row holding a True pixel (inclusive,
  so a one-row structure has extent 1). This is the clinical "vertical cup-to-disc ratio".
- horizontal CDR = the same with columns.
- area CDR = cup pixel count / disc pixel count.

Every ratio is None when the disc mask is empty (no disc: no ratio) and 0.0 when the cup is
empty. The cup is measured as drawn even when part of it lies outside the disc (a sloppy
outline or a misplaced region): it is not clipped to the disc, so a ratio can exceed 1, which
shows the inconsistency instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CupDiscRatio", "cup_disc_ratio", "extent"]


@dataclass(frozen=True)
class CupDiscRatio:
    """The three ratios of one (disc, cup) pair; None where the disc is empty."""

    vertical: float | None
    horizontal: float | None
    area: float | None


def extent(mask: np.ndarray, axis: int) -> int:
    """Span of the True pixels along ``axis`` (0: rows, vertical; 1: columns), 0 when empty.

    span = last index - first index + 1 over the indices holding any True pixel; gaps inside
    count (a cup drawn as two pieces spans from the top of one to the bottom of the other).
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    hit = np.flatnonzero(m.any(axis=1 - axis))
    return 0 if hit.size == 0 else int(hit[-1] - hit[0] + 1)


def cup_disc_ratio(disc: np.ndarray, cup: np.ndarray) -> CupDiscRatio:
    """Vertical, horizontal and area CDR of a disc and a cup mask of the same shape."""
    d, c = np.asarray(disc, dtype=bool), np.asarray(cup, dtype=bool)
    if d.shape != c.shape:
        raise ValueError(f"disc and cup masks differ in shape: {d.shape} vs {c.shape}")
    disc_area = int(d.sum())
    if disc_area == 0:
        return CupDiscRatio(None, None, None)
    return CupDiscRatio(
        vertical=extent(c, 0) / extent(d, 0),
        horizontal=extent(c, 1) / extent(d, 1),
        area=int(c.sum()) / disc_area,
    )
