"""The image viewer: photograph, heatmap layer, expert outlines, FOV, pointing-game marks.

Every overlay is a separate item, so changing the opacity, colormap or a layer toggle never
re-uploads the photo. The photo and the heatmap are shown through image pyramids (pyramid.py):
only the on-screen part, at the level matching the zoom, is uploaded, which keeps a 4288x2848
photo smooth to pan and zoom. Outlines and points live in original pixel coordinates.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor

from fundus_review.views.overlays import Overlays, structure_color
from fundus_review.views.pyramid import Pyramid, Window, choose_window, crop

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
# Keys that move through the image list: pressed in the viewer (focused by a click, e.g. after
# drawing) they are handed on, so the reviewer goes on to the next image without re-focusing.
NAV_KEYS = frozenset(
    {Qt.Key_Up, Qt.Key_Down, Qt.Key_Left, Qt.Key_Right, Qt.Key_PageUp, Qt.Key_PageDown,
     Qt.Key_Home, Qt.Key_End}
)  # fmt: skip


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


class PyramidLayer:
    """An ImageItem showing the on-screen part of a pyramid at the level the zoom needs."""

    def __init__(self, item: pg.ImageItem, levels: tuple[float, float]) -> None:
        self.item, self.levels = item, levels
        self.pyramid: Pyramid | None = None
        self.window: Window | None = None

    def set(self, pyramid: Pyramid | None, view: pg.ViewBox) -> None:
        self.pyramid, self.window = pyramid, None
        if pyramid is None:
            self.item.clear()
        else:
            self.update(view)

    def update(self, view: pg.ViewBox) -> None:
        if self.pyramid is None:
            return
        r = view.viewRect()
        visible = (r.x(), r.y(), r.width(), r.height())
        pw, ph = view.viewPixelSize()
        per_px = min(pw, ph) if pw > 0 and ph > 0 else 1.0
        need = choose_window(self.pyramid, visible, per_px, margin=0.0)
        if self.window is not None and self.window.covers(need):
            return  # a small pan: the margin uploaded last time still covers the screen
        win = choose_window(self.pyramid, visible, per_px)
        self.item.setImage(crop(self.pyramid, win), autoLevels=False, levels=self.levels)
        self.item.setRect(QRectF(*win.rect))
        self.window = win


class ImageViewer(pg.GraphicsLayoutWidget):
    """One view: photo + overlays. Several of them form the compare grid (linked views)."""

    hovered = Signal(object)  # (x, y, heat value or None) in original pixel coordinates
    navigate = Signal(object)  # a NAV_KEYS key pressed in the viewer (Qt.Key)

    def __init__(self, parent=None, title: str = "") -> None:
        super().__init__(parent)
        self.setBackground("k")
        self.title = self.ci.addLabel(title, row=0, col=0, color="#dddddd", size="9pt")
        if not title:
            self.title.setMaximumHeight(0)
        self.view: pg.ViewBox = self.ci.addViewBox(row=1, col=0, lockAspect=True, invertY=True)
        self.view.setMenuEnabled(False)
        # The image items change their bounds with every crop: ranges are set explicitly (fit()).
        self.view.disableAutoRange()
        self.photo = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
        self.heat = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
        self.photo_layer = PyramidLayer(self.photo, (0, 255))
        self.heat_layer = PyramidLayer(self.heat, (0.0, 1.0))
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
        self.extra_layers: dict[str, pg.GraphicsObject] = {}
        self.visible = dict.fromkeys(LAYERS, True)
        self.visible["fov"] = False
        self.hidden_structures: set[str] = set()
        self._colormap, self._fade = "turbo", True
        self.heat.setLookupTable(heatmap_lut(self._colormap, self._fade))
        self.image_shape: tuple[int, int] | None = None
        self.overlays: Overlays | None = None
        self.forward_navigation = False  # on: NAV_KEYS emit `navigate` instead of acting here
        self.message = pg.TextItem("", color="#ffcc66", anchor=(0, 0))
        self.message.setZValue(50)
        self.view.addItem(self.message)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.view.sigRangeChanged.connect(self._on_range)
        self.view.sigResized.connect(self._on_range)

    # ---------------------------------------------------------------------------- content
    def set_title(self, text: str) -> None:
        self.title.setText(text)
        self.title.setMaximumHeight(16777215 if text else 0)

    def set_photo(self, photo: np.ndarray | Pyramid | None) -> None:
        """Show a new photograph (RGB array or its pyramid); a new size fits it into the view."""
        # The previous image's heatmap and outlines must never sit over this photo, even briefly.
        self.set_overlays(None)
        if photo is None:
            self.photo_layer.set(None, self.view)
            self.image_shape = None
            return
        pyr = photo if isinstance(photo, Pyramid) else Pyramid(photo)
        new_shape = pyr.shape
        self.photo_layer.set(pyr, self.view)
        if new_shape != self.image_shape:
            self.image_shape = new_shape
            self.fit()

    def fit(self) -> None:
        """Show the whole image."""
        if self.image_shape is not None:
            h, w = self.image_shape
            self.view.setRange(QRectF(0, 0, w, h), padding=0.01)

    @Slot()
    def _on_range(self, *_args) -> None:
        self.photo_layer.update(self.view)
        self.heat_layer.update(self.view)

    def set_overlays(self, ov: Overlays | None) -> None:
        self.overlays = ov
        heat = None if ov is None or ov.heatmap is None else ov.heat_pyramid or Pyramid(ov.heatmap)
        self.heat_layer.set(heat, self.view)
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

    def add_layer(self, name: str, item: pg.GraphicsObject, z: float = 35) -> None:
        """Add an overlay of another tool (e.g. drawn regions, ROI handles) as a named layer.

        It lives in image pixel coordinates like the others and follows `set_layer_visible`.
        """
        if name in LAYERS or name in self.extra_layers:
            raise ValueError(f"layer {name!r} exists already")
        item.setZValue(z)
        self.view.addItem(item)
        self.extra_layers[name] = item
        self.visible[name] = True

    def set_layer_visible(self, layer: str, on: bool) -> None:
        if layer not in self.visible:
            raise ValueError(f"unknown layer {layer!r}; expected one of {sorted(self.visible)}")
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
        for name, item in self.extra_layers.items():
            item.setVisible(self.visible[name])
        for structure, curve in self.region_curves.items():
            curve.setVisible(self.visible["regions"] and structure not in self.hidden_structures)

    def keyPressEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if (
            self.forward_navigation
            and ev.key() in NAV_KEYS
            and not (ev.modifiers() & ~Qt.KeypadModifier)
        ):
            ev.accept()
            self.navigate.emit(ev.key())
            return
        super().keyPressEvent(ev)

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
