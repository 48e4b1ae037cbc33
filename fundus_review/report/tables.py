"""The report's machine-readable tables: per-image scores and aggregates as CSV, all as JSON.

Both are deterministic: fixed row and column order, floats written with ``repr`` (round-trip
exact, so statistics recomputed from the CSV equal the report's), no clock time. Missing values
are empty CSV cells and JSON nulls, never NaN.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fundus_review.core.score_tables import AGGREGATE_FIELDS
from fundus_review.report.data import ROW_FIELDS


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> Path:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(fields)
        for row in rows:
            writer.writerow([_cell(row.get(f)) for f in fields])
    tmp.replace(path)
    return path


def write_aggregates_csv(path: Path, aggregates: Sequence[dict[str, Any]]) -> Path:
    return write_csv(path, aggregates, AGGREGATE_FIELDS)


def _plain(value: Any) -> Any:
    """JSON-ready copy: tuples to lists, numpy scalars to Python numbers, NaN to null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _plain(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, document: dict[str, Any]) -> Path:
    tmp = path.with_name(path.name + ".part")
    text = json.dumps(_plain(document), indent=1, ensure_ascii=False, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


NUMERIC_ROW_FIELDS = ("image_id", "run_id", "heatmap_id", "confidence", "target_probability")


def read_scores_csv(path: Path) -> list[dict[str, Any]]:
    """The per-image CSV back as rows: metric and id/probability columns as float (empty: None),
    the other columns as text. For checking a report against its own table."""
    out = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                numeric = k in NUMERIC_ROW_FIELDS or k not in ROW_FIELDS
                parsed[k] = None if v == "" else float(v) if numeric else v
            out.append(parsed)
    return out
