"""The smart tools in the drawing window, by real mouse and key events: intelligent scissors
and box-to-region each make ONE polygon region that Ctrl+Z removes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from fundus_review.core.geometry import shape_mask
from fundus_review.review.editor import load_regions
from fundus_review.store import open_database
from tests.gui.test_annotate import (
    Window,
    click,
    drag,
    line,
    make_db,
    no_mouse_rate_limit,  # noqa: F401 - autouse fixture
)

pytestmark = pytest.mark.gui

SHAPE = (192, 256)
CX, CY, R = 128.0, 96.0, 40.0


def disc_photo() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    truth = np.hypot(xx + 0.5 - CX, yy + 0.5 - CY) < R
    gray = np.clip(np.where(truth, 190.0, 70.0) + rng.normal(0, 6, SHAPE), 0, 255)
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2), truth


@pytest.fixture
def swin(qtbot, tmp_path: Path, isolated, settings):  # noqa: ANN001
    image_id = make_db(tmp_path / "s.db", SHAPE)
    db = open_database(tmp_path / "s.db")
    w = Window(db, image_id, "Dr. Rao", shape=SHAPE, settings=settings)
    rgb, w.truth = disc_photo()
    w.photo.setImage(rgb)
    w.c.pixel_source = lambda: rgb
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.fit(SHAPE)
    w.db, w.image_id = db, image_id
    yield w
    w.c.shutdown()
    db.close()


def idle(qtbot, w: Window) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: not w.c.smart_busy(), timeout=10000)
    qtbot.wait(20)  # the worker's result comes back through a queued signal


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_scissors_path_snaps_to_the_edge_and_closes_into_one_undoable_polygon(qtbot, swin) -> None:  # noqa: ANN001
    c = swin.c
    c.set_structure("hemorrhage")
    qtbot.keyClick(swin, Qt.Key_S)
    assert c.tool == "scissors"
    click(qtbot, swin, CX + R, CY)
    idle(qtbot, swin)
    qtbot.mouseMove(swin.gw.viewport(), swin.at(CX, CY + R))  # hovering: the live path
    xs, ys = c.preview.getData()
    assert len(xs) > 20  # a path, not the straight rubber band
    d = np.abs(np.hypot(xs - CX, ys - CY) - R)
    assert d.mean() < 2.0
    for x, y in ((CX, CY + R), (CX - R, CY), (CX, CY - R)):
        click(qtbot, swin, x, y)
        idle(qtbot, swin)
    assert load_regions(swin.db, swin.image_id) == []  # nothing stored while drawing
    qtbot.keyClick(swin, Qt.Key_Return)  # closes the path
    (region,) = load_regions(swin.db, swin.image_id)
    assert region.kind == "polygon" and region.structure == "hemorrhage"
    assert 8 <= len(region.geometry["points"]) < 200
    assert iou(shape_mask(region.shape(), SHAPE), swin.truth) > 0.85
    assert c.preview.getData()[0] is None or len(c.preview.getData()[0]) == 0
    qtbot.keyClick(swin, Qt.Key_Z, Qt.ControlModifier)
    assert load_regions(swin.db, swin.image_id) == []
    c.undo_stack.redo()
    assert len(load_regions(swin.db, swin.image_id)) == 1


def test_scissors_backspace_and_escape_store_nothing(qtbot, swin) -> None:  # noqa: ANN001
    c = swin.c
    c.set_tool("scissors")
    click(qtbot, swin, CX + R, CY)
    click(qtbot, swin, CX, CY + R)
    idle(qtbot, swin)
    assert len(c._anchors) == 2
    qtbot.keyClick(swin, Qt.Key_Backspace)
    assert len(c._anchors) == 1
    assert c.can_cancel()
    c.cancel()
    idle(qtbot, swin)
    assert c._anchors == [] and load_regions(swin.db, swin.image_id) == []
    assert swin.errors == []


def test_box_outlines_the_disc_as_one_undoable_polygon(qtbot, swin) -> None:  # noqa: ANN001
    c = swin.c
    c.set_structure("optic_disc", switch_tool=False)
    qtbot.keyClick(swin, Qt.Key_G)
    assert c.tool == "box"
    drag(qtbot, swin, line((CX - R - 10, CY - R - 10), (CX + R + 10, CY + R + 10)))
    qtbot.waitUntil(lambda: len(load_regions(swin.db, swin.image_id)) == 1, timeout=10000)
    (region,) = load_regions(swin.db, swin.image_id)
    assert region.kind == "polygon" and region.structure == "optic_disc"
    assert iou(shape_mask(region.shape(), SHAPE), swin.truth) > 0.85
    assert c.undo_stack.count() == 1
    c.undo_stack.undo()
    assert load_regions(swin.db, swin.image_id) == []


def test_box_without_the_photo_or_too_small_stores_nothing_and_says_why(qtbot, swin) -> None:  # noqa: ANN001
    c = swin.c
    c.set_tool("box")
    c.pixel_source = lambda: None
    drag(qtbot, swin, line((20, 20), (80, 80)))
    assert any("not loaded" in e for e in swin.errors)
    rgb, _ = disc_photo()
    c.pixel_source = lambda: rgb
    c.on_drag("start", 30, 30, Qt.NoModifier)  # a 3-px box: GrabCut refuses it
    c.on_drag("finish", 33, 60, Qt.NoModifier)
    idle(qtbot, swin)
    assert any("at least" in e for e in swin.errors)
    assert load_regions(swin.db, swin.image_id) == []


def test_a_box_result_after_the_image_changed_is_dropped(qtbot, swin, tmp_path) -> None:  # noqa: ANN001
    c = swin.c
    c.set_tool("box")
    drag(qtbot, swin, line((CX - R - 10, CY - R - 10), (CX + R + 10, CY + R + 10)))
    first = swin.image_id
    c.set_image(None)  # before the worker reports back
    idle(qtbot, swin)
    qtbot.wait(100)
    assert load_regions(swin.db, first) == []


def test_scissors_closing_after_one_anchor_stores_nothing_and_says_why(qtbot, swin) -> None:  # noqa: ANN001
    c = swin.c
    c.set_tool("scissors")
    messages: list[str] = []
    c.message.connect(messages.append)
    click(qtbot, swin, CX + R, CY)
    idle(qtbot, swin)
    qtbot.keyClick(swin, Qt.Key_Return)
    assert any("at least 2 anchors" in m for m in messages)
    assert load_regions(swin.db, swin.image_id) == [] and c._anchors == []


def test_f1_lists_an_action_of_no_group_under_more(monkeypatch) -> None:  # noqa: ANN001
    from fundus_review.gui.annotate import shortcuts

    monkeypatch.setitem(shortcuts.ACTIONS, "added_later", ("Ctrl+K", "an action added later"))
    html = shortcuts.help_html([("Ctrl+R", "Run on current image")])
    assert html.index("<u>More") < html.index("an action added later") < html.index("<u>Window")
    assert "Run on current image" in html
    monkeypatch.delitem(shortcuts.ACTIONS, "added_later")
    assert "<u>More" not in shortcuts.help_html()  # every shipped action is in a group
