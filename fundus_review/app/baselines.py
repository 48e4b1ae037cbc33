"""Store the baseline maps of ``core.baselines`` as runs of the pseudo-model ``baseline``.

Baselines are stored exactly like CAM results (a ``baseline`` model record, a prediction holding
the geometry, one heatmap per image and run), so ``score_database`` scores them with the same code
and every table shows them beside the real runs. Each map lives on the image's own grid with the
long side ``GRID`` px (aspect kept, so the Gaussians are round on the photograph); ``GRID`` is the
usual model input, so the pointing-game tolerance scales as it does for a 224-px model.

Fixed baselines are computed once per image (skipped when stored). A run's ``mean-map`` baseline
(leave-one-out mean of the run's own maps, averaged on a common normalised grid) is recomputed
when the set of images of that run changed, or with ``force``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fundus_review.app.selection import Ref, resolve_dataset_ids
from fundus_review.core import baselines as bl
from fundus_review.core.similarity import resample_heatmap
from fundus_review.core.transform import InputTransform, make_transform
from fundus_review.data.fov import FovCache
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store.db import Database

BASELINE_MODEL = "baseline"
BASELINE_VERSION = 1
GRID = 224
# Common grid of the mean map: heatmaps of different image sizes are averaged in normalised
# image coordinates (the whole photograph stretched onto it).
MEAN_GRID = 128
_NO_LAYER = ["-"]  # a CAM run names its layers; a baseline has none


@dataclass
class BaselineSummary:
    images: int = 0
    computed: int = 0
    reused: int = 0
    mean_maps: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def baseline_card(seed: int) -> dict:
    """The card of the pseudo-model: every parameter that changes a baseline map is in it, so a
    change of definition creates a new model record instead of mixing maps."""
    return {
        "kind": "baseline",
        "version": BASELINE_VERSION,
        "classes": ["baseline"],
        "grid": GRID,
        "mean_grid": MEAN_GRID,
        "sigma_fraction": bl.SIGMA_FRACTION,
        "random_cells": bl.RANDOM_CELLS,
        "seed": int(seed),
    }


def is_baseline(model_name: str, card: dict | None = None) -> bool:
    """Whether a model record is the baseline pseudo-model (by its card when given)."""
    if card is not None:
        return card.get("kind") == "baseline"
    return model_name == BASELINE_MODEL


def image_grid(height: int, width: int) -> InputTransform:
    """The resize transform of an image onto its baseline grid (long side GRID, aspect kept)."""
    scale = GRID / max(height, width)
    gh, gw = max(1, round(height * scale)), max(1, round(width * scale))
    return make_transform(height, width, gh, gw, "resize")


def compute_baselines(
    db: Database,
    dataset: Ref | Sequence[Ref] | None = None,
    *,
    seed: int = 0,
    fov_cache: FovCache,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> BaselineSummary:
    """Store every fixed baseline of every image of the datasets, and a leave-one-out mean map
    for every real run on them. Problems are reported per image; the run goes on."""
    summary = BaselineSummary()
    card = baseline_card(seed)
    digest = hashlib.sha256(repr(sorted(card.items())).encode()).hexdigest()
    with db.session() as s:
        ds_ids = resolve_dataset_ids(s, dataset)
        datasets = [d for d in repo.list_datasets(s) if ds_ids is None or d.id in ds_ids]
        model = repo.get_or_create_model(s, BASELINE_MODEL, "baseline", card, digest, "")
        model_id = model.id
        runs = {
            kind: repo.get_or_create_cam_run(
                s, model, kind, _NO_LAYER, params={"seed": int(seed)} if kind == "random" else {}
            ).id
            for kind in bl.FIXED_BASELINES
        }
        images = [
            (Path(d.root), img.id, img.rel_path, img.sha256, img.height, img.width)
            for d in datasets
            for img in repo.dataset_images(s, d)
            if img.sha256 and img.height and img.width
        ]
        done = {
            kind: repo.find_done_images(s, [i[1] for i in images], rid)
            for kind, rid in runs.items()
        }
    summary.images = len(images)
    for n, (root, image_id, rel, sha, h, w) in enumerate(images, start=1):
        if cancelled is not None and cancelled():
            break
        todo = [k for k in bl.FIXED_BASELINES if force or image_id not in done[k]]
        if not todo:
            summary.reused += len(bl.FIXED_BASELINES)
        else:
            try:
                maps = _fixed_maps(todo, root / rel, sha, h, w, seed, fov_cache)
            except (FundusReviewError, OSError, ValueError) as exc:
                summary.problems.append((str(root / rel), f"baselines not computed: {exc}"))
            else:
                tf = image_grid(h, w)
                with db.session() as s:
                    repo.save_prediction(s, image_id, model_id, [1.0], 0, tf.to_dict())
                    for kind, hm in maps.items():
                        repo.save_heatmap(s, runs[kind], image_id, 0, hm)
                summary.computed += len(maps)
                summary.reused += len(bl.FIXED_BASELINES) - len(maps)
        if progress is not None:
            progress(n, len(images))
    if cancelled is None or not cancelled():
        summary.mean_maps = _mean_maps(db, ds_ids, model_id, force, summary)
    return summary


def _fixed_maps(
    kinds: list[str], path: Path, sha: str, h: int, w: int, seed: int, cache: FovCache
) -> dict[str, np.ndarray]:
    tf = image_grid(h, w)
    shape = (tf.in_h, tf.in_w)
    out: dict[str, np.ndarray] = {}
    for kind in kinds:
        if kind == "centre":
            out[kind] = bl.centre_gaussian(shape)
        elif kind == "uniform":
            out[kind] = bl.uniform_map(shape)
        elif kind == "random":
            out[kind] = bl.random_map(shape, seed, sha)
        elif kind == "fov-centre":
            if not path.is_file():
                raise FundusReviewError("image file not found (moved or deleted?)")
            fov = cache.get(path, sha)
            if fov.shape != (h, w):
                raise FundusReviewError(f"field-of-view mask is {fov.shape}, expected {(h, w)}")
            out[kind] = bl.fov_centre_gaussian(tf.mask_to_input(fov))
    return out


def _mean_maps(
    db: Database, ds_ids: set[int] | None, model_id: int, force: bool, summary: BaselineSummary
) -> int:
    """One leave-one-out mean-map run per real run; returns how many runs were (re)computed."""
    with db.session(read_only=True) as s:
        rows = [
            r
            for r in repo.iter_results(s)
            if (ds_ids is None or r.dataset_id in ds_ids)
            and r.model_kind == "model"  # not baselines, not randomised copies of a model
        ]
    by_run: dict[int, list] = {}
    for r in rows:
        by_run.setdefault(r.run_id, []).append(r)
    computed = 0
    for run_id, run_rows in by_run.items():
        if len(run_rows) < 2:
            continue  # a one-image run has no "other" images to average
        first = run_rows[0]
        with db.session() as s:
            mrun = repo.get_or_create_cam_run(
                s,
                model_id,
                bl.MEAN_MAP,
                [f"run:{run_id}"],
                params={"of_run": run_id, "of_model": first.model_name, "of_method": first.method},
            )
            mrun_id = mrun.id
            stored = repo.find_done_images(s, [r.image_id for r in run_rows], mrun_id)
        if not force and stored == {r.image_id for r in run_rows}:
            continue
        # Two streaming passes (sum, then each leave-one-out map) keep memory at one grid per
        # run instead of one per image: a 100k-image run must not hold 100k maps.
        total = np.zeros((MEAN_GRID, MEAN_GRID), np.float64)
        used: list = []
        for r in run_rows:
            m = _normalised_map(db, run_id, r, summary)
            if m is not None:
                total += m
                used.append(r)
        if len(used) < 2:
            continue
        for r in used:
            own = _normalised_map(db, run_id, r, summary)
            if own is None:  # changed between the passes: leave it out rather than mix
                continue
            loo = bl.leave_one_out_mean(total, len(used), own)
            tf = image_grid(r.height, r.width)
            hm = resample_heatmap(loo, (tf.in_h, tf.in_w)).astype(np.float32)
            with db.session() as s:
                repo.save_prediction(s, r.image_id, model_id, [1.0], 0, tf.to_dict())
                repo.save_heatmap(s, mrun_id, r.image_id, 0, hm)
        computed += 1
    return computed


def _normalised_map(db: Database, run_id: int, r, summary: BaselineSummary) -> np.ndarray | None:  # noqa: ANN001 - a ResultRow
    """The run's heatmap of one image on the original grid, resampled to MEAN_GRID x MEAN_GRID."""
    with db.session(read_only=True) as s:
        found = repo.load_heatmap(s, run_id, r.image_id)
    if found is None:
        return None
    heat, tf_dict, _ = found
    try:
        original = InputTransform.from_dict(tf_dict).heatmap_to_original(heat)
    except ValueError as exc:
        summary.problems.append((r.rel_path, f"{r.method} heatmap left out of the mean map: {exc}"))
        return None
    return resample_heatmap(original, (MEAN_GRID, MEAN_GRID))
