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
# The region a paragraph and the figure lead with when present (the glaucoma question), else the
# most outlined one.
LEAD_REGIONS = ("optic_disc",)


def lead_first(structures: Sequence[str]) -> list[str]:
    lead = [s for s in LEAD_REGIONS if s in structures]
    return lead + [s for s in structures if s not in lead]


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
    if v is None or not np.isfinite(v):
        return "-"
    return f"{100 * v:.0f} %" if abs(v) >= 0.095 else f"{100 * v:.1f} %"


def _pct_ci(agg: Mapping[str, Any] | None) -> str:
    if agg is None or agg.get("estimate") is None:
        return "-"
    if agg.get("ci_low") is None:
        return _pct(agg["estimate"])
    digits = 0 if max(abs(agg["ci_low"]), abs(agg["ci_high"])) >= 0.095 else 1
    lo, hi = 100 * agg["ci_low"], 100 * agg["ci_high"]
    return f"{_pct(agg['estimate'])} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _points(agg: Mapping[str, Any]) -> str:
    def p(v: float) -> str:
        # Percentage points; one decimal where whole points would print a difference as 0.
        return f"{100 * v:+.0f}" if abs(100 * v) >= 9.5 else f"{100 * v:+.1f}"

    if agg.get("ci_low") is None:
        return f"{p(agg['estimate'])} points"
    return f"{p(agg['estimate'])} points [{p(agg['ci_low'])}, {p(agg['ci_high'])}]"


def main_reviewer(idx: AggIndex, run: str, structure: str, reviewers: Sequence[str]) -> str | None:
    """The reviewer with the most scored images of the structure for the run (ties: first)."""
    best, best_n = None, 0
    for reviewer in reviewers:
        a = idx.get("summary", "pointing_hit", run, structure, reviewer)
        if a is not None and (a.get("n") or 0) > best_n:
            best, best_n = reviewer, a["n"]
    return best


def _versus(idx: AggIndex, run: str, structure: str, reviewer: str, metric: str) -> dict | None:
    for a in idx.tables.get(VERSUS_TABLE, []):
        key = (a["run"], a["structure"], a["reviewer"], a["metric"])
        if key == (run, structure, reviewer, metric):
            return a
    return None


def _structure_sentence(
    run: HeadlineRun, structure: str, reviewer: str, idx: AggIndex, names: Mapping[str, str]
) -> str | None:
    hit = idx.get("summary", "pointing_hit", run.label, structure, reviewer)
    if hit is None or hit.get("estimate") is None:
        return None
    text = (
        f"Its heatmap maximum falls in the {structure.replace('_', ' ')} in {_pct_ci(hit)} of "
        f"{hit['n']} images"
    )
    versus = _versus(idx, run.label, structure, reviewer, "pointing_hit")
    if versus is not None:
        best = versus["versus"]
        b_hit = idx.get("summary", "pointing_hit", best, structure, reviewer)
        text += (
            f"; the best baseline ({names.get(best, best)}) does {_pct_ci(b_hit)}, so the run "
            f"{VERDICT_WORDS[versus['group']]} ({_points(versus)})"
        )
    return text + "."


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
        hit = None
        for run in centre_runs:
            for reviewer in reviewers:
                a = idx.get("summary", "pointing_hit", run, structure, reviewer)
                if a is not None and (a.get("estimate") or 0) >= CENTRED_HIT_RATE:
                    hit = a
        if hit is not None:
            out.append(
                f"Caution: a map that only peaks at the centre of the picture hits the "
                f"{structure.replace('_', ' ')} in {_pct_ci(hit)} of images. These photographs "
                "are centred on it, so the pointing game cannot tell a model that looks at it "
                "from one that looks at the middle of the picture: judge by the share of the "
                "heatmap in the region and by the comparison with the baselines."
            )
    return out


def _cells(
    idx: AggIndex, run: str, structure: str, reviewer: str, metric: str, names: Mapping[str, str]
) -> list[str]:
    a = idx.get("summary", metric, run, structure, reviewer)
    v = _versus(idx, run, structure, reviewer, metric)
    if a is None:
        return ["-", "-", "-"]
    b = idx.get("summary", metric, v["versus"], structure, reviewer) if v else None
    return [
        _pct_ci(a),
        f"{names.get(v['versus'], v['versus'])}: {_pct_ci(b)}" if v else "-",
        f"{v['group']} ({_points(v)})" if v else "-",
    ]


def baseline_section(
    runs: Sequence[HeadlineRun],
    idx: AggIndex,
    structures: Sequence[str],
    reviewers: Sequence[str],
    names: Mapping[str, str],
) -> Section:
    """Every run x region against its best baseline, for the hit rate and the heatmap share."""
    rows = []
    for run in runs:
        for structure in structures:
            reviewer = main_reviewer(idx, run.label, structure, reviewers)
            if reviewer is None:
                continue
            n = idx.get("summary", "pointing_hit", run.label, structure, reviewer)["n"]
            rows.append(
                [
                    run.label,
                    f"{structure} ({reviewer})",
                    str(n),
                    *_cells(idx, run.label, structure, reviewer, "pointing_hit", names),
                    *_cells(idx, run.label, structure, reviewer, "energy_in_mask", names),
                ]
            )
    blocks: list[Any] = [
        Para(
            "For each run and region (with the reviewer who outlined most images): the pointing-"
            "game hit rate and the share of the heatmap inside the region, each beside the best "
            "of the baselines on the same images and the paired difference with its 95 % CI "
            "(percentage points). 'beats': the whole interval is above 0. The best baseline is "
            "chosen on the same images, which favours the baseline; the constant map is no "
            "candidate for the pointing game, which it wins by definition. Every metric's "
            "comparison is in aggregates.csv (table versus_best_baseline)."
        )
    ]
    if rows:
        blocks.append(
            Table(
                "Runs against their best baseline",
                [
                    "run",
                    "region (reviewer)",
                    "n",
                    "hit rate",
                    "best baseline",
                    "verdict",
                    "heatmap share",
                    "best baseline",
                    "verdict",
                ],
                rows,
            )
        )
    return Section("Against the baselines", "baselines", blocks)


