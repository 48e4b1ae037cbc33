"""The Qt-free dataset browser: filtering, sorting, navigation."""

from __future__ import annotations

import pytest

from fundus_review.views.browse import (
    BrowseFilter,
    BrowseRow,
    BrowserState,
    format_badge,
    ordered_indices,
    with_score,
)

ROWS = [
    BrowseRow(
        1,
        "normal/a.jpg",
        "normal",
        "normal",
        0.95,
        "done",
        frozenset({"optic_disc"}),
        frozenset({"ann"}),
        0.8,
        True,
    ),
    BrowseRow(
        2,
        "normal/B.jpg",
        "normal",
        "glaucoma",
        0.55,
        "unreviewed",
        frozenset(),
        frozenset(),
        0.1,
        True,
    ),
    BrowseRow(
        3,
        "glaucoma/c.jpg",
        "glaucoma",
        "glaucoma",
        0.70,
        "flagged",
        frozenset({"optic_disc", "optic_cup"}),
        frozenset({"ann", "bob"}),
        None,
        True,
    ),
    BrowseRow(4, "glaucoma/d.jpg", "glaucoma", None, None, "unreviewed"),
    BrowseRow(5, "x/e.jpg", None, "normal", 0.99, "in_progress"),
]


def ids(rows, idx):
    return [rows[i].image_id for i in idx]


def test_correct_is_none_without_label_or_prediction():
    assert [r.correct for r in ROWS] == [True, False, True, None, None]
    assert ROWS[1].name == "B.jpg"


def test_empty_filter_keeps_all_sorted_by_path_case_insensitive():
    # glaucoma/c, glaucoma/d, normal/a, normal/B, x/e
    assert ids(ROWS, ordered_indices(ROWS)) == [3, 4, 1, 2, 5]
    assert BrowseFilter().is_empty()


@pytest.mark.parametrize(
    ("filt", "expected"),
    [
        (BrowseFilter(correctness="correct"), [3, 1]),
        (BrowseFilter(correctness="misclassified"), [2]),
        (BrowseFilter(correctness="unpredicted"), [4]),
        (BrowseFilter(correctness="unlabelled"), [5]),
        (BrowseFilter(labels=frozenset({"glaucoma"})), [3, 4]),
        (BrowseFilter(predictions=frozenset({"normal"})), [1, 5]),
        (BrowseFilter(confidence=(0.6, 0.95)), [3, 1]),  # inclusive at 0.95, d has no confidence
        (BrowseFilter(score=(0.0, 0.5)), [2]),
        (BrowseFilter(statuses=frozenset({"unreviewed"})), [4, 2]),
        (BrowseFilter(structure="optic_cup"), [3]),
        (BrowseFilter(reviewer="ann"), [3, 1]),
        (BrowseFilter(text="NORMAL/"), [1, 2]),
        (BrowseFilter(has_heatmap=False), [4, 5]),
        (BrowseFilter(labels=frozenset({"normal"}), correctness="correct"), [1]),
    ],
)
def test_filters(filt, expected):
    assert ids(ROWS, ordered_indices(ROWS, filt)) == expected


def test_invalid_filters_are_rejected():
    with pytest.raises(ValueError, match="correctness"):
        BrowseFilter(correctness="wrong")
    with pytest.raises(ValueError, match="empty"):
        BrowseFilter(confidence=(0.9, 0.1))


def test_sort_missing_values_last_in_both_directions():
    assert ids(ROWS, ordered_indices(ROWS, sort_key="confidence")) == [2, 3, 1, 5, 4]
    assert ids(ROWS, ordered_indices(ROWS, sort_key="confidence", descending=True)) == [
        5,
        1,
        3,
        2,
        4,
    ]
    # Scores: 2 (0.1), 1 (0.8), then the three without a score in path order.
    assert ids(ROWS, ordered_indices(ROWS, sort_key="score")) == [2, 1, 3, 4, 5]


def test_sort_by_status_follows_workflow_order_and_correct_puts_errors_first():
    assert ids(ROWS, ordered_indices(ROWS, sort_key="status")) == [4, 2, 5, 1, 3]
    assert ids(ROWS, ordered_indices(ROWS, sort_key="correct")) == [2, 3, 1, 4, 5]


def test_unknown_sort_key():
    with pytest.raises(ValueError, match="sort key"):
        ordered_indices(ROWS, sort_key="nope")


def test_state_navigation_clamps_and_follows_filter():
    st = BrowserState(list(ROWS))
    assert st.step(1) == 3  # no current image yet: the first visible one
    assert st.step(1) == 4
    assert st.step(10) == 5  # clamped at the end (PgDn past the end)
    assert st.step(-100) == 3
    st.set_filter(BrowseFilter(labels=frozenset({"normal"})))
    assert st.visible_ids() == [1, 2]
    assert st.position_of(3) is None
    assert st.step(1) == 1  # current image filtered out: restart at the first visible row
    st.set_filter(BrowseFilter(labels=frozenset({"none-such"})))
    assert st.step(1) is None


def test_update_rows_and_scores_keep_filter_and_order():
    st = BrowserState(list(ROWS), sort_key="score")
    st.set_filter(BrowseFilter(score=(0.5, 1.0)))
    assert st.visible_ids() == [1]
    st.update_rows({4: BrowseRow(4, "glaucoma/d.jpg", "glaucoma", "glaucoma", 0.6, score=0.9)})
    assert st.visible_ids() == [1, 4]
    st.set_rows(with_score(st.rows, {2: 0.75}))
    assert st.visible_ids() == [2]


def test_distinct_values_for_filter_choices():
    st = BrowserState(list(ROWS))
    assert st.distinct("label") == ["glaucoma", "normal"]
    assert st.distinct("structures") == ["optic_cup", "optic_disc"]
    assert st.distinct("reviewers") == ["ann", "bob"]


def test_format_badge():
    assert format_badge(None) == ""
    assert format_badge(float("nan")) == ""
    assert format_badge(0.734) == "0.73"
