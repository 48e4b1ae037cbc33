"""One pass over the stored heatmaps: similarity between methods/layers of one model.

It works on the model-input grid, where every heatmap of one model lives (the same prediction
transform for all its CAM runs), so nothing is resampled: two methods are compared pixel by pixel
exactly as the model saw the image. Similarity counts only pixels inside the field of view (mapped
onto that grid): the black border (a third of a fundus photo's pixels) carries near-zero values
whose ties and noise would otherwise decide much of the ranking (on the demo set, Grad-CAM vs
HiResCAM: rho 0.58 over the whole input, 0.75 inside the FOV). The dataset-mean maps, registered
to a common frame, are ``app.mean_maps`` (report section ``sections_mean_maps``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.similarity import heatmap_rank_correlation, heatmap_top_overlap
from fundus_review.core.transform import InputTransform
from fundus_review.data.fov import FovCache
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store.db import Database
from fundus_review.store.repo import ResultRow


@dataclass
class HeatmapPass:
    similarity: list[dict[str, Any]] = field(default_factory=list)  # one row per image and pair
    problems: list[tuple[str, str]] = field(default_factory=list)


def heatmap_pass(
    db: Database,
    results: list[ResultRow],
    run_label: dict[int, str],
    *,
    top_percent: float = 15.0,
    seed: int = 0,
    fov_cache: FovCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HeatmapPass:
    """Rank correlation and top-k overlap of every two runs of a model on each image (inside the
    field of view when `fov_cache` is given)."""
    out = HeatmapPass()
    by_image: dict[int, list[ResultRow]] = {}
    for r in results:
        by_image.setdefault(r.image_id, []).append(r)
    with db.session(read_only=True) as s:
        roots = {d.id: Path(d.root) for d in repo.list_datasets(s)}
    overlap_name = f"top{top_percent:g}_overlap".replace(".", "p")
    for done, rows in enumerate(by_image.values(), start=1):
        fov = _input_fovs(rows, roots, fov_cache, out.problems)
        maps: dict[int, np.ndarray] = {}
        with db.session(read_only=True) as s:
            for r in rows:
                try:
                    found = repo.load_heatmap(s, r.run_id, r.image_id)
                except FundusReviewError as exc:
                    out.problems.append((r.rel_path, f"{run_label[r.run_id]}: {exc}"))
                    continue
                if found is not None:
                    maps[r.heatmap_id] = found[0]
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if a.model_id != b.model_id or a.heatmap_id not in maps or b.heatmap_id not in maps:
                    continue
                ha, hb, inside = maps[a.heatmap_id], maps[b.heatmap_id], fov.get(a.model_id)
                try:
                    rho = heatmap_rank_correlation(ha, hb, inside, seed=seed)
                    overlap = heatmap_top_overlap(ha, hb, inside, top_percent=top_percent)
                except MetricInputError as exc:
                    out.problems.append((a.rel_path, str(exc)))
                    continue
                out.similarity.append(
                    {
                        "run": run_label[a.run_id],
                        "versus": run_label[b.run_id],
                        "image_id": a.image_id,
                        "image": a.rel_path,
                        "rank_correlation": rho,
                        overlap_name: overlap,
                    }
                )
        if progress is not None:
            progress(done, len(by_image))
    return out


def _input_fovs(
    rows: list[ResultRow],
    roots: dict[int, Path],
    cache: FovCache | None,
    problems: list[tuple[str, str]],
) -> dict[int, np.ndarray]:
    """model id -> the image's field of view on that model's input grid (scoring cached it)."""
    if cache is None or not rows:
        return {}
    first = rows[0]
    try:
        fov = cache.get(roots[first.dataset_id] / first.rel_path, first.sha256)
    except (FundusReviewError, OSError, ValueError) as exc:
        problems.append((first.rel_path, f"no field of view for the similarity: {exc}"))
        return {}
    out: dict[int, np.ndarray] = {}
    for r in rows:
        if r.model_id not in out:
            try:
                out[r.model_id] = InputTransform.from_dict(r.transform).mask_to_input(fov)
            except ValueError as exc:
                problems.append((r.rel_path, f"field of view not usable for the similarity: {exc}"))
                return {}
    return out
