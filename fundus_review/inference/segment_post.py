"""From the segmenter's probability maps to editable regions: masks -> polygon / ellipse.

``disc_cup_masks`` thresholds the two maps, keeps the largest connected component of the disc
(holes filled), and keeps the cup only inside that disc (its largest component there).
``outline_polygon`` and ``fit_ellipse`` turn a mask into the geometry dicts of
``core.geometry`` (``Polygon``, ``Ellipse``), on the same pixel convention (pixel (i, j) covers
[j, j+1) x [i, i+1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fundus_review.core.geometry import Ellipse, Polygon, contour_outline, rasterize

#: polygon simplification: the outline may move by at most this fraction of the region's
#: equivalent diameter (and at least half a pixel).
SIMPLIFY_FRACTION = 0.01


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask, holes filled (all False if empty)."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return fill_holes(labels == biggest)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not touch the border filled."""
    inv = np.ascontiguousarray(~mask, dtype=np.uint8)
    n, labels = cv2.connectedComponents(inv, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = (labels > 0) & ~np.isin(labels, border)
    return mask | holes


def disc_cup_masks(
    disc_prob: np.ndarray, cup_prob: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """(disc, cup) bool masks: largest disc component; cup = largest component of cup ∩ disc."""
    disc = largest_component(disc_prob >= threshold)
    cup = largest_component((cup_prob >= threshold) & disc) if disc.any() else disc
    return disc, cup & disc


def _largest_contour(mask: np.ndarray) -> np.ndarray | None:
    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    if not contours:
        return None
    return max(contours, key=cv2.contourArea)


def outline_polygon(mask: np.ndarray, fraction: float = SIMPLIFY_FRACTION) -> dict[str, Any] | None:
    """Simplified outline of the mask's largest component as ``Polygon`` geometry, or None.

    OpenCV's contour runs through pixel indices (the centres of the border pixels); the points
    are moved outwards by half a pixel from the region's centroid so that the rasterised
    polygon covers the border pixels again (Dice against the mask stays close to 1).
    """
    contour = _largest_contour(mask)
    if contour is None or len(contour) < 3:
        return None
    diameter = 2.0 * math.sqrt(max(float(mask.sum()), 1.0) / math.pi)
    approx = cv2.approxPolyDP(contour, max(0.5, fraction * diameter), True)[:, 0, :]
    if len(approx) < 3:
        approx = contour[:, 0, :]
    return Polygon(tuple(map(tuple, contour_outline(approx)))).to_dict()


def fit_ellipse(mask: np.ndarray) -> dict[str, Any] | None:
    """Ellipse with the mask's area, centroid and second moments, as ``Ellipse`` geometry."""
    ys, xs = np.nonzero(mask)
    if xs.size < 5:
        return None
    x, y = xs + 0.5, ys + 0.5
    cx, cy = float(x.mean()), float(y.mean())
    cov = np.cov(np.vstack([x - cx, y - cy])) + np.eye(2) / 12.0  # + pixel extent
    evals, evecs = np.linalg.eigh(cov)
    rx, ry = (2.0 * math.sqrt(max(float(e), 1e-6)) for e in evals[::-1])
    major = evecs[:, 1]
    angle = math.degrees(math.atan2(float(major[1]), float(major[0])))
    return Ellipse(cx, cy, rx, ry, angle).to_dict()


@dataclass(frozen=True)
class ProposedShape:
    """One proposed region: structure, geometry kind ("polygon" | "ellipse") and geometry."""

    structure: str
    kind: str
    geometry: dict[str, Any]

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        return rasterize(self.kind, self.geometry, shape)


def shapes_from_masks(
    disc: np.ndarray, cup: np.ndarray, kind: str = "polygon"
) -> list[ProposedShape]:
    """The disc and cup masks as editable shapes (an empty structure gives none)."""
    if kind not in ("polygon", "ellipse"):
        raise ValueError(f"proposal shape kind must be 'polygon' or 'ellipse', not {kind!r}")
    to_geometry = outline_polygon if kind == "polygon" else fit_ellipse
    shapes = []
    for structure, mask in (("optic_disc", disc), ("optic_cup", cup)):
        geometry = to_geometry(mask) if mask.any() else None
        if geometry is not None:
            shapes.append(ProposedShape(structure, kind, geometry))
    return shapes


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two bool masks; None when both are empty."""
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * int((a & b).sum()) / total
