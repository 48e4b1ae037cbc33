"""Brush, eraser and fill: painting into working masks, then turning them into commands.

While the mouse moves, segments are painted into full-size working masks (``core.painting``,
bounding box only) and the overlay re-uploads only the touched tiles. When the stroke ends, the
stroke becomes one op of a brush geometry (so the stored geometry replays to exactly the working
mask) and one command - a new region, or an edit of each region it changed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fundus_review.core.geometry import Brush, apply_op, paint_segment
from fundus_review.core.painting import union_box
from fundus_review.review.editor import Command, Editor, Region


def _rounded(x: float, y: float) -> tuple[float, float]:
    # Stored coordinates are rounded; painting uses the rounded values too, so that replaying
    # the stored stroke gives exactly the live mask.
    return round(float(x), 2), round(float(y), 2)


def brush_shape(region: Region | None, op: dict[str, Any]) -> Brush | None:
    """The brush geometry of ``region`` with ``op`` appended (None for a kind "mask" region,
    whose edits change its raster only)."""
    if region is None:
        return Brush(None, (op,))
    if region.kind == "mask":
        return None
    if region.kind == "brush":
        return Brush.from_dict(region.geometry or {}).with_op(op)
    return Brush(region.shape(), (op,))  # an ellipse/polygon/point becomes a painted region


class Stroke:
    """One brush (``paint``) or eraser (``erase``) stroke over one or more target regions."""

    def __init__(
        self,
        mode: str,
        radius: float,
        targets: list[tuple[Region | None, np.ndarray]],
        shape: tuple[int, int],
    ) -> None:
        self.mode, self.radius = mode, float(radius)
        self.targets = targets  # (region or None for a new one, working mask)
        self.before = [m.copy() for _, m in targets] if mode == "erase" else None
        self.points: list[tuple[float, float]] = []
        self.display = targets[0][1] if len(targets) == 1 else np.zeros(shape, dtype=bool)
        if len(targets) > 1:
            for _, m in targets:
                self.display |= m

    def add(self, x: float, y: float) -> tuple[int, int, int, int] | None:
        """Extend the stroke to (x, y); returns the box of the display mask that changed."""
        p = _rounded(x, y)
        if self.points and math.dist(p, self.points[-1]) < max(0.25, self.radius / 4):
            # Closer than a quarter brush width adds nothing visible but would bloat the stored
            # stroke; skipped points are skipped live too, so the replay stays exact.
            return None
        prev = self.points[-1] if self.points else p
        self.points.append(p)
        boxes = [
            paint_segment(m, prev, p, self.radius, self.mode == "paint") for _, m in self.targets
        ]
        box = union_box(boxes)
        if box is not None and len(self.targets) > 1:
            r0, r1, c0, c1 = box
            view = self.display[r0:r1, c0:c1]
            view[:] = False
            for _, m in self.targets:
                view |= m[r0:r1, c0:c1]
        return box

    def op(self) -> dict[str, Any]:
        return {"op": self.mode, "radius": self.radius, "points": [list(p) for p in self.points]}

    def commands(self, editor: Editor, structure: str) -> list[Command]:
        """The commands that store this stroke (none when it changed nothing)."""
        if not self.points:
            return []
        op = self.op()
        out: list[Command] = []
        for i, (region, mask) in enumerate(self.targets):
            if region is None:
                if mask.any():
                    out.append(editor.create_command(structure, brush_shape(None, op), mask))
                continue
            if self.before is not None and np.array_equal(self.before[i], mask):
                continue  # the eraser did not touch this region
            out.append(editor.edit_command(region, brush_shape(region, op), mask))
        return out


def fill_command(
    editor: Editor, region: Region, mask: np.ndarray, x: float, y: float
) -> tuple[Command, np.ndarray]:
    """Fill the hole of ``region`` around (x, y); GeometryError when there is no closed outline."""
    op = {"op": "fill", "x": round(float(x), 2), "y": round(float(y), 2)}
    work = mask.copy()
    apply_op(work, op)
    return editor.edit_command(region, brush_shape(region, op), work), work
