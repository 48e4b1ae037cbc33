"""The report's first page: for each model x method, in plain sentences, what the numbers mean.

A clinician reads it in a minute: the model's accuracy, where its heatmap points and how that
compares with maps that know nothing (the baselines), whether the heatmap looks at the black
border or a corner (shortcut warning), whether the maps survive the randomisation test, and
whether removing the highlighted pixels changes the answer (faithfulness). Every number carries
its CI and n; the details follow in the later sections. The sentences are built from the same
aggregate rows as the tables, so the headline can never disagree with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fundus_review.core.baseline_tables import TABLE as VERSUS_TABLE
from fundus_review.core.baseline_tables import VERDICT_WORDS
from fundus_review.report.aggregates import AggIndex
from fundus_review.report.document import Para, Plot, Section, Table
from fundus_review.report.figures import COLORS, new_figure

# Mean share of heatmap mass outside the field of view above which a run is called a shortcut
# candidate: the border is black, so a model that needs it looks at the camera, not the retina.
SHORTCUT_MASS = 0.2
# A baseline hit rate this high means the images are centred on the structure: the pointing game
# cannot separate "looks at the structure" from "looks at the middle of the photo".
CENTRED_HIT_RATE = 0.9


@dataclass(frozen=True)
class HeadlineRun:
    label: str  # the run's label in every table
    model: str
    method: str
    baselines: tuple[str, ...]  # labels of the baseline runs it is compared with


@dataclass
class TrustFindings:
    """Per run label: one sentence each, with the verdict word first ("passed", "failed")."""

    accuracy: dict[str, str] = field(default_factory=dict)  # by model label
    randomization: dict[str, tuple[str, str]] = field(default_factory=dict)
    faithfulness: dict[str, tuple[str, str]] = field(default_factory=dict)


def _pct(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.0f} %"


def _pct_ci(agg: Mapping[str, Any] | None) -> str:
    if agg is None or agg.get("estimate") is None:
        return "-"
    if agg.get("ci_low") is None:
        return _pct(agg["estimate"])
    return f"{_pct(agg['estimate'])} [{100 * agg['ci_low']:.0f}, {100 * agg['ci_high']:.0f}]"


def _points(agg: Mapping[str, Any]) -> str:
    def p(v: float) -> str:
        return f"{100 * v:+.0f}"

    if agg.get("ci_low") is None:
        return f"{p(agg['estimate'])} points"
    return f"{p(agg['estimate'])} points [{p(agg['ci_low'])}, {p(agg['ci_high'])}]"


def _structure_sentence(
    run: HeadlineRun,
    structure: str,
    reviewer: str,
    idx: AggIndex,
    baseline_names: Mapping[str, str],
) -> str | None:
    hit = idx.get("summary", "pointing_hit", run.label, structure, reviewer)
    if hit is None or hit.get("estimate") is None:
        return None
    text = (
        f"On {structure} (reviewer {reviewer}), the heatmap maximum falls in the region in "
        f"{_pct_ci(hit)} of {hit['n']} images"
    )
    versus = _versus(idx, run.label, structure, reviewer, "pointing_hit")
    if versus is not None:
        best = versus["versus"]
        b_hit = idx.get("summary", "pointing_hit", best, structure, reviewer)
        text += (
            f"; the best baseline ({baseline_names.get(best, best)}) does {_pct_ci(b_hit)}: the "
            f"run {VERDICT_WORDS[versus['group']]} (difference {_points(versus)})"
        )
    energy = _versus(idx, run.label, structure, reviewer, "energy_in_mask")
    if energy is not None:
        e = idx.get("summary", "energy_in_mask", run.label, structure, reviewer)
        text += (
            f". Share of the heatmap in the region: {_pct_ci(e)}, which "
            f"{VERDICT_WORDS[energy['group']]} ({baseline_names.get(energy['versus'], energy['versus'])}, "
            f"difference {_points(energy)})"
        )
    return text + "."


def _versus(idx: AggIndex, run: str, structure: str, reviewer: str, metric: str) -> dict | None:
    for a in idx.tables.get(VERSUS_TABLE, []):
        if (a["run"], a["structure"], a["reviewer"], a["metric"]) == (
            run,
            structure,
            reviewer,
            metric,
        ):
            return a
    return None


def _shortcut(
    idx: AggIndex, run: str, structures: Sequence[str], reviewers: Sequence[str]
) -> str | None:
    for structure in structures:
        for reviewer in reviewers:
            a = idx.get("summary", "mass_outside_fov", run, structure, reviewer)
            if a is not None and a.get("estimate") is not None and a["estimate"] > SHORTCUT_MASS:
                return (
                    f"Shortcut warning: on average {_pct_ci(a)} of the heatmap lies outside the "
                    "field of view (black border, corners): the model may use the camera, not "
                    "the retina. Check the gallery."
                )
    return None


def centred_warnings(
    idx: AggIndex, structures: Sequence[str], reviewers: Sequence[str], centre_runs: Sequence[str]
) -> list[str]:
    """The pointing game is cheap to fool when the photos are centred on the structure."""
    out = []
    for structure in structures:
        for reviewer in reviewers:
            for run in centre_runs:
                a = idx.get("summary", "pointing_hit", run, structure, reviewer)
                if a is not None and (a.get("estimate") or 0) >= CENTRED_HIT_RATE:
                    out.append(
                        f"Caution: a map that only peaks at the image centre hits {structure} in "
                        f"{_pct_ci(a)} of images. These photographs are centred on it, so the "
                        "pointing game cannot tell a model that looks at it from one that looks "
                        "at the middle of the picture: judge by the share of the heatmap in the "
                        "region and by the comparison with the baselines."
                    )
                    break
    return out


def headline_section(
    runs: Sequence[HeadlineRun],
    idx: AggIndex,
    structures: Sequence[str],
    reviewers: Sequence[str],
    findings: TrustFindings,
    baseline_names: Mapping[str, str],
    centre_runs: Sequence[str] = (),
) -> Section:
    """The "At a glance" section: one paragraph per real run, the centred-photo caution, a
    verdict table and the hit-rate figure."""
    blocks: list[Any] = [
        Para(
            "What the tables below show, in short. Each paragraph is one model with one heatmap "
            "method. A score means something only if it beats maps that know nothing about the "
            "image: a Gaussian at the image centre, one at the centre of the retina (field of "
            "view), a constant map, a random map, and the method's own average map over the other "
            "images. 95 % confidence intervals in brackets."
        )
    ]
    blocks += [Para(t) for t in centred_warnings(idx, structures, reviewers, centre_runs)]
    table_rows = []
    for run in runs:
        parts = [f"{run.model}, {run.method}."]
        if run.model in findings.accuracy:
            parts.append(findings.accuracy[run.model])
        for structure in structures:
            for reviewer in reviewers:
                s = _structure_sentence(run, structure, reviewer, idx, baseline_names)
                if s:
                    parts.append(s)
        shortcut = _shortcut(idx, run.label, structures, reviewers)
        if shortcut:
            parts.append(shortcut)
        rand = findings.randomization.get(run.label)
        faith = findings.faithfulness.get(run.label)
        for found in (rand, faith):
            if found:
                parts.append(found[1])
        blocks.append(Para(" ".join(parts)))
        beats = [
            a["group"]
            for a in idx.tables.get(VERSUS_TABLE, [])
            if a["run"] == run.label and a["metric"] == "pointing_hit"
        ]
        table_rows.append(
            [
                run.label,
                ", ".join(sorted(set(beats))) or "-",
                "shortcut?" if shortcut else "-",
                rand[0] if rand else "not run",
                faith[0] if faith else "not run",
            ]
        )
    if table_rows:
        blocks.append(
            Table(
                "Verdicts",
                [
                    "run",
                    "pointing vs best baseline",
                    "outside FOV",
                    "randomisation",
                    "faithfulness",
                ],
                table_rows,
            )
        )
    plot = hit_rate_plot(runs, idx, structures, reviewers, baseline_names)
    if plot is not None:
        blocks.append(plot)
    return Section("At a glance", "headline", blocks)


def hit_rate_plot(
    runs: Sequence[HeadlineRun],
    idx: AggIndex,
    structures: Sequence[str],
    reviewers: Sequence[str],
    baseline_names: Mapping[str, str],
) -> Plot | None:
    """Hit rate with its CI per run and per baseline, for the first structure (and reviewer)
    that has scores: the one figure of the first page."""
    for structure in structures:
        for reviewer in reviewers:
            labels = list(
                dict.fromkeys([r.label for r in runs] + [b for r in runs for b in r.baselines])
            )
            aggs = [
                (lab, idx.get("summary", "pointing_hit", lab, structure, reviewer))
                for lab in labels
            ]
            aggs = [(lab, a) for lab, a in aggs if a is not None and a.get("estimate") is not None]
            if not aggs:
                continue
            real = {r.label for r in runs}
            fig = new_figure(7.5, 0.9 + 0.28 * len(aggs))
            ax = fig.subplots()
            y = np.arange(len(aggs))[::-1]
            for yi, (lab, a) in zip(y, aggs, strict=True):
                lo = a["ci_low"] if a.get("ci_low") is not None else a["estimate"]
                hi = a["ci_high"] if a.get("ci_high") is not None else a["estimate"]
                color = COLORS[0] if lab in real else "#888888"
                ax.errorbar(
                    [a["estimate"]],
                    [yi],
                    xerr=[[a["estimate"] - lo], [hi - a["estimate"]]],
                    fmt="o",
                    color=color,
                    capsize=3,
                )
            ax.set_yticks(y, [baseline_names.get(lab, lab) for lab, _ in aggs], fontsize=7)
            ax.set_xlim(-0.02, 1.02)
            ax.set_xlabel(f"pointing-game hit rate on {structure} (reviewer {reviewer}), 95 % CI")
            ax.grid(axis="x", alpha=0.3)
            return Plot(
                f"Hit rate on {structure}: runs (blue) against baselines (grey)",
                fig,
                "A run whose interval overlaps a grey baseline's does not show that the model "
                "looks at the structure.",
            )
    return None
