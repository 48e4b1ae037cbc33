"""Cup-to-disc ratio per image and reviewer, and how the reviewers and the dataset agree on it.

A row exists for every image + reviewer with live regions of both ``optic_disc`` and
``optic_cup``; each structure's mask is the union of that reviewer's regions of it
(``repo.structure_mask``), and the ratios are ``core.cdr.cup_disc_ratio`` of the two masks.
``dataset_cdr`` is the dataset's own expert CDR for the image when its `labels.csv` has a column
for one (DRISHTI-GS1: ``cdr_expert_mean``); the store keeps only the class label, so that column
is read from the CSV at the dataset's root (``data.csv_columns``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from fundus_review.app.selection import Ref, resolve_dataset_ids
from fundus_review.core import geometry
from fundus_review.core.cdr import cup_disc_ratio
from fundus_review.core.stats import Summary, summarize
from fundus_review.data.csv_columns import numeric_column
from fundus_review.errors import FundusReviewError, StoreError
from fundus_review.store import repo, repo_cdr, repo_exchange
from fundus_review.store.db import Database

__all__ = [
    "CdrAgreement",
    "CdrRow",
    "DATASET_CDR_COLUMNS",
    "against_dataset",
    "between_reviewers",
    "cdr_rows",
    "refresh_cdr_cache",
]

DISC, CUP = repo_cdr.CDR_STRUCTURES
# Expert-CDR columns of public datasets' label files, tried in this order (first one present).
DATASET_CDR_COLUMNS = ("cdr_expert_mean", "cdr", "vcdr", "vertical_cdr", "cup_disc_ratio")


@dataclass(frozen=True)
class CdrRow:
    """One reviewer's cup-to-disc ratios on one image (``core.cdr`` definitions)."""

    dataset: str
    image: str
    image_id: int
    reviewer: str
    vertical: float | None
    horizontal: float | None
    area: float | None
    dataset_cdr: float | None  # the dataset's expert CDR column, when it has one

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CdrAgreement:
    """Mean absolute difference of vertical CDR between two sources over the images both have.

    ``a`` and ``b`` are reviewer names, or "dataset" for the dataset's expert CDR column.
    """

    a: str
    b: str
    mad: Summary  # mean of |vertical_a - vertical_b| with its bootstrap CI; n = images paired

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, **self.mad.to_dict()}


def cdr_rows(
    db: Database,
    dataset: Ref | Sequence[Ref] | None = None,
    reviewers: Sequence[str] | None = None,
) -> list[CdrRow]:
    """Every image + reviewer having both a disc and a cup, ordered by dataset, image, reviewer."""
    with db.session(read_only=True) as s:
        ds_ids = resolve_dataset_ids(s, dataset)
        rev_ids = None
        if reviewers is not None:
            known = {r.name: r.id for r in repo.list_reviewers(s)}
            wanted = [" ".join(r.split()) for r in reviewers]
            unknown = [w for w in wanted if w not in known]
            if unknown:
                listed = ", ".join(sorted(known)) or "none"
                raise FundusReviewError(
                    f"no reviewer {unknown[0]!r} in the database; known: {listed}"
                )
            rev_ids = [known[w] for w in wanted]
        anns = repo_exchange.annotations_for_export(s, ds_ids, rev_ids, (DISC, CUP))
        pairs: dict[tuple[int, int], set[str]] = {}
        info: dict[tuple[int, int], tuple[int, str, str, str]] = {}
        for ann in anns:
            key = (ann.image_id, ann.reviewer_id)
            pairs.setdefault(key, set()).add(ann.structure)
            img = ann.image
            info[key] = (img.dataset_id, img.dataset.name, img.rel_path, ann.reviewer.name)
        roots = {d.id: d.root for d in repo.list_datasets(s)}
        # Every image of the dataset, not only the measured ones: the CSV's names are matched
        # leniently (by stem too), and that is only unambiguous against the whole dataset.
        all_rels = {
            ds_id: [img.rel_path for img in repo.dataset_images(s, ds_id)]
            for ds_id in {v[0] for v in info.values()}
        }
        measured: list[tuple[int, CdrRow]] = []  # (dataset id, row without dataset_cdr yet)
        for key, structures in pairs.items():
            if structures != {DISC, CUP}:
                continue
            image_id, reviewer_id = key
            disc = repo.structure_mask(s, image_id, DISC, reviewer_id, geometry.rasterize)
            cup = repo.structure_mask(s, image_id, CUP, reviewer_id, geometry.rasterize)
            ratio = cup_disc_ratio(disc, cup)
            ds_id, ds_name, rel, rev_name = info[key]
            row = CdrRow(ds_name, rel, image_id, rev_name, ratio.vertical, ratio.horizontal,
                         ratio.area, None)  # fmt: skip
            measured.append((ds_id, row))
    # Outside the session: reading a CSV must not hold the database open.
    wanted = {ds_id for ds_id, _row in measured}
    expert = {ds_id: _dataset_cdr(roots[ds_id], all_rels[ds_id]) for ds_id in wanted}
    rows = [replace(row, dataset_cdr=expert[ds_id].get(row.image)) for ds_id, row in measured]
    return sorted(rows, key=lambda r: (r.dataset, r.image, r.reviewer))


