"""Intelligent scissors (live-wire): outline paths that snap to edges of the photograph, Qt-free.

A thin wrapper of OpenCV's ``cv2.segmentation.IntelligentScissorsMB``: the photograph is
prepared once (``applyImage``, on a copy downscaled so its long side is at most ``max_side``
pixels), every anchor the reviewer clicks builds a cost map from that point (``buildMap``, the
costly step: about 0.2 s for a 1024 x 680 photo on one core), and the path from the last anchor
to any other point is then read off the map at once (``getContour``).

Coordinates in and out are continuous image coordinates of the original photo (x = col,
y = row; a pixel's centre is (j + 0.5, i + 0.5), docs/CONTRACTS.md); paths run through pixel
centres. Where OpenCV lacks the module (an old or minimal build), ``LiveWire`` raises
``LiveWireUnavailable`` with a message that says so, and the window offers the polygon tool.
"""

from __future__ import annotations

import math

import numpy as np

from fundus_review.errors import FundusReviewError

MAX_SIDE = 1024  # photos larger than this are prepared at this long side (speed of buildMap)


class LiveWireUnavailable(FundusReviewError):
    """This OpenCV build has no intelligent scissors."""


def available() -> bool:
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(getattr(cv2, "segmentation", None), "IntelligentScissorsMB")


class LiveWire:
    """Live-wire paths on one photograph (RGB uint8, (H, W, 3))."""

    def __init__(self, rgb: np.ndarray, max_side: int = MAX_SIDE) -> None:
        if not available():
            raise LiveWireUnavailable(
                "intelligent scissors need OpenCV's segmentation module "
                "(cv2.segmentation.IntelligentScissorsMB), which this OpenCV build lacks; "
                "draw with the polygon tool instead"
            )
        import cv2

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"LiveWire needs an RGB uint8 (H, W, 3) image, not {rgb.shape}")
        h, w = rgb.shape[:2]
        self.shape = (h, w)
        self.scale = min(1.0, max_side / max(h, w))
        if self.scale < 1.0:
            size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        else:
            small = np.ascontiguousarray(rgb)
        self._small_shape = small.shape[:2]
        tool = cv2.segmentation.IntelligentScissorsMB()
        tool.setEdgeFeatureCannyParameters(32, 100)
        tool.setGradientMagnitudeMaxLimit(200)
        tool.applyImage(small)
        self._tool = tool
        self.anchor: tuple[int, int] | None = None  # (col, row) on the prepared grid

    # ------------------------------------------------------------------------ coordinates
    def _to_grid(self, x: float, y: float) -> tuple[int, int]:
        h, w = self._small_shape
        col = min(max(math.floor(x * self.scale), 0), w - 1)
        row = min(max(math.floor(y * self.scale), 0), h - 1)
        return col, row

    def _to_image(self, pts: np.ndarray) -> np.ndarray:
        return (pts.astype(np.float64) + 0.5) / self.scale

    # ---------------------------------------------------------------------------- the path
    def set_anchor(self, x: float, y: float) -> None:
        """Build the cost map from (x, y): the costly step (run it off the UI thread)."""
        grid = self._to_grid(x, y)
        self._tool.buildMap(grid)
        self.anchor = grid

    def path_to(self, x: float, y: float) -> np.ndarray:
        """The path (N, 2) of (x, y) pixel centres from the anchor to (x, y), anchor first."""
        if self.anchor is None:
            raise ValueError("set_anchor first")
        target = self._to_grid(x, y)
        contour = self._tool.getContour(target)
        pts = np.asarray(contour, dtype=np.int64).reshape(-1, 2)
        if len(pts) == 0:
            pts = np.array([self.anchor, target], dtype=np.int64)
        if tuple(pts[0]) != self.anchor and tuple(pts[-1]) == self.anchor:
            pts = pts[::-1]  # OpenCV's order has differed between versions
        return self._to_image(pts)


def simplify_path(points: np.ndarray, tolerance: float = 0.75) -> np.ndarray:
    """Fewer vertices for an editable polygon: Douglas-Peucker within ``tolerance`` pixels of
    the closed path (a live-wire path has one vertex per pixel)."""
    import cv2

    pts = np.asarray(points, dtype=np.float32).reshape(-1, 1, 2)
    if len(pts) <= 3:
        return pts.reshape(-1, 2).astype(np.float64)
    out = cv2.approxPolyDP(pts, float(tolerance), closed=True).reshape(-1, 2)
    return (out if len(out) >= 3 else pts.reshape(-1, 2)).astype(np.float64)
