"""Faithfulness values of heatmaps (ROAD, issue 11): save, read back, delete.

One row per (heatmap, metric, parameters). The parameters (measure, version, removal fractions,
seed, ...) are stored as canonical JSON text and are part of the key, so two settings never mix and
a changed definition (a new version number) is computed afresh instead of being read back.
Reference values of baseline maps on the same image are stored under the real run's heatmap with
a prefixed metric name (``"baseline_random:road_combined"``); see ``app.faithfulness``.

A heatmap's rows are deleted with it (ON DELETE CASCADE) and when ``repo.save_heatmap`` replaces
its pixels (the values were computed from the old map).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fundus_review.store.repo_images import _insert_or_fetch, ref_id
from fundus_review.store.repo_results import _chunks, _json_ready
from fundus_review.store.schema import FaithfulnessValue, Heatmap, canonical_json


def params_key(params: dict[str, Any]) -> str:
    """The canonical JSON text under which values computed with ``params`` are stored."""
    return canonical_json(_json_ready(params, "faithfulness parameters"))


def _value(v: float | None) -> float | None:
    return None if v is None or math.isnan(float(v)) else float(v)


def save_faithfulness(
    s: Session, heatmap: object, values: dict[str, float | None], params: dict[str, Any]
) -> list[FaithfulnessValue]:
    """Insert or replace one value per metric of ``heatmap`` under ``params``. None or NaN is
    stored as NULL (undefined, which is not 0)."""
    hm_id, key = ref_id(heatmap), params_key(params)
    for metric in values:
        if not metric or len(metric) > 128:
            raise ValueError(f"metric name must have 1 to 128 characters, got {metric!r}")
    existing = {
        r.metric: r
        for r in s.scalars(
            select(FaithfulnessValue).where(
                FaithfulnessValue.heatmap_id == hm_id, FaithfulnessValue.params_json == key
            )
        )
    }
    out: list[FaithfulnessValue] = []
    for metric, value in values.items():
        row = existing.get(metric)
        if row is None:
            query = select(FaithfulnessValue).where(
                FaithfulnessValue.heatmap_id == hm_id,
                FaithfulnessValue.metric == metric,
                FaithfulnessValue.params_json == key,
            )
            new = FaithfulnessValue(
                heatmap_id=hm_id, metric=metric, value=_value(value), params_json=key
            )
            row = _insert_or_fetch(s, new, query)
        row.value = _value(value)
        out.append(row)
    return out


def list_faithfulness(
    s: Session,
    heatmap: object | None = None,
    run: object | None = None,
    metric: str | None = None,
    params: dict[str, Any] | None = None,
) -> list[FaithfulnessValue]:
    """Stored rows, optionally of one heatmap, one CAM run, one metric and/or one parameter set;
    ordered by heatmap, metric and parameters."""
    q = select(FaithfulnessValue).order_by(
        FaithfulnessValue.heatmap_id, FaithfulnessValue.metric, FaithfulnessValue.params_json
    )
    if heatmap is not None:
        q = q.where(FaithfulnessValue.heatmap_id == ref_id(heatmap))
    if run is not None:
        q = q.join(Heatmap, Heatmap.id == FaithfulnessValue.heatmap_id).where(
            Heatmap.cam_run_id == ref_id(run)
        )
    if metric is not None:
        q = q.where(FaithfulnessValue.metric == metric)
    if params is not None:
        q = q.where(FaithfulnessValue.params_json == params_key(params))
    return list(s.scalars(q))


def faithfulness_values(
    s: Session, heatmaps: Iterable[object], params: dict[str, Any]
) -> dict[int, dict[str, float | None]]:
    """heatmap id -> {metric: value} for ``heatmaps`` under ``params`` (heatmaps without any
    value are absent)."""
    key = params_key(params)
    ids = sorted({ref_id(h) for h in heatmaps})
    out: dict[int, dict[str, float | None]] = {}
    for chunk in _chunks(ids):
        rows = s.execute(
            select(
                FaithfulnessValue.heatmap_id, FaithfulnessValue.metric, FaithfulnessValue.value
            ).where(FaithfulnessValue.heatmap_id.in_(chunk), FaithfulnessValue.params_json == key)
        )
        for hm_id, metric, value in rows:
            out.setdefault(hm_id, {})[metric] = value
    return out


def heatmaps_done(
    s: Session, heatmaps: Iterable[object], params: dict[str, Any], metrics: Collection[str]
) -> set[int]:
    """Ids of ``heatmaps`` that have every one of ``metrics`` stored under ``params``."""
    wanted = set(metrics)
    found = faithfulness_values(s, heatmaps, params)
    return {hm for hm, values in found.items() if wanted <= values.keys()}


def delete_faithfulness(
    s: Session,
    heatmap: object | None = None,
    run: object | None = None,
    params: dict[str, Any] | None = None,
) -> int:
    """Delete the values of one heatmap and/or one CAM run and/or one parameter set (all when no
    filter is given); returns how many rows went."""
    q = delete(FaithfulnessValue)
    if heatmap is not None:
        q = q.where(FaithfulnessValue.heatmap_id == ref_id(heatmap))
    if run is not None:
        q = q.where(
            FaithfulnessValue.heatmap_id.in_(
                select(Heatmap.id).where(Heatmap.cam_run_id == ref_id(run)).scalar_subquery()
            )
        )
    if params is not None:
        q = q.where(FaithfulnessValue.params_json == params_key(params))
    return int(s.execute(q).rowcount or 0)
