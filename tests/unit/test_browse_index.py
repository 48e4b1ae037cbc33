"""The vectorised browser index orders and filters exactly like the row-by-row rules."""

from __future__ import annotations

import itertools
import math
import random

from fundus_review.views.browse import (
    REVIEW_STATUSES,
    SORT_KEYS,
    BrowseFilter,
    BrowseRow,
    BrowserState,
    ordered_indices,
)
from fundus_review.views.browse_index import BrowseIndex


def _reference_value(row: BrowseRow, key: str):
    """The sort value of one row as the rules define it (None: no value, sorted last)."""
    if key == "name":
        return row.rel_path.lower()
    if key in ("confidence", "score", "cdr"):
        v = getattr(row, key)
        return None if v is None or math.isnan(v) else v
    if key == "status":
        return REVIEW_STATUSES.index(row.status) if row.status in REVIEW_STATUSES else None
    if key == "correct":
        return None if row.correct is None else int(row.correct)
    return getattr(row, key)


def _reference(rows, filt, key, descending):
    keep = [i for i, r in enumerate(rows) if filt.accepts(r)]
    keep.sort(key=lambda i: rows[i].rel_path.lower())
    present = [i for i in keep if _reference_value(rows[i], key) is not None]
    missing = [i for i in keep if _reference_value(rows[i], key) is None]
    present.sort(key=lambda i: _reference_value(rows[i], key), reverse=descending)
    return present + missing


def _random_rows(n: int, seed: int) -> list[BrowseRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        stem = rng.choice(["a", "B", "b", "img_1", "IMG_1", "c"]) + str(rng.randint(0, 5))
        rows.append(
            BrowseRow(
                image_id=1000 - i,
                rel_path=f"{rng.choice(['x', 'X', 'y'])}/{stem}.jpg",
                label=rng.choice([None, "glaucoma", "normal"]),
                prediction=rng.choice([None, "glaucoma", "normal", "other"]),
                confidence=rng.choice([None, 0.5, rng.random()]),
                status=rng.choice(REVIEW_STATUSES),
                structures=frozenset(rng.sample(["optic_disc", "optic_cup"], rng.randint(0, 2))),
                reviewers=frozenset(rng.sample(["ann", "bob"], rng.randint(0, 2))),
                score=rng.choice([None, math.nan, 0.25, rng.random()]),
                has_heatmap=rng.random() < 0.5,
            )
        )
    return rows


FILTERS = [
    BrowseFilter(),
    BrowseFilter(text="img_1"),
    BrowseFilter(text="X/B"),
    BrowseFilter(labels=frozenset({"glaucoma"})),
    BrowseFilter(predictions=frozenset({"normal", "other"})),
    *(
        BrowseFilter(correctness=c)
        for c in ("correct", "misclassified", "unlabelled", "unpredicted")
    ),
    BrowseFilter(confidence=(0.2, 0.6)),
    BrowseFilter(score=(0.25, 1.0)),
    BrowseFilter(statuses=frozenset({"done", "flagged"})),
    BrowseFilter(structure="optic_cup"),
    BrowseFilter(reviewer="bob", has_heatmap=True),
    BrowseFilter(text="a", labels=frozenset({"normal"}), score=(0.0, 0.5), has_heatmap=False),
]


def test_index_matches_the_row_by_row_rules_for_every_key_and_filter():
    rows = _random_rows(300, seed=1)
    index = BrowseIndex(rows)
    for filt, key, desc in itertools.product(FILTERS, SORT_KEYS, (False, True)):
        expected = _reference(rows, filt, key, desc)
        got = ordered_indices(rows, filt, key, desc, index=index)
        assert got == expected, (filt, key, desc)


def test_typing_narrows_the_text_filter_and_backspace_widens_it():
    rows = _random_rows(200, seed=2)
    index = BrowseIndex(rows)
    for text in ("i", "im", "img", "img_1", "img", "b", "x/b"):
        got = index.mask(BrowseFilter(text=text)).tolist()
        assert got == [text in r.rel_path.lower() for r in rows], text


def test_state_positions_follow_filter_and_sort():
    rows = _random_rows(50, seed=3)
    st = BrowserState(rows, sort_key="confidence", descending=True)
    for pos, i in enumerate(st.visible):
        assert st.position_of(rows[i].image_id) == pos
    st.set_view(BrowseFilter(labels=frozenset({"normal"})), "name")
    hidden = next(r for r in rows if r.label != "normal")
    assert st.position_of(hidden.image_id) is None
    assert st.position_of(12345) is None
    assert st.visible_ids() == [rows[i].image_id for i in _reference(
        rows, BrowseFilter(labels=frozenset({"normal"})), "name", False)]  # fmt: skip


def test_empty_rows():
    st = BrowserState([])
    assert st.visible == [] and st.visible_ids() == [] and st.position_of(1) is None
    assert st.step(1) is None
    assert st.distinct("label") == []
