"""Agreement scores of heatmaps with expert masks. Call these through ``fundus_review.store.repo``."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fundus_review.store.repo_images import _insert_or_fetch, ref_id
from fundus_review.store.repo_results import _json_ready
from fundus_review.store.schema import Heatmap, Score


def save_scores(
    s: Session,
    heatmap: object,
    structure: str,
    reviewer: object,
    values: dict[str, float | None],
    params: dict[str, Any] | None = None,
) -> list[Score]:
    """Insert or replace one score per metric for (heatmap, structure, reviewer).

    A value of None or NaN is stored as NULL: the metric is undefined here (e.g. an empty mask),
    which is not the same as a score of 0. ``params`` (thresholds, tolerance...) apply to all.
    """
    hm_id, rev_id = ref_id(heatmap), ref_id(reviewer)
    p = _json_ready(params or {}, "score parameters")
    out: list[Score] = []
    for metric, value in values.items():
        v = None if value is None or math.isnan(float(value)) else float(value)
        query = select(Score).where(
            Score.heatmap_id == hm_id,
            Score.structure == structure,
            Score.reviewer_id == rev_id,
            Score.metric == metric,
        )
        row = s.scalar(query)
        if row is None:
            new = Score(
                heatmap_id=hm_id,
                structure=structure,
                reviewer_id=rev_id,
                metric=metric,
                value=v,
                params=p,
            )
            row = _insert_or_fetch(s, new, query)
        else:
            row.value, row.params = v, p
        out.append(row)
    return out


def list_scores(
    s: Session,
    heatmap: object | None = None,
    structure: str | None = None,
    reviewer: object | None = None,
    metric: str | None = None,
) -> list[Score]:
    q = select(Score).order_by(Score.heatmap_id, Score.structure, Score.reviewer_id, Score.metric)
    if heatmap is not None:
        q = q.where(Score.heatmap_id == ref_id(heatmap))
    if structure is not None:
        q = q.where(Score.structure == structure)
    if reviewer is not None:
        q = q.where(Score.reviewer_id == ref_id(reviewer))
    if metric is not None:
        q = q.where(Score.metric == metric)
    return list(s.scalars(q))


def delete_scores(s: Session, image: object, structure: str, reviewer: object) -> int:
    """Drop the scores of every heatmap of ``image`` for (structure, reviewer); returns the count.

    Called whenever that reviewer's regions of that structure change, so that no stale score
    can reach a report.
    """
    hm_ids = select(Heatmap.id).where(Heatmap.image_id == ref_id(image)).scalar_subquery()
    result = s.execute(
        delete(Score).where(
            Score.heatmap_id.in_(hm_ids),
            Score.structure == structure,
            Score.reviewer_id == ref_id(reviewer),
        )
    )
    return int(result.rowcount or 0)


def mean_score(
    s: Session, run_id: int, image_ids: Collection[int], structure: str, metric: str
) -> tuple[float | None, int]:
    """(mean of the defined values, their count) of one metric and structure over the given
    images' heatmaps of one run, every reviewer's regions counted."""
    ids = sorted({int(i) for i in image_ids})
    if not ids:
        return None, 0
    mean, n = s.execute(
        select(func.avg(Score.value), func.count())
        .select_from(Score)
        .join(Heatmap, Score.heatmap_id == Heatmap.id)
        .where(Heatmap.cam_run_id == run_id, Heatmap.image_id.in_(ids))
        .where(Score.structure == structure, Score.metric == metric, Score.value.is_not(None))
    ).one()
    return (None if mean is None else float(mean)), int(n)


def iter_score_values(
    s: Session,
    heatmap_ids: Collection[int],
    metrics: Collection[str] | None = None,
    chunk: int = 2000,
) -> Iterator[tuple[int, str, int, str, float | None]]:
    """(heatmap id, structure, reviewer id, metric, value) of these heatmaps' stored scores, by
    heatmap, structure, reviewer and metric; only ``metrics`` when given.

    A few bulk SELECTs of plain columns, ``chunk`` heatmaps each (never one query, nor an ORM
    object, per score): a report over 100,000 images x 3 runs reads 4.5 million values.
    """
    ids = sorted({int(i) for i in heatmap_ids})
    wanted = None if metrics is None else sorted(set(metrics))
    for start in range(0, len(ids), chunk):
        q = (
            select(Score.heatmap_id, Score.structure, Score.reviewer_id, Score.metric, Score.value)
            .where(Score.heatmap_id.in_(ids[start : start + chunk]))
            .order_by(Score.heatmap_id, Score.structure, Score.reviewer_id, Score.metric)
        )
        if wanted is not None:
            q = q.where(Score.metric.in_(wanted))
        yield from (tuple(row) for row in s.execute(q))
