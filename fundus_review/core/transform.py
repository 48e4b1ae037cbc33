"""The exact geometry between an original image and the model input (resize / crop / pad).

Every policy is "resize to an integer size, then place it at an integer offset in the input
canvas" (a negative offset crops, a positive one pads), so a single axis-aligned affine map
describes it:  x_in = x_orig * sx + tx,  y_in = y_orig * sy + ty,  in continuous pixel
coordinates where pixel (row i, col j) covers [j, j+1) x [i, i+1).  Preprocessing resamples with
exactly this map, so heatmaps can be mapped back to the original grid without drift.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

POLICIES = ("resize", "center_crop", "letterbox")


@dataclass(frozen=True)
class InputTransform:
    orig_h: int
    orig_w: int
    in_h: int
    in_w: int
    sx: float
    sy: float
    tx: float
    ty: float

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InputTransform:
        return cls(
            orig_h=int(d["orig_h"]),
            orig_w=int(d["orig_w"]),
            in_h=int(d["in_h"]),
            in_w=int(d["in_w"]),
            sx=float(d["sx"]),
            sy=float(d["sy"]),
            tx=float(d["tx"]),
            ty=float(d["ty"]),
        )

    # -- integer geometry used by preprocessing --------------------------------------------
    @property
    def resized_size(self) -> tuple[int, int]:
        """(h, w) of the original image after the resize step, before crop/pad."""
        return int(round(self.orig_h * self.sy)), int(round(self.orig_w * self.sx))

    @property
    def offset(self) -> tuple[int, int]:
        """(row, col) where the resized image's top-left lands in the input (negative = cropped)."""
        return int(round(self.ty)), int(round(self.tx))

    # -- points ------------------------------------------------------------------------------
    def to_input_points(self, xy: np.ndarray) -> np.ndarray:
        pts = _as_points(xy)
        return pts * np.array([self.sx, self.sy]) + np.array([self.tx, self.ty])

    def to_original_points(self, xy: np.ndarray) -> np.ndarray:
        pts = _as_points(xy)
        return (pts - np.array([self.tx, self.ty])) / np.array([self.sx, self.sy])

    # -- rasters -------------------------------------------------------------------------
    def _axis_sampling(
        self, n_orig: int, n_in: int, scale: float, shift: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per original row (or column): the two input indices, the weight of the second, and
        whether the pixel centre falls inside the input at all."""
        centres_in = (np.arange(n_orig, dtype=np.float64) + 0.5) * scale + shift
        visible = (centres_in >= 0.0) & (centres_in < n_in)
        # Index space of input pixel centres: input pixel k has its centre at k + 0.5.
        u = np.clip(centres_in - 0.5, 0.0, n_in - 1)
        i0 = np.floor(u).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w1 = (u - i0).astype(np.float32)
        return i0, i1, w1, visible

    def visible_mask(self) -> np.ndarray:
        _, _, _, vis_y = self._axis_sampling(self.orig_h, self.in_h, self.sy, self.ty)
        _, _, _, vis_x = self._axis_sampling(self.orig_w, self.in_w, self.sx, self.tx)
        return vis_y[:, None] & vis_x[None, :]

    def mask_to_input(self, mask: np.ndarray) -> np.ndarray:
        """An (orig_h, orig_w) boolean mask on the (in_h, in_w) model-input grid.

        Each input pixel takes the original pixel under its centre (nearest neighbour); input
        pixels that show no image (letterbox padding) are False.
        """
        m = np.asarray(mask, dtype=bool)
        if m.shape != (self.orig_h, self.orig_w):
            raise ValueError(
                f"mask shape {m.shape} does not match the image ({self.orig_h}, {self.orig_w})"
            )
        ys = np.floor((np.arange(self.in_h) + 0.5 - self.ty) / self.sy).astype(np.intp)
        xs = np.floor((np.arange(self.in_w) + 0.5 - self.tx) / self.sx).astype(np.intp)
        in_y = (ys >= 0) & (ys < self.orig_h)
        in_x = (xs >= 0) & (xs < self.orig_w)
        out = m[np.clip(ys, 0, self.orig_h - 1)][:, np.clip(xs, 0, self.orig_w - 1)]
        return out & in_y[:, None] & in_x[None, :]

    def heatmap_to_original(self, hm: np.ndarray) -> np.ndarray:
        """Bilinear map of an (in_h, in_w) heatmap onto the (orig_h, orig_w) grid.

        Separable: interpolate rows first (small), then columns, with index gathers only.
        Original pixels whose centre lies outside the model input (cropped away) get 0.0.
        """
        hm = np.asarray(hm)
        if hm.shape != (self.in_h, self.in_w):
            raise ValueError(
                f"heatmap shape {hm.shape} does not match the model input ({self.in_h}, {self.in_w})"
            )
        hm = hm.astype(np.float32, copy=False)
        if np.isnan(hm).any():
            raise ValueError("heatmap contains NaN")
        y0, y1, wy, vis_y = self._axis_sampling(self.orig_h, self.in_h, self.sy, self.ty)
        x0, x1, wx, vis_x = self._axis_sampling(self.orig_w, self.in_w, self.sx, self.tx)
        wy = wy[:, None]
        rows = hm[y0] * (1.0 - wy) + hm[y1] * wy  # (orig_h, in_w)
        out = rows[:, x0]
        out *= 1.0 - wx
        out += rows[:, x1] * wx
        # Zero whole rows/columns the model never saw; the visible region is a rectangle.
        out[~vis_y] = 0.0
        out[:, ~vis_x] = 0.0
        return out


def _as_points(xy: np.ndarray) -> np.ndarray:
    pts = np.asarray(xy, dtype=np.float64)
    if pts.ndim == 1 and pts.shape[0] == 2:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    return pts


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def make_transform(
    orig_h: int, orig_w: int, in_h: int, in_w: int, policy: str, crop_pct: float = 0.875
) -> InputTransform:
    """The geometry `prepare_batch` uses for one image.

    - "resize": stretch to (in_h, in_w).
    - "center_crop": timm's eval convention: scale so the image covers floor(in / crop_pct)
      (for a square input: the short side becomes floor(in / crop_pct)), then centre-crop.
    - "letterbox": scale the long side to fit, centre, pad (the pad is the mean colour).
    """
    _check_sizes(orig_h=orig_h, orig_w=orig_w, in_h=in_h, in_w=in_w)
    if policy == "resize":
        rh, rw = in_h, in_w
        oy = ox = 0
    elif policy == "center_crop":
        if not (0.0 < crop_pct <= 1.0):
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
        rh, rw = _center_crop_resized_size(orig_h, orig_w, in_h, in_w, crop_pct)
        # torchvision CenterCrop: top = int(round((h - crop_h) / 2)).
        oy = -int(round((rh - in_h) / 2.0))
        ox = -int(round((rw - in_w) / 2.0))
    elif policy == "letterbox":
        scale = min(in_h / orig_h, in_w / orig_w)
        rh = min(in_h, max(1, int(round(orig_h * scale))))
        rw = min(in_w, max(1, int(round(orig_w * scale))))
        oy = (in_h - rh) // 2
        ox = (in_w - rw) // 2
    else:
        raise ValueError(f"unknown resize policy {policy!r}; expected one of {', '.join(POLICIES)}")
    return InputTransform(
        orig_h=int(orig_h),
        orig_w=int(orig_w),
        in_h=int(in_h),
        in_w=int(in_w),
        # Scales from the actual integer sizes, so the map matches the resampled pixels exactly.
        sx=rw / orig_w,
        sy=rh / orig_h,
        tx=float(ox),
        ty=float(oy),
    )


def _center_crop_resized_size(
    orig_h: int, orig_w: int, in_h: int, in_w: int, crop_pct: float
) -> tuple[int, int]:
    scale_h = math.floor(in_h / crop_pct)
    scale_w = math.floor(in_w / crop_pct)
    if scale_h == scale_w:
        # torchvision Resize(int): short side -> scale, long side truncated like torchvision does.
        s = scale_h
        if orig_w <= orig_h:
            rh, rw = int(s * orig_h / orig_w), s
        else:
            rh, rw = s, int(s * orig_w / orig_h)
    else:
        # timm ResizeKeepRatio for non-square inputs: the smaller ratio wins, so the image covers
        # the scaled target on both axes.
        ratio = min(orig_h / scale_h, orig_w / scale_w)
        rh, rw = int(round(orig_h / ratio)), int(round(orig_w / ratio))
    # Never crop more than there is (rounding could leave one pixel short of the input size).
    return max(rh, in_h), max(rw, in_w)
