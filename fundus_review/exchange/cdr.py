"""The cup-to-disc ratios as a CSV file: one row per image x reviewer with a disc and a cup.

Columns: dataset, image, image_id, reviewer, vertical, horizontal, area (``core.cdr``
definitions; empty when the disc is empty), dataset_cdr (the dataset's expert CDR column when
its labels.csv has one, else empty).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from fundus_review.app.cdr import CdrRow, cdr_rows
from fundus_review.app.selection import Ref
from fundus_review.atomic import atomic_write_text
from fundus_review.store.db import Database

__all__ = ["export_cdr"]


def _cell(value: object) -> object:
    # Six decimals: far below any drawing's precision, and stable across platforms.
    if isinstance(value, float):
        return f"{value:.6f}"
    return "" if value is None else value


def export_cdr(
    db: Database,
    path: str | Path,
    dataset: Ref | Sequence[Ref] | None = None,
    reviewers: Sequence[str] | None = None,
) -> int:
    """Write the ratios as UTF-8 CSV atomically (header row first); returns the row count."""
    rows = cdr_rows(db, dataset, reviewers)
    names = [f.name for f in fields(CdrRow)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for r in rows:
        writer.writerow([_cell(getattr(r, n)) for n in names])
    atomic_write_text(path, buf.getvalue())
    return len(rows)
