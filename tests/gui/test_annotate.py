"""Drawing tools driven by real mouse and keyboard events on a pyqtgraph view (offscreen).

The test window hosts the tools exactly as the review app does: a row-major ImageItem at (0, 0)
in an aspect-locked, y-inverted ViewBox, the AnnotationController on that ViewBox and the
AnnotationPanel beside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QHBoxLayout, QInputDialog, QWidget

from fundus_review.core.geometry import Ellipse, Polygon, rasterize, shape_mask
from fundus_review.gui.annotate import (
    AnnotationController,
    AnnotationPanel,
    ensure_reviewer,
    install_actions,
)
from fundus_review.gui.annotate.editors import EllipseEditor, PolygonEditor
from fundus_review.gui.annotate.layers import region_outline
from fundus_review.gui.annotate.shortcuts import TOOLS, help_html
from fundus_review.review.editor import Editor, load_regions
from fundus_review.store import open_database, repo
from fundus_review.views.overlays import mask_outline

H, W = 96, 128


@pytest.fixture(autouse=True)
def no_mouse_rate_limit():
    # pyqtgraph drops mouse moves closer than 10 ms apart; synthetic events come faster.
    old = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", -1)
    yield
    pg.setConfigOption("mouseRateLimit", old)


def make_db(path: Path, shape: tuple[int, int] = (H, W)) -> int:
    with open_database(path) as db, db.session() as s:
        ds = repo.get_or_create_dataset(s, path.parent / "data")
        img = repo.upsert_image(s, ds, f"img_{shape[1]}.png", shape[1], shape[0],
                                hashlib.sha256(str(shape).encode()).hexdigest())  # fmt: skip
        return img.id


class Window(QWidget):
    """Photo view + controller + panel, like the review app's viewer tab."""

    def __init__(self, db, image_id: int, reviewer: str | None, shape=(H, W), settings=None):  # noqa: ANN001
        super().__init__()
        self.gw = pg.GraphicsLayoutWidget()
        self.gw.setFixedSize(640, 480)
        self.view = self.gw.ci.addViewBox(lockAspect=True, invertY=True)
        self.photo = pg.ImageItem(np.zeros((*shape, 3), np.uint8), axisOrder="row-major")
        self.view.addItem(self.photo)
        self.c = AnnotationController(self.view, db, image_id, reviewer=reviewer)
        self.panel = AnnotationPanel(self.c, settings)
        self.actions_ = install_actions(self.c, self)
        lay = QHBoxLayout(self)
        lay.addWidget(self.gw)
        lay.addWidget(self.panel)
        self.errors: list[str] = []
        self.c.error.connect(self.errors.append)

    def fit(self, shape=(H, W)) -> None:
        self.view.setRange(xRange=(0, shape[1]), yRange=(0, shape[0]), padding=0)

    def at(self, x: float, y: float):  # noqa: ANN201 - QPoint in the viewport
        return self.gw.mapFromScene(self.view.mapViewToScene(QPointF(x, y)))


@pytest.fixture
def win(qtbot, tmp_path: Path, isolated, settings):  # noqa: ANN001
    image_id = make_db(tmp_path / "a.db")
    db = open_database(tmp_path / "a.db")
    w = Window(db, image_id, "Dr. Rao", settings=settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.fit()
    w.db, w.image_id, w.path = db, image_id, tmp_path / "a.db"
    yield w
    w.c.detach()
    db.close()


def drag(qtbot, w: Window, points: list[tuple[float, float]], modifier=Qt.NoModifier) -> None:  # noqa: ANN001
    vp = w.gw.viewport()
    qtbot.mousePress(vp, Qt.LeftButton, modifier, w.at(*points[0]))
    for p in points[1:]:
        qtbot.mouseMove(vp, w.at(*p))
    qtbot.mouseRelease(vp, Qt.LeftButton, modifier, w.at(*points[-1]))


def click(qtbot, w: Window, x: float, y: float, modifier=Qt.NoModifier) -> None:  # noqa: ANN001
    qtbot.mouseClick(w.gw.viewport(), Qt.LeftButton, modifier, w.at(x, y))


def double_click(qtbot, w: Window, x: float, y: float) -> None:  # noqa: ANN001
    """What a real double-click delivers: press, release, double-click, release (QTest's
    mouseDClick alone sends only the double-click event)."""
    vp, at = w.gw.viewport(), w.at(x, y)
    qtbot.mouseClick(vp, Qt.LeftButton, Qt.NoModifier, at)
    qtbot.mouseDClick(vp, Qt.LeftButton, Qt.NoModifier, at)
    qtbot.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, at)


