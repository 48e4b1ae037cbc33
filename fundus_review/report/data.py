"""Everything the report shows, read from the database: per-image score rows and what was run.

One row per (heatmap, structure, reviewer) with stored scores, in a fixed order (structure,
reviewer, CAM run, dataset, image path): the order of the per-image CSV and of every statistic,
so the report's intervals can be recomputed from that CSV. Nothing here depends on the clock.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fundus_review.app.scoring import AgreementRow, ScoringParams, ScoringSummary
from fundus_review.app.selection import ResultSelection
from fundus_review.core.score_tables import guess_negative_class
from fundus_review.core.similarity import confidence_band, prediction_outcome
from fundus_review.report.provenance import region_provenance
from fundus_review.store import repo
from fundus_review.store.db import Database
from fundus_review.store.repo import ResultRow

OUTCOME_ORDER = ("correct", "false negative", "false positive", "misclassified", "unlabeled")
SOFTWARE = (
    "fundus-review",
    "numpy",
    "torch",
    "torchvision",
    "timm",
    "grad-cam",
    "sqlalchemy",
    "opencv-python-headless",
    "pillow",
    "matplotlib",
)
_CHUNK = 2000  # heatmaps whose scores are read in one query
# Columns of the per-image CSV before the metric columns.
ROW_FIELDS = (
    "dataset",
    "image_id",
    "image",
    "true_class",
    "model",
    "method",
    "layers",
    "target_policy",
    "run",
    "run_kind",
    "run_id",
    "heatmap_id",
    "target_class",
    "predicted_class",
    "confidence",
    "target_probability",
    "outcome",
    "confidence_band",
    "structure",
    "reviewer",
    "verdicts",
)


@dataclass(frozen=True)
class RunInfo:
    run_id: int
    label: str
    model_id: int
    model: str  # the model's label (its name, with a hash prefix where names repeat)
    method: str
    layers: tuple[str, ...]
    target_policy: str
    params: dict[str, Any]
    created: str
    kind: str = "model"  # or "baseline" (ResultRow.model_kind)

    @property
    def is_baseline(self) -> bool:
        return self.kind == "baseline"


@dataclass
class ReportData:
    db_name: str
    selection: dict[str, Any]
    params: ScoringParams
    metrics: tuple[str, ...]
    thresholds: tuple[float, ...]
    datasets: list[dict[str, Any]]
    models: list[dict[str, Any]]
    runs: list[RunInfo]
    structures: list[str]
    reviewers: list[str]
    reviewer_ids: dict[str, int]
    results: list[ResultRow]
    rows: list[dict[str, Any]]
    agreements: list[AgreementRow]
    verdicts: list[dict[str, Any]]
    problems: list[tuple[str, str]]
    software: dict[str, str] = field(default_factory=dict)
    # live regions per (structure, reviewer) by provenance (report.provenance), unreviewed
    # proposals counted apart as excluded
    region_provenance: list[dict[str, Any]] = field(default_factory=list)

    def has_labels(self) -> bool:
        return any(r["true_class"] is not None for r in self.rows)


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _model_labels(models: list[Any]) -> dict[int, str]:
    names = [m.name for m in models]
    return {
        m.id: m.name if names.count(m.name) == 1 else f"{m.name} ({m.weights_sha256[:8]})"
        for m in models
    }


def _run_infos(s: Any, results: list[ResultRow], model_labels: dict[int, str]) -> list[RunInfo]:
    created = {r.id: r.created_at for r in repo.list_cam_runs(s)}
    seen: dict[int, ResultRow] = {}
    for r in results:
        seen.setdefault(r.run_id, r)
    labels: dict[int, str] = {}
    for run_id, r in seen.items():
        if r.model_kind == "baseline":
            continue
        label = f"{model_labels[r.model_id]} | {r.method} | {','.join(r.layers)}"
        if r.target_policy != "predicted":
            label += f" | target {r.target_policy[6:]}"
        labels[run_id] = label
    for run_id, r in seen.items():
        if r.model_kind == "baseline":  # after the real runs: a mean map names its run
            of_run = r.params.get("of_run")
            labels[run_id] = (
                f"baseline | {r.method}"
                if of_run is None
                else f"baseline | mean map of {labels.get(of_run, f'run {of_run}')}"
            )
    out = []
    # Real runs first, then the baselines (fixed ones, then the mean maps), as every table lists
    # them.
    order = sorted(
        seen.items(),
        key=lambda kv: (kv[1].model_kind == "baseline", "of_run" in kv[1].params),
    )
    for run_id, r in order:
        label = labels[run_id]
        if list(labels.values()).count(label) > 1:  # same recipe but other CAM parameters
            label += f" | run {run_id}"
        out.append(
            RunInfo(
                run_id,
                label,
                r.model_id,
                model_labels[r.model_id],
                r.method,
                tuple(r.layers),
                r.target_policy,
                dict(r.params),
                created[run_id].isoformat(timespec="seconds"),
                kind=r.model_kind,
            )
        )
    return out


def _model_dicts(models: list[Any], labels: dict[int, str]) -> list[dict[str, Any]]:
    out = []
    for m in models:
        card = dict(m.card or {})
        classes = [str(c) for c in card.get("classes", [])]
        out.append(
            {
                "model": labels[m.id],
                "name": m.name,
                "architecture": m.architecture,
                "classes": classes,
                "negative_class": guess_negative_class(classes),
                "input_size": card.get("input_size"),
                "resize": card.get("resize"),
                "weights_sha256": m.weights_sha256,
                "card_sha256": m.card_sha256,
                "bundle_path": m.bundle_path,
                "card": card,
            }
        )
    return out


def collect(
    db: Database,
    scoring: ScoringSummary,
    selection: ResultSelection,
    *,
    params: ScoringParams,
    thresholds: Sequence[float] = (0.5, 0.8),
) -> ReportData:
    """Read the selection's heatmaps, predictions, scores, verdicts and provenance.

    ``selection`` is the one the scores were computed for (``scoring``), so the report covers
    exactly the scored heatmaps and masks.
    """
    metrics = params.metric_names()
    wanted_structures = selection.structure_set()
    wanted_reviewers = selection.reviewer_set()
    with db.session(read_only=True) as s:
        results = selection.results(s)
        model_rows = [m for m in repo.list_models(s) if m.id in {r.model_id for r in results}]
        labels = _model_labels(model_rows)
        model_dicts = _model_dicts(model_rows, labels)
        negative = {m.id: d["negative_class"] for m, d in zip(model_rows, model_dicts, strict=True)}
        runs = _run_infos(s, results, labels)
        run_label = {r.run_id: r.label for r in runs}
        reviewer_names = {r.id: r.name for r in repo.list_reviewers(s)}
        ds_names = {d.id: d.name for d in repo.list_datasets(s)}
        datasets = [
            {
                "dataset": d.name,
                "root": d.root,
                "images": len(repo.dataset_images(s, d)),
                "analysed_images": len({r.image_id for r in results if r.dataset_id == d.id}),
            }
            # By name, as the report has always listed them (the store lists in id order).
            for d in sorted(repo.list_datasets(s), key=lambda d: (d.name, d.id))
            if d.id in {r.dataset_id for r in results}
        ]
        provenance_rows = region_provenance(s, sorted({r.dataset_id for r in results}))
        hm_ids = {r.heatmap_id for r in results}
        verdicts = [
            {
                "heatmap_id": v.heatmap_id,
                "reviewer": reviewer_names[v.reviewer_id],
                "verdict": v.verdict,
                "comment": v.comment,
            }
            for v in repo.list_verdicts(s)
            if v.heatmap_id in hm_ids
        ]
        by_heatmap: dict[int, list[dict[str, Any]]] = {}
        for v in verdicts:
            by_heatmap.setdefault(v["heatmap_id"], []).append(v)
        rows: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        # The scores of _CHUNK heatmaps at a time, in one SELECT of plain values each.
        for start in range(0, len(results), _CHUNK):
            part = results[start : start + _CHUNK]
            scores: dict[int, dict[tuple[str, str], dict[str, float | None]]] = {}
            for hm_id, structure, rev_id, metric, value in repo.iter_score_values(
                s, [r.heatmap_id for r in part], metrics, chunk=_CHUNK
            ):
                name = reviewer_names[rev_id]
                if wanted_structures is not None and structure not in wanted_structures:
                    continue
                if wanted_reviewers is not None and name not in wanted_reviewers:
                    continue
                structure = names.setdefault(structure, structure)  # one str object per name
                scores.setdefault(hm_id, {}).setdefault((structure, name), {})[metric] = value
            for r in part:
                if r.heatmap_id not in scores:
                    continue
                base = _base_row(r, ds_names, run_label, negative, thresholds, by_heatmap)
                for (structure, reviewer), values in scores[r.heatmap_id].items():
                    row = {**base, "structure": structure, "reviewer": reviewer}
                    for m in metrics:
                        row[m] = values.get(m)
                    rows.append(row)
    hm_run = {r.heatmap_id: run_label[r.run_id] for r in results}
    for v in verdicts:
        v["run"] = hm_run[v["heatmap_id"]]
    rows, structure_order = _sorted_rows(rows, [r.label for r in runs])
    agreements = list(scoring.agreements)
    return ReportData(
        db_name=db.display_name,
        selection=selection.to_dict(),
        params=params,
        metrics=metrics,
        thresholds=tuple(float(t) for t in thresholds),
        datasets=datasets,
        models=model_dicts,
        runs=runs,
        structures=structure_order,
        reviewers=sorted({r["reviewer"] for r in rows} | _agreement_reviewers(agreements)),
        reviewer_ids={name: rid for rid, name in reviewer_names.items()},
        results=results,
        rows=rows,
        agreements=agreements,
        verdicts=verdicts,
        problems=list(scoring.problems),
        software=software_versions(),
        region_provenance=provenance_rows,
    )


def _agreement_reviewers(agreements: list[AgreementRow]) -> set[str]:
    return {a.reviewer_a for a in agreements} | {a.reviewer_b for a in agreements}


def _base_row(
    r: ResultRow,
    ds_names: dict[int, str],
    run_label: dict[int, str],
    negative: dict[int, str | None],
    thresholds: Sequence[float],
    verdicts: dict[int, list[dict[str, Any]]],
) -> dict[str, Any]:
    predicted = r.predicted_class or str(r.predicted_index)
    target = r.classes[r.target_index] if r.target_index < len(r.classes) else str(r.target_index)
    conf = float(r.confidence)
    row = {
        "dataset": ds_names.get(r.dataset_id, str(r.dataset_id)),
        "image_id": r.image_id,
        "image": r.rel_path,
        "true_class": r.label,
        "model": run_label[r.run_id].split(" | ")[0],
        "method": r.method,
        "layers": ",".join(r.layers),
        "target_policy": r.target_policy,
        "run": run_label[r.run_id],
        "run_kind": r.model_kind,
        "run_id": r.run_id,
        "heatmap_id": r.heatmap_id,
        "target_class": target,
        "predicted_class": predicted,
        "confidence": conf,
        "target_probability": float(r.probs[r.target_index])
        if r.target_index < len(r.probs)
        else None,
        "outcome": prediction_outcome(
            r.label, r.outcome_class or predicted, negative.get(r.model_id)
        ),
        "confidence_band": confidence_band(conf, thresholds),
        "verdicts": "; ".join(
            f"{v['reviewer']}: {v['verdict']}"
            for v in sorted(verdicts.get(r.heatmap_id, []), key=lambda v: v["reviewer"])
        ),
    }
    if r.model_kind == "baseline":  # a baseline map predicts nothing
        row |= dict.fromkeys(
            ("target_class", "predicted_class", "confidence", "target_probability"), None
        )
        row |= {"outcome": "baseline", "confidence_band": "baseline"}
    return row


def _sorted_rows(
    rows: list[dict[str, Any]], run_order: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows in CSV order; structures with the most rows first (the optic disc before lesions)."""
    count: dict[str, int] = {}
    for r in rows:
        count[r["structure"]] = count.get(r["structure"], 0) + 1
    structures = sorted(count, key=lambda k: (-count[k], k))
    s_rank = {k: i for i, k in enumerate(structures)}
    r_rank = {k: i for i, k in enumerate(run_order)}
    rows = sorted(
        rows,
        key=lambda r: (
            s_rank[r["structure"]],
            r["reviewer"],
            r_rank[r["run"]],
            r["dataset"],
            r["image"],
            r["image_id"],
        ),
    )
    return rows, structures
