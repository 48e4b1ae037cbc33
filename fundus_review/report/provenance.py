"""Where the report's expert regions came from: hand-drawn, imported, accepted or edited
proposals of a segmenter, counted apart; unreviewed proposals are counted as *excluded* (they
are never in the scores, ``store.schema.expert_region``)."""

from __future__ import annotations

from typing import Any

from fundus_review.core.vocabulary import provenance
from fundus_review.store import Session, repo

COLUMNS = ("drawn", "imported", "accepted-proposal", "edited-proposal", "other", "proposed")
HEADERS = (
    "structure",
    "reviewer",
    "hand-drawn",
    "imported",
    "accepted proposals",
    "edited proposals",
    "other",
    "unreviewed proposals (excluded)",
)


def region_provenance(s: Session, dataset_ids: list[int] | None) -> list[dict[str, Any]]:
    """One row per (structure, reviewer): live region counts per provenance class."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for structure, reviewer, source, n in repo.region_sources(s, dataset_ids):
        row = rows.setdefault(
            (structure, reviewer),
            {"structure": structure, "reviewer": reviewer} | dict.fromkeys(COLUMNS, 0),
        )
        row[provenance(source)] += n
    return [rows[k] for k in sorted(rows)]


def provenance_table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[r["structure"], r["reviewer"], *(str(r[c]) for c in COLUMNS)] for r in rows]
