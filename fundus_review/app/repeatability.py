"""Repeatability of heatmaps between two models of the same task (two seeds, two architectures).

Issue #11 item 4, after Arun et al., "Assessing the trustworthiness of saliency maps for
localizing abnormalities in medical imaging" (Radiology: AI 2021), whose repeatability and
reproducibility tests compare the maps of two separately trained models of the same task
(same / different architecture) by SSIM. Here, per image, with the same two measures as the
randomisation test (``app.randomization_similarity``):

- Images: those (matched by content, sha256) with a heatmap of both runs; optionally the seeded
  sample of ``core.sampling`` (``sample``; default all images).
- Grid: each map is mapped from its model-input grid to the original image
  (``InputTransform.heatmap_to_original``, bilinear), then both are resampled
  (``core.similarity.resample_heatmap``, area averaging) to one common grid whose long side is
  ``COMMON_GRID`` = 224 px with the image's aspect kept (the same for both maps).
- Spearman: ``core.similarity.heatmap_rank_correlation`` over the common-grid pixels that both
  models saw (a centre crop hides the border from one of them: those pixels are left out);
  undefined (dropped, counted in ``n_constant``) when a map is constant there.
- SSIM: ``core.ssim.ssim`` (Wang et al. 2004) on the whole common grid.
- Each measure is summarised as the mean over images with a 95 % percentile-bootstrap CI
  (``core.stats.summarize``).

``repeatability_pairs`` proposes every pair of runs with the same method and target policy on
two real models (not the ``baseline`` pseudo-model, not randomised copies) with other weights
and the same class list in their cards, which share at least one image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fundus_review.app.baselines import is_baseline
from fundus_review.app.randomization_records import is_randomized
from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.sampling import seeded_sample
from fundus_review.core.similarity import heatmap_rank_correlation, resample_heatmap
from fundus_review.core.ssim import ssim
from fundus_review.core.stats import Summary, summarize
from fundus_review.core.transform import InputTransform
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store.db import Database

COMMON_GRID = 224


@dataclass(frozen=True)
class ImagePair:
    image_id: int  # the image of run_a
    rel_path: str
    spearman: float | None
    ssim: float


@dataclass(frozen=True)
class RepeatabilityRow:
    run_a: int
    run_b: int
    model_a: str
    model_b: str
    method: str  # run_a's method (pairs proposed by repeatability_pairs share it)
    spearman: Summary
    ssim: Summary
    n_constant: int
    per_image: list[ImagePair] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (image path, why left out)


@dataclass(frozen=True)
class RunPair:
    run_a: int
    run_b: int
    model_a: str
    model_b: str
    method: str
    target_policy: str
    shared_images: int


def common_grid(height: int, width: int) -> tuple[int, int]:
    """The comparison grid of an image: long side COMMON_GRID, aspect kept."""
    scale = COMMON_GRID / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _rows_by_sha(s: Any, run_id: int) -> tuple[Any, dict[str, Any]]:
    runs = {r.id: r for r in repo.list_cam_runs(s)}
    if run_id not in runs:
        raise FundusReviewError(f"no CAM run {run_id} in the database")
    rows: dict[str, Any] = {}
    for r in repo.iter_results(s, model=runs[run_id].model_id):
        if r.run_id == run_id and r.sha256:
            rows.setdefault(r.sha256, r)
    return runs[run_id], rows


def _on_common_grid(heat: np.ndarray, tf_dict: dict) -> tuple[np.ndarray, np.ndarray]:
    tf = InputTransform.from_dict(tf_dict)
    shape = common_grid(tf.orig_h, tf.orig_w)
    original = tf.heatmap_to_original(heat)
    seen = resample_heatmap(tf.visible_mask().astype(np.float32), shape, "nearest") > 0.5
    return resample_heatmap(original, shape), seen


def compare_runs(
    db: Database,
    run_a: int,
    run_b: int,
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> RepeatabilityRow:
    """Map-to-map Spearman and SSIM of two runs on their shared images (module docstring)."""
    with db.session(read_only=True) as s:
        ra, rows_a = _rows_by_sha(s, run_a)
        rb, rows_b = _rows_by_sha(s, run_b)
        names = {m.id: m.name for m in repo.list_models(s)}
        model_a, model_b = names[ra.model_id], names[rb.model_id]
        method = ra.method
    shared = seeded_sample([k for k in rows_a if k in rows_b], sample, seed)
    shared.sort(key=lambda k: rows_a[k].rel_path)
    per_image: list[ImagePair] = []
    problems: list[tuple[str, str]] = []
    n_constant = 0
    for n, sha in enumerate(shared, start=1):
        if cancelled is not None and cancelled():
            break
        a, b = rows_a[sha], rows_b[sha]
        with db.session(read_only=True) as s:
            found_a = repo.load_heatmap(s, run_a, a.image_id)
            found_b = repo.load_heatmap(s, run_b, b.image_id)
        if found_a is None or found_b is None:
            continue  # deleted since the listing
        try:
            map_a, seen_a = _on_common_grid(found_a[0], found_a[1])
            map_b, seen_b = _on_common_grid(found_b[0], found_b[1])
            if map_a.shape != map_b.shape:
                raise MetricInputError(
                    f"the two predictions describe images of different sizes "
                    f"({map_a.shape} and {map_b.shape} on the common grid)"
                )
            both = seen_a & seen_b
            rho = heatmap_rank_correlation(map_a, map_b, both) if both.any() else None
            value = ssim(map_a, map_b)
        except (MetricInputError, ValueError) as exc:
            problems.append((a.rel_path, f"not compared: {exc}"))
        else:
            n_constant += rho is None
            per_image.append(ImagePair(a.image_id, a.rel_path, rho, value))
        if progress is not None:
            progress(n, len(shared))
    return RepeatabilityRow(
        run_a=run_a,
        run_b=run_b,
        model_a=model_a,
        model_b=model_b,
        method=method,
        spearman=summarize([p.spearman for p in per_image]),
        ssim=summarize([p.ssim for p in per_image]),
        n_constant=n_constant,
        per_image=per_image,
        problems=problems,
    )


def repeatability_pairs(db: Database) -> list[RunPair]:
    """Every pair of comparable runs (module docstring), ordered by run ids."""
    with db.session(read_only=True) as s:
        models = {
            m.id: m
            for m in repo.list_models(s)
            if not is_baseline(m.name, m.card) and not is_randomized(m.card)
        }
        runs = [r for r in repo.list_cam_runs(s) if r.model_id in models]
        shas: dict[int, set[str]] = {}
        for row in repo.iter_results(s):
            if row.model_id in models and row.sha256:
                shas.setdefault(row.run_id, set()).add(row.sha256)
        info = {r.id: (r.model_id, r.method, r.target_policy, shas.get(r.id, set())) for r in runs}
        cards = {
            mid: (m.name, m.weights_sha256, list(m.card.get("classes", [])))
            for mid, m in models.items()
        }
    out: list[RunPair] = []
    ids = sorted(info)
    for i, a in enumerate(ids):
        ma, method_a, policy_a, shas_a = info[a]
        for b in ids[i + 1 :]:
            mb, method_b, policy_b, shas_b = info[b]
            name_a, weights_a, classes_a = cards[ma]
            name_b, weights_b, classes_b = cards[mb]
            if ma == mb or weights_a == weights_b or not classes_a or classes_a != classes_b:
                continue
            if (method_a, policy_a) != (method_b, policy_b):
                continue
            shared = len(shas_a & shas_b)
            if shared:
                out.append(RunPair(a, b, name_a, name_b, method_a, policy_a, shared))
    return out
