"""Queries behind the region editor (``fundus_review.review``) and the annotate window.

The editor's commands compare a region's stored raster with the one they expect, to notice an
edit made by another app instance. The raster is the store's encoding of a mask: callers get it
only from ``mask_raster`` and turn it back into a mask only with ``raster_mask``, so the encoding
stays the store's business.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fundus_review.store.codec import decode_mask, encode_mask
from fundus_review.store.repo_images import ref_id
from fundus_review.store.schema import Annotation, Image, ImageReview


def find_image(s: Session, image_id: int) -> Image | None:
    """The image row, or None when it is not in the database."""
    return s.get(Image, image_id)


def find_annotation(s: Session, region_id: int) -> Annotation | None:
    """The region row (deleted or not), or None when it is not in the database."""
    return s.get(Annotation, region_id)


def review_state(s: Session, image: object, reviewer: object) -> tuple[str, str]:
    """(status, comment) of a reviewer's review of an image; ("unreviewed", "") when none."""
    row = s.scalar(
        select(ImageReview).where(
            ImageReview.image_id == ref_id(image), ImageReview.reviewer_id == ref_id(reviewer)
        )
    )
    return (row.status, row.comment) if row is not None else ("unreviewed", "")


def annotations_fingerprint(s: Session, image: object) -> tuple[Any, ...]:
    """(count, last update, last delete) of an image's regions, deleted ones included: one tiny
    query whose answer changes with any create, edit, delete or restore by any process."""
    row = s.execute(
        select(func.count(Annotation.id), func.max(Annotation.updated_at),
               func.max(Annotation.deleted_at)).where(Annotation.image_id == ref_id(image))
    ).one()  # fmt: skip
    return tuple(row)


def mask_raster(mask: np.ndarray) -> bytes:
    """The stored form of a bool (H, W) mask, as it appears in a region's ``raster``."""
    return encode_mask(np.asarray(mask, dtype=bool))


def raster_mask(raster: bytes, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The bool (H, W) mask of a stored raster; ValueError when corrupt or not expected_shape."""
    return decode_mask(raster, expected_shape)
