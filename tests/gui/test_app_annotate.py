"""Drawing and reviewing in the real main window: mouse and keys on the viewer, the Edit menu,
a restart, the browser's review filters and the score read-out after an edit."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog

from fundus_review.gui.settings import SETTINGS_SCHEMA
from fundus_review.review.editor import Editor, load_regions
from fundus_review.store import open_database
from tests.gui.conftest import open_window

ME = "Dr. Rao"


@pytest.fixture(autouse=True)
def no_mouse_rate_limit():
    # pyqtgraph drops mouse moves closer than 10 ms apart; synthetic events come faster.
    old = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", -1)
    yield
    pg.setConfigOption("mouseRateLimit", old)


@pytest.fixture
def me(settings, monkeypatch):
    settings.setValue("schema", SETTINGS_SCHEMA)
    settings.setValue("annotate/reviewer", ME)  # real use asks once, on first annotating
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: pytest.fail("reviewer asked"))
    return settings


@pytest.fixture
def window(qtbot, isolated, me, db_copy, gui_dataset, tiny_bundle):
    win = open_window(qtbot, db_copy, gui_dataset, tiny_bundle, me)
    yield win
    win.close()


def annotate(qtbot, win) -> int:
    """Open the Annotate tab as a user does (clicking the tab); returns the shown image id."""
    win.side_tabs.setCurrentWidget(win.annot_tab)
    qtbot.waitUntil(lambda: win.annot.image_id == win.photo[0].image_id, timeout=20_000)
    image_id = win.annot.image_id
    qtbot.waitUntil(lambda: win.overlays is not None and win.overlays.image_id == image_id)
    assert win.annotating
    return image_id


def at(win, x: float, y: float):  # noqa: ANN201 - QPoint in the viewer's viewport
    v = win.viewer
    return v.mapFromScene(v.view.mapViewToScene(QPointF(x, y)))


def drag(qtbot, win, points) -> None:  # noqa: ANN001
    vp = win.viewer.viewport()
    qtbot.mousePress(vp, Qt.LeftButton, Qt.NoModifier, at(win, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(vp, at(win, *p))
    qtbot.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, at(win, *points[-1]))


def click(qtbot, win, x: float, y: float) -> None:  # noqa: ANN001
    qtbot.mouseClick(win.viewer.viewport(), Qt.LeftButton, Qt.NoModifier, at(win, x, y))


def line(a, b, n: int = 8) -> list[tuple[float, float]]:  # noqa: ANN001
    return [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for t in np.linspace(0, 1, n)]


def polygon(qtbot, win, points) -> None:  # noqa: ANN001
    for p in points:
        click(qtbot, win, *p)
    qtbot.keyClick(win.viewer, Qt.Key_Return)


def mine(db_path, image_id: int) -> list[tuple[str, str]]:
    with open_database(db_path) as db:
        return sorted((r.structure, r.kind) for r in load_regions(db, image_id) if r.reviewer == ME)


def edit_menu(win) -> dict[str, QAction]:
    (menu,) = [a.menu() for a in win.menuBar().actions() if a.text() == "&Edit"]
    return {a.text().split()[0]: a for a in menu.actions() if a.text()}


def test_draw_ellipse_polygon_brush_undo_redo_in_the_edit_menu_and_restart(
    qtbot, window, db_copy, gui_dataset, tiny_bundle, me
) -> None:
    win = window
    image_id = annotate(qtbot, win)
    # Annotating: the tools draw every region (the reference disc too); the viewer's union
    # outlines are hidden so nothing is drawn twice.
    assert not win.viewer.region_curves["optic_disc"].isVisible()
    (reference,) = win.annot.regions
    assert reference.reviewer == "reference" and win.annot.outlines.items[reference.id].isVisible()

    qtbot.keyClick(win.viewer, Qt.Key_1)  # optic disc: the ellipse tool
    assert win.annot.tool == "ellipse"
    drag(qtbot, win, line((40, 30), (80, 60)))
    qtbot.keyClick(win.viewer, Qt.Key_4)  # hemorrhage: polygon
    polygon(qtbot, win, [(10, 10), (30, 12), (25, 30)])
    qtbot.keyClick(win.viewer, Qt.Key_5)  # microaneurysm: brush
    qtbot.keyClick(win.viewer, Qt.Key_Escape)  # deselect: the stroke starts a new region
    drag(qtbot, win, line((90, 20), (115, 40), 10))
    drawn = [("hemorrhage", "polygon"), ("microaneurysm", "brush"), ("optic_disc", "ellipse")]
    assert mine(db_copy, image_id) == drawn
    ell = next(r for r in win.annot.regions if r.kind == "ellipse").geometry
    assert abs(ell["cx"] - 60) < 1 and abs(ell["rx"] - 20) < 1 and abs(ell["ry"] - 15) < 1

    edit = edit_menu(win)
    assert edit["Undo"].isEnabled() and not edit["Redo"].isEnabled()
    for left in (2, 1, 0):
        edit["Undo"].trigger()
        assert len(mine(db_copy, image_id)) == left
    assert not edit["Undo"].isEnabled() and [r.reviewer for r in win.annot.regions] == ["reference"]
    for _ in range(3):
        edit["Redo"].trigger()
    assert mine(db_copy, image_id) == drawn
    qtbot.keyClick(win.viewer, Qt.Key_Z, Qt.ControlModifier)  # the keys do the same
    assert len(mine(db_copy, image_id)) == 2
    qtbot.keyClick(win.viewer, Qt.Key_Y, Qt.ControlModifier)
    assert mine(db_copy, image_id) == drawn

    # Back on the Analysis tab the viewer draws the union outline per structure (toggles and
    # all) and the tools' outlines are gone.
    win.side_tabs.setCurrentWidget(win.side)
    qtbot.waitUntil(lambda: "hemorrhage" in win.viewer.region_curves, timeout=20_000)
    assert win.viewer.region_curves["hemorrhage"].isVisible() and not win.annotating
    assert not any(item.isVisible() for item in win.annot.outlines.items.values())

    # Restart: a new window on the same database shows them, drawn by the tools.
    win.close()
    win2 = open_window(qtbot, db_copy, gui_dataset, tiny_bundle, me)
    win2.browser.select_image(image_id)
    assert annotate(qtbot, win2) == image_id
    regions = win2.annot.regions
    assert sorted((r.structure, r.kind) for r in regions if r.reviewer == ME) == drawn
    assert all(win2.annot.outlines.items[r.id].isVisible() for r in regions)
    win2.close()


def test_review_status_and_verdict_reach_the_browser_rows_and_filters(qtbot, window) -> None:
    win = window
    image_id = annotate(qtbot, win)
    qtbot.waitUntil(lambda: win.annot.heatmap_id is not None, timeout=20_000)
    row = lambda: next(r for r in win.browser.model.state.rows if r.image_id == image_id)  # noqa: E731
    assert row().status == "unreviewed"
    qtbot.keyClick(win.viewer, Qt.Key_3, Qt.AltModifier)  # done
    qtbot.waitUntil(lambda: row().status == "done", timeout=20_000)
    qtbot.keyClick(win.viewer, Qt.Key_N, Qt.AltModifier)  # the heatmap looks elsewhere
    ed = Editor(win.session.db, image_id, ME)
    assert ed.review_status() == ("done", "") and ed.verdict(win.annot.heatmap_id) == ("no", "")
    box = win.annot_panel.review
    assert box.status.currentData() == "done" and box.verdicts.button(2).isChecked()

    f = win.browser.filters
    f.status.setCurrentText("done")
    assert win.browser.model.rowCount() == 1
    assert win.browser.model.state.row_at(0).image_id == image_id
    f.status.setCurrentText("unreviewed")
    assert win.browser.model.rowCount() == 5
    f.status.setCurrentText("(any)")
    f.reviewer.setCurrentText(ME)
    assert [win.browser.model.state.row_at(i).image_id for i in range(1)] == [image_id]
    assert win.browser.model.rowCount() == 1

    # The review keys work from the Analysis tab too (the controller follows every image).
    win.browser.clear_filters()
    win.side_tabs.setCurrentWidget(win.side)
    assert not win.annotating
    qtbot.keyClick(win.viewer, Qt.Key_4, Qt.AltModifier)  # flagged
    qtbot.waitUntil(lambda: row().status == "flagged", timeout=20_000)
    win.annot_actions["undo"].trigger()
    qtbot.waitUntil(lambda: row().status == "done", timeout=20_000)


def scores_table(win) -> dict[str, str]:
    """Read-out rows: structure -> the "hit" column's text."""
    t = win.side.score_box.table
    col = [t.horizontalHeaderItem(c).text() for c in range(t.columnCount())].index("hit")
    return {t.verticalHeaderItem(r).text(): t.item(r, col).text() for r in range(t.rowCount())}


