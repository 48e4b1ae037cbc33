"""Queries behind import and export (``fundus_review.exchange``): masks, COCO, labelme, verdicts.

Filters arrive resolved (dataset and reviewer ids; None = all): turning names into ids, with the
user-facing errors that go with it, is the exchange's job.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from fundus_review.store.codec import encode_mask
from fundus_review.store.repo_images import ref_id
from fundus_review.store.schema import (
    Annotation,
    CamRun,
    Dataset,
    Heatmap,
    Image,
    ImageReview,
    ModelRecord,
    Reviewer,
    Verdict,
    expert_region,
)

# One stored verdict with what it is about, as ``verdicts_for_export`` returns it.
VerdictRecord = tuple[Verdict, Heatmap, CamRun, ModelRecord, Image, Dataset, Reviewer]


def annotations_for_export(
    s: Session,
    dataset_ids: Collection[int] | None = None,
    reviewer_ids: Collection[int] | None = None,
    structures: Collection[str] | None = None,
) -> list[Annotation]:
    """Live expert regions (no unreviewed proposal) matching the filters, ordered by image,
    structure, reviewer, id."""
    q = (
        select(Annotation)
        .join(Image, Annotation.image_id == Image.id)
        .where(Annotation.deleted_at.is_(None), expert_region())
        .order_by(
            Image.dataset_id,
            Image.rel_path,
            Annotation.structure,
            Annotation.reviewer_id,
            Annotation.id,
        )  # fmt: skip
    )
    if dataset_ids is not None:
        q = q.where(Image.dataset_id.in_(dataset_ids))
    if reviewer_ids is not None:
        q = q.where(Annotation.reviewer_id.in_(reviewer_ids))
    if structures:
        q = q.where(Annotation.structure.in_(list(structures)))
    return list(s.scalars(q))


def images_for_export(s: Session, dataset_ids: Collection[int] | None = None) -> list[Image]:
    """The images of the datasets (all when None), ordered by dataset and path."""
    q = select(Image).join(Dataset).order_by(Image.dataset_id, Image.rel_path)
    if dataset_ids is not None:
        q = q.where(Image.dataset_id.in_(dataset_ids))
    return list(s.scalars(q))


def annotations_with_source_prefix(
    s: Session, image: object, reviewer: object, prefix: str
) -> list[Annotation]:
    """A reviewer's regions of an image (deleted ones too) whose source starts with ``prefix``
    (e.g. every shape imported from one labelme file)."""
    return list(
        s.scalars(
            select(Annotation).where(
                Annotation.image_id == ref_id(image),
                Annotation.reviewer_id == ref_id(reviewer),
                Annotation.source.startswith(prefix, autoescape=True),
            )
        )
    )


def same_raster(annotation: Annotation, mask: np.ndarray) -> bool:
    """True when the region's stored raster is exactly ``mask`` (bool (H, W))."""
    return annotation.raster == encode_mask(mask)


def verdicts_for_export(
    s: Session,
    dataset_ids: Collection[int] | None = None,
    reviewer_ids: Collection[int] | None = None,
) -> list[VerdictRecord]:
    """Every stored verdict matching the filters with its heatmap, CAM run, model, image,
    dataset and reviewer, ordered by dataset, image, model, method, run, reviewer."""
    q = (
        select(Verdict, Heatmap, CamRun, ModelRecord, Image, Dataset, Reviewer)
        .join(Heatmap, Verdict.heatmap_id == Heatmap.id)
        .join(CamRun, Heatmap.cam_run_id == CamRun.id)
        .join(ModelRecord, CamRun.model_id == ModelRecord.id)
        .join(Image, Heatmap.image_id == Image.id)
        .join(Dataset, Image.dataset_id == Dataset.id)
        .join(Reviewer, Verdict.reviewer_id == Reviewer.id)
        .order_by(
            Dataset.name,
            Image.rel_path,
            ModelRecord.name,
            CamRun.method,
            CamRun.id,
            Reviewer.name,
        )  # fmt: skip
    )
    if dataset_ids is not None:
        q = q.where(Image.dataset_id.in_(dataset_ids))
    if reviewer_ids is not None:
        q = q.where(Verdict.reviewer_id.in_(reviewer_ids))
    return [tuple(row) for row in s.execute(q)]  # type: ignore[misc]


def review_statuses(s: Session) -> dict[tuple[int, int], str]:
    """{(image id, reviewer id): status} of every stored review (absent: "unreviewed")."""
    return {(r.image_id, r.reviewer_id): r.status for r in s.scalars(select(ImageReview))}