def line(a: tuple[float, float], b: tuple[float, float], n: int = 8) -> list[tuple[float, float]]:
    return [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for t in np.linspace(0, 1, n)]


def contents(db, image_id: int) -> list:  # noqa: ANN001
    return sorted((r.structure, r.kind, r.content.raster) for r in load_regions(db, image_id))


def assert_whole(region) -> None:  # noqa: ANN001
    """Stored raster = the stored geometry rasterised: metrics and re-editing agree."""
    np.testing.assert_array_equal(region.mask(), rasterize(region.kind, region.geometry, (H, W)))


def test_draw_ellipse_polygon_brush_undo_redo_and_find_them_after_a_restart(qtbot, win, tmp_path):  # noqa: ANN001
    c = win.c
    c.set_structure("optic_disc")  # default tool: ellipse
    assert c.tool == "ellipse"
    drag(qtbot, win, line((40, 30), (80, 60)))
    (ell,) = c.regions
    g = ell.geometry
    assert ell.kind == "ellipse" and abs(g["cx"] - 60) < 1 and abs(g["cy"] - 45) < 1
    assert abs(g["rx"] - 20) < 1 and abs(g["ry"] - 15) < 1
    assert isinstance(c.live, EllipseEditor)  # the new shape is the one live ROI

    c.set_structure("hemorrhage")  # default tool: polygon
    assert c.tool == "polygon" and c.selected_id == ell.id
    for x, y in ((10, 10), (30, 12), (25, 30)):
        click(qtbot, win, x, y)
    double_click(qtbot, win, 12, 28)
    poly = next(r for r in c.regions if r.kind == "polygon")
    pts = np.array(poly.geometry["points"])
    assert len(pts) == 4 and np.abs(pts - [(10, 10), (30, 12), (25, 30), (12, 28)]).max() < 0.6
    assert isinstance(c.live, PolygonEditor)

    c.set_structure("microaneurysm")  # default tool: brush
    qtbot.keyClick(win, Qt.Key_Escape)  # deselect: the stroke starts a new region
    c.set_brush_size(6)
    drag(qtbot, win, line((90, 20), (120, 40), 10))
    brush = next(r for r in c.regions if r.kind == "brush")
    (op,) = brush.geometry["ops"]
    assert op["op"] == "paint" and op["radius"] == 3.0 and len(op["points"]) >= 5
    m = brush.mask()
    assert m[20, 90] and m[40, 119] and not m[40, 90] and m.sum() > 150
    for r in c.regions:
        assert_whole(r)
    drawn = contents(win.db, win.image_id)
    assert len(drawn) == 3

    stack = c.undo_stack
    for expected in (2, 1, 0):
        stack.undo()
        assert len(load_regions(win.db, win.image_id)) == expected
    assert c.regions == [] and c.live is None
    for _ in range(3):
        stack.redo()
    assert contents(win.db, win.image_id) == drawn

    # "Restart": a new database connection and a new controller on a new view find everything.
    win.c.detach()
    with open_database(win.path) as db2:
        w2 = Window(db2, win.image_id, "Dr. Rao")
        qtbot.addWidget(w2)
        assert contents(db2, win.image_id) == drawn
        assert sorted((r.structure, r.kind, r.content.raster) for r in w2.c.regions) == drawn
        assert len(w2.c.outlines.items) == 3
        w2.c.detach()


def test_a_painted_regions_outline_is_its_masks_outline(tmp_path) -> None:  # noqa: ANN001
    """The annotate layer traces only the mask's box, but draws the viewer's outline exactly."""
    image_id = make_db(tmp_path / "outline.db")
    m = np.zeros((H, W), bool)
    m[30:50, 70:100] = True
    m[38:42, 80:85] = False  # a hole: its inner boundary is drawn too
    m[5:8, 5:9] = True  # a second piece far from the first
    with open_database(tmp_path / "outline.db") as db:
        with db.session() as s:
            lab = repo.get_or_create_reviewer(s, "lab")
            repo.replace_imported_mask(s, image_id, lab, "vessels", m, "import:x")
        (region,) = load_regions(db, image_id)
    xy = region_outline(region)
    assert np.isnan(xy[:, 0]).sum() == 2  # three closed pieces
    np.testing.assert_array_equal(xy, mask_outline(m))
    assert np.nanmin(xy, axis=0).tolist() == [5.5, 5.5]
    assert np.nanmax(xy, axis=0).tolist() == [99.5, 49.5]


