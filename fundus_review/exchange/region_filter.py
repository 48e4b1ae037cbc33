"""Which regions an export covers: live regions filtered by dataset, reviewer and structure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fundus_review.app.scoring import resolve_dataset_ids
from fundus_review.errors import FundusReviewError
from fundus_review.store.schema import Annotation, Dataset, Image, Reviewer

Ref = int | str


@dataclass(frozen=True)
class Selection:
    """Export filters; None = everything."""

    dataset: Ref | Sequence[Ref] | None = None
    reviewers: Sequence[str] | None = None
    structures: Sequence[str] | None = None


def reviewer_ids(s: Session, names: Sequence[str] | None) -> dict[int, str] | None:
    """{id: name} of the named reviewers; FundusReviewError listing the known ones."""
    if names is None:
        return None
    known = {r.name: r.id for r in s.scalars(select(Reviewer))}
    out: dict[int, str] = {}
    for raw in names:
        name = " ".join(raw.split())
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise FundusReviewError(f"no reviewer {raw!r} in the database; known: {listed}")
        out[known[name]] = name
    return out


def live_annotations(s: Session, sel: Selection) -> list[Annotation]:
    """Live regions matching the selection, ordered by image, structure, reviewer, id."""
    q = (
        select(Annotation)
        .join(Image, Annotation.image_id == Image.id)
        .where(Annotation.deleted_at.is_(None))
        .order_by(
            Image.dataset_id,
            Image.rel_path,
            Annotation.structure,
            Annotation.reviewer_id,
            Annotation.id,
        )  # fmt: skip
    )
    ds_ids = resolve_dataset_ids(s, sel.dataset)
    if ds_ids is not None:
        q = q.where(Image.dataset_id.in_(ds_ids))
    revs = reviewer_ids(s, sel.reviewers)
    if revs is not None:
        q = q.where(Annotation.reviewer_id.in_(revs))
    if sel.structures:
        q = q.where(Annotation.structure.in_(list(sel.structures)))
    return list(s.scalars(q))


def selected_images(s: Session, sel: Selection) -> list[Image]:
    q = select(Image).join(Dataset).order_by(Image.dataset_id, Image.rel_path)
    ds_ids = resolve_dataset_ids(s, sel.dataset)
    if ds_ids is not None:
        q = q.where(Image.dataset_id.in_(ds_ids))
    return list(s.scalars(q))


_UNSAFE = re.compile(r"[^\w .,()+-]")


def folder_name(text: str) -> str:
    """A reviewer name as a portable folder name ('Dr. Rao' stays, 'a/b' -> 'a_b')."""
    name = _UNSAFE.sub("_", " ".join(text.split())).strip(" .")
    return name or "_"