def headline_section(
    runs: Sequence[HeadlineRun],
    idx: AggIndex,
    structures: Sequence[str],
    reviewers: Sequence[str],
    findings: TrustFindings,
    baseline_names: Mapping[str, str],
    centre_runs: Sequence[str] = (),
) -> Section:
    """The "At a glance" section: a short paragraph per real run (its main region), the
    centred-photo caution, a table of the checks and the hit-rate figure; the region-by-region
    comparison is ``baseline_section``."""
    blocks: list[Any] = [
        Para(
            "What the tables below show, in short. Each paragraph is one model with one heatmap "
            "method. A score means something only if it beats maps that know nothing about the "
            "image: a Gaussian at the image centre, one at the centre of the retina (field of "
            "view), a constant map, a random map, and the method's own average map over the other "
            "images. 95 % confidence intervals in brackets; 'points' are percentage points."
        )
    ]
    structures = lead_first(structures)
    blocks += [Para(t) for t in centred_warnings(idx, structures, reviewers, centre_runs)]
    check_rows = []
    for run in runs:
        parts = [f"{run.model}, {run.method}:"]
        if run.model in findings.accuracy:
            parts.append(findings.accuracy[run.model])
        main = next(
            (s for s in structures if main_reviewer(idx, run.label, s, reviewers) is not None),
            None,
        )
        if main is not None:
            reviewer = main_reviewer(idx, run.label, main, reviewers)
            sentence = _structure_sentence(run, main, reviewer, idx, baseline_names)
            if sentence:
                parts.append(sentence)
            others = []
            for s in structures:
                r = main_reviewer(idx, run.label, s, reviewers)
                v = _versus(idx, run.label, s, r, "pointing_hit") if r and s != main else None
                if v is not None:
                    others.append(f"{s.replace('_', ' ')}: {v['group']}")
            if others:
                parts.append(f"Other regions against their best baseline: {'; '.join(others)}.")
        shortcut = _shortcut(idx, run.label, structures, reviewers)
        if shortcut:
            parts.append(shortcut)
        rand = findings.randomization.get(run.label)
        faith = findings.faithfulness.get(run.label)
        parts += [found[1] for found in (rand, faith) if found]
        blocks.append(Para(" ".join(parts)))
        check_rows.append(
            [
                run.label,
                "shortcut?" if shortcut else "no",
                rand[0] if rand else "not run",
                faith[0] if faith else "not run",
            ]
        )
    plot = hit_rate_plot(runs, idx, structures, reviewers, baseline_names)
    if plot is not None:
        blocks.append(plot)
    if check_rows:
        blocks.append(
            Table(
                "Checks",
                ["run", "heatmap outside the FOV", "randomisation test", "faithfulness (ROAD)"],
                check_rows,
                note="`fundus-review trust` runs the randomisation and faithfulness checks.",
            )
        )
    return Section("At a glance", "headline", blocks)


def _plot_name(label: str, names: Mapping[str, str]) -> str:
    """A mean map is named by its run (each run has its own); other baselines by what they are."""
    prefix = "baseline | mean map of "
    if label.startswith(prefix):
        return "mean map of " + " ".join(label[len(prefix) :].split(" | ")[:2])
    return names.get(label, label)


def hit_rate_plot(
    runs: Sequence[HeadlineRun],
    idx: AggIndex,
    structures: Sequence[str],
    reviewers: Sequence[str],
    baseline_names: Mapping[str, str],
) -> Plot | None:
    """Hit rate with its CI per run and per baseline, for the lead structure (and reviewer)
    that has scores: the one figure of the first page."""
    for structure in lead_first(structures):
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
            fig = new_figure(7.5, 0.7 + 0.2 * len(aggs))
            ax = fig.subplots()
            y = np.arange(len(aggs))[::-1]
            for yi, (lab, a) in zip(y, aggs, strict=True):
                lo = a["ci_low"] if a.get("ci_low") is not None else a["estimate"]
                hi = a["ci_high"] if a.get("ci_high") is not None else a["estimate"]
                color = COLORS[0] if lab in real else "#888888"
                ax.errorbar(
                    [a["estimate"]],
                    [yi],
                    # max(0, .): a Wilson bound equal to the estimate can differ by rounding.
                    xerr=[[max(0.0, a["estimate"] - lo)], [max(0.0, hi - a["estimate"])]],
                    fmt="o",
                    color=color,
                    capsize=3,
                )
            ax.set_yticks(y, [_plot_name(lab, baseline_names) for lab, _ in aggs], fontsize=7)
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
