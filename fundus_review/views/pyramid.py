"""Image pyramids, so a 4288x2848 photograph pans and zooms as smoothly as a small one.

An image item that holds the whole full-resolution array re-renders all 12 megapixels whenever
its downsampling factor changes (every zoom step) and when zoomed in to 1:1. Instead the viewer
shows only what is on screen, taken from the pyramid level that matches the zoom: level k is the
image reduced by 2**k with area averaging (no aliasing of fine vessels). Levels are made lazily,
the first time a zoom needs them, or ahead of time on a worker thread (`prepare`). Qt-free.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

MIN_LEVEL_SIDE = 256  # no level smaller than this: a thumbnail-sized level is never needed


class Pyramid:
    """Level 0 is the array itself (H, W) or (H, W, C); level k is 2**k times smaller."""

    def __init__(self, base: np.ndarray) -> None:
        self.base = np.ascontiguousarray(base)
        h, w = self.base.shape[:2]
        self.n_levels = 1 + max(0, int(math.floor(math.log2(max(min(h, w), 1) / MIN_LEVEL_SIDE))))
        self._levels: list[np.ndarray] = [self.base]
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, int]:
        return self.base.shape[:2]

    def level(self, k: int) -> np.ndarray:
        k = min(max(k, 0), self.n_levels - 1)
        with self._lock:
            while len(self._levels) <= k:
                prev = self._levels[-1]
                h, w = prev.shape[:2]
                half = cv2.resize(
                    prev, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA
                )
                self._levels.append(np.ascontiguousarray(half))
            return self._levels[k]

    def prepare(self, up_to: int = 3) -> Pyramid:
        """Make the first levels now (call off the UI thread); returns self."""
        self.level(min(up_to, self.n_levels - 1))
        return self

    def scale_of(self, k: int) -> tuple[float, float]:
        """(sx, sy): original pixels per pixel of level k (not exactly 2**k after odd sizes)."""
        h, w = self.shape
        lh, lw = self.level(k).shape[:2]
        return w / lw, h / lh


@dataclass(frozen=True)
class Window:
    """What to upload: rows/cols [y0, y1) x [x0, x1) of level `k`, placed at `rect` (x, y, w, h)
    in original pixel coordinates."""

    k: int
    x0: int
    y0: int
    x1: int
    y1: int
    rect: tuple[float, float, float, float]

    def covers(self, other: Window) -> bool:
        return (
            self.k == other.k
            and self.x0 <= other.x0
            and self.y0 <= other.y0
            and self.x1 >= other.x1
            and self.y1 >= other.y1
        )


def choose_window(
    pyr: Pyramid,
    visible: tuple[float, float, float, float],
    image_px_per_screen_px: float,
    margin: float = 0.5,
) -> Window:
    """The level and crop to show `visible` (x, y, w, h in original pixels) on screen.

    The level is the coarsest one still at least as fine as the screen (so nothing is lost); the
    crop adds `margin` of the visible size on each side, so small pans need no new upload.
    """
    k = int(math.floor(math.log2(image_px_per_screen_px))) if image_px_per_screen_px > 1 else 0
    k = min(max(k, 0), pyr.n_levels - 1)
    sx, sy = pyr.scale_of(k)
    lh, lw = pyr.level(k).shape[:2]
    x, y, w, h = visible
    mx, my = w * margin, h * margin
    x0 = int(max(0, math.floor((x - mx) / sx)))
    y0 = int(max(0, math.floor((y - my) / sy)))
    x1 = int(min(lw, math.ceil((x + w + mx) / sx)))
    y1 = int(min(lh, math.ceil((y + h + my) / sy)))
    if x1 <= x0 or y1 <= y0:  # scrolled entirely off the image: show nothing new
        x0, y0, x1, y1 = 0, 0, min(lw, 1), min(lh, 1)
    return Window(k, x0, y0, x1, y1, (x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy))


def crop(pyr: Pyramid, win: Window) -> np.ndarray:
    """The C-contiguous pixels of `win` (what the image item gets)."""
    return np.ascontiguousarray(pyr.level(win.k)[win.y0 : win.y1, win.x0 : win.x1])


class PreviewPyramid(Pyramid):
    """A stand-in for a photo still being decoded: its levels from `k0` up, made from a cached
    preview. Finer zooms show level `k0` enlarged until the real pyramid replaces this one."""

    def __init__(self, coarse: np.ndarray, full_shape: tuple[int, int], k0: int) -> None:
        h, w = int(full_shape[0]), int(full_shape[1])
        self._full_shape = (h, w)
        self.base = np.ascontiguousarray(coarse)
        self.n_levels = 1 + max(0, int(math.floor(math.log2(max(min(h, w), 1) / MIN_LEVEL_SIDE))))
        self.n_levels = max(self.n_levels, k0 + 1)
        self.k0 = k0
        self._levels = [self.base] * (k0 + 1)  # levels below k0 are this one, enlarged
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, int]:
        return self._full_shape


def preview_level(pyr: Pyramid, max_side: int) -> int | None:
    """The finest level of `pyr` whose longer side is at most `max_side`; None when the photo
    itself is that small (decoding it is then as fast as reading a preview)."""
    for k in range(1, pyr.n_levels):
        lh, lw = pyr.level(k).shape[:2]
        if max(lh, lw) <= max_side:
            return k
    return None