def square(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]


def test_scores_are_recomputed_with_a_drawn_region(qtbot, window) -> None:
    win = window
    annotate(qtbot, win)
    qtbot.waitUntil(lambda: win.overlays is not None and win.overlays.heatmap is not None)
    qtbot.waitUntil(lambda: "optic disc" in scores_table(win), timeout=20_000)
    assert "hemorrhage" not in scores_table(win)
    ov = win.overlays
    mx, my = ov.pointing["optic_disc"].point  # the heatmap's maximum
    tol = ov.pointing["optic_disc"].tolerance_px
    # A hemorrhage drawn around the maximum is hit; a hard exudate far from it is missed.
    qtbot.keyClick(win.viewer, Qt.Key_4)
    cx, cy = np.clip(mx, 8, 119), np.clip(my, 8, 87)
    with qtbot.waitSignal(win.scoring_done, timeout=30_000):
        polygon(qtbot, win, square(cx, cy, 6))
    qtbot.waitUntil(lambda: scores_table(win).get("hemorrhage") == "hit", timeout=20_000)
    far = max(
        [(24, 48), (104, 48), (64, 16), (64, 80)], key=lambda p: np.hypot(p[0] - mx, p[1] - my)
    )
    assert np.hypot(far[0] - mx, far[1] - my) - 5 * np.sqrt(2) > tol
    qtbot.keyClick(win.viewer, Qt.Key_6)  # hard exudate (its own tool is the brush) ...
    qtbot.keyClick(win.viewer, Qt.Key_P)  # ... drawn as a polygon
    assert (win.annot.structure, win.annot.tool) == ("hard_exudate", "polygon")
    with qtbot.waitSignal(win.scoring_done, timeout=30_000):
        polygon(qtbot, win, square(*far, 5))
    qtbot.waitUntil(lambda: scores_table(win).get("hard exudate") == "miss", timeout=20_000)
    # The stored scores (what badges, summary and report use) are of the drawn masks.
    with win.session.db.session() as s:
        from fundus_review.store import repo

        stored = {
            (sc.structure, sc.value)
            for sc in repo.list_scores(s, heatmap=win.annot.heatmap_id, metric="pointing_hit")
        }
    assert {("hemorrhage", 1.0), ("hard_exudate", 0.0)} <= stored
    # Deleting the region drops its scores and its row.
    win.annot.select(next(r.id for r in win.annot.regions if r.structure == "hard_exudate"))
    qtbot.keyClick(win.viewer, Qt.Key_Delete)
    qtbot.waitUntil(lambda: "hard exudate" not in scores_table(win), timeout=20_000)


