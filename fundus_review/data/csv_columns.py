"""Numeric columns of a dataset's labels CSV besides the label (e.g. DRISHTI's cdr_expert_mean).

The store keeps one label per image and source (the class); other columns of `labels.csv` are not
imported, so they are read from the file when needed, with the same CSV dialect detection and the
same lenient filename matching as the labels (`data.dataset`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from fundus_review.data.dataset import (
    _FILENAME_COLUMNS,
    LABELS_CSV_NAME,
    ImageRecord,
    _Matcher,
    _pick_column,
    _read_csv,
)

__all__ = ["numeric_column"]


def numeric_column(
    root: str | os.PathLike[str],
    rel_paths: list[str],
    column: str,
    labels_csv: str | os.PathLike[str] | None = None,
) -> dict[str, float]:
    """{rel_path: value} of ``column`` for the images ``rel_paths`` of the dataset at ``root``.

    Reads ``labels_csv`` (default: `labels.csv` at the root); {} when that file or the column is
    absent. Rows whose filename matches no image (or several), and values that are empty or not
    finite numbers, are left out; a name listed twice keeps its first value.
    """
    root_path = Path(root)
    csv_path = Path(labels_csv) if labels_csv is not None else root_path / LABELS_CSV_NAME
    if not csv_path.is_absolute():
        csv_path = root_path / csv_path
    if not csv_path.is_file():
        return {}
    header, rows = _read_csv(csv_path)
    vcol = _pick_column(header, column, ())
    fcol = _pick_column(header, None, _FILENAME_COLUMNS)
    if vcol is None or fcol is None or vcol == fcol:
        return {}
    records = [ImageRecord(root_path / rel, rel, None) for rel in rel_paths]
    matcher = _Matcher(root_path, records)
    out: dict[str, float] = {}
    for row in rows:
        if max(fcol, vcol) >= len(row):
            continue
        idx, _why = matcher.match(row[fcol].strip())
        try:
            value = float(row[vcol].strip())
        except ValueError:
            continue
        if idx is not None and math.isfinite(value):
            out.setdefault(records[idx].rel_path, value)
    return out
