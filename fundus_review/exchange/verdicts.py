"""The reviewers' verdicts on heatmaps (yes / partly / no + comment) as rows and as a CSV file.

One row per (heatmap, reviewer) verdict, with what the heatmap is (dataset, image, model, CAM
method, layers, target) and the reviewer's review status of the image, so the file can be read
next to the automatic scores without the database.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fundus_review.app.scoring import resolve_dataset_ids
from fundus_review.atomic import atomic_write_text
from fundus_review.exchange.region_filter import Ref, reviewer_ids
from fundus_review.store import repo_exchange
from fundus_review.store.db import Database


@dataclass(frozen=True)
class VerdictRow:
    dataset: str
    image: str
    image_id: int
    model: str
    method: str
    layers: str
    target: str
    heatmap_id: int
    reviewer: str
    verdict: str
    comment: str
    review_status: str
    updated_at: str


def verdict_export_rows(
    db: Database,
    dataset: Ref | Sequence[Ref] | None = None,
    reviewers: Sequence[str] | None = None,
) -> list[VerdictRow]:
    """Every stored verdict matching the filters, ordered by dataset, image, model, method."""
    with db.session(read_only=True) as s:
        ds_ids = resolve_dataset_ids(s, dataset)
        revs = reviewer_ids(s, reviewers)
        records = repo_exchange.verdicts_for_export(s, ds_ids, None if revs is None else list(revs))
        statuses = repo_exchange.review_statuses(s)
        return [
            VerdictRow(
                dataset=ds.name,
                image=img.rel_path,
                image_id=img.id,
                model=model.name,
                method=run.method,
                layers=";".join(run.layers),
                target=run.target_policy,
                heatmap_id=hm.id,
                reviewer=rev.name,
                verdict=v.verdict,
                comment=v.comment,
                review_status=statuses.get((img.id, rev.id), "unreviewed"),
                updated_at=v.updated_at.isoformat(timespec="seconds"),
            )
            for v, hm, run, model, img, ds, rev in records
        ]


def verdict_counts(rows: Sequence[VerdictRow]) -> dict[tuple[str, str], dict[str, int]]:
    """{(model, method): {"yes": n, "partly": n, "no": n}} for reports."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        counts = out.setdefault((r.model, r.method), {"yes": 0, "partly": 0, "no": 0})
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return out


def export_verdicts(
    db: Database,
    path: str | Path,
    dataset: Ref | Sequence[Ref] | None = None,
    reviewers: Sequence[str] | None = None,
) -> int:
    """Write the verdicts as UTF-8 CSV (header row, one verdict per row); returns the row count."""
    rows = verdict_export_rows(db, dataset, reviewers)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=[f.name for f in fields(VerdictRow)], lineterminator="\n"
    )
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    atomic_write_text(path, buf.getvalue())
    return len(rows)
