"""Expert regions, review status and verdicts. Call these through ``fundus_review.store.repo``.

Every change to a reviewer's regions of a structure deletes the scores computed from them
(``delete_scores``), so a report can never show a score of a mask that no longer exists, and
re-measures the cached cup-to-disc ratio of a disc or cup (``repo_cdr.refresh_cdr``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fundus_review.core.cdr import cup_disc_ratio
from fundus_review.core.vocabulary import ANNOTATION_KINDS, REVIEW_STATUSES, VERDICTS
from fundus_review.errors import StoreError
from fundus_review.store.codec import decode_mask, encode_mask
from fundus_review.store.repo_images import _insert_or_fetch, get_by_id, image_shape, ref_id
from fundus_review.store.repo_scores import delete_scores
from fundus_review.store.schema import (
    Annotation,
    CupDiscRatioCache,
    Image,
    ImageReview,
    Reviewer,
    Verdict,
    expert_region,
    utcnow,
)

# (kind, geometry, (H, W)) -> bool mask; supplied by callers that can rasterise shapes
# (core.geometry), so that the store itself stays free of drawing code.
Rasterizer = Callable[[str, dict[str, Any], tuple[int, int]], np.ndarray]


def _encoded(img: Image, mask: np.ndarray | None) -> bytes | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != image_shape(img):
        raise ValueError(
            f"{img.rel_path}: mask is {m.shape[0]}x{m.shape[1]} but the image is "
            f"{img.height}x{img.width}"
        )
    return encode_mask(m.astype(bool, copy=False))


def add_annotation(
    s: Session,
    image: object,
    reviewer: object,
    structure: str,
    kind: str,
    geometry: dict[str, Any] | None = None,
    mask: np.ndarray | None = None,
    source: str = "drawn",
) -> Annotation:
    """Store one region. Drawn shapes should pass both their geometry (to stay editable) and the
    mask they rasterise to (what the metrics use, so scores never depend on re-rasterisation)."""
    if kind not in ANNOTATION_KINDS:
        raise ValueError(f"annotation kind must be one of {ANNOTATION_KINDS}, got {kind!r}")
    if geometry is None and mask is None:
        raise ValueError("an annotation needs a geometry, a mask, or both")
    if not structure.strip():
        raise ValueError("an annotation needs a structure name")
    img = get_by_id(s, Image, image)
    ann = Annotation(
        image_id=img.id,
        reviewer_id=ref_id(reviewer),
        structure=structure,
        kind=kind,
        geometry=geometry,
        raster=_encoded(img, mask),
        source=source,
    )
    s.add(ann)
    s.flush()
    _regions_changed(s, img.id, structure, ann.reviewer_id)
    return ann


_KEEP: Any = object()


def _regions_changed(s: Session, image_id: int, structure: str, reviewer_id: int) -> None:
    """A reviewer's regions of a structure changed: drop their scores, and re-measure the
    cup-to-disc ratio when the structure is the disc or the cup (same transaction)."""
    delete_scores(s, image_id, structure, reviewer_id)
    if structure in CDR_STRUCTURES:
        s.flush()
        refresh_cdr(s, image_id, reviewer_id)


def update_annotation(
    s: Session, annotation: object, geometry: Any = _KEEP, mask: Any = _KEEP
) -> Annotation:
    """Replace the geometry and/or mask of a region (an edit, or the undo of one)."""
    ann = get_by_id(s, Annotation, annotation)
    if geometry is not _KEEP:
        ann.geometry = geometry
    if mask is not _KEEP:
        ann.raster = _encoded(get_by_id(s, Image, ann.image_id), mask)
    if ann.geometry is None and ann.raster is None:
        raise ValueError(f"annotation {ann.id} would have neither geometry nor mask")
    ann.updated_at = utcnow()
    _regions_changed(s, ann.image_id, ann.structure, ann.reviewer_id)
    return ann


def replace_imported_mask(
    s: Session,
    image: object,
    reviewer: object,
    structure: str,
    mask: np.ndarray,
    source: str,
) -> tuple[Annotation, bool]:
    """Import a mask idempotently; returns (annotation, whether its mask changed).

    A reviewer has at most one imported mask per (image, structure) -- the
    ``masks/<structure>/<stem>.png`` layout holds one file for each -- so the import replaces any
    earlier import of that key, whatever folder it came from (``source`` must start with
    "import:" and is updated to the latest origin). Importing the same pixels again changes
    nothing; new pixels update the row in place. An imported mask that the user deleted stays
    deleted when the same pixels are imported again (the deletion was a decision about exactly
    that mask); a file with different pixels brings it back with the new mask. Drawn regions
    are never touched.
    """
    if not source.startswith("import:"):
        raise ValueError(f"an imported mask's source must start with 'import:', got {source!r}")
    img = get_by_id(s, Image, image)
    rev_id = ref_id(reviewer)
    raster = _encoded(img, mask)
    rows = list(
        s.scalars(
            select(Annotation)
            .where(
                Annotation.image_id == img.id,
                Annotation.reviewer_id == rev_id,
                Annotation.structure == structure,
                Annotation.source.startswith("import:", autoescape=True),
            )
            .order_by(Annotation.deleted_at.is_not(None), Annotation.id.desc())
        )
    )
    if not rows:
        return add_annotation(s, img.id, rev_id, structure, "mask", mask=mask, source=source), True
    ann, changed = rows[0], False
    if ann.raster != raster or ann.kind != "mask" or ann.geometry is not None:
        ann.raster, ann.kind, ann.geometry, ann.deleted_at = raster, "mask", None, None
        changed = True
    ann.source = source
    for extra in rows[1:]:  # older imports of the same key (e.g. from before a folder move)
        if extra.deleted_at is None:
            extra.deleted_at, changed = utcnow(), True
    if changed:
        ann.updated_at = utcnow()
        _regions_changed(s, img.id, structure, rev_id)
    return ann, changed


def list_annotations(
    s: Session,
    image: object,
    structure: str | None = None,
    reviewer: object | None = None,
    include_deleted: bool = False,
    include_proposed: bool = False,
) -> list[Annotation]:
    """Regions of one image, by id. Unreviewed proposals (``source`` "proposed:...") are not
    expert regions and are left out unless ``include_proposed`` (the editor shows them)."""
    q = select(Annotation).where(Annotation.image_id == ref_id(image)).order_by(Annotation.id)
    if not include_proposed:
        q = q.where(expert_region())
    if structure is not None:
        q = q.where(Annotation.structure == structure)
    if reviewer is not None:
        q = q.where(Annotation.reviewer_id == ref_id(reviewer))
    if not include_deleted:
        q = q.where(Annotation.deleted_at.is_(None))
    return list(s.scalars(q))


def list_structures(s: Session, image: object | None = None) -> list[str]:
    """Structure names that have live regions (of one image, or anywhere)."""
    q = select(Annotation.structure).where(Annotation.deleted_at.is_(None), expert_region())
    q = q.distinct()
    if image is not None:
        q = q.where(Annotation.image_id == ref_id(image))
    return sorted(s.scalars(q))


def soft_delete_annotation(s: Session, annotation: object) -> Annotation:
    ann = get_by_id(s, Annotation, annotation)
    if ann.deleted_at is None:
        ann.deleted_at = utcnow()
        _regions_changed(s, ann.image_id, ann.structure, ann.reviewer_id)
    return ann


def restore_annotation(s: Session, annotation: object) -> Annotation:
    ann = get_by_id(s, Annotation, annotation)
    if ann.deleted_at is not None:
        ann.deleted_at = None
        ann.updated_at = utcnow()
        _regions_changed(s, ann.image_id, ann.structure, ann.reviewer_id)
    return ann


def set_annotation_source(s: Session, annotation: object, source: str) -> Annotation:
    """Change where a region counts as coming from (a proposal accepted or edited, or the undo
    of that); the expert mask changes with it, so its structure's scores are deleted and a disc or
    cup's cached cup-to-disc ratio is re-measured (an accepted proposal now counts)."""
    if not source.strip():
        raise ValueError("a region's source cannot be empty")
    ann = get_by_id(s, Annotation, annotation)
    if ann.source != source:
        ann.source = source
        ann.updated_at = utcnow()
        _regions_changed(s, ann.image_id, ann.structure, ann.reviewer_id)
    return ann


