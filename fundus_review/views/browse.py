"""The dataset browser without Qt: one row per image, filtering and sorting.

The GUI's list model only maps row numbers onto `BrowserState.visible`; everything a reviewer can
filter or sort by lives here so it is tested without a display. Rows are plain values loaded in a
handful of bulk queries (see `fundus_review.views.queries.load_browse_rows`) and turned into numpy
columns once (`views.browse_index.BrowseIndex`), so 100,000 images filter and sort in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

import numpy as np

from fundus_review.core.vocabulary import REVIEW_STATUSES  # noqa: F401 - the filter bar's list
from fundus_review.views.browse_index import BrowseIndex

CORRECTNESS = ("all", "correct", "misclassified", "unlabelled", "unpredicted")
SORT_KEYS = ("name", "label", "prediction", "confidence", "score", "status", "correct", "cdr")
# What the browser's CDR value is (the tooltip of its sort key and of each row's value).
CDR_HELP = (
    "vertical cup-to-disc ratio (cup height / disc height) of the current reviewer's optic disc "
    "and cup; where that reviewer drew none, the mean over the reviewers who drew both (their "
    "number shown). Blank: no disc and cup drawn. Sorting puts blanks last."
)


@dataclass(frozen=True)
class BrowseRow:
    image_id: int
    rel_path: str
    label: str | None = None  # true label, None when the dataset has none for this image
    prediction: str | None = None  # predicted class of the current model, None before a run
    confidence: float | None = None  # softmax probability of the predicted class
    status: str = "unreviewed"  # review status of the current reviewer (REVIEW_STATUSES)
    structures: frozenset[str] = frozenset()  # structures with at least one expert region
    reviewers: frozenset[str] = frozenset()  # who drew regions or reviewed this image
    score: float | None = None  # the badge: the chosen metric vs the chosen structure
    has_heatmap: bool = False  # a heatmap of the current CAM run exists
    cdr: float | None = None  # vertical CDR (CDR_HELP): the current reviewer's, else the mean
    cdr_reviewers: int = 0  # how many reviewers' disc and cup `cdr` comes from
    cdr_own: bool = False  # `cdr` is the current reviewer's own measurement

    @property
    def cdr_text(self) -> str:
        """'CDR 0.45', 'CDR 0.45 (mean of 2)', or '' without a value."""
        if self.cdr is None or math.isnan(self.cdr):
            return ""
        many = "" if self.cdr_own or self.cdr_reviewers <= 1 else f" (mean of {self.cdr_reviewers})"
        return f"CDR {self.cdr:.2f}{many}"

    @property
    def name(self) -> str:
        return PurePosixPath(self.rel_path).name

    @property
    def correct(self) -> bool | None:
        """True/False when both the true label and a prediction exist, else None."""
        if self.label is None or self.prediction is None:
            return None
        return self.label == self.prediction


@dataclass(frozen=True)
class BrowseFilter:
    """Every criterion is optional; an empty filter keeps every row.

    Ranges are inclusive. A row without a value (no prediction yet, no score) fails any range
    filter on that value: asking for "confidence 0.9-1.0" means "predicted with >= 90 %".
    """

    text: str = ""  # case-insensitive substring of the relative path
    labels: frozenset[str] | None = None
    predictions: frozenset[str] | None = None
    correctness: str = "all"  # one of CORRECTNESS
    confidence: tuple[float, float] | None = None
    score: tuple[float, float] | None = None
    statuses: frozenset[str] | None = None
    structure: str | None = None  # only images with regions of this structure
    reviewer: str | None = None  # only images this reviewer annotated or reviewed
    has_heatmap: bool | None = None

    def __post_init__(self) -> None:
        if self.correctness not in CORRECTNESS:
            raise ValueError(f"correctness must be one of {CORRECTNESS}, got {self.correctness!r}")
        for name in ("confidence", "score"):
            rng = getattr(self, name)
            if rng is not None and not (rng[0] <= rng[1]):
                raise ValueError(f"{name} range {rng} is empty (low > high)")

    def is_empty(self) -> bool:
        return self == BrowseFilter()

    def accepts(self, row: BrowseRow) -> bool:
        if self.text and self.text.lower() not in row.rel_path.lower():
            return False
        if self.labels is not None and row.label not in self.labels:
            return False
        if self.predictions is not None and row.prediction not in self.predictions:
            return False
        if not _correctness_ok(self.correctness, row):
            return False
        if self.confidence is not None and not _in_range(row.confidence, self.confidence):
            return False
        if self.score is not None and not _in_range(row.score, self.score):
            return False
        if self.statuses is not None and row.status not in self.statuses:
            return False
        if self.structure is not None and self.structure not in row.structures:
            return False
        if self.reviewer is not None and self.reviewer not in row.reviewers:
            return False
        return self.has_heatmap is None or row.has_heatmap == self.has_heatmap


def _in_range(value: float | None, rng: tuple[float, float]) -> bool:
    return value is not None and not math.isnan(value) and rng[0] <= value <= rng[1]


def _correctness_ok(mode: str, row: BrowseRow) -> bool:
    if mode == "all":
        return True
    if mode == "unlabelled":
        return row.label is None
    if mode == "unpredicted":
        return row.prediction is None
    correct = row.correct
    if correct is None:
        return False
    return correct if mode == "correct" else not correct


def ordered_indices(
    rows: Sequence[BrowseRow],
    filt: BrowseFilter | None = None,
    sort_key: str = "name",
    descending: bool = False,
    index: BrowseIndex | None = None,
) -> list[int]:
    """Indices into `rows` that pass `filt`, sorted by `sort_key`.

    Rows without a value for the sort key always come last, in either direction, because a
    reviewer sorting by confidence wants the least confident *predicted* images first, not the
    ones that were never run. Ties keep the path order so the list never jumps between refreshes.
    `index` (the rows' `BrowseIndex`, built once) makes this a few vectorised operations.
    """
    if sort_key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort_key!r}; expected one of {SORT_KEYS}")
    index = index if index is not None else BrowseIndex(rows)
    return index.order(filt, sort_key, descending).tolist()


@dataclass
class BrowserState:
    """Rows + filter + sort + the current image: what the browser shows, minus the pixels.

    The rows' `BrowseIndex` is built with them (pass a prebuilt one to `set_rows` from a worker
    thread); filtering and sorting then cost milliseconds for 100,000 rows.
    """

    rows: list[BrowseRow] = field(default_factory=list)
    filter: BrowseFilter = field(default_factory=BrowseFilter)
    sort_key: str = "name"
    descending: bool = False
    visible: list[int] = field(default_factory=list)
    current_id: int | None = None

    def __post_init__(self) -> None:
        self.index = BrowseIndex(self.rows)
        self.refresh()

    def refresh(self) -> None:
        order = self.index.order(self.filter, self.sort_key, self.descending)
        self.visible = order.tolist()
        self._position = np.full(len(self.rows), -1, np.int64)
        self._position[order] = np.arange(len(order))

    def set_rows(self, rows: list[BrowseRow], index: BrowseIndex | None = None) -> None:
        self.rows = list(rows)
        self.index = index if index is not None and index.n == len(self.rows) else BrowseIndex(rows)
        self.refresh()

    def set_view(self, filt: BrowseFilter, key: str, descending: bool = False) -> None:
        """Filter and sort at once (one refresh)."""
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}; expected one of {SORT_KEYS}")
        self.filter, self.sort_key, self.descending = filt, key, descending
        self.refresh()

    def set_filter(self, filt: BrowseFilter) -> None:
        self.set_view(filt, self.sort_key, self.descending)

    def set_sort(self, key: str, descending: bool = False) -> None:
        self.set_view(self.filter, key, descending)

    def update_rows(self, changed: dict[int, BrowseRow]) -> None:
        """Replace rows by image id (e.g. new predictions arriving while a job runs)."""
        if not changed:
            return
        self.set_rows([changed.get(r.image_id, r) for r in self.rows])

    def row_at(self, position: int) -> BrowseRow:
        return self.rows[self.visible[position]]

    def position_of(self, image_id: int | None) -> int | None:
        if image_id is None or not self.rows:
            return None
        hits = np.flatnonzero(self.index.ids == image_id)
        if not len(hits):
            return None
        pos = int(self._position[hits[0]])
        return None if pos < 0 else pos

    def visible_ids(self) -> list[int]:
        return self.index.ids[self.visible].tolist() if self.visible else []

    def step(self, delta: int) -> int | None:
        """Move the current image by `delta` visible rows (clamped); returns the new image id."""
        if not self.visible:
            self.current_id = None
            return None
        pos = self.position_of(self.current_id)
        new = 0 if pos is None else min(max(pos + delta, 0), len(self.visible) - 1)
        self.current_id = self.row_at(new).image_id
        return self.current_id

    def distinct(self, attr: str) -> list[str]:
        """Sorted distinct non-empty values of a text attribute (filter choices)."""
        return self.index.distinct(attr)


def with_score(rows: Sequence[BrowseRow], scores: dict[int, float | None]) -> list[BrowseRow]:
    """Rows with their badge score replaced (the user picked another metric or structure)."""
    return [replace(r, score=scores.get(r.image_id)) for r in rows]


def format_badge(score: float | None, fmt: Callable[[float], str] | None = None) -> str:
    """Short text for the score badge: '0.73', or '' when there is no score."""
    if score is None or math.isnan(score):
        return ""
    return fmt(score) if fmt else f"{score:.2f}"
