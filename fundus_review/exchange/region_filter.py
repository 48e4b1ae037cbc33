"""Which regions an export covers: live regions filtered by dataset, reviewer and structure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fundus_review.app.scoring import resolve_dataset_ids
from fundus_review.errors import FundusReviewError
from fundus_review.store import Session, repo, repo_exchange

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
    known = {r.name: r.id for r in repo.list_reviewers(s)}
    out: dict[int, str] = {}
    for raw in names:
        name = " ".join(raw.split())
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise FundusReviewError(f"no reviewer {raw!r} in the database; known: {listed}")
        out[known[name]] = name
    return out


def live_annotations(s: Session, sel: Selection) -> list[Any]:
    """Live regions (store rows) matching the selection, ordered by image, structure, reviewer,
    id; FundusReviewError when a dataset or reviewer named in it is not in the database."""
    ds_ids = resolve_dataset_ids(s, sel.dataset)
    revs = reviewer_ids(s, sel.reviewers)
    return repo_exchange.annotations_for_export(
        s, ds_ids, None if revs is None else list(revs), sel.structures
    )


def selected_images(s: Session, sel: Selection) -> list[Any]:
    """The images (store rows) of the selected datasets, ordered by dataset and path."""
    return repo_exchange.images_for_export(s, resolve_dataset_ids(s, sel.dataset))


_UNSAFE = re.compile(r"[^\w .,()+-]")


def folder_name(text: str) -> str:
    """A reviewer name as a portable folder name ('Dr. Rao' stays, 'a/b' -> 'a_b')."""
    name = _UNSAFE.sub("_", " ".join(text.split())).strip(" .")
    return name or "_"
