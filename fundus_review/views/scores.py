"""Read-side queries of stored scores: per-image readouts and the summary panel's points.

Qt-free, each call opens its own short read-only session (safe beside a running analysis); the
queries themselves are in `store.repo_views`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fundus_review.store import repo_views
from fundus_review.store.db import Database


def score_choices(db: Database, run_ids: list[int]) -> tuple[list[str], list[str], list[str]]:
    """(metrics, structures, reviewers) with stored scores for any of these CAM runs."""
    with db.session(read_only=True) as s:
        return repo_views.score_choices(s, run_ids)


def stored_scores(
    db: Database, run_id: int, image_id: int
) -> list[tuple[str, str, str, float | None]]:
    """(structure, reviewer, metric, value) rows stored for one heatmap."""
    with db.session(read_only=True) as s:
        return repo_views.stored_scores(s, run_id, image_id)


@dataclass(frozen=True)
class ScorePoint:
    image_id: int
    run_id: int
    confidence: float | None
    correct: bool | None
    value: float | None


def score_points(
    db: Database,
    dataset_id: int,
    run_ids: list[int],
    metric: str,
    structure: str,
    reviewer: str | None = None,
) -> list[ScorePoint]:
    """Per image and run: confidence of the run's model and the chosen score (summary plots).

    With several reviewers an image has one score per reviewer; `reviewer` keeps one of them
    (None keeps all, one point each).
    """
    if not run_ids:
        return []
    with db.session(read_only=True) as s:
        run_model = repo_views.run_models(s, run_ids)
        model_ids = sorted(set(run_model.values()))
        classes = {m: repo_views.model_classes(s, m) for m in model_ids}
        conf: dict[tuple[int, int], tuple[float, str]] = {}
        for (image_id, model_id), (probs, idx) in repo_views.predicted_indices(
            s, dataset_id, model_ids
        ).items():
            names = classes.get(model_id, [])
            conf[(image_id, model_id)] = (float(probs[idx]), names[idx] if idx < len(names) else "")
        # Several label sources (folders, a CSV): the most recently written one wins, as in the browser.
        labels = repo_views.latest_labels(s, dataset_id)
        scores = repo_views.dataset_run_scores(s, dataset_id, run_ids, metric, structure, reviewer)
    pts = []
    for image_id, run_id, value in scores:
        c, pred = conf.get((image_id, run_model[run_id]), (None, None))
        label = labels.get(image_id)
        correct = None if label is None or pred is None else label == pred
        pts.append(ScorePoint(image_id, run_id, c, correct, value))
    return pts
