"""core.cdr against ratios computed by hand from rectangles and ellipses of known size."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.core.cdr import cup_disc_ratio, extent


def _rect(shape: tuple[int, int], top: int, left: int, h: int, w: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[top : top + h, left : left + w] = True
    return m


def _ellipse(shape: tuple[int, int], cy: int, cx: int, ry: int, rx: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def test_rectangles_give_hand_computed_ratios() -> None:
    disc = _rect((100, 100), 10, 20, 40, 50)  # 40 rows x 50 columns = 2000 px
    cup = _rect((100, 100), 20, 30, 10, 20)  # 10 x 20 = 200 px
    r = cup_disc_ratio(disc, cup)
    assert r.vertical == pytest.approx(10 / 40)
    assert r.horizontal == pytest.approx(20 / 50)
    assert r.area == pytest.approx(200 / 2000)


def test_ellipse_extents_are_the_diameters_in_pixels() -> None:
    # Rows |y - cy| <= ry hold pixels: 2 ry + 1 rows; likewise columns.
    disc = _ellipse((200, 200), 100, 100, 60, 50)
    cup = _ellipse((200, 200), 100, 100, 30, 20)
    assert extent(disc, 0) == 121 and extent(disc, 1) == 101
    r = cup_disc_ratio(disc, cup)
    assert r.vertical == pytest.approx(61 / 121)
    assert r.horizontal == pytest.approx(41 / 101)
    # Pixel areas approach pi ry rx: ratio ~ (30*20)/(60*50) = 0.2.
    assert r.area == pytest.approx(int(cup.sum()) / int(disc.sum()))
    assert r.area == pytest.approx(0.2, abs=0.01)


def test_empty_disc_gives_none_and_empty_cup_gives_zero() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    disc = _rect((10, 10), 2, 2, 4, 4)
    assert cup_disc_ratio(empty, disc) == cup_disc_ratio(empty, empty)
    assert cup_disc_ratio(empty, disc).vertical is None
    r = cup_disc_ratio(disc, empty)
    assert (r.vertical, r.horizontal, r.area) == (0.0, 0.0, 0.0)


def test_cup_outside_the_disc_is_measured_unclipped() -> None:
    disc = _rect((50, 50), 10, 10, 10, 10)
    cup = _rect((50, 50), 5, 12, 20, 4)  # sticks out above and below: 20 rows vs 10
    r = cup_disc_ratio(disc, cup)
    assert r.vertical == pytest.approx(2.0)
    assert r.area == pytest.approx(80 / 100)


def test_split_cup_spans_its_gap_and_shapes_must_match() -> None:
    disc = _rect((30, 30), 0, 0, 30, 30)
    cup = _rect((30, 30), 5, 5, 2, 2) | _rect((30, 30), 15, 5, 2, 2)  # rows 5..16
    assert cup_disc_ratio(disc, cup).vertical == pytest.approx(12 / 30)
    with pytest.raises(ValueError):
        cup_disc_ratio(disc, cup[:, :10])


def test_numeric_column_matches_names_and_skips_bad_values(tmp_path) -> None:  # noqa: ANN001
    from fundus_review.data.csv_columns import numeric_column

    (tmp_path / "labels.csv").write_text(
        "image;diagnosis;CDR expert mean\n"
        "a;glaucoma;0.7\nb.jpg;normal;n/a\nsub/c.png;normal;0.3\nx.jpg;normal;0.4\nd.jpg;normal;nan\n"
    )
    rels = ["a.jpg", "b.jpg", "sub/c.png", "one/x.jpg", "two/x.jpg", "d.jpg"]
    # Stems and header spelling are matched as for labels; "x.jpg" is ambiguous, "n/a" not a number.
    got = numeric_column(tmp_path, rels, "cdr_expert_mean")
    assert got == {"a.jpg": 0.7, "sub/c.png": 0.3}
    assert numeric_column(tmp_path, rels, "vcdr") == {}
    assert numeric_column(tmp_path / "nowhere", rels, "cdr_expert_mean") == {}