def test_polygon_vertices_drag_insert_and_delete(qtbot, win) -> None:  # noqa: ANN001
    c = win.c
    Editor(win.db, win.image_id, "Dr. Rao")  # same reviewer as the window
    c.set_structure("hemorrhage")
    for x, y in ((20, 20), (60, 20), (60, 60), (20, 60)):
        click(qtbot, win, x, y)
    qtbot.keyClick(win, Qt.Key_Return)
    (poly,) = c.regions
    assert len(poly.geometry["points"]) == 4
    drag(qtbot, win, line((60, 60), (75, 70), 6))  # drag the third vertex
    (poly,) = c.regions
    assert np.abs(np.array(poly.geometry["points"][2]) - (75, 70)).max() < 0.6
    click(qtbot, win, 40, 20)  # click on the top edge: a vertex is inserted
    (poly,) = c.regions
    assert len(poly.geometry["points"]) == 5
    click(qtbot, win, 75, 70, Qt.ShiftModifier)  # Shift+click deletes a vertex
    (poly,) = c.regions
    pts = np.array(poly.geometry["points"])
    assert len(pts) == 4 and np.abs(pts - (75, 70)).sum(axis=1).min() > 5
    assert_whole(poly)
    assert c.undo_stack.count() == 4  # create + three vertex edits, each its own step
    c.undo_stack.undo()
    assert len(c.regions[0].geometry["points"]) == 5


def test_rotating_the_live_ellipse_is_one_stored_edit(qtbot, win) -> None:  # noqa: ANN001
    c = win.c
    c.set_structure("optic_cup")
    drag(qtbot, win, line((50, 40), (90, 60)))
    before = c.regions[0]
    c.live.setAngle(30, center=(0.5, 0.5))  # what dragging the round handle does
    after = c.regions[0]
    assert after.id == before.id and abs(after.geometry["angle"] - 30) < 1e-6
    assert abs(after.geometry["cx"] - before.geometry["cx"]) < 1e-2  # rotated about its centre
    e = Ellipse(**after.geometry)
    np.testing.assert_array_equal(after.mask(), shape_mask(e, (H, W)))
    c.undo_stack.undo()
    assert c.regions[0].content == before.content


def test_fill_and_eraser(qtbot, win) -> None:  # noqa: ANN001
    c = win.c
    c.set_structure("hard_exudate")
    c.set_brush_size(4)
    ring = [(64 + 25 * np.cos(a), 48 + 25 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 40)]
    drag(qtbot, win, ring)
    (r,) = c.regions
    assert not r.mask()[48, 64]
    c.set_tool("fill")
    click(qtbot, win, 64.5, 48.5)
    (filled,) = c.regions
    assert filled.id == r.id and filled.mask()[48, 64] and filled.mask()[30:66, 46:82].all()
    assert [op["op"] for op in filled.geometry["ops"]] == ["paint", "fill"]
    c.set_tool("eraser")
    c.set_brush_size(10)
    drag(qtbot, win, line((30, 48), (100, 48), 12))
    (erased,) = c.regions
    assert not erased.mask()[46:51, 45:84].any() and erased.mask()[35, 64]
    assert_whole(erased)
    c.undo_stack.undo()
    assert c.regions[0].content == filled.content
    click(qtbot, win, 5, 5)  # a click with the eraser far away changes nothing
    assert c.undo_stack.count() == 3 and not win.errors


def test_erasing_an_ellipse_turns_it_into_a_painted_region_and_undo_brings_it_back(
    qtbot, win
) -> None:  # noqa: ANN001
    c = win.c
    c.set_structure("optic_disc")
    drag(qtbot, win, line((40, 30), (80, 60)))
    (ell,) = c.regions
    c.set_tool("eraser")  # the ellipse stays selected, so the stroke erases from it only
    assert c.selected_id == ell.id and c.live is None  # no ROI to grab the stroke
    drag(qtbot, win, line((50, 45), (70, 45), 6))  # starts inside the ellipse
    (painted,) = c.regions
    assert painted.kind == "brush" and painted.geometry["base"]["kind"] == "ellipse"
    assert painted.geometry["base"]["geometry"] == ell.geometry  # erased, not moved
    assert not painted.mask()[45, 52:68].any()
    assert painted.mask().sum() < ell.mask().sum()
    assert_whole(painted)
    c.undo_stack.undo()
    assert [(r.id, r.kind) for r in c.regions] == [(ell.id, "ellipse")]


