"""Dataset-mean heatmaps per run and group, registered to a common frame (``core.mean_maps``).

``mean_maps(db, selection, fov_cache=...)`` reads every stored heatmap of the selection's real
runs once and adds it, registered, to the groups it belongs to: all images of its run, its true
class, its predicted class and its outcome (correct / misclassified; only images with a label).
Every map goes into the ``fov`` frame (the field-of-view circle as the unit disc); images with an
expert optic disc (``disc_structure``, the union of every reviewer's live regions) also into the
``disc`` frame. Per group, two numbers make a corner artifact a number, not only a picture:

- ``off_fov_share``: the share of each image's registered map mass outside the FOV circle,
  averaged over images (bootstrap CI), next to what a uniform map would give there;
- ``corner_share``: the same for the four corner squares (beyond ``CORNER_INNER`` radii on both
  axes), and ``peak_in_corner``: the share of images whose map peaks there (Wilson CI).

Memory is a few grids per group whatever the number of images (sums and counts, plus one float
per image for the CI). The report, ``fundus-review export mean-maps`` and the app's "dataset
mean" layer all call this function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fundus_review.app.selection import ResultSelection
from fundus_review.core import mean_maps as mm
from fundus_review.core.stats import proportion_ci, summarize
from fundus_review.core.transform import InputTransform
from fundus_review.data.fov import FovCache
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo, repo_views
from fundus_review.store.db import Database
from fundus_review.store.repo import ResultRow

GROUPINGS = ("all", "true class", "predicted class", "outcome")
ALL_IMAGES = "all images"
DISC_STRUCTURE = "optic_disc"


@dataclass
class MeanMapGroup:
    """One panel: the registered maps of one run, frame and group of images."""

    run_id: int
    model: str
    method: str
    frame: str
    grouping: str
    group: str
    acc: mm.MeanMap
    off_fov: list[float] = field(default_factory=list)  # per image (fov frame only)
    corner: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.acc.n

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.run_id, self.frame, self.grouping, self.group)

    def add(self, values: np.ndarray, valid: np.ndarray, shares: tuple | None) -> None:
        self.acc.add(values, valid)
        if shares is not None:
            off, corner = shares
            if off is not None:
                self.off_fov.append(off)
            if corner is not None:
                self.corner.append(corner)

    def numbers(self, seed: int = 0, n_resamples: int = 1000) -> dict[str, Any]:
        """n, the shares with their CIs and uniform-map references (see the module doc)."""
        grid = self.acc.grid
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "model": self.model,
            "method": self.method,
            "frame": self.frame,
            "grouping": self.grouping,
            "group": self.group,
            "n": self.n,
        }
        if self.frame != "fov":
            return out
        for name, values, region in (
            ("off_fov_share", self.off_fov, grid.off_fov()),
            ("corner_share", self.corner, grid.corners()),
        ):
            s = summarize(values, n_resamples=n_resamples, seed=seed)
            out[name] = {"mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n,
                         "uniform": self.acc.coverage_share(region)}  # fmt: skip
        k, n = self.acc.peaks_in(grid.corners()), self.acc.n_peaks
        p, lo, hi = proportion_ci(k, n)
        out["peak_in_corner"] = {"k": k, "n": n, "rate": None if n == 0 else p,
                                 "ci_low": None if n == 0 else lo, "ci_high": None if n == 0 else hi}  # fmt: skip
        return out


@dataclass
class MeanMapSet:
    grids: dict[str, mm.FrameGrid]
    groups: dict[tuple[int, str, str, str], MeanMapGroup] = field(default_factory=dict)
    images: int = 0
    disc_images: int = 0
    mirror: bool = True
    disc_structure: str = DISC_STRUCTURE
    problems: list[tuple[str, str]] = field(default_factory=list)

    def runs(self) -> list[tuple[int, str, str]]:
        """(run id, model, method) of every run with maps, in run-id order."""
        return sorted({(g.run_id, g.model, g.method) for g in self.groups.values()})

    def panels(self, run_id: int, frame: str) -> list[MeanMapGroup]:
        """The groups of one run and frame in display order: all, true, predicted, outcome."""
        order = {g: i for i, g in enumerate(GROUPINGS)}
        found = [g for g in self.groups.values() if g.run_id == run_id and g.frame == frame]
        return sorted(found, key=lambda g: (order[g.grouping], _outcome_rank(g.group), g.group))

    def get(self, run_id: int, frame: str, grouping: str, group: str) -> MeanMapGroup | None:
        return self.groups.get((run_id, frame, grouping, group))

    def table(self, seed: int = 0, n_resamples: int = 1000) -> list[dict[str, Any]]:
        return [
            g.numbers(seed, n_resamples)
            for run_id, _, _ in self.runs()
            for frame in self.grids
            for g in self.panels(run_id, frame)
        ]

    def settings(self) -> dict[str, Any]:
        return {
            "grids": {k: g.to_dict() for k, g in self.grids.items()},
            "corner_inner": mm.CORNER_INNER,
            "mirror_left_eyes_in_disc_frame": self.mirror,
            "disc_structure": self.disc_structure,
            "images": self.images,
            "images_with_disc": self.disc_images,
        }


def _outcome_rank(group: str) -> int:
    return {"correct": 0, "misclassified": 1}.get(group, 0)


def group_values(row: ResultRow) -> list[tuple[str, str]]:
    """(grouping, group) of every group one heatmap belongs to."""
    out = [("all", ALL_IMAGES)]
    predicted = row.predicted_class
    if row.label is not None:
        out.append(("true class", row.label))
    if predicted is not None:
        out.append(("predicted class", predicted))
    if row.label is not None and predicted is not None:
        out.append(("outcome", "correct" if row.outcome_class == row.label else "misclassified"))
    return out


def mean_maps(
    db: Database,
    selection: ResultSelection | None = None,
    *,
    fov_cache: FovCache,
    size: int = mm.FRAME_SIZE,
    mirror: bool = True,
    disc_structure: str = DISC_STRUCTURE,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> MeanMapSet:
    """The registered mean maps of every real run of ``selection`` (None: everything).
    Images whose file, field of view or heatmap cannot be read are listed in ``problems``."""
    sel = selection or ResultSelection()
    grids = {k: mm.default_grid(k, size) for k in mm.FRAMES}
    out = MeanMapSet(grids, mirror=mirror, disc_structure=disc_structure)
    with db.session(read_only=True) as s:
        rows = [r for r in sel.results(s) if r.model_kind == "model"]
        roots = {d.id: Path(d.root) for d in repo.list_datasets(s)}
    by_image: dict[int, list[ResultRow]] = {}
    for r in rows:
        by_image.setdefault(r.image_id, []).append(r)
    for done, image_rows in enumerate(by_image.values(), start=1):
        if cancelled is not None and cancelled():
            break
        _add_image(db, image_rows, roots, fov_cache, out)
        if progress is not None:
            progress(done, len(by_image))
    return out


def image_frames(
    db: Database,
    row: ResultRow,
    root: Path,
    fov_cache: FovCache,
    *,
    mirror: bool = True,
    disc_structure: str = DISC_STRUCTURE,
) -> dict[str, mm.Frame]:
    """The frames of one image: ``fov`` always, ``disc`` when an expert drew its disc."""
    fov = _fov(root, row, fov_cache)
    frames = {"fov": mm.fov_frame(fov)}
    with db.session(read_only=True) as s:
        discs = [m for st, _, m in repo_views.region_masks(s, row.image_id) if st == disc_structure]
    if discs:
        disc = np.logical_or.reduce(discs)
        if disc.any():
            frames["disc"] = mm.disc_frame(disc, frames["fov"].cx, mirror=mirror)
    return frames


def _fov(root: Path, row: ResultRow, cache: FovCache) -> np.ndarray:
    path = root / row.rel_path
    if not path.is_file():
        raise FundusReviewError("image file not found (moved or deleted?)")
    fov = cache.get(path, row.sha256)
    if fov.shape != (row.height, row.width):
        raise FundusReviewError(f"field-of-view mask is {fov.shape}, expected the image's size")
    return fov


def _add_image(
    db: Database,
    rows: list[ResultRow],
    roots: dict[int, Path],
    cache: FovCache,
    out: MeanMapSet,
) -> None:
    first = rows[0]
    try:
        frames = image_frames(
            db, first, roots[first.dataset_id], cache,
            mirror=out.mirror, disc_structure=out.disc_structure,
        )  # fmt: skip
    except (FundusReviewError, OSError, ValueError) as exc:
        out.problems.append((first.rel_path, f"left out of the mean maps: {exc}"))
        return
    out.images += 1
    out.disc_images += "disc" in frames
    fov_grid = out.grids["fov"]
    regions = (fov_grid.off_fov(), fov_grid.corners())
    with db.session(read_only=True) as s:
        loaded = [(r, _load(s, r, out.problems)) for r in rows]
    for r, found in loaded:
        if found is None:
            continue
        heat, tf = found
        if (tf.orig_h, tf.orig_w) != (r.height, r.width):
            out.problems.append((r.rel_path, f"{r.model_name} {r.method}: heatmap made for a "
                                 f"{tf.orig_w}x{tf.orig_h} image, the image is "
                                 f"{r.width}x{r.height}; re-run the analysis"))  # fmt: skip
            continue
        for kind, frame in frames.items():
            grid = out.grids[kind]
            try:
                values, valid = mm.register(heat, frame, grid, tf)
            except ValueError as exc:
                out.problems.append((r.rel_path, f"{r.model_name} {r.method}: {exc}"))
                break
            shares = None
            if kind == "fov":
                shares = tuple(mm.region_share(values, valid, reg) for reg in regions)
            for grouping, group in group_values(r):
                key = (r.run_id, kind, grouping, group)
                g = out.groups.get(key)
                if g is None:
                    g = MeanMapGroup(r.run_id, r.model_name, r.method, kind, grouping, group,
                                     mm.MeanMap(grid))  # fmt: skip
                    out.groups[key] = g
                g.add(values, valid, shares)


def _load(s: Any, r: ResultRow, problems: list) -> tuple[np.ndarray, InputTransform] | None:
    try:
        found = repo.load_heatmap(s, r.run_id, r.image_id)
        if found is None:
            return None
        return found[0], InputTransform.from_dict(found[1])
    except (FundusReviewError, ValueError, KeyError) as exc:
        problems.append((r.rel_path, f"{r.model_name} {r.method}: heatmap unreadable: {exc}"))
        return None


def group_for_image(row: ResultRow, grouping: str) -> str | None:
    """The group of ``grouping`` this image's heatmap belongs to (None when it has none)."""
    return dict(group_values(row)).get(grouping)


