"""Read-side queries of stored scores: per-image readouts and the summary panel's points.

Qt-free, each call opens its own short read-only session (safe beside a running analysis).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from fundus_review.store.db import Database
from fundus_review.store.schema import (
    CamRun,
    Heatmap,
    Image,
    Label,
    ModelRecord,
    Prediction,
    Reviewer,
    Score,
)


def score_choices(db: Database, run_ids: list[int]) -> tuple[list[str], list[str], list[str]]:
    """(metrics, structures, reviewers) with stored scores for any of these CAM runs."""
    with db.session(read_only=True) as s:
        base = select(Score).join(Heatmap).where(Heatmap.cam_run_id.in_(run_ids))
        metrics = s.scalars(base.with_only_columns(Score.metric).distinct()).all()
        structures = s.scalars(base.with_only_columns(Score.structure).distinct()).all()
        reviewers = s.scalars(
            base.join(Reviewer, Score.reviewer_id == Reviewer.id)
            .with_only_columns(Reviewer.name)
            .distinct()
        ).all()
    return sorted(metrics), sorted(structures), sorted(reviewers)


def stored_scores(
    db: Database, run_id: int, image_id: int
) -> list[tuple[str, str, str, float | None]]:
    """(structure, reviewer, metric, value) rows stored for one heatmap."""
    with db.session(read_only=True) as s:
        rows = s.execute(
            select(Score.structure, Reviewer.name, Score.metric, Score.value)
            .join(Heatmap, Score.heatmap_id == Heatmap.id)
            .join(Reviewer, Score.reviewer_id == Reviewer.id)
            .where(Heatmap.cam_run_id == run_id, Heatmap.image_id == image_id)
            .order_by(Score.structure, Reviewer.name, Score.metric)
        ).all()
    return [(a, b, c, d) for a, b, c, d in rows]


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
        runs = {r.id: r for r in s.scalars(select(CamRun).where(CamRun.id.in_(run_ids)))}
        model_ids = {r.model_id for r in runs.values()}
        classes = {
            m.id: list(m.card.get("classes", []))
            for m in s.scalars(select(ModelRecord).where(ModelRecord.id.in_(model_ids)))
        }
        in_ds = select(Image.id).where(Image.dataset_id == dataset_id)
        conf: dict[tuple[int, int], tuple[float, str]] = {}
        for image_id, model_id, probs, idx in s.execute(
            select(
                Prediction.image_id,
                Prediction.model_id,
                Prediction.probs,
                Prediction.predicted_index,
            ).where(Prediction.model_id.in_(model_ids), Prediction.image_id.in_(in_ds))
        ):
            names = classes.get(model_id, [])
            conf[(image_id, model_id)] = (float(probs[idx]), names[idx] if idx < len(names) else "")
        # Several label sources (folders, a CSV): the most recently written one wins, as in the browser.
        labels = dict(
            s.execute(
                select(Label.image_id, Label.value)
                .where(Label.image_id.in_(in_ds))
                .order_by(Label.updated_at)
            ).all()
        )
        q = (
            select(Heatmap.image_id, Heatmap.cam_run_id, Score.value)
            .join(Score, Score.heatmap_id == Heatmap.id)
            .where(
                Heatmap.cam_run_id.in_(run_ids),
                Heatmap.image_id.in_(in_ds),
                Score.metric == metric,
                Score.structure == structure,
            )
            .order_by(Heatmap.cam_run_id, Heatmap.image_id, Score.reviewer_id)
        )
        if reviewer is not None:
            q = q.join(Reviewer, Score.reviewer_id == Reviewer.id).where(Reviewer.name == reviewer)
        pts = []
        for image_id, run_id, value in s.execute(q):
            c, pred = conf.get((image_id, runs[run_id].model_id), (None, None))
            label = labels.get(image_id)
            correct = None if label is None or pred is None else label == pred
            pts.append(ScorePoint(image_id, run_id, c, correct, value))
    return pts
