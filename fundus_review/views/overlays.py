"""Everything the viewer draws, computed off the UI thread (numpy + OpenCV, no Qt).

`build_overlays` turns the database rows of one image into display-ready pieces: the heatmap on
the original grid, each expert region's outline as one NaN-separated polyline (a single curve item
per structure keeps pan/zoom cheap even for hundreds of lesions), the field-of-view outline, the
binarized-heatmap outline and the pointing-game point per structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from fundus_review.core.binarize import binarize
from fundus_review.core.cdr import cup_disc_ratio
from fundus_review.core.pointing import PointingResult, pointing_game, tolerance_from_transform
from fundus_review.core.transform import InputTransform
from fundus_review.store.db import Database
from fundus_review.views.pyramid import Pyramid
from fundus_review.views.queries import (
    ImageCdr,
    heatmap_target,
    load_heatmap,
    load_region_masks,
)
from fundus_review.views.scores import stored_scores

# Fixed colours for the usual structures; others get a stable colour from their name.
STRUCTURE_COLORS: dict[str, tuple[int, int, int]] = {
    "optic_disc": (255, 230, 0),
    "optic_cup": (0, 220, 255),
    "macula": (255, 255, 255),
    "fovea": (255, 255, 255),
    "hemorrhage": (255, 40, 40),
    "microaneurysm": (255, 0, 200),
    "hard_exudate": (255, 150, 0),
    "soft_exudate": (140, 255, 100),
    "other": (180, 180, 255),
}
_EXTRA = [(0, 255, 128), (255, 128, 128), (128, 128, 255), (255, 200, 128), (200, 255, 255)]


def structure_color(name: str) -> tuple[int, int, int]:
    if name in STRUCTURE_COLORS:
        return STRUCTURE_COLORS[name]
    return _EXTRA[sum(name.encode()) % len(_EXTRA)]


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """(N, 2) float x/y polyline of every outer and inner boundary, NaN rows between pieces.

    Vertices sit on pixel centres (x = col + 0.5), matching the image item's pixel grid.
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    pieces = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) + 0.5
        pts = np.vstack([pts, pts[:1]])  # close the loop
        pieces.append(pts)
        pieces.append(np.full((1, 2), np.nan))
    if not pieces:
        return np.zeros((0, 2))
    return np.vstack(pieces[:-1])


@dataclass
class Overlays:
    image_id: int
    run_id: int | None
    heatmap: np.ndarray | None = None  # float32 (H, W) in [0, 1], original grid
    target_index: int | None = None
    transform: InputTransform | None = None
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # structure -> outline
    region_masks: dict[str, np.ndarray] = field(default_factory=dict)  # structure -> union mask
    fov_outline: np.ndarray | None = None
    binary_outline: np.ndarray | None = None
    pointing: dict[str, PointingResult | None] = field(default_factory=dict)
    scores: list[tuple[str, str, str, float | None]] = field(default_factory=list)
    live_scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    missing: bool = False  # a heatmap was asked for but none is stored for this image
    heat_pyramid: Pyramid | None = None  # the heatmap's display levels, made off the UI thread
    # Each reviewer's cup-to-disc ratios (core.cdr) where they drew a disc and a cup, by name.
    cdr: list[ImageCdr] = field(default_factory=list)


def pick_overlays(
    db: Database,
    image_id: int,
    candidates: list[tuple[int, int | None]],
    shape: tuple[int, int],
    fov: np.ndarray | None = None,
    binarize_method: str = "otsu",
) -> Overlays:
    """Overlays with the first candidate run that has a fitting heatmap for this image.

    A candidate is (run id, required target class index or None). A heatmap of the "predicted"
    run explains class k exactly when the image's predicted class is k, so it stands in for a
    missing class-k run on those images instead of computing the same map again.
    """
    for run_id, need in candidates:
        target = heatmap_target(db, run_id, image_id)
        if target is not None and (need is None or target == need):
            return build_overlays(db, image_id, run_id, shape, fov, binarize_method)
    out = build_overlays(db, image_id, None, shape, fov, binarize_method)
    out.missing = True
    return out


def build_overlays(
    db: Database,
    image_id: int,
    run_id: int | None,
    shape: tuple[int, int],
    fov: np.ndarray | None = None,
    binarize_method: str = "otsu",
    threshold: float = 0.5,
) -> Overlays:
    out = Overlays(image_id, run_id)
    per_reviewer: dict[tuple[str, str], np.ndarray] = {}
    for region in load_region_masks(db, image_id):
        prev = out.region_masks.get(region.structure)
        out.region_masks[region.structure] = region.mask if prev is None else (prev | region.mask)
        if region.structure in ("optic_disc", "optic_cup"):
            key = (region.reviewer, region.structure)
            prev = per_reviewer.get(key)
            per_reviewer[key] = region.mask if prev is None else (prev | region.mask)
    out.cdr = _reviewer_cdr(per_reviewer)
    for structure, mask in out.region_masks.items():
        out.regions[structure] = mask_outline(mask)
    if fov is not None:
        out.fov_outline = mask_outline(fov)
    if run_id is None:
        return out
    found = load_heatmap(db, run_id, image_id)
    if found is None:
        return out
    hm_in, tdict, target = found
    transform = InputTransform.from_dict(tdict)
    if (transform.orig_h, transform.orig_w) != tuple(shape):
        out.problems.append(
            f"stored heatmap was made for a {transform.orig_w}x{transform.orig_h} image, the file is"
            f" now {shape[1]}x{shape[0]}: re-run the analysis"
        )
        return out
    try:
        hm = transform.heatmap_to_original(hm_in)
    except ValueError as exc:  # a NaN heatmap: the CAM failed; say so instead of showing it
        out.problems.append(f"stored heatmap cannot be shown: {exc}")
        return out
    out.heatmap, out.transform, out.target_index = hm, transform, target
    out.heat_pyramid = Pyramid(hm).prepare()
    tol = tolerance_from_transform(transform)
    try:
        out.binary_outline = mask_outline(
            binarize(hm, binarize_method, threshold=threshold, fov=fov)
        )
        for structure, mask in out.region_masks.items():
            out.pointing[structure] = pointing_game(hm, mask, tol, fov)
    except ValueError as exc:  # MetricInputError is a ValueError
        out.problems.append(str(exc))
    out.scores = stored_scores(db, run_id, image_id)
    if not out.scores and out.region_masks:
        # Nothing stored yet (scores are written by the scoring step): show them computed now.
        from fundus_review.core.metrics import score_heatmap

        for structure, mask in out.region_masks.items():
            try:
                out.live_scores[structure] = score_heatmap(hm, mask, fov, tolerance_px=tol)
            except ValueError as exc:
                out.problems.append(f"{structure}: {exc}")
    return out


def _reviewer_cdr(masks: dict[tuple[str, str], np.ndarray]) -> list[ImageCdr]:
    """Cup-to-disc ratios of each reviewer with both a disc and a cup (the union of each)."""
    out = []
    for reviewer in sorted({r for r, _s in masks}):
        disc, cup = masks.get((reviewer, "optic_disc")), masks.get((reviewer, "optic_cup"))
        if disc is not None and cup is not None:
            ratio = cup_disc_ratio(disc, cup)
            out.append(ImageCdr(reviewer, ratio.vertical, ratio.horizontal, ratio.area))
    return out