def mean_map_on_image(group: MeanMapGroup, frame: mm.Frame, shape: tuple[int, int]) -> np.ndarray:
    """A group's mean map drawn onto one image's (H, W) grid through the image's frame, scaled
    so the mean map's peak is 1 (a display of where the run looks on average)."""
    mean = group.acc.mean()
    peak = np.nanmax(mean) if np.isfinite(mean).any() else 0.0
    back = mm.frame_to_image(mean, group.acc.grid, frame, shape)
    return back / peak if peak > 0 else back


def layer_for_image(
    maps: MeanMapSet,
    run_id: int,
    true_class: str | None,
    predicted_class: str | None,
    fov: np.ndarray | None,
    shape: tuple[int, int],
    max_side: int = 512,
) -> tuple[np.ndarray, MeanMapGroup] | None:
    """The app's "dataset mean (this class)" layer: the fov-frame mean map of the image's true
    class (else its predicted class, else all images of the run), drawn onto a copy of the
    image's grid with the long side at most ``max_side`` px (the viewer stretches it over the
    photo). None when the run has no mean map."""
    g = None
    for grouping, group in (
        ("true class", true_class), ("predicted class", predicted_class), ("all", ALL_IMAGES)
    ):  # fmt: skip
        if group is not None:
            g = maps.get(run_id, "fov", grouping, group)
        if g is not None:
            break
    if g is None:
        return None
    h, w = (int(s) for s in shape)
    f = np.ones((h, w), bool) if fov is None or not np.asarray(fov).any() else fov
    frame = mm.fov_frame(f)
    k = min(1.0, max_side / max(h, w))
    small = mm.Frame("fov", frame.cx * k, frame.cy * k, frame.scale * k)
    return mean_map_on_image(g, small, (max(1, round(h * k)), max(1, round(w * k)))), g
