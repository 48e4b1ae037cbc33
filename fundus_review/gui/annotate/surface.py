"""The invisible input layer over the image that turns mouse gestures into tool events.

It sits above the photo and the outlines but below the live ROI, so ROI handles keep working.
Left-button gestures go to the active tool; every other button, and left drags the tool does not
want (the select tool), fall through to the ViewBox, which pans and zooms as usual - zooming and
panning while drawing never needs a mode switch.
"""

from __future__ import annotations

from typing import Protocol

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QGraphicsEllipseItem

from fundus_review.gui.annotate.layers import Z_PREVIEW, Z_SURFACE


class ToolSink(Protocol):
    def wants_drag(self) -> bool: ...
    def on_click(self, x: float, y: float, double: bool, modifiers) -> None: ...  # noqa: ANN001
    def on_drag(self, phase: str, x: float, y: float, modifiers) -> None: ...  # noqa: ANN001
    def on_hover(self, x: float, y: float) -> None: ...


class DrawSurface(pg.GraphicsObject):
    def __init__(self, sink: ToolSink, shape: tuple[int, int]) -> None:
        super().__init__()
        self.sink = sink
        self.rect = QRectF(0, 0, shape[1], shape[0])
        self.setZValue(Z_SURFACE)
        self.setAcceptHoverEvents(True)
        self.active = True

    def set_shape(self, shape: tuple[int, int]) -> None:
        self.prepareGeometryChange()
        self.rect = QRectF(0, 0, shape[1], shape[0])

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return self.rect

    def paint(self, painter, option, widget=None) -> None:  # noqa: ANN001 - draws nothing
        pass

    def mouseClickEvent(self, ev) -> None:  # noqa: N802, ANN001 - pyqtgraph API
        if not self.active or ev.button() != Qt.LeftButton:
            ev.ignore()
            return
        ev.accept()
        p = ev.pos()
        self.sink.on_click(p.x(), p.y(), ev.double(), ev.modifiers())

    def mouseDragEvent(self, ev) -> None:  # noqa: N802, ANN001 - pyqtgraph API
        if not self.active or ev.button() != Qt.LeftButton or not self.sink.wants_drag():
            ev.ignore()
            return
        ev.accept()
        if ev.isStart():
            start = ev.buttonDownPos()
            self.sink.on_drag("start", start.x(), start.y(), ev.modifiers())
        p = ev.pos()
        self.sink.on_drag("finish" if ev.isFinish() else "move", p.x(), p.y(), ev.modifiers())

    def hoverEvent(self, ev) -> None:  # noqa: N802, ANN001 - pyqtgraph API
        if not self.active or ev.isExit():
            return
        if self.sink.wants_drag():
            ev.acceptDrags(Qt.LeftButton)  # claim left drags before the ViewBox pans
        ev.acceptClicks(Qt.LeftButton)
        p = ev.pos()
        self.sink.on_hover(p.x(), p.y())


class BrushCursor(QGraphicsEllipseItem):
    """The circle under the mouse that shows the brush/eraser size in image pixels."""

    def __init__(self) -> None:
        super().__init__()
        pen = QPen(Qt.white)
        pen.setCosmetic(True)
        pen.setWidthF(1.0)
        self.setPen(pen)
        self.setZValue(Z_PREVIEW + 1)
        self.setAcceptedMouseButtons(Qt.NoButton)
        self.setAcceptHoverEvents(False)

    def place(self, x: float, y: float, radius: float) -> None:
        self.setRect(QRectF(QPointF(x - radius, y - radius), QPointF(x + radius, y + radius)))