def test_other_reviewers_regions_are_read_only_and_can_be_hidden(qtbot, win) -> None:  # noqa: ANN001
    kim = Editor(win.db, win.image_id, "Dr. Kim")
    kim.create("optic_disc", Ellipse(30, 30, 10, 10))
    win.c.reload()
    (theirs,) = win.c.regions
    assert theirs.reviewer == "Dr. Kim" and theirs.id in win.c.outlines.items
    assert win.c.outlines.items[theirs.id].opts["pen"].style() == Qt.DashLine
    win.c.set_tool("select")
    click(qtbot, win, 30, 30)
    assert win.c.selected_id == theirs.id and win.c.live is None  # selectable, not editable
    qtbot.keyClick(win, Qt.Key_Delete)
    assert win.errors and "read-only" in win.errors[-1]
    assert len(load_regions(win.db, win.image_id)) == 1
    qtbot.keyClick(win, Qt.Key_H)
    assert not win.c.others_visible and theirs.id not in win.c.outlines.items
    assert win.c.region_at(30, 30) is None
    assert not win.panel.others.isChecked()


def test_keyboard_shortcuts_and_help(qtbot, win) -> None:  # noqa: ANN001
    c = win.c
    for tool, (key, _) in TOOLS.items():
        qtbot.keyClick(win, key.lower())
        assert c.tool == tool
        assert key in help_html()
    size = c.brush_diameter
    qtbot.keyClick(win, "]")
    assert c.brush_diameter == pytest.approx(size * 1.25)
    qtbot.keyClick(win, "4")
    assert c.structure == "hemorrhage" and c.tool == "polygon"
    click(qtbot, win, 10, 10)
    click(qtbot, win, 30, 10)
    qtbot.keyClick(win, Qt.Key_Backspace)  # removes the last vertex
    click(qtbot, win, 30, 30)
    click(qtbot, win, 10, 30)
    qtbot.keyClick(win, Qt.Key_Return)
    pts = c.regions[0].geometry["points"]
    assert len(pts) == 3 and abs(pts[1][1] - 30) < 0.6
    qtbot.keyClick(win, Qt.Key_Z, Qt.ControlModifier)
    assert c.regions == []
    qtbot.keyClick(win, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert len(c.regions) == 1
    qtbot.keyClick(win, Qt.Key_F1)
    dialogs = [w for w in win.findChildren(QWidget) if w.windowTitle().startswith("Drawing tools")]
    assert dialogs and dialogs[0].isVisible()
    dialogs[0].close()


def test_review_status_and_verdict_widgets_save_at_once(qtbot, win) -> None:  # noqa: ANN001
    with win.db.session() as s:
        model = repo.get_or_create_model(s, "m", "timm:resnet18", {"classes": ["a"]}, "0" * 64, "x")
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
        hm_id = repo.save_heatmap(s, run, win.image_id, 0, np.zeros((8, 8), np.float32)).id
    box = win.panel.review
    assert not box.verdicts.button(0).isEnabled()  # no heatmap shown yet
    win.c.set_heatmap(hm_id)
    box.verdicts.button(1).click()  # "Partly"
    ed = Editor(win.db, win.image_id, "Dr. Rao")
    assert ed.verdict(hm_id) == ("partly", "")
    box.verdict_comment.setText("ignores the cup")
    box.verdict_comment.editingFinished.emit()
    assert ed.verdict(hm_id) == ("partly", "ignores the cup")
    qtbot.keyClick(win, Qt.Key_Y, Qt.AltModifier)
    assert ed.verdict(hm_id)[0] == "yes"
    box.status.setCurrentIndex(box.status.findData("flagged"))
    box.status.activated.emit(box.status.currentIndex())
    assert ed.review_status()[0] == "flagged"
    win.c.undo_stack.undo()
    assert ed.review_status()[0] == "unreviewed" and box.status.currentData() == "unreviewed"
    win.c.undo_stack.undo()
    assert ed.verdict(hm_id)[0] == "partly" and box.verdicts.button(1).isChecked()


def test_reviewer_is_asked_once_and_can_be_changed(qtbot, win, settings, monkeypatch) -> None:  # noqa: ANN001
    answers = iter([("Dr. Rao", True), ("Dr. Lee", True)])
    asked = []

    def fake_get_item(*args, **kwargs):  # noqa: ANN002, ANN003
        asked.append(args[3])  # the names offered
        return next(answers)

    monkeypatch.setattr(QInputDialog, "getItem", fake_get_item)
    assert ensure_reviewer(None, settings, win.db) == "Dr. Rao"
    assert ensure_reviewer(None, settings, win.db) == "Dr. Rao" and len(asked) == 1
    win.c.set_structure("optic_disc")
    drag(qtbot, win, line((40, 30), (80, 60)))
    win.panel.change_reviewer.click()  # -> Dr. Lee
    assert win.c.reviewer == "Dr. Lee" and "Dr. Rao" in asked[1]
    assert "Dr. Lee" in win.panel.reviewer_label.text()
    (old,) = win.c.regions
    assert not win.c.own(old)  # Dr. Rao's region is now read-only
    assert win.c.undo_stack.count() == 0  # Dr. Lee has nothing to undo


def test_undo_of_a_region_changed_in_another_instance_is_refused(qtbot, win) -> None:  # noqa: ANN001
    c = win.c
    c.set_structure("optic_disc")
    drag(qtbot, win, line((40, 30), (80, 60)))
    (mine,) = c.regions
    with open_database(win.path) as other_db:  # a second app instance, same reviewer
        other = Editor(other_db, win.image_id, "Dr. Rao")
        other.edit(other.regions()[0], Ellipse(10, 10, 5, 5))
    c.undo_stack.undo()
    assert win.errors and "another window" in win.errors[-1]
    (now,) = load_regions(win.db, win.image_id)
    assert now.id == mine.id and now.geometry == Ellipse(10, 10, 5, 5).to_dict()
    assert c.undo_stack.count() == 0 and c.regions[0].geometry == now.geometry


def test_large_image_only_one_live_roi_and_local_brush_updates(qtbot, tmp_path, isolated) -> None:  # noqa: ANN001
    shape = (2848, 4288)
    image_id = make_db(tmp_path / "big.db", shape)
    with open_database(tmp_path / "big.db") as db:
        w = Window(db, image_id, "Dr. Rao", shape=shape)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        w.fit(shape)
        ed = Editor(db, image_id, "Dr. Rao")
        for i in range(12):
            ed.create(
                "hemorrhage",
                Polygon(((100 + 300 * i, 100), (250 + 300 * i, 120), (180 + 300 * i, 300))),
            )
        w.c.reload()
        w.c.set_structure("optic_disc")
        drag(qtbot, w, line((1500, 1000), (2500, 1800)))
        rois = [
            it for it in w.view.childGroup.childItems() if isinstance(it, pg.ROI | pg.TargetItem)
        ]
        assert len(rois) == 1 and len(w.c.outlines.items) == 12  # 12 outlines + 1 live ROI
        qtbot.keyClick(w, Qt.Key_Escape)
        w.c.set_structure("microaneurysm")
        w.c.set_brush_size(30)
        w.c.overlay.uploads = 0
        drag(qtbot, w, line((3000, 2000), (3200, 2100), 8))
        # A stroke re-uploads only the few 256-px tiles it touches (the image has 204).
        assert 0 < w.c.overlay.uploads <= 30
        brush = next(r for r in w.c.regions if r.kind == "brush")
        m = brush.mask()
        assert m.shape == shape and m[2000, 3000] and m.sum() < 30_000
        w.c.detach()


def test_point_tool_marks_and_moves_the_fovea(qtbot, win) -> None:  # noqa: ANN001
    c = win.c
    c.set_structure("macula_fovea")
    assert c.tool == "point"
    click(qtbot, win, 70.3, 50.6)
    (pt,) = c.regions
    assert pt.kind == "point" and abs(pt.geometry["x"] - 70.3) < 0.6
    assert (
        pt.mask().sum() == 1
        and pt.mask()[math_floor(pt.geometry["y"]), math_floor(pt.geometry["x"])]
    )
    drag(qtbot, win, line((pt.geometry["x"], pt.geometry["y"]), (90, 20), 6))  # drag the marker
    (moved,) = c.regions
    assert (
        moved.id == pt.id
        and abs(moved.geometry["x"] - 90) < 0.6
        and abs(moved.geometry["y"] - 20) < 0.6
    )
    assert_whole(moved)


def math_floor(v: float) -> int:
    return int(np.floor(v))


def test_users_add_structures_that_persist_and_database_structures_are_listed(
    qtbot, win, monkeypatch, isolated
) -> None:  # noqa: ANN001
    from fundus_review.gui.annotate.panel import AddStructureDialog
    from fundus_review.review.labelsets import load_label_set

    def fake_exec(dlg):  # noqa: ANN001
        dlg.name.setText("Drusen")
        dlg.tool.setCurrentText("brush")
        dlg.color = (10, 200, 30)
        return AddStructureDialog.Accepted

    monkeypatch.setattr(AddStructureDialog, "exec", fake_exec)
    win.panel.add_structure()
    assert win.c.structure == "drusen" and win.c.tool == "brush"
    listed = [
        win.panel.structures.item(i).data(Qt.UserRole) for i in range(win.panel.structures.count())
    ]
    assert listed[-1] == "drusen"
    assert load_label_set()["drusen"].color == (10, 200, 30)  # saved in the user's label file
    m = np.zeros((H, W), bool)
    m[5:9, 5:9] = True
    with win.db.session() as s:
        repo.replace_imported_mask(s, win.image_id, repo.get_or_create_reviewer(s, "lab"), "vessels",
                                   m, "import:x")  # fmt: skip
    win.c.reload()
    listed = [
        win.panel.structures.item(i).data(Qt.UserRole) for i in range(win.panel.structures.count())
    ]
    assert "vessels" in listed


def test_edits_of_another_instance_show_up_without_a_restart(qtbot, win) -> None:  # noqa: ANN001
    assert win.c.poll_database() is False  # nothing changed yet
    with open_database(win.path) as other_db:  # a colleague's app on the same database
        Editor(other_db, win.image_id, "Dr. Kim").create(
            "hemorrhage", Polygon(((5, 5), (20, 5), (9, 15)))
        )
    assert win.c.poll_database() is True
    (r,) = win.c.regions
    assert r.reviewer == "Dr. Kim" and r.id in win.c.outlines.items
    assert win.c.poll_database() is False


def test_zoom_and_pan_while_a_drawing_tool_is_active(qtbot, win) -> None:  # noqa: ANN001
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    c = win.c
    c.set_structure("microaneurysm")  # brush
    vp = win.gw.viewport()
    before = win.view.viewRange()
    qtbot.mousePress(vp, Qt.MiddleButton, Qt.NoModifier, win.at(60, 50))
    for p in line((60, 50), (40, 40), 6)[1:]:
        qtbot.mouseMove(vp, win.at(*p))
    qtbot.mouseRelease(vp, Qt.MiddleButton, Qt.NoModifier, win.at(40, 40))
    panned = win.view.viewRange()
    assert panned[0][0] > before[0][0] + 5 and c.regions == []  # panned, nothing painted
    win.fit()
    panned = win.view.viewRange()
    at = win.at(64, 48)
    wheel = QWheelEvent(QPointF(at), QPointF(vp.mapToGlobal(at)), QPoint(0, 0), QPoint(0, 240),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)  # fmt: skip
    QApplication.sendEvent(vp, wheel)
    zoomed = win.view.viewRange()
    assert zoomed[0][1] - zoomed[0][0] < 0.9 * (panned[0][1] - panned[0][0])
    drag(qtbot, win, line((60, 48), (68, 48), 5))  # and the brush still paints, zoomed in
    assert len(c.regions) == 1 and c.regions[0].kind == "brush"


def test_switching_images_and_databases_keeps_histories_apart(qtbot, win, tmp_path) -> None:  # noqa: ANN001
    c = win.c
    with win.db.session() as s:
        ds = repo.list_datasets(s)[0]
        second = repo.upsert_image(s, ds, "second.png", W, H, "b" * 64).id
    c.set_structure("optic_disc")
    drag(qtbot, win, line((40, 30), (80, 60)))
    first_stack = c.undo_stack
    c.set_image(second, (H, W))
    assert c.regions == [] and c.undo_stack is not first_stack and c.undo_stack.count() == 0
    drag(qtbot, win, line((10, 10), (30, 30)))
    c.undo_stack.undo()  # undoes the second image's ellipse only
    assert load_regions(win.db, second) == [] and len(load_regions(win.db, win.image_id)) == 1
    c.set_image(win.image_id, (H, W))
    assert c.undo_stack is first_stack and len(c.regions) == 1
    other = tmp_path / "other.db"
    other_image = make_db(other)
    with open_database(other) as db2:
        c.set_database(db2)
        assert c.image_id is None and c.undo_stack is None
        c.set_image(other_image, (H, W))
        assert c.regions == [] and c.undo_stack.count() == 0
        c.detach()
