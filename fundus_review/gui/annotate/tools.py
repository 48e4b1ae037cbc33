"""The tools' gesture handling (mixed into AnnotationController): select, ellipse, polygon,
point, brush, eraser and fill.

Each handler turns a finished gesture into one ``annotating`` command and hands it to the
controller's ``_push`` (which commits it and puts it on the undo stack); gestures in progress
(a polygon being clicked, an ellipse being dragged, a stroke) live only on screen until then.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt

from fundus_review.core.geometry import Ellipse, GeometryError, Point, Polygon, mask_box
from fundus_review.errors import FundusReviewError
from fundus_review.gui.annotate.strokes import Stroke, fill_command
from fundus_review.review.editor import Compound, Region

_CLOSE_PX = 10  # a click this close (screen pixels) to the first vertex closes the polygon


class ToolHandlers:
    """Needs the controller's state (tool, structure, editor, regions, view, overlay...)."""

    # ------------------------------------------------------------------------ tool events
    def wants_drag(self) -> bool:
        return self.tool in ("ellipse", "brush", "eraser")

    def on_hover(self, x: float, y: float) -> None:
        if self.tool in ("brush", "eraser"):
            self.cursor.place(x, y, self.brush_diameter / 2)
        if self.tool == "polygon" and self._poly:
            pts = np.array([*self._poly, (x, y)])
            self.preview.setData(pts[:, 0], pts[:, 1])

    def on_click(self, x: float, y: float, double: bool, modifiers) -> None:  # noqa: ANN001
        if self.tool == "polygon":
            self._polygon_click(x, y, double)
        elif self.tool == "point":
            if self._need_editor():
                radius = self.structure_def(self.structure).point_radius
                self._push(
                    self.editor.create_command(
                        self.structure, Point(round(x, 3), round(y, 3), radius)
                    )
                )
        elif self.tool in ("brush", "eraser"):
            self.on_drag("start", x, y, modifiers)
            self.on_drag("finish", x, y, modifiers)
        elif self.tool == "fill":
            self.fill_at(x, y)
        else:
            self.select_at(x, y)

    def on_drag(self, phase: str, x: float, y: float, modifiers) -> None:  # noqa: ANN001
        if self.tool == "ellipse":
            self._ellipse_drag(phase, x, y, bool(modifiers & Qt.ShiftModifier))
        elif self.tool in ("brush", "eraser"):
            self._stroke_drag(phase, x, y)

    # ------------------------------------------------------------------------------ select
    def _pixel_size(self) -> float:
        px = self.view.viewPixelSize()
        return float(max(px[0], px[1]))

    def region_at(self, x: float, y: float) -> Region | None:
        """The topmost visible region under (x, y): own regions first, newest first."""
        row, col = math.floor(y), math.floor(x)
        visible = [r for r in self.regions if self.own(r) or self.others_visible]
        visible.sort(key=lambda r: (self.own(r), r.id), reverse=True)
        reach = 8 * self._pixel_size()
        for r in visible:
            if r.kind == "point":
                g = r.geometry or {}
                if math.hypot(g.get("x", 0) - x, g.get("y", 0) - y) <= max(
                    reach, g.get("radius", 0)
                ):
                    return r
                continue
            raster, box, crop = self._crops.get(r.id, (None, None, None))
            if crop is None or raster != r.content.raster:
                m = self.mask_of(r)
                box = mask_box(m)
                crop = None if box is None else m[box[0] : box[1], box[2] : box[3]].copy()
                self._crops[r.id] = (r.content.raster, box, crop)
            if box is not None and box[0] <= row < box[1] and box[2] <= col < box[3]:
                if crop[row - box[0], col - box[2]]:
                    return r
        return None

    def mask_of(self, region: Region) -> np.ndarray:
        """The region's full-size mask (read-only; a few recent ones are kept decoded, since
        decoding a 4288x2848 mask takes a noticeable fraction of a second)."""
        raster, mask = self._masks.get(region.id, (None, None))
        if mask is None or raster != region.content.raster:
            mask = region.mask()
            mask.flags.writeable = False
            self._masks[region.id] = (region.content.raster, mask)
            while len(self._masks) > 4:
                self._masks.pop(next(iter(self._masks)))
        return mask

    def select_at(self, x: float, y: float) -> None:
        r = self.region_at(x, y)
        self.select(None if r is None else r.id)
        if r is not None and not self.own(r):
            self.message.emit(f"{r.structure} by {r.reviewer} (read-only)")

    def select(self, region_id: int | None) -> None:
        self.selected_id = region_id
        self.refresh()

    # --------------------------------------------------------------------- ellipse / polygon
    def _ellipse_drag(self, phase: str, x: float, y: float, circle: bool) -> None:
        if phase == "start":
            self._drag_from = (x, y)
            return
        if self._drag_from is None:
            return
        x0, y0 = self._drag_from
        rx, ry = abs(x - x0) / 2, abs(y - y0) / 2
        if circle:
            rx = ry = max(rx, ry)
        cx, cy = x0 + math.copysign(rx, x - x0), y0 + math.copysign(ry, y - y0)
        if phase == "move":
            if rx > 0 and ry > 0:
                pts = Ellipse(cx, cy, rx, ry).outline(64)
                self.preview.setData(pts[:, 0], pts[:, 1])
            return
        self._drag_from = None
        self.preview.setData([], [])
        if min(rx, ry) * 2 < 2 * self._pixel_size() or not self._need_editor():
            return  # a click, not a drag
        ell = Ellipse(round(cx, 3), round(cy, 3), round(rx, 3), round(ry, 3), 0.0)
        self._push(self.editor.create_command(self.structure, ell))

    def _polygon_click(self, x: float, y: float, double: bool) -> None:
        if double:
            self.finish()
            return
        if len(self._poly) >= 3:
            fx, fy = self._poly[0]
            if math.hypot(fx - x, fy - y) <= _CLOSE_PX * self._pixel_size():
                self.finish()
                return
        self._poly.append((round(x, 3), round(y, 3)))
        pts = np.array(self._poly)
        self.preview.setData(pts[:, 0], pts[:, 1])

    def remove_last_vertex(self) -> bool:
        if not self._poly:
            return False
        self._poly.pop()
        pts = np.array(self._poly) if self._poly else np.zeros((0, 2))
        self.preview.setData(pts[:, 0], pts[:, 1])
        return True

    def finish(self) -> None:
        """Close the polygon being drawn; otherwise end the current region (deselect)."""
        if self.tool == "polygon" and self._poly:
            pts, self._poly = self._poly, []
            self.preview.setData([], [])
            if len(pts) >= 3 and self._need_editor():
                try:
                    poly = Polygon(tuple(pts))
                except GeometryError as exc:
                    self.error.emit(str(exc))
                    return
                self._push(self.editor.create_command(self.structure, poly))
            return
        self.select(None)

    def cancel(self) -> None:
        """Abandon the shape being drawn (nothing of it was stored); with nothing being drawn,
        deselect."""
        if not self._abort_drawing() and self.selected_id is not None:
            self.select(None)

    def _abort_drawing(self) -> bool:
        had = bool(self._poly) or self._drag_from is not None or self._stroke is not None
        self._poly, self._drag_from = [], None
        self.preview.setData([], [])
        if self._stroke is not None:
            self._stroke = None
            if self.overlay is not None:
                self.overlay.clear_tiles()
            self.refresh()
        return had

    def delete_selected(self) -> None:
        sel = self.selected
        if sel is None:
            return
        if not self.own(sel):
            self.error.emit(
                f"this {sel.structure} region belongs to {sel.reviewer}; it is read-only"
            )
            return
        try:
            cmd = self.editor.delete(sel)
        except FundusReviewError as exc:
            self.error.emit(str(exc))
            self.reload()
            return
        self.selected_id = None
        self._push(cmd, performed=True)

    # ------------------------------------------------------------------ brush / eraser / fill
    def _stroke_targets(self) -> list[tuple[Region | None, np.ndarray]]:
        sel = self.selected
        own_sel = sel is not None and self.own(sel) and sel.structure == self.structure
        if self.tool == "brush":
            return [(sel, sel.mask()) if own_sel else (None, np.zeros(self.image_shape, bool))]
        if own_sel:
            return [(sel, sel.mask())]
        return [
            (r, r.mask()) for r in self.regions if self.own(r) and r.structure == self.structure
        ]

    def _stroke_drag(self, phase: str, x: float, y: float) -> None:
        if phase == "start":
            if not self._need_editor():
                return
            targets = self._stroke_targets()
            if not targets:
                self.message.emit(f"nothing of {self.structure} to erase here")
                return
            mode = "paint" if self.tool == "brush" else "erase"
            self._stroke = Stroke(mode, self.brush_diameter / 2, targets, self.image_shape)
            self._drop_live()
            hidden = {r.id for r, _ in targets if r is not None}
            for rid in hidden:  # the overlay shows them while painting
                item = self.outlines.items.get(rid)
                if item is not None:
                    item.setVisible(False)
            self.overlay.set_color(self.structure_def(self.structure).color)
            self.overlay.set_mask(self._stroke.display)
        if self._stroke is None:
            return
        self.overlay.update(self._stroke.add(x, y))
        self.cursor.place(x, y, self.brush_diameter / 2)
        if phase == "finish":
            stroke, self._stroke = self._stroke, None
            self.overlay.clear_tiles()
            cmds = stroke.commands(self.editor, self.structure)
            if not cmds:
                self.refresh()
                return
            text = "paint" if stroke.mode == "paint" else "erase"
            self._push(cmds[0] if len(cmds) == 1 else Compound(cmds, f"{text} {len(cmds)} regions"))

    def fill_at(self, x: float, y: float) -> None:
        if not self._need_editor():
            return
        sel = self.selected
        if sel is not None and self.own(sel) and sel.structure == self.structure:
            candidates = [sel]
        else:
            candidates = [
                r for r in reversed(self.regions) if self.own(r) and r.structure == self.structure
            ]
        for region in candidates:
            try:
                cmd, _ = fill_command(self.editor, region, self.mask_of(region), x, y)
            except GeometryError:
                continue
            self.selected_id = region.id
            self._push(cmd)
            return
        self.message.emit(f"fill: click inside a closed outline of a {self.structure} region")
