"""Lightweight display items of the drawing tools: finished-region outlines and the paint overlay.

Finished regions are never live ROIs: each is one ``PlotCurveItem`` (a NaN-separated polyline) or,
for points, one scatter symbol, so hundreds of lesions cost nothing to pan and zoom. The brush
paints into ``MaskOverlay``, a grid of small image tiles over the photo: a stroke re-uploads only
the tiles it touched, never the whole 4288x2848 photograph or overlay.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor

from fundus_review.core.geometry import Ellipse, Point, Polygon, mask_box
from fundus_review.review.editor import Region
from fundus_review.views.overlays import mask_outline

Z_OVERLAY, Z_OUTLINES, Z_PREVIEW, Z_SURFACE, Z_EDITOR = 55, 60, 75, 70, 80


def region_outline(region: Region) -> np.ndarray:
    """Outline of a finished region: exact for vector shapes, traced for painted ones."""
    shape = region.shape()
    if isinstance(shape, Ellipse):
        return shape.outline()
    if isinstance(shape, Polygon):
        return shape.outline()
    # Only the mask's bounding box is traced, so a small lesion on a huge photograph is cheap.
    mask = region.mask()
    box = mask_box(mask)
    if box is None:
        return np.zeros((0, 2))
    r0, r1, c0, c1 = box
    return mask_outline(mask[r0:r1, c0:c1]) + (c0, r0)


class OutlineLayer:
    """Outlines of finished regions, one cheap item each; own regions solid, others dashed."""

    def __init__(self, view: pg.ViewBox) -> None:
        self.view = view
        self.items: dict[int, pg.GraphicsObject] = {}
        self.labels: dict[int, pg.TextItem] = {}  # "proposed" beside unreviewed proposals
        self._cache: dict[int, tuple[object, np.ndarray]] = {}
        self.visible = True
        self._pending: list | None = None  # what show() was given while hidden

    def set_visible(self, visible: bool) -> None:
        self.visible = bool(visible)
        if self.visible and self._pending is not None:
            self._build(self._pending)
        for item in [*self.items.values(), *self.labels.values()]:
            item.setVisible(self.visible)

    def clear(self) -> None:
        self._pending = None
        for item in [*self.items.values(), *self.labels.values()]:
            self.view.removeItem(item)
        self.items.clear()
        self.labels.clear()

    def show(self, regions: list[tuple[Region, tuple[int, int, int], bool, bool]]) -> None:
        """(region, colour, own, emphasised) for every region to draw. While hidden they are
        only remembered: tracing large painted or imported masks is the costly part."""
        self.clear()
        self._pending = None if self.visible else regions
        if self.visible:
            self._build(regions)

    def _build(self, regions: list[tuple[Region, tuple[int, int, int], bool, bool]]) -> None:
        self._pending = None
        for region, color, own, strong in regions:
            item = self._item(region, color, own, strong)
            item.setZValue(Z_OUTLINES + (1 if own else 0))
            item.setVisible(self.visible)
            self.view.addItem(item, ignoreBounds=True)  # never changes the auto-range
            self.items[region.id] = item
            if region.proposed:
                self._label(region, color)

    def _label(self, region: Region, color: tuple[int, int, int]) -> None:
        pts = self._cache.get(region.id, (None, np.zeros((0, 2))))[1]
        if not len(pts):
            return
        # Above the outline; a cup's label goes below it (it lies inside the disc's outline).
        below = "cup" in region.structure
        text = pg.TextItem(f"proposed {region.structure.replace('optic_', '')}",
                           color=QColor(*color), anchor=(0.5, 0 if below else 1),
                           fill=QColor(0, 0, 0, 150))  # fmt: skip
        y = float(pts[:, 1].max() if below else pts[:, 1].min())
        text.setPos(float(pts[:, 0].mean()), y)
        text.setZValue(Z_OUTLINES + 2)
        text.setVisible(self.visible)
        self.view.addItem(text, ignoreBounds=True)
        self.labels[region.id] = text

    def _item(self, region: Region, color: tuple[int, int, int], own: bool, strong: bool):
        qc = QColor(*color)
        if not own:
            qc.setAlpha(170)
        # Unreviewed proposals: dash-dotted (others' regions are dashed, own expert ones solid).
        style = Qt.DashDotLine if region.proposed else (Qt.SolidLine if own else Qt.DashLine)
        pen = pg.mkPen(qc, width=3 if strong else (2 if own else 1.5), style=style)
        shape = region.shape()
        if isinstance(shape, Point):
            symbol = "+" if own else "x"
            return pg.ScatterPlotItem([shape.x], [shape.y], symbol=symbol, size=16 if strong else 13,
                                      pen=pg.mkPen(qc, width=2), brush=None, pxMode=True)  # fmt: skip
        key = (region.content.raster, region.content.geometry)
        cached = self._cache.get(region.id)
        if cached is None or cached[0] != key:
            cached = (key, region_outline(region))
            self._cache[region.id] = cached
        pts = cached[1]
        curve = pg.PlotCurveItem(pen=pen, connect="finite")
        if len(pts):
            curve.setData(pts[:, 0], pts[:, 1], connect="finite")
        return curve


class MaskOverlay:
    """A translucent mask drawn as tiles of at most ``tile`` x ``tile`` pixels over the image."""

    def __init__(self, view: pg.ViewBox, shape: tuple[int, int], tile: int = 256) -> None:
        self.view, self.shape, self.tile = view, shape, tile
        self.mask = np.zeros(shape, dtype=bool)
        self.tiles: dict[tuple[int, int], pg.ImageItem] = {}
        self.colors = np.zeros((2, 4), np.uint8)
        self.uploads = 0  # tiles uploaded so far (tests check that strokes stay local)

    def set_color(self, color: tuple[int, int, int], alpha: int = 140) -> None:
        self.colors[1] = (*color, alpha)

    def set_mask(self, mask: np.ndarray) -> None:
        """Show ``mask`` (kept by reference: paint into ``self.mask`` then call ``update``)."""
        self.mask = mask
        self.clear_tiles()
        box = mask_box(mask)
        if box is not None:
            self.update(box)

    def update(self, box: tuple[int, int, int, int] | None) -> None:
        """Re-upload the tiles that intersect ``box`` (row0, row1, col0, col1)."""
        if box is None:
            return
        t = self.tile
        for ti in range(box[0] // t, (box[1] - 1) // t + 1):
            for tj in range(box[2] // t, (box[3] - 1) // t + 1):
                self._upload(ti, tj)

    def _upload(self, ti: int, tj: int) -> None:
        t = self.tile
        r0, c0 = ti * t, tj * t
        crop = self.mask[r0 : r0 + t, c0 : c0 + t]
        item = self.tiles.get((ti, tj))
        if item is None:
            item = pg.ImageItem(axisOrder="row-major")
            item.setZValue(Z_OVERLAY)
            self.view.addItem(item, ignoreBounds=True)  # never changes the auto-range
            self.tiles[(ti, tj)] = item
        item.setImage(self.colors[crop.view(np.uint8)], autoLevels=False)
        item.setRect(QRectF(c0, r0, crop.shape[1], crop.shape[0]))
        self.uploads += 1

    def clear_tiles(self) -> None:
        for item in self.tiles.values():
            self.view.removeItem(item)
        self.tiles.clear()

    def close(self) -> None:
        self.clear_tiles()
        self.mask = np.zeros((1, 1), dtype=bool)