def _dataset_cdr(root: str, rel_paths: list[str]) -> dict[str, float]:
    for column in DATASET_CDR_COLUMNS:
        values = numeric_column(root, rel_paths, column)
        if values:
            return values
    return {}


def _mad(a: Iterable[float], b: Iterable[float], seed: int) -> Summary:
    diff = np.abs(np.asarray(list(a), dtype=float) - np.asarray(list(b), dtype=float))
    return summarize(diff, seed=seed)


def between_reviewers(rows: Sequence[CdrRow], seed: int = 0) -> list[CdrAgreement]:
    """For each pair of reviewers, the MAD of vertical CDR over the images both measured."""
    by_rev: dict[str, dict[int, float]] = {}
    for r in rows:
        if r.vertical is not None:
            by_rev.setdefault(r.reviewer, {})[r.image_id] = r.vertical
    out = []
    for a, b in itertools.combinations(sorted(by_rev), 2):
        common = sorted(by_rev[a].keys() & by_rev[b].keys())
        if common:
            mad = _mad((by_rev[a][i] for i in common), (by_rev[b][i] for i in common), seed)
            out.append(CdrAgreement(a, b, mad))
    return out


def against_dataset(rows: Sequence[CdrRow], seed: int = 0) -> list[CdrAgreement]:
    """Per reviewer, the MAD of vertical CDR from the dataset's expert CDR (where both exist)."""
    by_rev: dict[str, list[CdrRow]] = {}
    for r in rows:
        if r.vertical is not None and r.dataset_cdr is not None:
            by_rev.setdefault(r.reviewer, []).append(r)
    return [
        CdrAgreement(
            rev, "dataset", _mad((r.vertical for r in rs), (r.dataset_cdr for r in rs), seed)
        )
        for rev, rs in sorted(by_rev.items())
    ]


def refresh_cdr_cache(db: Database, dataset_id: int | None = None, batch: int = 500) -> int:
    """Measure every (image, reviewer) with a disc and a cup but no cached ratio yet: regions
    drawn before the cache existed (migration 0004), or shapes stored without a raster. One
    transaction per ``batch`` pairs; returns how many were measured. Every edit keeps its own
    pair up to date (``store.repo_cdr``), so after the first open this finds nothing."""
    with db.session(read_only=True) as s:
        todo = repo_cdr.stale_pairs(s, dataset_id)
    done = 0
    for start in range(0, len(todo), batch):
        with db.session() as s:
            for image_id, reviewer_id in todo[start : start + batch]:
                try:
                    if repo_cdr.refresh_cdr(s, image_id, reviewer_id, geometry.rasterize):
                        done += 1
                except (StoreError, ValueError):
                    continue  # an unreadable region: no ratio, as in the export (it says why)
    return done