def region_sources(
    s: Session, dataset_ids: list[int] | None = None
) -> list[tuple[str, str, str, int]]:
    """(structure, reviewer name, source, count) of the live regions, unreviewed proposals
    included (the report counts them as excluded), of the given datasets (all when None)."""
    q = (
        select(Annotation.structure, Reviewer.name, Annotation.source, func.count(Annotation.id))
        .join(Reviewer, Annotation.reviewer_id == Reviewer.id)
        .join(Image, Annotation.image_id == Image.id)
        .where(Annotation.deleted_at.is_(None))
        .group_by(Annotation.structure, Reviewer.name, Annotation.source)
    )
    if dataset_ids is not None:
        q = q.where(Image.dataset_id.in_(list(dataset_ids)))
    return [(st, name, src, int(n)) for st, name, src, n in s.execute(q)]


def annotation_mask(annotation: Annotation, rasterize: Rasterizer | None = None) -> np.ndarray:
    """The bool mask (H, W) of a region: its stored raster, else ``rasterize`` of its geometry.

    Works on a detached annotation when it has a raster; rasterising needs the image size, so the
    annotation's ``image`` must be loaded (or the annotation attached to a session).
    """
    if annotation.raster is not None:
        try:
            return decode_mask(annotation.raster)
        except ValueError as exc:
            raise StoreError(f"annotation {annotation.id} has an unreadable mask: {exc}") from None
    if rasterize is None or annotation.geometry is None:
        raise StoreError(
            f"annotation {annotation.id} ({annotation.kind}) has no stored mask; "
            "pass a rasterize function for its geometry"
        )
    shape = image_shape(annotation.image)
    mask = np.asarray(rasterize(annotation.kind, annotation.geometry, shape), dtype=bool)
    if mask.shape != shape:
        raise StoreError(
            f"annotation {annotation.id}: rasterised to {mask.shape}, expected {shape}"
        )
    return mask


