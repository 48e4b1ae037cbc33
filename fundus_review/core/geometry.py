"""Expert-drawn shapes and their exact rasterisation on the original pixel grid (numpy only).

Coordinates are continuous image coordinates (x, y) = (col, row): pixel (row i, col j) covers
[j, j+1) x [i, i+1) and belongs to a shape when its CENTRE (j + 0.5, i + 0.5) does. That one rule
makes every shape's mask independent of zoom, display and export format, so a region drawn in the
app, exported as a PNG and imported again scores identically.

Shapes and their JSON geometry (the ``Annotation.geometry`` column):

- ``ellipse``  {"cx", "cy", "rx", "ry", "angle"}: semi-axes rx along the ellipse's own x axis,
  which is rotated by ``angle`` degrees from the image x axis towards +y (clockwise on screen,
  where y points down; the same sense as a Qt/pyqtgraph item rotation).
- ``polygon``  {"points": [[x, y], ...]}: at least 3 vertices, implicitly closed, even-odd rule.
- ``point``    {"x", "y", "radius"}: the pixel containing (x, y), plus every pixel centre within
  ``radius`` (0 = that one pixel), so a point is never an empty mask.
- ``brush``    {"base": {"kind", "geometry"} | null, "ops": [...]}: painting replayed in order on
  the base shape's mask (or an empty one). Ops: {"op": "paint"|"erase", "radius", "points"}
  (the union of discs of ``radius`` swept along the polyline) and {"op": "fill", "x", "y"} (the
  4-connected area enclosed by the mask around that point). Painting in the app uses exactly
  these functions, so the live mask equals the replay bit for bit.

A kind "mask" region (an imported raster) has no geometry; ``rasterize`` refuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fundus_review.core.painting import (
    Box,
    GeometryError,
    apply_op,
    centres,
    enclosed_area,
    flood_fill,
    grid_box,
    mask_box,
    paint_segment,
    paint_stroke,
)

__all__ = [
    "SHAPE_KINDS",
    "Box",
    "Brush",
    "Ellipse",
    "GeometryError",
    "Point",
    "Polygon",
    "Shape",
    "enclosed_area",
    "flood_fill",
    "mask_box",
    "paint_segment",
    "paint_stroke",
    "rasterize",
    "shape_from_dict",
]

SHAPE_KINDS = ("ellipse", "polygon", "point", "brush")


# ---------------------------------------------------------------------------------- helpers
def _num(d: dict[str, Any], key: str, what: str) -> float:
    try:
        value = float(d[key])
    except KeyError:
        raise GeometryError(f"{what} geometry lacks {key!r}") from None
    except (TypeError, ValueError):
        raise GeometryError(f"{what} geometry: {key!r} is not a number ({d[key]!r})") from None
    if not math.isfinite(value):
        raise GeometryError(f"{what} geometry: {key!r} is not finite ({value})")
    return value


def _points(raw: Any, what: str, minimum: int) -> np.ndarray:
    try:
        pts = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeometryError(f"{what}: points must be a list of [x, y] pairs") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < minimum:
        raise GeometryError(f"{what}: needs at least {minimum} [x, y] points, got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise GeometryError(f"{what}: points contain NaN or infinite values")
    return pts


def _full(shape: tuple[int, int], box: Box | None, crop: np.ndarray | None) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    if box is not None and crop is not None:
        r0, r1, c0, c1 = box
        out[r0:r1, c0:c1] = crop
    return out


# ----------------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Ellipse:
    cx: float
    cy: float
    rx: float
    ry: float
    angle: float = 0.0  # degrees, x axis towards +y

    kind = "ellipse"

    def __post_init__(self) -> None:
        for name in ("cx", "cy", "rx", "ry", "angle"):
            if not math.isfinite(getattr(self, name)):
                raise GeometryError(f"ellipse: {name} is not finite")
        if self.rx <= 0 or self.ry <= 0:
            raise GeometryError(f"ellipse: semi-axes must be positive, got {self.rx}, {self.ry}")

    def to_dict(self) -> dict[str, Any]:
        return {"cx": self.cx, "cy": self.cy, "rx": self.rx, "ry": self.ry, "angle": self.angle}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ellipse:
        return cls(*(_num(d, k, "ellipse") for k in ("cx", "cy", "rx", "ry")),
                   angle=_num(d, "angle", "ellipse") if "angle" in d else 0.0)  # fmt: skip

    def crop(self, shape: tuple[int, int]) -> tuple[Box | None, np.ndarray | None]:
        t = math.radians(self.angle)
        c, s = math.cos(t), math.sin(t)
        ex = math.hypot(self.rx * c, self.ry * s)  # half-extent of the rotated ellipse along x
        ey = math.hypot(self.rx * s, self.ry * c)
        box = grid_box(self.cy - ey, self.cy + ey, self.cx - ex, self.cx + ex, shape)
        if box is None:
            return None, None
        xs, ys = centres(box)
        dx, dy = xs - self.cx, ys - self.cy
        u = (dx * c + dy * s) / self.rx
        v = (-dx * s + dy * c) / self.ry
        return box, u * u + v * v <= 1.0

    def outline(self, n: int = 96) -> np.ndarray:
        """(n + 1, 2) closed polyline on the ellipse, for display and polygon exports."""
        t = np.linspace(0.0, 2 * np.pi, n + 1)
        a = math.radians(self.angle)
        x, y = self.rx * np.cos(t), self.ry * np.sin(t)
        return np.column_stack(
            [
                self.cx + x * math.cos(a) - y * math.sin(a),
                self.cy + x * math.sin(a) + y * math.cos(a),
            ]
        )


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]

    kind = "polygon"

    def __post_init__(self) -> None:
        pts = _points(self.points, "polygon", 3)
        object.__setattr__(self, "points", tuple((float(x), float(y)) for x, y in pts))

    def to_dict(self) -> dict[str, Any]:
        return {"points": [[x, y] for x, y in self.points]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Polygon:
        if "points" not in d:
            raise GeometryError("polygon geometry lacks 'points'")
        return cls(tuple(map(tuple, _points(d["points"], "polygon", 3))))

    def crop(self, shape: tuple[int, int]) -> tuple[Box | None, np.ndarray | None]:
        pts = np.asarray(self.points, dtype=np.float64)
        box = grid_box(pts[:, 1].min(), pts[:, 1].max(), pts[:, 0].min(), pts[:, 0].max(), shape)
        if box is None:
            return None, None
        r0, r1, c0, c1 = box
        x0, y0 = pts[:, 0], pts[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        ys = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5  # (R, 1) row centres
        # Half-open crossing rule: an edge counts for rows with min(y0,y1) <= y < max(y0,y1), so
        # a vertex shared by two edges is counted once and horizontal edges never.
        crosses = (np.minimum(y0, y1) <= ys) & (ys < np.maximum(y0, y1))
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        rows, edges = np.nonzero(crosses)
        # Pixel j is inside when an odd number of crossings lie at x <= j + 0.5: toggle the
        # parity from the first column whose centre is at or right of the crossing.
        first = np.clip(np.ceil(xc[rows, edges] - 0.5).astype(np.int64) - c0, 0, c1 - c0)
        toggles = np.zeros((r1 - r0, c1 - c0 + 1), dtype=np.int32)
        np.add.at(toggles, (rows, first), 1)
        return box, (np.cumsum(toggles, axis=1)[:, :-1] & 1).astype(bool)

    def outline(self) -> np.ndarray:
        pts = np.asarray(self.points, dtype=np.float64)
        return np.vstack([pts, pts[:1]])


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    radius: float = 0.0

    kind = "point"

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.x, self.y, self.radius)) or self.radius < 0:
            raise GeometryError(
                f"point: bad coordinates or radius ({self.x}, {self.y}, {self.radius})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "radius": self.radius}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Point:
        r = _num(d, "radius", "point") if "radius" in d else 0.0
        return cls(_num(d, "x", "point"), _num(d, "y", "point"), r)

    def crop(self, shape: tuple[int, int]) -> tuple[Box | None, np.ndarray | None]:
        r = self.radius
        box = grid_box(self.y - r - 1, self.y + r + 1, self.x - r - 1, self.x + r + 1, shape)
        if box is None:
            return None, None
        xs, ys = centres(box)
        m = (xs - self.x) ** 2 + (ys - self.y) ** 2 <= r * r
        i, j = math.floor(self.y) - box[0], math.floor(self.x) - box[2]
        if 0 <= i < m.shape[0] and 0 <= j < m.shape[1]:
            m[i, j] = True
        return box, m


@dataclass(frozen=True)
class Brush:
    base: Ellipse | Polygon | Point | None
    ops: tuple[dict[str, Any], ...]

    kind = "brush"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(_check_op(op) for op in self.ops))

    def to_dict(self) -> dict[str, Any]:
        base = (
            None if self.base is None else {"kind": self.base.kind, "geometry": self.base.to_dict()}
        )
        return {"base": base, "ops": [dict(op) for op in self.ops]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Brush:
        base = d.get("base")
        shape = None
        if base is not None:
            if not isinstance(base, dict) or base.get("kind") not in (
                "ellipse",
                "polygon",
                "point",
            ):
                raise GeometryError(
                    f"brush: base must be an ellipse, polygon or point, got {base!r}"
                )
            shape = shape_from_dict(base["kind"], base.get("geometry") or {})
        ops = d.get("ops", [])
        if not isinstance(ops, list):
            raise GeometryError("brush: 'ops' must be a list")
        return cls(shape, tuple(ops))  # type: ignore[arg-type]

    def with_op(self, op: dict[str, Any]) -> Brush:
        return Brush(self.base, (*self.ops, op))

    def rasterize(self, shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, dtype=bool) if self.base is None else self.base_mask(shape)
        for op in self.ops:
            apply_op(mask, op)
        return mask

    def base_mask(self, shape: tuple[int, int]) -> np.ndarray:
        return (
            np.zeros(shape, dtype=bool)
            if self.base is None
            else _full(shape, *self.base.crop(shape))
        )


Shape = Ellipse | Polygon | Point | Brush


def _check_op(op: Any) -> dict[str, Any]:
    if not isinstance(op, dict) or op.get("op") not in ("paint", "erase", "fill"):
        raise GeometryError(f"brush: unknown op {op!r}")
    if op["op"] == "fill":
        return {"op": "fill", "x": _num(op, "x", "fill"), "y": _num(op, "y", "fill")}
    radius = _num(op, "radius", "brush stroke")
    if radius <= 0:
        raise GeometryError(f"brush stroke: radius must be positive, got {radius}")
    pts = _points(op.get("points"), "brush stroke", 1)
    return {"op": op["op"], "radius": radius, "points": pts.tolist()}


# ------------------------------------------------------------------------------- (de)serialise
def shape_from_dict(kind: str, geometry: dict[str, Any]) -> Shape:
    """Parse stored geometry JSON; GeometryError names what is wrong."""
    if not isinstance(geometry, dict):
        raise GeometryError(f"{kind} geometry must be a JSON object, got {type(geometry).__name__}")
    parsers = {"ellipse": Ellipse, "polygon": Polygon, "point": Point, "brush": Brush}
    if kind not in parsers:
        raise GeometryError(f"no geometry for kind {kind!r}; drawn kinds are {SHAPE_KINDS}")
    return parsers[kind].from_dict(geometry)  # type: ignore[attr-defined]


def shape_mask(shape_obj: Shape, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask of a shape."""
    if isinstance(shape_obj, Brush):
        return shape_obj.rasterize(shape)
    return _full(shape, *shape_obj.crop(shape))


def rasterize(kind: str, geometry: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """``store.repo.Rasterizer``: stored (kind, geometry) -> (H, W) bool mask."""
    h, w = int(shape[0]), int(shape[1])
    if h <= 0 or w <= 0:
        raise GeometryError(f"cannot rasterise onto an empty {h}x{w} grid")
    return shape_mask(shape_from_dict(kind, geometry), (h, w))


def contour_outline(indices: np.ndarray) -> np.ndarray:
    """Polygon points (x, y) for a pixel contour given as pixel indices (OpenCV's contours).

    Such a contour runs through the centres of the border pixels, so its polygon rasterises one
    pixel ring short of the mask it traced (a fifth of a 10 x 10 lesion); the points are moved to
    the pixel centres (+0.5) and then outwards by half a pixel from the centroid, so that the
    rasterised polygon covers the border pixels again.
    """
    pts = np.asarray(indices, dtype=np.float64).reshape(-1, 2) + 0.5
    d = pts - pts.mean(axis=0)
    norm = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    return pts + d / norm[:, None] * 0.5
