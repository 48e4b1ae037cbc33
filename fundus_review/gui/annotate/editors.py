"""Live editors: the ONE shape being edited is a pyqtgraph ROI; all others are plain outlines.

Each editor converts between its ROI state and a ``core.geometry`` shape and calls ``on_done``
with the new shape when a drag (of the whole shape, a handle or a vertex) finishes - that is one
finished edit, committed at once by the controller.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt

from fundus_review.core.geometry import Ellipse, GeometryError, Point, Polygon, Shape
from fundus_review.gui.annotate.layers import Z_EDITOR

Done = Callable[[Shape], None]


def _rot(angle_deg: float, x: float, y: float) -> tuple[float, float]:
    t = math.radians(angle_deg)
    return x * math.cos(t) - y * math.sin(t), x * math.sin(t) + y * math.cos(t)


class EllipseEditor(pg.EllipseROI):
    """Move by dragging, resize with the axis and corner handles, rotate with the round handle."""

    def __init__(self, ellipse: Ellipse, color, on_done: Done) -> None:
        w, h = 2 * ellipse.rx, 2 * ellipse.ry
        dx, dy = _rot(ellipse.angle, w / 2, h / 2)
        super().__init__(
            [ellipse.cx - dx, ellipse.cy - dy], [w, h], angle=ellipse.angle,
            pen=pg.mkPen(color, width=2), hoverPen=pg.mkPen("w", width=2),
            handlePen=pg.mkPen("w"), movable=True, rotatable=True, resizable=True,
            removable=False,
        )  # fmt: skip
        # Independent axes: the default diagonal handle plus one handle per axis, all about the
        # centre, so the disc's centre stays put while its width or height is adjusted.
        self.addScaleHandle([0.5, 0.0], [0.5, 0.5])
        self.addScaleHandle([0.0, 0.5], [0.5, 0.5])
        self.setZValue(Z_EDITOR)
        self._on_done = on_done
        self.sigRegionChangeFinished.connect(self._finished)

    def ellipse(self) -> Ellipse:
        pos, size, angle = self.pos(), self.size(), float(self.angle())
        dx, dy = _rot(angle, size[0] / 2, size[1] / 2)
        a = ((angle + 180.0) % 360.0) - 180.0
        return Ellipse(round(pos[0] + dx, 3), round(pos[1] + dy, 3),
                       round(abs(size[0]) / 2, 3), round(abs(size[1]) / 2, 3), round(a, 3))  # fmt: skip

    def current(self) -> Ellipse:
        return self.ellipse()

    def _finished(self) -> None:
        try:
            self._on_done(self.ellipse())
        except GeometryError:
            pass  # a zero-size ellipse while dragging: nothing to store


class PolygonEditor(pg.PolyLineROI):
    """Drag a vertex; click an edge to insert one; Shift+click / right-click a vertex deletes it."""

    def __init__(self, polygon: Polygon, color, on_done: Done) -> None:
        self._on_done: Done | None = None
        super().__init__(
            [list(p) for p in polygon.points], closed=True, pen=pg.mkPen(color, width=2),
            hoverPen=pg.mkPen("w", width=2), handlePen=pg.mkPen("w"), movable=True,
        )  # fmt: skip
        self.setZValue(Z_EDITOR)
        self._on_done = on_done
        self.sigRegionChangeFinished.connect(self._finished)

    def addHandle(self, info, index=None):  # noqa: N802 - pyqtgraph API
        h = super().addHandle(info, index=index)
        h.sigClicked.connect(self._handle_clicked)
        return h

    def _handle_clicked(self, handle, ev) -> None:
        if ev.button() == Qt.LeftButton and ev.modifiers() & (
            Qt.ShiftModifier | Qt.ControlModifier
        ):
            if self.checkRemoveHandle(handle):
                self.removeHandle(handle)

    def polygon(self) -> Polygon:
        pts = [self.mapToParent(h["item"].pos()) for h in self.handles]
        return Polygon(tuple((round(p.x(), 3), round(p.y(), 3)) for p in pts))

    def current(self) -> Polygon:
        return self.polygon()

    def _finished(self) -> None:
        if self._on_done is None or len(self.handles) < 3:
            return
        try:
            self._on_done(self.polygon())
        except GeometryError:
            pass


class PointEditor(pg.TargetItem):
    """A draggable marker; the stored point keeps its radius."""

    def __init__(self, point: Point, color, on_done: Done) -> None:
        super().__init__(pos=QPointF(point.x, point.y), size=14, symbol="crosshair",
                         pen=pg.mkPen(color, width=2), movable=True)  # fmt: skip
        self.setZValue(Z_EDITOR)
        self.radius = point.radius
        self._on_done = on_done
        self.sigPositionChangeFinished.connect(self._finished)

    def point(self) -> Point:
        p = self.pos()
        return Point(round(p.x(), 3), round(p.y(), 3), self.radius)

    def current(self) -> Point:
        return self.point()

    def _finished(self) -> None:
        self._on_done(self.point())


def make_editor(shape: Shape, color, on_done: Done):  # noqa: ANN201 - one of the editors
    if isinstance(shape, Ellipse):
        return EllipseEditor(shape, color, on_done)
    if isinstance(shape, Polygon):
        return PolygonEditor(shape, color, on_done)
    if isinstance(shape, Point):
        return PointEditor(shape, color, on_done)
    return None  # painted regions are edited with the brush and eraser
