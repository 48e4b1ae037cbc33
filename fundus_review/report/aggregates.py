"""Every aggregate of the report, as rows of the aggregates CSV (``AGGREGATE_FIELDS``).

Tables (the ``table`` column):
- ``summary``: mean and 95 % CI of every metric per CAM run x structure x reviewer;
- ``by_true_class``, ``by_outcome``, ``by_confidence``: the same within groups of images;
- ``paired_methods`` / ``paired_models``: mean difference of two runs on the same images;
- ``spearman_confidence``: Spearman's rho of the model's confidence with each score;
- ``heatmap_similarity``: rank correlation / top-k overlap of two runs' maps, per image averaged;
- ``human_benchmark``: reviewer-vs-reviewer IoU and Dice of the same structure;
- ``verdict_counts`` and ``by_verdict``: the reviewers' yes/partly/no next to the scores.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fundus_review.core.baseline_tables import POINTING_METRICS, best_baseline_comparisons
from fundus_review.core.score_tables import (
    confidence_correlations,
    count_table,
    grouped_summaries,
    paired_comparisons,
)
from fundus_review.report.data import OUTCOME_ORDER, ReportData, RunInfo
from fundus_review.report.heatmaps import HeatmapPass

# Descriptive, identical for every method on an image: no grouping or comparison needs them.
DIAGNOSTIC_METRICS = ("pointing_n_maxima", "mask_area_fraction")
VERDICT_ORDER = ("yes", "partly", "no")


def analysis_metrics(data: ReportData) -> list[str]:
    return [m for m in data.metrics if m not in DIAGNOSTIC_METRICS]


def band_order(thresholds: tuple[float, ...]) -> list[str]:
    cuts = sorted(thresholds)
    if not cuts:
        return ["all", "unknown"]
    inner = [f"{lo:g}-{hi:g}" for lo, hi in zip(cuts, cuts[1:], strict=False)]
    return [f"< {cuts[0]:g}", *inner, f">= {cuts[-1]:g}", "unknown"]


def comparison_pairs(runs: list[RunInfo]) -> list[tuple[str, str, str]]:
    """(kind, run a, run b): runs of one model ("methods", incl. layers) and one method across
    models ("models"). Baselines are compared in their own table (``baseline_candidates``)."""
    out = []
    runs = [r for r in runs if not r.is_baseline]
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a.model_id == b.model_id:
                out.append(("methods", a.label, b.label))
            elif a.method == b.method:
                out.append(("models", a.label, b.label))
    return out


def baseline_candidates(runs: list[RunInfo]) -> dict[str, list[str]]:
    """Each real run's label -> the baselines it is compared with: every fixed baseline and the
    run's own leave-one-out mean map (another run's average look is not this run's baseline)."""
    fixed = [r.label for r in runs if r.is_baseline and "of_run" not in r.params]
    mean_of = {r.params["of_run"]: r.label for r in runs if r.is_baseline and "of_run" in r.params}
    return {
        r.label: [*fixed, *([mean_of[r.run_id]] if r.run_id in mean_of else [])]
        for r in runs
        if not r.is_baseline
    }


def agreement_rows(data: ReportData) -> list[dict[str, Any]]:
    return [
        {
            "structure": a.structure,
            "reviewer": f"{a.reviewer_a} vs {a.reviewer_b}",
            "image_id": a.image_id,
            "image": a.rel_path,
            "iou": a.iou,
            "dice": a.dice,
        }
        for a in sorted(
            data.agreements,
            key=lambda a: (a.structure, a.reviewer_a, a.reviewer_b, a.rel_path, a.image_id),
        )
    ]


def verdict_rows(data: ReportData) -> list[dict[str, Any]]:
    """One score row per verdict given on its heatmap (a heatmap judged by two reviewers counts
    once for each)."""
    by_heatmap: dict[int, list[dict[str, Any]]] = {}
    for v in data.verdicts:
        by_heatmap.setdefault(v["heatmap_id"], []).append(v)
    return [
        {**row, "verdict": v["verdict"], "verdict_reviewer": v["reviewer"]}
        for row in data.rows
        for v in sorted(by_heatmap.get(row["heatmap_id"], []), key=lambda v: v["reviewer"])
    ]


