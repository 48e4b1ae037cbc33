"""The report's plots as matplotlib Figures (object API, Agg canvas: no pyplot, no GUI backend).

pyplot is avoided on purpose: the GUI writes reports from a worker thread, where pyplot's global
figure manager is not safe, and the report must never pull a Qt backend in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fundus_review.core.score_tables import group_rows
from fundus_review.report.document import Plot, num

DIST_METRICS = ("pointing_hit", "energy_in_mask", "iou_area_match", "pixel_auc", "mass_outside_fov")
CHANCE = {"pixel_auc": 0.5}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _series(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows of one structure per (run, reviewer), labelled by run (and reviewer if several)."""
    groups = group_rows(rows, ("run", "reviewer"))
    several = len({k[1] for k in groups}) > 1
    return {(f"{k[0]} [{k[1]}]" if several else k[0]): v for k, v in groups.items()}


def _finite(values: list[Any]) -> np.ndarray:
    a = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return a[np.isfinite(a)]


def distribution_plot(
    structure: str, rows: list[dict[str, Any]], summary: dict[tuple, dict[str, Any]]
) -> Plot:
    """Per run: pointing hit rate with its Wilson CI, then box + points of four scores."""
    series = _series(rows)
    labels = list(series)
    n = len(labels)
    fig = new_figure(14, 1.6 + 0.5 * n)
    axes = fig.subplots(1, len(DIST_METRICS), sharey=True)
    y = np.arange(n)[::-1]
    for ax, metric in zip(axes, DIST_METRICS, strict=True):
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        for i, label in enumerate(labels):
            members = series[label]
            key = (members[0]["run"], structure, members[0]["reviewer"], metric)
            if metric == "pointing_hit":
                agg = summary.get(key)
                if agg and agg["estimate"] is not None:
                    lo, hi = agg["ci_low"], agg["ci_high"]
                    ax.barh(y[i], agg["estimate"], color=COLORS[i % len(COLORS)], alpha=0.7)
                    ax.errorbar(
                        agg["estimate"],
                        y[i],
                        # Wilson bounds of a 0 % or 100 % rate sit on the estimate up to float rounding.
                        xerr=[[max(0.0, agg["estimate"] - lo)], [max(0.0, hi - agg["estimate"])]],
                        color="k",
                        capsize=3,
                    )
                continue
            vals = _finite([m.get(metric) for m in members])
            if vals.size:
                ax.boxplot(
                    vals,
                    positions=[y[i]],
                    orientation="horizontal",
                    widths=0.5,
                    showfliers=False,
                    medianprops={"color": "k"},
                )
                jitter = (np.random.default_rng(i).random(vals.size) - 0.5) * 0.3
                ax.scatter(vals, y[i] + jitter, s=8, color=COLORS[i % len(COLORS)], alpha=0.7)
        if metric == "energy_in_mask":
            chance = _finite([r.get("mask_area_fraction") for r in rows])
            if chance.size:
                ax.axvline(chance.mean(), ls="--", color="grey", lw=1, label="chance")
                ax.legend(fontsize=7, loc="lower right")
        if metric in CHANCE:
            ax.axvline(CHANCE[metric], ls="--", color="grey", lw=1)
        ax.set_xlim(-0.02, 1.02)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(y, [_wrap(lbl) for lbl in labels], fontsize=8)
    caption = (
        f"{structure}: pointing-game hit rate (bars, 95 % Wilson CI) and the distribution of "
        "four scores over images (box: quartiles; points: images). Dashed: chance level "
        "(energy: mean mask share of the field of view; AUC: 0.5)."
    )
    return Plot(f"Score distributions - {structure}", fig, caption)


def _wrap(text: str, width: int = 34) -> str:
    parts, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            parts.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*parts, line])


def confidence_plot(
    structure: str, rows: list[dict[str, Any]], corr: dict[tuple, dict[str, Any]], metric: str
) -> Plot:
    """Confidence of the predicted class against one score, one colour per run."""
    fig = new_figure(7.5, 4.6)
    ax = fig.subplots()
    for i, (label, members) in enumerate(_series(rows).items()):
        xs = np.array([m["confidence"] for m in members], dtype=np.float64)
        ys = np.array([np.nan if m.get(metric) is None else m[metric] for m in members])
        c = corr.get((members[0]["run"], structure, members[0]["reviewer"], metric))
        rho = (
            ""
            if c is None
            else f" (rho {num(c['estimate'], 2)} [{num(c['ci_low'], 2)}, "
            f"{num(c['ci_high'], 2)}], n={c['n']})"
        )
        ax.scatter(xs, ys, s=14, alpha=0.75, color=COLORS[i % len(COLORS)], label=label + rho)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel(metric)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.15))
    caption = (
        f"{structure}: does confidence go with focus? Each point is an image; Spearman's rho "
        "with its 95 % bootstrap CI in the legend."
    )
    return Plot(f"Confidence vs {metric} - {structure}", fig, caption)
