"""Compute and persist the agreement scores of every stored heatmap with every expert mask.

For each stored heatmap and each (structure, reviewer) with live regions on its image, the
heatmap is mapped back to the original grid, the field of view is taken from the FOV cache (keyed
by the image's content hash) and ``core.metrics.score_heatmap`` is stored through the store, with
the scoring parameters in ``Score.params``. The expert mask is the union of that reviewer's live
regions of that structure, drawn or imported alike (``repo.structure_mask``).

Work already stored with the same parameters is skipped, so calling this before every report is
cheap. A missing or changed image file, an unreadable mask or a malformed heatmap is reported per
image (path + reason) and never stops the run. Qt-free and torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from fundus_review.app.selection import ResultSelection

# Re-exported: exchange/ resolves dataset filters through this name.
from fundus_review.app.selection import resolve_dataset_ids as resolve_dataset_ids
from fundus_review.core import geometry
from fundus_review.core.metrics import (
    MetricInputError,
    mask_agreement,
    metric_names,
    score_heatmap,
    tolerance_from_transform,
)
from fundus_review.core.transform import InputTransform
from fundus_review.data.fov import FOV_ALGORITHM_VERSION, FovCache
from fundus_review.data.images import file_sha256, load_image
from fundus_review.errors import FundusReviewError
from fundus_review.paths import cache_dir
from fundus_review.store import repo
from fundus_review.store.db import Database
from fundus_review.store.repo import ResultRow

SCORING_VERSION = 1


def default_fov_cache() -> FovCache:
    """The app's field-of-view cache (shared with the viewer, so each photo is segmented once)."""
    return FovCache(cache_dir() / "fov")


@dataclass(frozen=True)
class ScoringParams:
    """What a stored score depends on besides the heatmap and the mask."""

    tolerance_at_model_px: float = 15.0
    fixed_threshold: float = 0.5
    top_percent: float = 15.0

    def metric_names(self) -> tuple[str, ...]:
        return metric_names(self.fixed_threshold, self.top_percent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scoring_version": SCORING_VERSION,
            "fov": f"auto-v{FOV_ALGORITHM_VERSION}",
            "tolerance_at_model_px": float(self.tolerance_at_model_px),
            "fixed_threshold": float(self.fixed_threshold),
            "top_percent": float(self.top_percent),
        }


@dataclass(frozen=True)
class AgreementRow:
    """Reviewer vs reviewer on one structure of one image (the human benchmark)."""

    image_id: int
    rel_path: str
    structure: str
    reviewer_a: str
    reviewer_b: str
    iou: float
    dice: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScoringSummary:
    images: int = 0  # images with at least one heatmap in the selection
    heatmaps: int = 0
    scored: int = 0  # (heatmap, structure, reviewer) score sets computed now
    reused: int = 0  # ... already stored with the same parameters
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    agreements: list[AgreementRow] = field(default_factory=list)
    seconds: float = 0.0


class _ImageProblem(Exception):
    pass


def _pairs_on_image(
    s: Any, image_id: int, structures: set[str] | None, reviewers: set[str] | None
) -> dict[tuple[str, int], str]:
    """{(structure, reviewer id): reviewer name} with live regions on the image."""
    out: dict[tuple[str, int], str] = {}
    for ann in repo.list_annotations(s, image_id):
        if structures is not None and ann.structure not in structures:
            continue
        name = ann.reviewer.name
        if reviewers is not None and name not in reviewers:
            continue
        out[(ann.structure, ann.reviewer_id)] = name
    return dict(sorted(out.items()))


def _stored_state(s: Any, hm_id: int) -> dict[tuple[str, int], tuple[set[str], list[dict]]]:
    state: dict[tuple[str, int], tuple[set[str], list[dict]]] = {}
    for sc in repo.list_scores(s, heatmap=hm_id):
        names, params = state.setdefault((sc.structure, sc.reviewer_id), (set(), []))
        names.add(sc.metric)
        params.append({k: v for k, v in (sc.params or {}).items() if k != "tolerance_px"})
    return state


def _fov(root: Path, row: ResultRow, cache: FovCache) -> np.ndarray:
    path = root / row.rel_path
    if not path.is_file():
        raise _ImageProblem(
            "image file not found (moved or deleted?); its scores were not computed"
        )
    shape = (row.height, row.width)
    cached = cache.path_for(row.sha256)
    rgb = None
    if not cached.is_file():
        if file_sha256(path) != row.sha256:
            raise _ImageProblem(
                "the file changed since it was analysed (content hash differs); "
                "run `fundus-review analyze` again"
            )
        rgb = load_image(path)
        if rgb.shape[:2] != shape:
            raise _ImageProblem(
                f"image is {rgb.shape[1]}x{rgb.shape[0]}, expected {shape[1]}x{shape[0]}"
            )
    fov = cache.get(path, row.sha256, rgb)
    if fov.shape != shape:
        raise _ImageProblem(f"field-of-view mask is {fov.shape}, expected {shape}")
    return fov


