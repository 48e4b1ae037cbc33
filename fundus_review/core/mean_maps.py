"""Dataset-mean heatmaps on a common frame: where a model looks on average, image size aside.

Heatmaps of photographs of different sizes, cameras and fields of view only add up once each is
registered to one frame. Two frames, both axis-aligned similarity maps of the original image
(a shift and one scale, plus an optional left-right mirror), so each is exact and separable:

- ``fov``: the field-of-view circle becomes the unit disc. Centre = the middle of the FOV mask's
  bounding box, radius = half its larger side (a circle cut at top and bottom by the sensor
  keeps its true radius and centre). The frame spans ``FOV_EXTENT`` radii each side, so the
  black corners of the photograph (where burned-in text and stickers live) are in the frame.
  Never mirrored: a corner artifact stays in its corner.
- ``disc``: the expert optic disc's centroid goes to the frame centre and its equivalent radius
  sqrt(area / pi) becomes one unit; the frame spans ``DISC_EXTENT`` disc radii each side (the
  fovea lies about 5 disc radii, 2.5 disc diameters, temporal to the disc). With ``mirror``
  (the default), an image whose disc lies left of its FOV centre (a left eye by the usual
  photograph convention) is mirrored, so every disc looks like a right eye's: nasal side to the
  right, macula to the left (at u ~ -5). Mirroring mixes left and right corners, which is why
  the corner numbers come from the ``fov`` frame.

A frame grid is ``size`` x ``size`` cells over [-extent, extent]^2 in frame units (u to the
right, v down, as image x/y). ``register`` samples a heatmap at every cell centre (bilinear on
the heatmap's own grid, through its ``InputTransform``); cells that fall outside the photograph
or outside what the model saw are *invalid*, not zero, so the mean of a cell is over the images
that cover it. ``MeanMap`` accumulates sum, sum of squares, count and the cell of each map's
peak: memory is four grids whatever the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.transform import InputTransform

FRAME_SIZE = 128
FOV_EXTENT = 1.25  # FOV radii each side of the centre
DISC_EXTENT = 8.0  # disc radii each side of the disc centre
FRAMES = ("fov", "disc")
# A cell is in a "corner" when it is beyond CORNER_INNER radii on both axes (fov frame): the four
# squares there lie outside the FOV circle, where a corner of the photograph is.
CORNER_INNER = 0.7


@dataclass(frozen=True)
class Frame:
    """One image's map onto a frame: u = (x - cx) / scale (negated when mirrored),
    v = (y - cy) / scale, with (x, y) continuous original-pixel coordinates."""

    kind: str
    cx: float
    cy: float
    scale: float
    mirror: bool = False

    def to_frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = (np.asarray(x, np.float64) - self.cx) / self.scale
        return (-u if self.mirror else u), (np.asarray(y, np.float64) - self.cy) / self.scale

    def to_image(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.asarray(u, np.float64)
        return self.cx + (-u if self.mirror else u) * self.scale, self.cy + np.asarray(
            v, np.float64
        ) * self.scale

    def to_dict(self) -> dict:
        return {"kind": self.kind, "cx": self.cx, "cy": self.cy, "scale": self.scale,
                "mirror": self.mirror}  # fmt: skip


@dataclass(frozen=True)
class FrameGrid:
    """The cells of a frame: ``size`` x ``size`` over [-extent, extent]^2."""

    kind: str
    size: int = FRAME_SIZE
    extent: float = FOV_EXTENT

    def __post_init__(self) -> None:
        if self.kind not in FRAMES:
            raise MetricInputError(f"unknown frame {self.kind!r}; expected one of {FRAMES}")
        if self.size < 2 or not self.extent > 0:
            raise MetricInputError(f"a frame grid needs size >= 2 and extent > 0, got {self}")

    @property
    def cell(self) -> float:
        return 2.0 * self.extent / self.size

    def centres(self) -> np.ndarray:
        """Frame coordinate of each cell centre along one axis (the same for u and v)."""
        return -self.extent + (np.arange(self.size) + 0.5) * self.cell

    def radius(self) -> np.ndarray:
        c = self.centres()
        return np.hypot(c[None, :], c[:, None])

    def off_fov(self) -> np.ndarray:
        """Cells outside the unit disc (the FOV in the ``fov`` frame)."""
        return self.radius() > 1.0

    def corners(self, inner: float = CORNER_INNER) -> np.ndarray:
        c = np.abs(self.centres()) > inner
        return c[:, None] & c[None, :]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "size": self.size, "extent": self.extent}


def default_grid(kind: str, size: int = FRAME_SIZE) -> FrameGrid:
    return FrameGrid(kind, size, FOV_EXTENT if kind == "fov" else DISC_EXTENT)


def fov_frame(fov: np.ndarray) -> Frame:
    """The ``fov`` frame of an image from its (H, W) bool field-of-view mask."""
    f = np.asarray(fov, dtype=bool)
    if f.ndim != 2 or not f.any():
        raise MetricInputError("an empty field of view has no circle to register to")
    rows = np.flatnonzero(f.any(axis=1))
    cols = np.flatnonzero(f.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    radius = max(y1 - y0, x1 - x0) / 2.0
    return Frame("fov", (x0 + x1) / 2.0, (y0 + y1) / 2.0, float(radius))


def disc_frame(disc: np.ndarray, reference_x: float | None = None, mirror: bool = True) -> Frame:
    """The ``disc`` frame from the (H, W) bool optic-disc mask. ``reference_x``: the FOV centre's
    x (default: the image centre); the image is mirrored when the disc lies left of it."""
    d = np.asarray(disc, dtype=bool)
    if d.ndim != 2 or not d.any():
        raise MetricInputError("an empty optic-disc mask has no centre to register to")
    rows, cols = np.nonzero(d)
    cx, cy = float(cols.mean()) + 0.5, float(rows.mean()) + 0.5
    ref = d.shape[1] / 2.0 if reference_x is None else float(reference_x)
    radius = float(np.sqrt(rows.size / np.pi))
    return Frame("disc", cx, cy, max(radius, 0.5), bool(mirror and cx < ref))


def _axis(
    pos: np.ndarray, n_orig: int, n_in: int, scale: float, shift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps on one axis of the heatmap grid for original coordinates ``pos``."""
    inside = (pos >= 0.0) & (pos < n_orig)
    p_in = pos * scale + shift
    inside &= (p_in >= 0.0) & (p_in < n_in)
    q = np.clip(p_in - 0.5, 0.0, n_in - 1)  # index space of pixel centres
    i0 = np.floor(q).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, q - i0, inside


