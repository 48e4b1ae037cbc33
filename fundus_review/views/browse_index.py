"""Column arrays of the browser's rows, so 100,000 images filter and sort in milliseconds.

`BrowseIndex(rows)` turns the rows (``views.browse.BrowseRow``) into numpy columns once — a
code per label, prediction and status, a float per confidence and score, the rank of each path —
which costs a few hundred milliseconds for 100,000 rows and is therefore built on a worker thread
with the rows (``views.queries.load_browse_rows`` callers). Every later filter or sort is a few
vectorised numpy operations over those columns, never a Python call per row, so it can run on the
UI thread. The ordering rules are those of ``views.browse.ordered_indices`` (its docstring), and
the unit tests check both against a row-by-row reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fundus_review.core.vocabulary import REVIEW_STATUSES

# Float columns: the row attribute of each float sort key (None or NaN = no value).
FLOAT_KEYS = {"confidence": "confidence", "score": "score", "cdr": "cdr"}


def _codes(values: list[str | None]) -> tuple[np.ndarray, list[str]]:
    """(code per value: its rank among the sorted distinct values, -1 for None; those values)."""
    distinct = sorted({v for v in values if v is not None})
    rank = {v: i for i, v in enumerate(distinct)}
    return np.fromiter((rank.get(v, -1) for v in values), np.int64, len(values)), distinct


def _floats(values: list[float | None]) -> np.ndarray:
    return np.fromiter(
        (math.nan if v is None else float(v) for v in values), np.float64, len(values)
    )


class BrowseIndex:
    """Columns of one list of rows (the rows themselves are not kept)."""

    def __init__(self, rows: Sequence[Any]) -> None:
        n = len(rows)
        self.n = n
        self.lower = [r.rel_path.lower() for r in rows]
        order = sorted(range(n), key=self.lower.__getitem__)  # stable: input order on ties
        self.path_order = np.array(order, np.int64)
        self.path_rank = np.empty(n, np.int64)
        self.path_rank[self.path_order] = np.arange(n)
        # Equal lower-case paths share one name value (their ties keep path order).
        name = np.empty(n, np.int64)
        prev, dense = None, -1
        for i in order:
            if self.lower[i] != prev:
                prev, dense = self.lower[i], dense + 1
            name[i] = dense
        self.ids = np.fromiter((r.image_id for r in rows), np.int64, n)
        self.label, self.labels = _codes([r.label for r in rows])
        self.prediction, self.predictions = _codes([r.prediction for r in rows])
        self.status, self.statuses = _codes([r.status for r in rows])
        status_rank = {s: i for i, s in enumerate(REVIEW_STATUSES)}
        status_sort = np.array([status_rank.get(s, -1) for s in self.statuses] + [-1], np.int64)
        self.floats = {
            key: _floats([getattr(r, attr, None) for r in rows]) for key, attr in FLOAT_KEYS.items()
        }
        self.has_heatmap = np.fromiter((r.has_heatmap for r in rows), bool, n)
        self.structures = [r.structures for r in rows]
        self.reviewers = [r.reviewers for r in rows]
        self._set_masks: dict[tuple[str, str], np.ndarray] = {}
        self._text: tuple[str, np.ndarray] | None = None
        labelled, predicted = self.label >= 0, self.prediction >= 0
        # label == prediction compares names, not codes (the two lists differ).
        same = np.fromiter((r.label is not None and r.label == r.prediction for r in rows), bool, n)
        correct = np.where(labelled & predicted, same.astype(np.int64), -1)
        # Sort values and whether a row has one (a row without comes last either way).
        self.sort_values: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "name": (name, np.ones(n, bool)),
            "label": (self.label, labelled),
            "prediction": (self.prediction, predicted),
            "status": (status_sort[self.status], status_sort[self.status] >= 0),
            "correct": (correct, correct >= 0),
        }
        for key, col in self.floats.items():
            self.sort_values[key] = (col, ~np.isnan(col))
        self.correctness = {"labelled": labelled, "predicted": predicted, "correct": correct}

    # -- filter ---------------------------------------------------------------------------
    def _text_mask(self, text: str) -> np.ndarray:
        t = text.lower()
        if self._text is not None and self._text[0] in t:
            # Typing on: only the rows that matched the shorter text can match the longer one.
            old = self._text[1]
            mask = np.zeros(self.n, bool)
            cand = np.flatnonzero(old)
            mask[cand] = np.fromiter((t in self.lower[i] for i in cand), bool, len(cand))
        else:
            mask = np.fromiter((t in p for p in self.lower), bool, self.n)
        self._text = (t, mask)
        return mask

    def _set_mask(self, attr: str, value: str) -> np.ndarray:
        key = (attr, value)
        if key not in self._set_masks:
            sets = self.structures if attr == "structures" else self.reviewers
            self._set_masks[key] = np.fromiter((value in s for s in sets), bool, self.n)
        return self._set_masks[key]

    @staticmethod
    def _in(codes: np.ndarray, names: list[str], allowed: frozenset[str]) -> np.ndarray:
        wanted = [i for i, v in enumerate(names) if v in allowed]
        return np.isin(codes, wanted)

    def _range(self, key: str, rng: tuple[float, float]) -> np.ndarray:
        col = self.floats[key]
        with np.errstate(invalid="ignore"):
            return (col >= rng[0]) & (col <= rng[1])  # NaN (no value) fails both

    def mask(self, filt: Any) -> np.ndarray:
        """Which rows pass `filt` (a ``views.browse.BrowseFilter``): the same as its `accepts`."""
        keep = np.ones(self.n, bool)
        if filt is None:
            return keep
        if filt.text:
            keep &= self._text_mask(filt.text)
        if filt.labels is not None:
            keep &= self._in(self.label, self.labels, filt.labels)
        if filt.predictions is not None:
            keep &= self._in(self.prediction, self.predictions, filt.predictions)
        c = self.correctness
        if filt.correctness == "unlabelled":
            keep &= ~c["labelled"]
        elif filt.correctness == "unpredicted":
            keep &= ~c["predicted"]
        elif filt.correctness in ("correct", "misclassified"):
            keep &= c["correct"] == (1 if filt.correctness == "correct" else 0)
        if filt.confidence is not None:
            keep &= self._range("confidence", filt.confidence)
        if filt.score is not None:
            keep &= self._range("score", filt.score)
        if filt.statuses is not None:
            keep &= self._in(self.status, self.statuses, filt.statuses)
        if filt.structure is not None:
            keep &= self._set_mask("structures", filt.structure)
        if filt.reviewer is not None:
            keep &= self._set_mask("reviewers", filt.reviewer)
        if filt.has_heatmap is not None:
            keep &= self.has_heatmap == bool(filt.has_heatmap)
        return keep

    # -- sort -----------------------------------------------------------------------------
    def order(self, filt: Any, sort_key: str, descending: bool) -> np.ndarray:
        """Row indices passing `filt`, sorted by `sort_key`: rows without a value last, ties
        (and the rows without a value) in path order."""
        values, present = self.sort_values[sort_key]
        keep = self.mask(filt)
        have = np.flatnonzero(keep & present)
        lack = np.flatnonzero(keep & ~present)
        v = values[have]
        first = np.lexsort((self.path_rank[have], -v if descending else v))
        return np.concatenate([have[first], lack[np.argsort(self.path_rank[lack])]])

    def distinct(self, attr: str) -> list[str]:
        """Sorted distinct non-empty values of label, prediction, structures or reviewers."""
        if attr in ("label", "prediction"):
            return list(self.labels if attr == "label" else self.predictions)
        if attr == "status":
            return list(self.statuses)
        if attr in ("structures", "reviewers"):
            values: set[str] = set()
            for s in set(self.structures if attr == "structures" else self.reviewers):
                values |= s
            return sorted(values)
        raise ValueError(f"no distinct values of {attr!r}")
