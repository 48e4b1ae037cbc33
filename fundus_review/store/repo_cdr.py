"""Cached cup-to-disc ratios (``schema.CupDiscRatioCache``), written with every disc/cup edit.

``refresh_cdr`` (in ``repo_annotations``, which calls it whenever such a region is added,
edited, deleted or restored) recomputes one (image, reviewer) from the union of the reviewer's
live ``optic_disc`` and ``optic_cup`` regions with ``core.cdr.cup_disc_ratio`` (the definitions
of the report and the CSV export), inside the caller's transaction. A region without a stored raster
(geometry only) cannot be measured here (the store has no drawing code): its pair is left out
and ``stale_pairs`` names it, for ``app.cdr.refresh_cdr_cache`` to compute with a rasteriser.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fundus_review.store.repo_annotations import CDR_STRUCTURES, refresh_cdr
from fundus_review.store.schema import (
    Annotation,
    CupDiscRatioCache,
    Image,
    Reviewer,
    expert_region,
)

__all__ = ["CDR_STRUCTURES", "cached_ratios", "refresh_cdr", "stale_pairs"]


def stale_pairs(s: Session, dataset_id: int | None = None) -> list[tuple[int, int]]:
    """(image id, reviewer id) with live disc and cup regions but no cached row, by image."""
    q = (
        select(Annotation.image_id, Annotation.reviewer_id)
        .where(
            Annotation.deleted_at.is_(None),
            Annotation.structure.in_(CDR_STRUCTURES),
            expert_region(),  # an unreviewed proposal is never measured
        )
        .group_by(Annotation.image_id, Annotation.reviewer_id)
        .having(func.count(Annotation.structure.distinct()) == 2)
        .order_by(Annotation.image_id, Annotation.reviewer_id)
    )
    if dataset_id is not None:
        q = q.join(Image, Image.id == Annotation.image_id).where(Image.dataset_id == dataset_id)
    cached = select(CupDiscRatioCache.image_id, CupDiscRatioCache.reviewer_id)
    have = {(i, r) for i, r in s.execute(cached)}
    return [(i, r) for i, r in s.execute(q) if (i, r) not in have]


def cached_ratios(
    s: Session, dataset_id: int | None = None, image_id: int | None = None
) -> list[tuple[int, str, float | None, float | None, float | None]]:
    """(image id, reviewer name, vertical, horizontal, area) cached, by image and reviewer."""
    q = (
        select(
            CupDiscRatioCache.image_id,
            Reviewer.name,
            CupDiscRatioCache.vertical,
            CupDiscRatioCache.horizontal,
            CupDiscRatioCache.area,
        )
        .join(Reviewer, Reviewer.id == CupDiscRatioCache.reviewer_id)
        .order_by(CupDiscRatioCache.image_id, Reviewer.name)
    )
    if dataset_id is not None:
        q = q.join(Image, Image.id == CupDiscRatioCache.image_id).where(
            Image.dataset_id == dataset_id
        )
    if image_id is not None:
        q = q.where(CupDiscRatioCache.image_id == image_id)
    return [(i, name, v, h, a) for i, name, v, h, a in s.execute(q)]