def register(
    heatmap: np.ndarray, frame: Frame, grid: FrameGrid, transform: InputTransform | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid): the heatmap sampled at every cell centre of ``grid``.

    ``heatmap`` lives on the model-input grid of ``transform`` (or on the original grid when
    ``transform`` is None); ``frame`` is the image's map in original coordinates. Invalid cells
    (outside the photograph or the model input) hold 0.
    """
    hm = np.asarray(heatmap, dtype=np.float64)
    if hm.ndim != 2:
        raise MetricInputError(f"a heatmap must be 2-D, got shape {hm.shape}")
    if not np.isfinite(hm).all():
        raise MetricInputError("heatmap contains NaN or infinite values")
    if transform is None:
        transform = InputTransform(hm.shape[0], hm.shape[1], hm.shape[0], hm.shape[1], 1, 1, 0, 0)
    if hm.shape != (transform.in_h, transform.in_w):
        raise MetricInputError(
            f"heatmap shape {hm.shape} does not match its input grid "
            f"({transform.in_h}, {transform.in_w})"
        )
    c = grid.centres()
    xs, ys = frame.to_image(c, c)
    x0, x1, wx, vx = _axis(xs, transform.orig_w, transform.in_w, transform.sx, transform.tx)
    y0, y1, wy, vy = _axis(ys, transform.orig_h, transform.in_h, transform.sy, transform.ty)
    rows = hm[y0] * (1.0 - wy)[:, None] + hm[y1] * wy[:, None]
    values = rows[:, x0] * (1.0 - wx)[None, :] + rows[:, x1] * wx[None, :]
    valid = vy[:, None] & vx[None, :]
    values[~valid] = 0.0
    return values.astype(np.float32), valid


def frame_to_image(
    frame_map: np.ndarray, grid: FrameGrid, frame: Frame, shape: tuple[int, int]
) -> np.ndarray:
    """A frame map drawn back onto one image's (H, W) grid (bilinear between cell centres).
    Pixels outside the frame, and cells without data (NaN), become 0."""
    m = np.nan_to_num(np.asarray(frame_map, dtype=np.float64), nan=0.0)
    if m.shape != (grid.size, grid.size):
        raise MetricInputError(f"frame map is {m.shape}, its grid is {grid.size}x{grid.size}")
    h, w = (int(s) for s in shape)
    u, _ = frame.to_frame(np.arange(w) + 0.5, np.zeros(1))
    _, v = frame.to_frame(np.zeros(1), np.arange(h) + 0.5)

    def taps(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        q = (t + grid.extent) / grid.cell - 0.5
        inside = (t >= -grid.extent) & (t < grid.extent)
        q = np.clip(q, 0.0, grid.size - 1)
        i0 = np.floor(q).astype(np.intp)
        return i0, np.minimum(i0 + 1, grid.size - 1), q - i0, inside

    c0, c1, wc, vc = taps(u)
    r0, r1, wr, vr = taps(v)
    rows = m[r0] * (1.0 - wr)[:, None] + m[r1] * wr[:, None]
    out = rows[:, c0] * (1.0 - wc)[None, :] + rows[:, c1] * wc[None, :]
    out[~vr] = 0.0
    out[:, ~vc] = 0.0
    return out.astype(np.float32)


def region_share(values: np.ndarray, valid: np.ndarray, region: np.ndarray) -> float | None:
    """Share of a registered map's mass (over its valid cells) that lies in ``region``;
    None for a map without mass."""
    v = np.where(valid, np.maximum(values, 0.0), 0.0).astype(np.float64)
    total = v.sum()
    return None if total <= 0 else float(v[region].sum() / total)


def peak_cell(values: np.ndarray, valid: np.ndarray) -> tuple[int, int] | None:
    """(row, col) of the largest valid cell (first in row-major order on ties); None without
    a positive value."""
    v = np.where(valid, values, -np.inf)
    flat = int(np.argmax(v))
    if not np.isfinite(v.flat[flat]) or v.flat[flat] <= 0:
        return None
    return divmod(flat, v.shape[1])


@dataclass
class MeanMap:
    """Streaming mean, spread and peak density of registered maps on one frame grid."""

    grid: FrameGrid
    total: np.ndarray = field(init=False, repr=False)
    squares: np.ndarray = field(init=False, repr=False)
    count: np.ndarray = field(init=False, repr=False)
    peaks: np.ndarray = field(init=False, repr=False)
    n: int = 0
    n_peaks: int = 0

    def __post_init__(self) -> None:
        shape = (self.grid.size, self.grid.size)
        self.total = np.zeros(shape, np.float64)
        self.squares = np.zeros(shape, np.float64)
        self.count = np.zeros(shape, np.int64)
        self.peaks = np.zeros(shape, np.int64)

    def add(self, values: np.ndarray, valid: np.ndarray) -> None:
        if values.shape != self.total.shape or valid.shape != self.total.shape:
            raise MetricInputError(f"registered map is {values.shape}, grid {self.total.shape}")
        v = np.where(valid, values, 0.0).astype(np.float64)
        self.total += v
        self.squares += v * v
        self.count += valid
        self.n += 1
        peak = peak_cell(values, valid)
        if peak is not None:
            self.peaks[peak] += 1
            self.n_peaks += 1

    def merge(self, other: MeanMap) -> None:
        if other.grid != self.grid:
            raise MetricInputError("mean maps on different grids cannot be merged")
        self.total += other.total
        self.squares += other.squares
        self.count += other.count
        self.peaks += other.peaks
        self.n += other.n
        self.n_peaks += other.n_peaks

    def mean(self) -> np.ndarray:
        """Per-cell mean over the images covering the cell; NaN where none does."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / self.count, np.nan).astype(np.float32)

    def std(self) -> np.ndarray:
        """Per-cell standard deviation (population) over the covering images; NaN where none."""
        with np.errstate(invalid="ignore", divide="ignore"):
            m = self.total / self.count
            var = np.maximum(self.squares / self.count - m * m, 0.0)
            return np.where(self.count > 0, np.sqrt(var), np.nan).astype(np.float32)

    def peak_fraction(self) -> np.ndarray:
        """Share of the maps whose peak falls in each cell (sums to 1 over the grid)."""
        return (self.peaks / max(self.n_peaks, 1)).astype(np.float32)

    def coverage_share(self, region: np.ndarray) -> float | None:
        """What a uniform map would put in ``region``: its share of the covered cell area."""
        total = self.count.sum()
        return None if total == 0 else float(self.count[region].sum() / total)

    def peaks_in(self, region: np.ndarray) -> int:
        return int(self.peaks[region].sum())