def structure_mask(
    s: Session,
    image: object,
    structure: str,
    reviewer: object,
    rasterize: Rasterizer | None = None,
) -> np.ndarray | None:
    """Union of a reviewer's live regions of one structure on one image; None when there are none.

    Unreviewed proposals are not part of it (``list_annotations``).

    This is the expert mask the metrics compare heatmaps with (several hemorrhages = one mask).
    """
    anns = list_annotations(s, image, structure=structure, reviewer=reviewer)
    if not anns:
        return None
    img = get_by_id(s, Image, image)
    out = np.zeros(image_shape(img), dtype=bool)
    for ann in anns:
        m = annotation_mask(ann, rasterize)
        if m.shape != out.shape:
            raise StoreError(
                f"{img.rel_path}: annotation {ann.id} is {m.shape[0]}x{m.shape[1]} but the image "
                f"is {img.height}x{img.width} (was the image file replaced?)"
            )
        out |= m
    return out


def set_review_status(
    s: Session, image: object, reviewer: object, status: str, comment: str | None = None
) -> ImageReview:
    if status not in REVIEW_STATUSES:
        raise ValueError(f"review status must be one of {REVIEW_STATUSES}, got {status!r}")
    img_id, rev_id = ref_id(image), ref_id(reviewer)
    query = select(ImageReview).where(
        ImageReview.image_id == img_id, ImageReview.reviewer_id == rev_id
    )
    row = s.scalar(query)
    if row is None:
        new = ImageReview(image_id=img_id, reviewer_id=rev_id, status=status, comment=comment or "")
        return _insert_or_fetch(s, new, query)
    row.status = status
    if comment is not None:
        row.comment = comment
    return row


def get_review_status(s: Session, image: object, reviewer: object) -> str:
    status = s.scalar(
        select(ImageReview.status).where(
            ImageReview.image_id == ref_id(image), ImageReview.reviewer_id == ref_id(reviewer)
        )
    )
    return status or "unreviewed"


def set_verdict(
    s: Session, heatmap: object, reviewer: object, verdict: str | None, comment: str = ""
) -> Verdict | None:
    """Record (or with ``verdict=None`` withdraw) a reviewer's yes/partly/no on a heatmap."""
    hm_id, rev_id = ref_id(heatmap), ref_id(reviewer)
    query = select(Verdict).where(Verdict.heatmap_id == hm_id, Verdict.reviewer_id == rev_id)
    row = s.scalar(query)
    if verdict is None:
        if row is not None:
            s.delete(row)
        return None
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if row is None:
        new = Verdict(heatmap_id=hm_id, reviewer_id=rev_id, verdict=verdict, comment=comment)
        return _insert_or_fetch(s, new, query)
    row.verdict, row.comment = verdict, comment
    return row


def list_verdicts(
    s: Session, heatmap: object | None = None, reviewer: object | None = None
) -> list[Verdict]:
    q = select(Verdict).order_by(Verdict.heatmap_id, Verdict.reviewer_id)
    if heatmap is not None:
        q = q.where(Verdict.heatmap_id == ref_id(heatmap))
    if reviewer is not None:
        q = q.where(Verdict.reviewer_id == ref_id(reviewer))
    return list(s.scalars(q))


# -- the cached cup-to-disc ratio (store.repo_cdr reads it) ------------------------------------

CDR_STRUCTURES = ("optic_disc", "optic_cup")


def refresh_cdr(
    s: Session, image: object, reviewer: object, rasterize: Rasterizer | None = None
) -> CupDiscRatioCache | None:
    """Recompute (or drop) the cached ratios of one reviewer on one image; returns the row, or
    None when the reviewer lacks a disc or a cup there (or one has no raster and no
    ``rasterize`` was given: ``repo_cdr.stale_pairs`` then lists the pair)."""
    image_id, reviewer_id = ref_id(image), ref_id(reviewer)
    row = s.scalar(
        select(CupDiscRatioCache).where(
            CupDiscRatioCache.image_id == image_id, CupDiscRatioCache.reviewer_id == reviewer_id
        )
    )
    disc_name, cup_name = CDR_STRUCTURES
    try:
        disc = structure_mask(s, image_id, disc_name, reviewer_id, rasterize)
        cup = (
            None if disc is None else structure_mask(s, image_id, cup_name, reviewer_id, rasterize)
        )
    except StoreError:
        if rasterize is not None:
            raise
        disc = cup = None  # a shape without raster: measured later, with a rasteriser
    if disc is None or cup is None:
        if row is not None:
            s.delete(row)
            s.flush()
        return None
    ratio = cup_disc_ratio(disc, cup)
    if row is None:
        row = CupDiscRatioCache(image_id=image_id, reviewer_id=reviewer_id)
        s.add(row)
    row.vertical, row.horizontal, row.area = ratio.vertical, ratio.horizontal, ratio.area
    row.updated_at = utcnow()
    s.flush()
    return row
