"""Field-of-view masks: the bright, roughly circular fundus region inside the camera's black border.

Agreement metrics must not reward a heatmap for avoiding the black border, so every metric is
restricted to the FOV. The work happens on a copy whose long side is at most 1024 px:

1. a threshold a few noise widths above the border's own level (from the image's histogram)
   gives the largest bright component - the topology: speckle and burned-in text in the border
   drop out, an under-exposed periphery stays in;
2. along 720 rays from its centre, the aperture edge is the outermost strong brightness step,
   which cuts the dim halo some cameras leave around the aperture (IDRiD) without cutting a
   gradual dark periphery (DRISHTI);
3. the FOV of a camera is a circular aperture intersected with the sensor rectangle (often cut
   at top and bottom), a convex shape, so the mask is the convex hull of the edge points, grown
   by a small margin and drawn at full resolution: dark lesions and vessels, even where they
   touch the edge, stay inside.

OpenCV (opencv-python-headless, already a dependency) does the resizing, connected components,
polar unrolling and polygon filling; the rest is numpy.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from fundus_review.data.images import load_image
from fundus_review.data.masks_io import load_mask, write_mask_atomic
from fundus_review.errors import DatasetError

__all__ = ["FOV_ALGORITHM_VERSION", "FovCache", "fov_mask"]

log = logging.getLogger(__name__)

# Bump when the algorithm changes, so cached masks from an older version are not reused.
FOV_ALGORITHM_VERSION = 1

# Long side of the working copy: usual fundus exports (<= 1024 px) are processed at full
# resolution, a 4288 px original at a quarter (the edge is placed to about 2 px).
_WORK_SIDE = 1024
_MIN_BORDER_FRACTION = 0.01  # fewer near-black pixels than this: the photo has no border
_MIN_FRAME_BORDER_FRACTION = 0.02  # share of the image frame that must be border
_RAYS = 720  # polar samples around the FOV: a point every ~3 px on a 1024 px image
# Safety margin outside the detected edge, as a fraction of the FOV radius: experts outline
# structures that touch the aperture out into its blurred rim, and a few border pixels inside
# the FOV cost a metric nothing, while annotated pixels outside it would be dropped.
_MARGIN_FRACTION = 0.005


def fov_mask(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool mask of the fundus region of an (H, W, 3) uint8 RGB image.

    Images without a dark border (already cropped to the retina, or ultra-widefield) get an
    all-True mask; so do images too dark or too flat to tell fundus from border.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"fov_mask expects an (H, W, 3) image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    everything = np.ones((h, w), bool)
    small, scale = _working_copy(rgb)
    hist = np.bincount(small.ravel(), minlength=256).astype(np.float64)
    noise_threshold = _border_threshold(hist)
    if noise_threshold is None:
        return everything
    # Stage 1, topology: everything clearly above the border noise, largest piece. This may
    # still include a camera's dim halo around the aperture, but never loses dim periphery.
    rough = _largest_component(small > noise_threshold)
    if rough is None or _frame_outside_fraction(rough) < _MIN_FRAME_BORDER_FRACTION:
        # Dark pixels exist but they do not reach the image frame: lesions or vessels in a
        # photo cropped inside the retina, not a camera border.
        return everything
    # Stage 2, the edge: along rays from the centre, the aperture edge is the outermost strong
    # brightness step. A gradual dark periphery has no step (it stays in); a camera's dim
    # halo outside the aperture sits beyond the big step (it goes out).
    edge_points = _aperture_edge_points(small, rough)
    return _hull_at_full_resolution(edge_points, scale, (h, w))


def _working_copy(rgb: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Despeckled brightness (max over RGB, i.e. mostly red), long side <= _WORK_SIDE."""
    h, w = rgb.shape[:2]
    factor = max(h, w) / _WORK_SIDE
    if factor > 1:
        sw, sh = max(1, round(w / factor)), max(1, round(h / factor))
        # INTER_AREA averages whole blocks: the anti-aliasing also suppresses sensor noise.
        rgb = cv2.resize(np.ascontiguousarray(rgb), (sw, sh), interpolation=cv2.INTER_AREA)
    else:
        sw, sh = w, h
    # Pairwise maxima: numpy's max(axis=2) over a length-3 axis is ten times slower.
    bright = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    # A median, unlike a mean, removes speckle without moving the FOV edge outwards.
    return cv2.medianBlur(bright, 3), (w / sw, h / sh)


