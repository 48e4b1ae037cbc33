"""Box to region: GrabCut separates the object in a box the reviewer dragged from its
surroundings, and the result becomes an ordinary polygon region (Qt-free).

GrabCut runs on a crop around the box (the box plus ``margin`` of its size on each side, which
gives it background to learn from), downscaled to at most ``MAX_SIDE`` (256) pixels on its long side,
so a box on a 4288 x 2848 photo costs what a box on a small one does. Of what it marks as
foreground, the connected part with the most pixels inside the box is kept, holes filled, and
its outline (through boundary pixel centres, simplified within ``tolerance`` px) returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fundus_review.core.geometry import Polygon, contour_outline
from fundus_review.errors import FundusReviewError

MAX_SIDE = 256  # GrabCut's crop is downscaled to this long side at most (speed: ~1 s here)
MIN_BOX_PX = 4  # a box narrower than this (original pixels) is a click, not a box


class GrabCutError(FundusReviewError):
    """The box is unusable or GrabCut found nothing in it."""


@dataclass(frozen=True)
class BoxResult:
    polygon: Polygon
    mask: np.ndarray  # (H, W) bool on the original grid: what GrabCut kept (before simplifying)


def box_region(
    rgb: np.ndarray,
    box: tuple[float, float, float, float],
    *,
    margin: float = 0.25,
    iterations: int = 5,
    tolerance: float = 0.75,
    max_side: int = MAX_SIDE,
) -> BoxResult:
    """GrabCut inside ``box`` = (x0, y0, x1, y1) (image coordinates, any corner order)."""
    import cv2

    h, w = rgb.shape[:2]
    x0, x1 = sorted((box[0], box[2]))
    y0, y1 = sorted((box[1], box[3]))
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(w), x1), min(float(h), y1)
    if x1 - x0 < MIN_BOX_PX or y1 - y0 < MIN_BOX_PX:
        raise GrabCutError(f"box: drag a box of at least {MIN_BOX_PX} x {MIN_BOX_PX} pixels")
    mx = max(8.0, margin * (x1 - x0))
    my = max(8.0, margin * (y1 - y0))
    c0, r0 = max(0, math.floor(x0 - mx)), max(0, math.floor(y0 - my))
    c1, r1 = min(w, math.ceil(x1 + mx)), min(h, math.ceil(y1 + my))
    crop = np.ascontiguousarray(rgb[r0:r1, c0:c1])
    scale = min(1.0, max_side / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        work = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    else:
        work = crop
    # The box on the work grid; GrabCut needs some background around it (the margin).
    bx0 = math.floor((x0 - c0) * scale)
    by0 = math.floor((y0 - r0) * scale)
    bx1 = min(work.shape[1], math.ceil((x1 - c0) * scale))
    by1 = min(work.shape[0], math.ceil((y1 - r0) * scale))
    if bx0 == 0 and by0 == 0 and bx1 == work.shape[1] and by1 == work.shape[0]:
        raise GrabCutError("box: it covers the whole photo; leave some background around it")
    gc = np.zeros(work.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(work, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, gc, (bx0, by0, bx1 - bx0, by1 - by0), bgd, fgd, iterations,
                cv2.GC_INIT_WITH_RECT)  # fmt: skip
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1.0:
        fg = cv2.resize(fg, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST)
    part = _main_part(fg, (math.floor(x0) - c0, math.floor(y0) - r0,
                           math.ceil(x1) - c0, math.ceil(y1) - r0))  # fmt: skip
    if part is None:
        raise GrabCutError("box: GrabCut found no object in the box; draw it by hand")
    contours, _ = cv2.findContours(part.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)  # fmt: skip
    outline = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
    simple = cv2.approxPolyDP(outline.reshape(-1, 1, 2), float(tolerance), closed=True)
    pts = simple.reshape(-1, 2).astype(np.float64)
    if len(pts) < 3:
        raise GrabCutError("box: the object GrabCut found is too small for an outline")
    pts = contour_outline(pts) + np.array([c0, r0])  # covers the border pixels it traced
    mask = np.zeros((h, w), bool)
    mask[r0:r1, c0:c1] = part
    return BoxResult(Polygon(tuple((round(x, 3), round(y, 3)) for x, y in pts)), mask)


def _main_part(fg: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """The connected foreground part with most pixels inside ``box``, holes filled."""
    import cv2

    n, labels = cv2.connectedComponents(fg, connectivity=8)
    if n <= 1:
        return None
    bx0, by0, bx1, by1 = box
    inside = labels[max(by0, 0) : by1, max(bx0, 0) : bx1]
    counts = np.bincount(inside.ravel(), minlength=n)
    counts[0] = 0
    best = int(np.argmax(counts))
    if counts[best] == 0:
        return None
    part = (labels == best).astype(np.uint8)
    contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(part)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)
