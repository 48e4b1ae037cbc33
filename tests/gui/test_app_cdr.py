"""The CDR column of the browser and the CDR read-out of the viewer, after drawing a cup."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from fundus_review.views.queries import image_cdr
from tests.gui.test_app_annotate import (  # noqa: F401 - fixtures used by name
    ME,
    annotate,
    drag,
    line,
    me,
    no_mouse_rate_limit,
    window,
)


def test_cdr_column_and_readout_follow_a_drawn_disc_and_cup(qtbot, window) -> None:  # noqa: F811
    win = window
    image_id = annotate(qtbot, win)
    f = win.browser.filters
    k = f.sort.findText("cdr")
    assert k >= 0 and "vertical cup-to-disc ratio" in f.sort.itemData(k, Qt.ToolTipRole)

    def row():  # noqa: ANN202
        return next(r for r in win.browser.model.state.rows if r.image_id == image_id)

    assert row().cdr is None and win.side.cdr_box.values() == []
    qtbot.keyClick(win.viewer, Qt.Key_1)  # optic disc: ellipse over rows 24..72
    drag(qtbot, win, line((40, 24), (80, 72)))
    qtbot.keyClick(win.viewer, Qt.Key_Escape)
    qtbot.keyClick(win.viewer, Qt.Key_2)  # optic cup: ellipse over rows 36..60
    assert win.annot.structure == "optic_cup"
    drag(qtbot, win, line((52, 36), (68, 60)))
    qtbot.waitUntil(lambda: [v[0] for v in win.side.cdr_box.values()] == [ME], timeout=20_000)
    (stored,) = [c for c in image_cdr(win.session.db, image_id) if c.reviewer == ME]
    assert stored.vertical == pytest.approx(0.5, abs=0.05)  # 24 of 48 rows, as drawn
    assert win.side.cdr_box.values() == [(ME, f"{stored.vertical:.3f}", f"{stored.area:.3f}")]
    qtbot.waitUntil(lambda: row().cdr is not None, timeout=20_000)
    assert (row().cdr, row().cdr_own) == (stored.vertical, True)
    f.sort.setCurrentIndex(k)  # the only image with a ratio comes first, blanks after it
    assert win.browser.model.state.row_at(0).image_id == image_id
    assert all(win.browser.model.state.row_at(i).cdr is None for i in range(1, 6))

    # A bigger cup (redrawn over rows 28..68) changes both at once.
    win.annot.select(next(r.id for r in win.annot.regions if r.structure == "optic_cup"))
    qtbot.keyClick(win.viewer, Qt.Key_Delete)
    qtbot.waitUntil(lambda: win.side.cdr_box.values() == [], timeout=20_000)
    qtbot.waitUntil(lambda: row().cdr is None, timeout=20_000)
    qtbot.keyClick(win.viewer, Qt.Key_2)
    drag(qtbot, win, line((48, 28), (72, 68)))
    qtbot.waitUntil(lambda: bool(win.side.cdr_box.values()), timeout=20_000)
    (bigger,) = [c for c in image_cdr(win.session.db, image_id) if c.reviewer == ME]
    assert bigger.vertical == pytest.approx(40 / 48, abs=0.05)
    assert win.side.cdr_box.values()[0][1] == f"{bigger.vertical:.3f}"
    qtbot.waitUntil(lambda: row().cdr == bigger.vertical, timeout=20_000)