def summary_aggregates(data: ReportData, *, seed: int, n_resamples: int) -> list[dict[str, Any]]:
    """The summary of every run and baseline, and each run against its best baseline: what the
    headline needs (the GUI's Summary computes only these)."""
    stats = {"seed": seed, "n_resamples": n_resamples}
    out = grouped_summaries(data.rows, data.metrics, table="summary", **stats)
    uniform = [r.label for r in data.runs if r.is_baseline and r.method == "uniform"]
    out += best_baseline_comparisons(
        data.rows,
        analysis_metrics(data),
        baseline_candidates(data.runs),
        skip=dict.fromkeys(POINTING_METRICS, uniform),
        **stats,
    )
    return out


def build_aggregates(
    data: ReportData, heat: HeatmapPass, *, seed: int, n_resamples: int
) -> list[dict[str, Any]]:
    stats = {"seed": seed, "n_resamples": n_resamples}
    key = analysis_metrics(data)
    # Baselines are in the summary and in their own comparison; groupings by class, outcome or
    # confidence and correlations with confidence concern classifiers only.
    out = summary_aggregates(data, seed=seed, n_resamples=n_resamples)
    rows = [r for r in data.rows if r.get("run_kind") != "baseline"]
    if data.has_labels():
        out += grouped_summaries(rows, key, table="by_true_class", group_by="true_class", **stats)
        out += grouped_summaries(
            rows, key, table="by_outcome", group_by="outcome", group_order=OUTCOME_ORDER, **stats
        )
    out += grouped_summaries(
        rows,
        key,
        table="by_confidence",
        group_by="confidence_band",
        group_order=band_order(data.thresholds),
        **stats,
    )
    out += paired_comparisons(rows, key, comparison_pairs(data.runs), **stats)
    out += confidence_correlations(rows, key, **stats)
    if heat.similarity:
        names = [k for k in heat.similarity[0] if k in ("rank_correlation",) or "overlap" in k]
        out += grouped_summaries(
            heat.similarity, names, table="heatmap_similarity", by=("run", "versus"), **stats
        )
    agreements = agreement_rows(data)
    if agreements:
        out += grouped_summaries(
            agreements,
            ["iou", "dice"],
            table="human_benchmark",
            by=("structure", "reviewer"),
            **stats,
        )
    if data.verdicts:
        out += count_table(data.verdicts, ("run", "reviewer"), "verdict", "verdict_counts")
        out += grouped_summaries(
            verdict_rows(data),
            key,
            table="by_verdict",
            group_by="verdict",
            group_order=VERDICT_ORDER,
            **stats,
        )
    return out


class AggIndex:
    """Aggregate rows by (table, run, versus, structure, reviewer, group, metric)."""

    def __init__(self, aggs: Iterable[dict[str, Any]]) -> None:
        self.rows: dict[tuple, dict[str, Any]] = {}
        self.tables: dict[str, list[dict[str, Any]]] = {}
        for a in aggs:
            key = tuple(a[k] for k in ("table", "run", "versus", "structure", "reviewer", "group"))
            self.rows[(*key, a["metric"])] = a
            self.tables.setdefault(a["table"], []).append(a)

    def get(
        self,
        table: str,
        metric: str,
        run: Any = None,
        structure: Any = None,
        reviewer: Any = None,
        group: Any = "",
        versus: Any = None,
    ) -> dict[str, Any] | None:
        return self.rows.get((table, run, versus, structure, reviewer, group, metric))

    def summary_map(self) -> dict[tuple, dict[str, Any]]:
        return {
            (a["run"], a["structure"], a["reviewer"], a["metric"]): a
            for a in self.tables.get("summary", [])
        }

    def keyed(self, table: str) -> dict[tuple, dict[str, Any]]:
        return {
            (a["run"], a["structure"], a["reviewer"], a["metric"]): a
            for a in self.tables.get(table, [])
        }
