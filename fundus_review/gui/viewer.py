"""The image viewer: photograph, heatmap layer, expert outlines, FOV, pointing-game marks.

The photograph is uploaded once per image; every overlay is a separate item, so changing the
opacity, colormap or a layer toggle never re-uploads the photo. Both image items downsample
automatically to the screen resolution, which keeps a 4288x2848 photo smooth to pan and zoom.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor

from fundus_review.gui.overlays import Overlays, structure_color

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

COLORMAPS = {
    "turbo": "turbo",
    "rainbow (jet-like)": "CET-R4",
    "inferno": "inferno",
    "viridis": "viridis",
    "magma": "magma",
    "fire": "CET-L3",
}
LAYERS = ("heatmap", "regions", "fov", "binary", "pointing")


def heatmap_lut(name: str, fade_low: bool = True) -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table; with fade_low, low values become transparent.

    Fading matters clinically: a CAM is near zero over most of the retina, and an opaque blue
    wash would hide the vessels and lesions the reviewer needs to see under the hot spot.
    """
    cmap = pg.colormap.get(COLORMAPS.get(name, name))
    lut = cmap.getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)
    if fade_low:
        ramp = np.clip(np.linspace(0.0, 1.0, 256) * 2.5, 0.0, 1.0)
        lut[:, 3] = (ramp * 255).astype(np.uint8)
    return lut


class ImageViewer(pg.GraphicsLayoutWidget):
    """One view: photo + overlays. Several of them form the compare grid (linked views)."""

    hovered = Signal(object)  # (x, y, heat value or None) in original pixel coordinates

    def __init__(self, parent=None, title: str = "") -> None:
        super().__init__(parent)
        self.setBackground("k")
        self.title = self.ci.addLabel(title, row=0, col=0, color="#dddddd", size="9pt")
        if not title:
            self.title.setMaximumHeight(0)
        self.view: pg.ViewBox = self.ci.addViewBox(row=1, col=0, lockAspect=True, invertY=True)
        self.view.setMenuEnabled(False)
        self.photo = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
        self.heat = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
        self.heat.setZValue(10)
        self.heat.setOpacity(0.5)
        self.view.addItem(self.photo)
        self.view.addItem(self.heat)
        self.fov_curve = pg.PlotCurveItem(
            pen=pg.mkPen((200, 200, 200), width=1, style=Qt.DotLine), connect="finite"
        )
        self.binary_curve = pg.PlotCurveItem(
            pen=pg.mkPen("w", width=2, style=Qt.DashLine), connect="finite"
        )
        self.points = pg.ScatterPlotItem(pxMode=True, size=22)
        for z, item in ((20, self.fov_curve), (30, self.binary_curve), (40, self.points)):
            item.setZValue(z)
            self.view.addItem(item)
        self.region_curves: dict[str, pg.PlotCurveItem] = {}
        self.visible = dict.fromkeys(LAYERS, True)
        self.visible["fov"] = False
        self.hidden_structures: set[str] = set()
        self._colormap, self._fade = "turbo", True
        self.heat.setLookupTable(heatmap_lut(self._colormap, self._fade))
        self.image_shape: tuple[int, int] | None = None
        self.overlays: Overlays | None = None
        self.message = pg.TextItem("", color="#ffcc66", anchor=(0, 0))
        self.message.setZValue(50)
        self.view.addItem(self.message)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # ---------------------------------------------------------------------------- content
    def set_title(self, text: str) -> None:
        self.title.setText(text)
        self.title.setMaximumHeight(16777215 if text else 0)

    def set_photo(self, rgb: np.ndarray | None) -> None:
        """Upload a new photograph (once per image) and fit it into the view."""
        if rgb is None:
            self.photo.clear()
            self.image_shape = None
            self.set_overlays(None)
            return
        new_shape = rgb.shape[:2]
        self.photo.setImage(np.ascontiguousarray(rgb), autoLevels=False, levels=(0, 255))
        if new_shape != self.image_shape:
            self.image_shape = new_shape
            self.view.autoRange(padding=0.01)
        self.image_shape = new_shape

    def set_overlays(self, ov: Overlays | None) -> None:
        self.overlays = ov
        if ov is None or ov.heatmap is None:
            self.heat.clear()
        else:
            self.heat.setImage(ov.heatmap, autoLevels=False, levels=(0.0, 1.0))
        for curve in self.region_curves.values():
            self.view.removeItem(curve)
        self.region_curves.clear()
        if ov is not None:
            for structure, outline in sorted(ov.regions.items()):
                pen = pg.mkPen(QColor(*structure_color(structure)), width=2)
                curve = pg.PlotCurveItem(outline[:, 0], outline[:, 1], pen=pen, connect="finite")
                curve.setZValue(25)
                self.view.addItem(curve)
                self.region_curves[structure] = curve
        self._set_curve(self.fov_curve, None if ov is None else ov.fov_outline)
        self._set_curve(self.binary_curve, None if ov is None else ov.binary_outline)
        spots = []
        if ov is not None:
            for structure, res in sorted(ov.pointing.items()):
                if res is None:
                    continue
                color = structure_color(structure)
                spots.append(
                    {
                        "pos": res.point,
                        "symbol": "+" if res.hit else "x",
                        "pen": pg.mkPen("k", width=1),
                        "brush": pg.mkBrush(*color),
                        "data": structure,
                    }
                )
        self.points.setData(spots)
        self.show_message("\n".join(ov.problems) if ov is not None and ov.problems else "")
        self._apply_visibility()

    @staticmethod
    def _set_curve(curve: pg.PlotCurveItem, outline: np.ndarray | None) -> None:
        if outline is None or len(outline) == 0:
            curve.setData([], [])
        else:
            curve.setData(outline[:, 0], outline[:, 1], connect="finite")

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setPos(0, 0)

    # ---------------------------------------------------------------------------- styling
    def set_opacity(self, value: float) -> None:
        self.heat.setOpacity(float(value))

    def set_colormap(self, name: str, fade_low: bool | None = None) -> None:
        self._colormap = name
        if fade_low is not None:
            self._fade = fade_low
        self.heat.setLookupTable(heatmap_lut(self._colormap, self._fade))

    def set_layer_visible(self, layer: str, on: bool) -> None:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; expected one of {LAYERS}")
        self.visible[layer] = bool(on)
        self._apply_visibility()

    def set_structure_visible(self, structure: str, on: bool) -> None:
        (self.hidden_structures.discard if on else self.hidden_structures.add)(structure)
        self._apply_visibility()

    def _apply_visibility(self) -> None:
        self.heat.setVisible(self.visible["heatmap"])
        self.fov_curve.setVisible(self.visible["fov"])
        self.binary_curve.setVisible(self.visible["binary"])
        self.points.setVisible(self.visible["pointing"])
        for structure, curve in self.region_curves.items():
            curve.setVisible(self.visible["regions"] and structure not in self.hidden_structures)

    # ---------------------------------------------------------------------------- readout
    @Slot(object)
    def _on_mouse_moved(self, pos) -> None:
        if self.image_shape is None or not self.view.sceneBoundingRect().contains(pos):
            return
        p = self.view.mapSceneToView(pos)
        x, y = p.x(), p.y()
        h, w = self.image_shape
        if not (0 <= x < w and 0 <= y < h):
            return
        value = None
        ov = self.overlays
        if ov is not None and ov.heatmap is not None:
            value = float(ov.heatmap[int(y), int(x)])
        self.hovered.emit((x, y, value))