def score_database(
    db: Database,
    selection: ResultSelection | None = None,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    params: ScoringParams | None = None,
    fov_cache: FovCache | None = None,
    rasterize: repo.Rasterizer | None = None,
    image_ids: Collection[int] | None = None,
) -> ScoringSummary:
    """Score every selected heatmap against every expert mask on its image; returns a summary.

    ``selection`` (default: everything) picks the heatmaps (datasets, models, methods) and the
    masks (structures, reviewers); ``image_ids`` restricts the images (the GUI rescores only the
    image whose regions were edited). ``force`` recomputes stored scores. ``progress(done,
    total)`` is called after each image. ``rasterize`` turns drawn shapes that have no stored
    raster into masks (default: ``core.geometry.rasterize``; drawn regions normally store their
    raster). Problems are reported per image (and per mask or heatmap where only that one is
    unusable); the run always goes on.
    """
    sel = selection or ResultSelection()
    t0 = time.perf_counter()
    job = _Job(
        params=params or ScoringParams(),
        cache=fov_cache or default_fov_cache(),
        structures=sel.structure_set(),
        reviewers=sel.reviewer_set(),
        force=force,
        rasterize=rasterize or geometry.rasterize,
    )
    summary = ScoringSummary()
    with db.session(read_only=True) as s:
        rows = sel.results(s, image_ids)
        roots = {d.id: Path(d.root) for d in repo.list_datasets(s)}
    by_image: dict[int, list[ResultRow]] = {}
    for r in rows:
        by_image.setdefault(r.image_id, []).append(r)
    summary.images, summary.heatmaps = len(by_image), len(rows)

    for done, image_rows in enumerate(by_image.values(), start=1):
        root = roots[image_rows[0].dataset_id]
        path = str(root / image_rows[0].rel_path)
        try:
            _score_image(db, image_rows, root, path, job, summary)
        except _ImageProblem as exc:
            summary.problems.append((path, str(exc)))
        except (FundusReviewError, MetricInputError, ValueError, OSError) as exc:
            summary.problems.append((path, str(getattr(exc, "reason", None) or exc)))
        if progress is not None:
            progress(done, len(by_image))
    summary.agreements = reviewer_agreement(
        db, sorted(by_image), sel.structures, sel.reviewers, job.rasterize
    )
    summary.seconds = time.perf_counter() - t0
    return summary


@dataclass
class _Job:
    params: ScoringParams
    cache: FovCache
    structures: set[str] | None
    reviewers: set[str] | None
    force: bool
    rasterize: repo.Rasterizer | None

    def __post_init__(self) -> None:
        self.wanted = self.params.to_dict()
        self.names = set(self.params.metric_names())


Pair = tuple[str, int]  # (structure, reviewer id)


def _plan(
    s: Any, image_rows: list[ResultRow], pairs: dict[Pair, str], job: _Job
) -> tuple[dict[Pair, list[ResultRow]], set[Pair]]:
    """(heatmaps to score per pair, pairs whose stored scores came from other metric names)."""
    todo: dict[Pair, list[ResultRow]] = {}
    stale: set[Pair] = set()
    for row in image_rows:
        state = _stored_state(s, row.heatmap_id)
        for pair in pairs:
            stored_names, stored_params = state.get(pair, (set(), []))
            fresh = stored_names == job.names and all(p == job.wanted for p in stored_params)
            if stored_names - job.names:  # other parameters named other metrics: drop them all
                stale.add(pair)
            if job.force or not fresh:
                todo.setdefault(pair, []).append(row)
    for pair in stale:  # repo.delete_scores clears every heatmap of the image for the pair
        todo[pair] = list(image_rows)
    return todo, stale


