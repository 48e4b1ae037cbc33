"""Each run against its best baseline: the paired difference that says whether a score means
anything (numpy only; rows as in :mod:`fundus_review.core.score_tables`).

For a run R, a structure, a reviewer and a metric, every baseline B (the fixed ones and R's own
leave-one-out mean map) is paired with R on the images both have; the *best* baseline is the one
with the best mean on those images (highest, or lowest for metrics where lower is better).
Choosing it on the same images favours the baseline, so the test is conservative for the run.
The difference R - best and its bootstrap CI (over images, paired) give the verdict:

- ``beats``: the CI lies entirely on the better side of 0;
- ``worse``: it lies entirely on the worse side;
- ``no better``: the CI contains 0 (or there are too few paired images to tell).

The constant map is no candidate for the pointing game (``POINTING_METRICS``): every pixel is its
maximum, so it "hits" every target by definition and would make every run lose. For the other
metrics it is the chance level (energy = the mask's share of the field of view, AUC = 0.5).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from fundus_review.core.metrics import describe_metric
from fundus_review.core.score_tables import group_rows, paired_row, paired_values
from fundus_review.core.stats import paired_difference

Row = Mapping[str, Any]
TABLE = "versus_best_baseline"
POINTING_METRICS = ("pointing_hit", "pointing_distance_px")
VERDICT_WORDS = {
    "beats": "beats the best baseline",
    "worse": "is worse than the best baseline",
    "no better": "does not beat the best baseline",
}


def direction(metric: str) -> bool | None:
    """True when higher is better, False when lower is, None for diagnostics (not compared)."""
    try:
        return describe_metric(metric).higher_is_better
    except (KeyError, ValueError):
        return None


def verdict(estimate: float | None, low: float | None, high: float | None, higher: bool) -> str:
    if estimate is None or low is None or high is None:
        return "no better"
    if higher:
        return "beats" if low > 0 else "worse" if high < 0 else "no better"
    return "beats" if high < 0 else "worse" if low > 0 else "no better"


def _mean(values: Sequence[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def best_baseline_comparisons(
    rows: Sequence[Row],
    metrics: Sequence[str],
    candidates: Mapping[str, Sequence[str]],
    *,
    skip: Mapping[str, Collection[str]] | None = None,
    within: Sequence[str] = ("structure", "reviewer"),
    seed: int = 0,
    n_resamples: int = 1000,
    ci: float = 0.95,
) -> list[dict[str, Any]]:
    """One aggregate row per run x (structure, reviewer) x metric: run - best baseline.

    ``candidates`` maps each real run's label to the labels of the baselines it is compared
    with; ``skip`` maps a metric to baselines that are no candidate for it. The row's
    ``versus`` names the best baseline, ``group`` holds the verdict word.
    """
    skip = skip or {}
    out: list[dict[str, Any]] = []
    for key, members in group_rows(rows, within).items():
        present = {r["run"] for r in members}
        for run, baselines in candidates.items():
            if run not in present:
                continue
            for metric in metrics:
                higher = direction(metric)
                if higher is None:
                    continue
                best: tuple[float, str, list, list] | None = None
                for b in baselines:
                    if b not in present or b in skip.get(metric, ()):
                        continue
                    a_vals, b_vals = paired_values(members, run, b, metric)
                    m = _mean(b_vals)
                    if m is None:
                        continue
                    score = m if higher else -m
                    if best is None or score > best[0]:
                        best = (score, b, a_vals, b_vals)
                if best is None:
                    continue
                _, b, a_vals, b_vals = best
                d = paired_difference(a_vals, b_vals, n_resamples=n_resamples, ci=ci, seed=seed)
                out.append(
                    paired_row(
                        d,
                        table=TABLE,
                        run=run,
                        versus=b,
                        **dict(zip(within, key, strict=False)),
                        group_by="verdict",
                        group=verdict(d.estimate, d.ci_low, d.ci_high, higher),
                        metric=metric,
                        seed=seed,
                        n_resamples=n_resamples,
                    )
                )
    return out