def _percentile(hist: np.ndarray, q: float) -> float:
    cdf = np.cumsum(hist)
    return float(np.searchsorted(cdf, q / 100.0 * cdf[-1]))


def _border_threshold(hist: np.ndarray) -> float | None:
    """A level a few noise widths above the border's brightness, or None if there is no border.

    The border is the darkest mode of the histogram; its level and noise are measured on the
    darkest pixels only (median and MAD), so neither the fundus nor its edge skews them.
    """
    lo, hi = _percentile(hist, _MIN_BORDER_FRACTION * 100), _percentile(hist, 99.0)
    span = hi - lo
    # Nothing but darkness, or no dark mode at all: no border to remove.
    if hi < 10 or span < 8 or lo > 0.5 * hi:
        return None
    dark = hist.copy()
    dark[int(lo + 0.1 * span) + 1 :] = 0
    level = _percentile(dark, 50.0)
    values = np.arange(256, dtype=np.float64)
    deviations = np.zeros(256)
    np.add.at(deviations, np.abs(values - level).astype(np.int64), dark)
    noise = 1.4826 * _percentile(deviations, 50.0)
    return level + min(max(4.0 * noise, 3.0), 0.2 * span)


def _aperture_edge_points(small: np.ndarray, rough: np.ndarray) -> np.ndarray:
    """Points on the aperture edge (working-grid coordinates, pixel edges at integers).

    The image is unrolled into polar coordinates around the rough region's centroid. On each
    ray, the search looks inwards from the rough region's outer end over a fifth of the radius
    for brightness drops; the outermost drop at least half as strong as the ray's strongest is
    the edge (a bright optic disc just inside the edge must not be mistaken for it). Rays that
    leave the image inside the fundus end at the frame, where the polar image drops to zero.
    """
    moments = cv2.moments(rough.astype(np.uint8), binaryImage=True)
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    h, w = small.shape
    max_r = float(np.hypot(max(cx, w - cx), max(cy, h - cy))) + 2
    n_r, n_a = int(np.ceil(max_r)), _RAYS
    flags = cv2.WARP_POLAR_LINEAR | cv2.WARP_FILL_OUTLIERS
    polar = cv2.warpPolar(
        small.astype(np.float32), (n_r, n_a), (cx, cy), max_r, flags | cv2.INTER_LINEAR
    )
    inside = cv2.warpPolar(rough.astype(np.uint8), (n_r, n_a), (cx, cy), max_r, flags) > 0
    step = max_r / n_r
    radii = np.arange(n_r)
    r_out = np.where(inside.any(axis=1), n_r - 1 - np.argmax(inside[:, ::-1], axis=1), -1)
    radius = float(np.sqrt(rough.sum() / np.pi))
    window = max(6, int(0.2 * radius / step))

    k = 2  # drop over +-2 px: the edge of a fundus photo is blurred over a few pixels
    padded = np.pad(polar, ((0, 0), (k + 1, k + 1)), mode="edge")
    csum = np.cumsum(padded, axis=1)
    before = (csum[:, k : k + n_r] - csum[:, 0:n_r]) / k  # mean of p[r-k .. r-1]
    after = (csum[:, 2 * k + 1 : 2 * k + 1 + n_r] - csum[:, k + 1 : k + 1 + n_r]) / k
    drop = before - after
    search = (radii[None, :] >= (r_out - window)[:, None]) & (
        radii[None, :] <= (r_out + k + 1)[:, None]
    )
    drop = np.where(search, drop, -np.inf)
    strongest = drop.max(axis=1, initial=-np.inf)
    peak = np.zeros_like(drop, bool)
    peak[:, 1:-1] = (drop[:, 1:-1] >= drop[:, :-2]) & (drop[:, 1:-1] >= drop[:, 2:])
    strong = peak & (drop >= 0.5 * strongest[:, None]) & (drop > 0)
    valid = strong.any(axis=1) & (r_out >= 0)
    edge_r = n_r - 1 - np.argmax(strong[:, ::-1], axis=1)
    # A ray with no clear step (flat, noisy) keeps the rough region's end.
    edge_r = np.where(valid, edge_r, np.maximum(r_out, 0)).astype(np.float64)
    theta = np.arange(n_a) * (2 * np.pi / n_a)
    r = edge_r * step
    # warpPolar works in OpenCV coordinates (pixel centres at integers); +0.5 gives edge
    # coordinates. Rays that left the image are clipped onto its frame.
    xs = np.clip(cx + r * np.cos(theta), -0.5, w - 0.5) + 0.5
    ys = np.clip(cy + r * np.sin(theta), -0.5, h - 0.5) + 0.5
    return np.stack([xs, ys], axis=1)