def _score_image(
    db: Database,
    image_rows: list[ResultRow],
    root: Path,
    path: str,
    job: _Job,
    summary: ScoringSummary,
) -> None:
    first = image_rows[0]
    masks: dict[Pair, np.ndarray] = {}
    with db.session(read_only=True) as s:
        pairs = _pairs_on_image(s, first.image_id, job.structures, job.reviewers)
        if not pairs:
            return
        todo, stale = _plan(s, image_rows, pairs, job)
        summary.reused += len(pairs) * len(image_rows) - sum(len(v) for v in todo.values())
        for pair in todo:
            try:
                mask = repo.structure_mask(s, first.image_id, pair[0], pair[1], job.rasterize)
            except FundusReviewError as exc:  # one unreadable region must not block the others
                summary.problems.append(
                    (path, f"{pair[0]} mask of reviewer {pairs[pair]!r} not scored: {exc}")
                )
                continue
            if mask is not None:
                masks[pair] = mask
    results: list[tuple[ResultRow, Pair, dict[str, float | None], float]] = []
    if masks:
        fov = _fov(root, first, job.cache)
        maps: dict[int, tuple[np.ndarray, float] | None] = {}
        for pair, mask in masks.items():
            for row in todo[pair]:
                if row.heatmap_id not in maps:
                    maps[row.heatmap_id] = _heatmap_or_problem(db, row, job.params, path, summary)
                found = maps[row.heatmap_id]
                if found is None:
                    continue
                heat, tol = found
                p = job.params
                try:
                    values = score_heatmap(
                        heat,
                        mask,
                        fov,
                        tolerance_px=tol,
                        fixed_threshold=p.fixed_threshold,
                        top_percent=p.top_percent,
                    )
                except MetricInputError as exc:
                    maps[row.heatmap_id] = None
                    summary.problems.append((path, f"{_what(row)} not scored: {exc}"))
                    continue
                results.append((row, pair, values, tol))
    if not stale and not results:
        return
    with db.session() as s:
        for pair in stale:
            repo.delete_scores(s, first.image_id, pair[0], pair[1])
        for row, (structure, reviewer_id), values, tol in results:
            repo.save_scores(
                s,
                row.heatmap_id,
                structure,
                reviewer_id,
                values,
                {**job.wanted, "tolerance_px": tol},
            )
    summary.scored += len(results)


def _what(row: ResultRow) -> str:
    return f"{row.model_name} {row.method} heatmap"


def _heatmap_or_problem(
    db: Database, row: ResultRow, params: ScoringParams, path: str, summary: ScoringSummary
) -> tuple[np.ndarray, float] | None:
    try:
        return _original_heatmap(db, row, params)
    except (_ImageProblem, FundusReviewError, ValueError) as exc:
        summary.problems.append((path, f"{_what(row)} not scored: {exc}"))
        return None


def _original_heatmap(
    db: Database, row: ResultRow, params: ScoringParams
) -> tuple[np.ndarray, float]:
    with db.session(read_only=True) as s:
        found = repo.load_heatmap(s, row.run_id, row.image_id)
    if found is None:
        raise _ImageProblem(f"heatmap of {row.method} disappeared while scoring")
    heat, tf_dict, _ = found
    tf = InputTransform.from_dict(tf_dict)
    if (tf.orig_h, tf.orig_w) != (row.height, row.width):
        raise _ImageProblem(
            f"{row.method} heatmap was made for a {tf.orig_w}x{tf.orig_h} image, but the image "
            f"is {row.width}x{row.height}; run `fundus-review analyze --force`"
        )
    try:
        original = tf.heatmap_to_original(heat)
    except ValueError as exc:
        raise _ImageProblem(f"{row.method} heatmap: {exc}") from None
    return original, tolerance_from_transform(tf, params.tolerance_at_model_px)


def reviewer_agreement(
    db: Database,
    image_ids: Iterable[int],
    structures: Sequence[str] | None = None,
    reviewers: Sequence[str] | None = None,
    rasterize: repo.Rasterizer | None = None,
) -> list[AgreementRow]:
    """IoU/Dice between every two reviewers of a structure on each image (whole masks).

    Images whose masks cannot be read are left out here; ``score_database`` reports them.
    """
    draw = rasterize or geometry.rasterize
    st_set = set(structures) if structures else None
    rev_set = {" ".join(r.split()) for r in reviewers} if reviewers else None
    out: list[AgreementRow] = []
    with db.session(read_only=True) as s:
        for image_id in sorted(set(image_ids)):
            pairs = _pairs_on_image(s, image_id, st_set, rev_set)
            by_structure: dict[str, list[tuple[str, int]]] = {}
            for (structure, rev_id), name in pairs.items():
                by_structure.setdefault(structure, []).append((name, rev_id))
            multi = {k: sorted(v) for k, v in by_structure.items() if len(v) >= 2}
            if not multi:
                continue
            rel_path = repo.list_annotations(s, image_id)[0].image.rel_path
            for structure, revs in sorted(multi.items()):
                try:
                    masks = [repo.structure_mask(s, image_id, structure, r, draw) for _, r in revs]
                except FundusReviewError:
                    continue
                names = [name for name, _ in revs]
                for (a, mask_a), (b, mask_b) in combinations(zip(names, masks, strict=True), 2):
                    agree = mask_agreement(mask_a, mask_b)
                    row = AgreementRow(image_id, rel_path, structure, a, b, **agree)
                    out.append(row)
    return out
