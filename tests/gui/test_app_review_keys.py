"""A whole review by keys only in the real main window: open the tools (Ctrl+E), judge each
image's heatmap (Alt+Y/P/N), mark it done and go on (Ctrl+Return), move back and forth (N,
Shift+N); the stored state is what the keys said. F1 lists every shortcut of the window."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction

from fundus_review.gui.annotate.shortcuts import ACTIONS, TOOLS, ShortcutHelp, help_html, key_text
from fundus_review.gui.settings import SETTINGS_SCHEMA
from fundus_review.review.editor import Editor
from tests.gui.conftest import open_window

ME = "Dr. Rao"

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, isolated, settings, db_copy, gui_dataset, tiny_bundle):  # noqa: ANN001
    settings.setValue("schema", SETTINGS_SCHEMA)
    settings.setValue("annotate/reviewer", ME)  # real use asks once, on first annotating
    win = open_window(qtbot, db_copy, gui_dataset, tiny_bundle, settings)
    yield win
    win.close()


VERDICT_KEYS = {"yes": Qt.Key_Y, "partly": Qt.Key_P, "no": Qt.Key_N}


def shown(qtbot, win) -> int:  # noqa: ANN001
    """Wait until the current image is shown with its heatmap; its id."""
    image_id = win.browser.current_id()
    qtbot.waitUntil(
        lambda: win.annot.image_id == image_id and win.annot.heatmap_id is not None,
        timeout=20_000,
    )
    return image_id


def test_a_whole_review_by_keys_only(qtbot, window) -> None:  # noqa: ANN001
    win = window
    qtbot.keyClick(win, Qt.Key_E, Qt.ControlModifier)  # Edit > Annotate this image
    assert win.annotating
    n = win.browser.model.rowCount()
    order, said = [], {}
    for i in range(n):
        image_id = shown(qtbot, win)
        verdict = ("yes", "partly", "no")[i % 3]
        qtbot.keyClick(win.focusWidget() or win, VERDICT_KEYS[verdict], Qt.AltModifier)
        said[image_id] = (verdict, win.annot.heatmap_id)
        order.append(image_id)
        qtbot.keyClick(win.focusWidget() or win, Qt.Key_Return, Qt.ControlModifier)
        if i < n - 1:
            qtbot.waitUntil(lambda left=image_id: win.browser.current_id() != left, timeout=20_000)
    assert len(set(order)) == n  # every image once, in the list's order
    assert order == [win.browser.model.state.row_at(i).image_id for i in range(n)]
    assert win.browser.current_id() == order[-1]  # the last one stays; the status bar says so
    assert "last image" in win.status_text.text()
    db = win.session.db
    run_ids = {hm for _, hm in said.values()}
    assert None not in run_ids
    for image_id, (verdict, heatmap_id) in said.items():
        ed = Editor(db, image_id, ME)
        assert ed.review_status()[0] == "done"
        assert ed.verdict(heatmap_id)[0] == verdict
    rows = win.browser.model.state
    qtbot.waitUntil(lambda: all(r.status == "done" for r in rows.rows), timeout=20_000)

    # N / Shift+N move one image; the verdict keys then judge that image's heatmap.
    qtbot.keyClick(win.focusWidget() or win, Qt.Key_N, Qt.ShiftModifier)
    qtbot.waitUntil(lambda: win.browser.current_id() == order[-2], timeout=20_000)
    shown(qtbot, win)
    qtbot.keyClick(win.focusWidget() or win, Qt.Key_N, Qt.AltModifier)
    assert Editor(db, order[-2], ME).verdict(said[order[-2]][1])[0] == "no"
    qtbot.keyClick(win.focusWidget() or win, Qt.Key_N)
    qtbot.waitUntil(lambda: win.browser.current_id() == order[-1], timeout=20_000)
    # Ctrl+Z undoes this image's last edit (its "done"), never another image's verdict.
    shown(qtbot, win)
    qtbot.keyClick(win.focusWidget() or win, Qt.Key_Z, Qt.ControlModifier)
    assert Editor(db, order[-1], ME).review_status()[0] == "unreviewed"
    assert Editor(db, order[-1], ME).verdict(said[order[-1]][1])[0] == said[order[-1]][0]
    assert Editor(db, order[-2], ME).verdict(said[order[-2]][1])[0] == "no"


def test_f1_lists_every_shortcut_of_the_window_in_groups(qtbot, window) -> None:  # noqa: ANN001
    win = window
    qtbot.keyClick(win, Qt.Key_F1)
    (box,) = [w for w in win.findChildren(ShortcutHelp) if w.isVisible()]
    text = box.text.text()
    for title in ("Tools", "Drawing", "Review", "Images", "Window"):
        assert f"<u>{title}" in text
    keys = {
        k.toString()
        for a in win.findChildren(QAction)
        for k in a.shortcuts()
        if not k.isEmpty() and a.isVisible()
    }
    listed = {k for cell in re.findall(r"<b>([^<]*)</b>", text) for k in cell.split(" / ")}
    assert "1-9: choose the n-th structure" in text
    missing = {k for k in keys if key_text(k) not in listed and not k.isdigit()}
    # Alternative keys of one action are named in its text ("redo (also Ctrl+Y)"; Enter is
    # the keypad's Return).
    assert missing <= {"Ctrl+Y", "Enter", "Ctrl+Enter"}, missing
    assert "Ctrl+Y" in text
    for key, _ in (*TOOLS.values(), *ACTIONS.values()):
        assert key_text(key) in help_html()