def _frame_outside_fraction(region: np.ndarray) -> float:
    frame = np.concatenate([region[0], region[-1], region[1:-1, 0], region[1:-1, -1]])
    return float(1.0 - frame.mean())


def _largest_component(binary: np.ndarray) -> np.ndarray | None:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=8
    )
    if count <= 1:
        return None
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == biggest


def _hull_at_full_resolution(
    points: np.ndarray, scale: tuple[float, float], shape: tuple[int, int]
) -> np.ndarray:
    sx, sy = scale
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    full = hull * np.array([sx, sy])
    radius = float(np.sqrt(cv2.contourArea(full.astype(np.float32)) / np.pi))
    margin = _MARGIN_FRACTION * radius
    if margin > 0:
        # Minkowski sum with a 16-gon: the polygon grown by `margin` in every direction.
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        disc = margin * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        grown = (full[:, None, :] + disc[None, :, :]).reshape(-1, 2).astype(np.float32)
        full = cv2.convexHull(grown).reshape(-1, 2).astype(np.float64)
    # Edge coordinates -> OpenCV's (pixel centres at integers), with 4 fractional bits so the
    # edge is placed to 1/16 pixel.
    shift = 4
    poly = np.rint((full - 0.5) * (1 << shift)).astype(np.int32)
    out = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(out, poly, 1, lineType=cv2.LINE_8, shift=shift)
    return out.astype(bool)


class FovCache:
    """FOV masks on disk, one PNG per image content hash, so each photo is segmented once."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.cache_dir = Path(cache_dir)

    def path_for(self, sha256: str) -> Path:
        sha = sha256.lower()
        # The key becomes a file name: only a real 64-digit hex digest may reach the disk.
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"not a hex SHA-256: {sha256!r}")
        return self.cache_dir / sha[:2] / f"{sha}.fov{FOV_ALGORITHM_VERSION}.png"

    def get(
        self, path: str | os.PathLike[str], sha256: str, rgb: np.ndarray | None = None
    ) -> np.ndarray:
        """The FOV mask of the image at `path` (content hash `sha256`).

        `rgb` (the already loaded image) saves a decode on a cache miss. A cached mask that is
        unreadable or does not match the image size is recomputed; failing to write the cache
        only logs a warning, since the mask itself is still correct.
        """
        cached = self.path_for(sha256)
        shape = None if rgb is None else rgb.shape[:2]
        if cached.is_file():
            try:
                return load_mask(cached, expected_shape=shape)
            except DatasetError as exc:
                log.warning("recomputing FOV mask, cached copy unusable: %s", exc)
        if rgb is None:
            rgb = load_image(path)
        mask = fov_mask(rgb)
        try:
            write_mask_atomic(cached, mask)
        except OSError as exc:
            log.warning("cannot write FOV cache %s: %s", cached, exc)
        return mask