def test_keys_move_through_the_browser_and_no_shortcut_is_ambiguous(qtbot, window) -> None:
    win = window
    annotate(qtbot, win)

    # Two actions on one key both go dead ("ambiguous shortcut"): every key has one action.
    keys = [
        k.toString() for a in win.findChildren(QAction) for k in a.shortcuts() if not k.isEmpty()
    ]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert {"E", "Ctrl+Z", "Ctrl+Y", "Esc", "Ctrl+1", "Ctrl+R", "F1", "Alt+Y"} <= set(keys)

    lst = win.browser.list
    lst.setFocus()
    first = win.browser.current_id()
    qtbot.keyClick(lst, Qt.Key_Down)
    second = win.browser.current_id()
    assert second != first
    qtbot.waitUntil(lambda: win.annot.image_id == second, timeout=20_000)
    qtbot.keyClick(lst, Qt.Key_E)  # a tool key while the list has the focus
    assert win.annot.tool == "ellipse" and win.browser.current_id() == second
    qtbot.keyClick(lst, Qt.Key_PageDown)
    last = win.browser.model.state.row_at(5).image_id
    assert win.browser.current_id() == last
    qtbot.keyClick(lst, Qt.Key_Up)
    # In the viewer (focused by drawing) the arrows still go to the list.
    win.viewer.setFocus()
    qtbot.keyClick(win.viewer, Qt.Key_Up)
    assert win.browser.current_id() == win.browser.model.state.row_at(3).image_id
    # Typing in the filter box types; it does not switch tools.
    win.browser.filters.text.setFocus()
    qtbot.keyClicks(win.browser.filters.text, "bp")
    assert win.browser.filters.text.text() == "bp" and win.annot.tool == "ellipse"
    win.browser.filters.text.clear()

    # Esc cancels a polygon being drawn; menu keys still switch views and the tools follow.
    qtbot.waitUntil(lambda: win.annot.image_id == win.photo[0].image_id, timeout=20_000)
    qtbot.keyClick(win.viewer, Qt.Key_P)
    click(qtbot, win, 20, 20)
    click(qtbot, win, 40, 20)
    assert win.annot.can_cancel()
    qtbot.keyClick(win.viewer, Qt.Key_Escape)
    assert not win.annot.can_cancel() and not win.last_error
    qtbot.keyClick(win, Qt.Key_2, Qt.ControlModifier)  # compare mode: the tools are off
    assert win.tabs.currentWidget() is win.compare and not win.annotating
    assert not win.annot_actions["delete"].isEnabled()
    qtbot.keyClick(win, Qt.Key_T)  # a tool key brings the viewer and the tools back
    assert win.tabs.currentWidget() is win.viewer and win.annotating and win.annot.tool == "point"


def test_the_reviewer_is_asked_once_when_first_annotating(
    qtbot, isolated, settings, monkeypatch, db_copy, gui_dataset, tiny_bundle
) -> None:
    asked = []

    def get_item(*args, **kwargs):  # noqa: ANN002, ANN003
        asked.append(args[3])  # the names offered: who already reviewed in this database
        return "Dr. Lee", True

    monkeypatch.setattr(QInputDialog, "getItem", get_item)
    win = open_window(qtbot, db_copy, gui_dataset, tiny_bundle, settings)
    assert asked == [] and win.annot.reviewer is None  # never at start-up
    annotate(qtbot, win)
    assert asked == [["reference"]] and win.annot.reviewer == "Dr. Lee"
    assert "Dr. Lee" in win.annot_panel.reviewer_label.text()
    win.side_tabs.setCurrentWidget(win.side)
    annotate(qtbot, win)
    win.close()
    win2 = open_window(qtbot, db_copy, gui_dataset, tiny_bundle, settings)
    annotate(qtbot, win2)
    assert len(asked) == 1 and win2.annot.reviewer == "Dr. Lee"
    win2.close()
