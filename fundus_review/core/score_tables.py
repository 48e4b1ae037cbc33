"""The agreement report's statistics over per-image score rows (numpy only).

A score row is a mapping with at least ``run`` (a CAM run's label), ``image_id``, ``structure``,
``reviewer``, ``confidence`` and one key per metric (None when undefined). Every function here
is deterministic: groups come out in the order their first row appears (callers sort the rows,
the report in the order of its per-image CSV), and the values of a group keep the row order, so
the same rows and seed give the same bootstrap resamples, which is what lets anyone recompute
the report's intervals from its CSV with :mod:`fundus_review.core.stats`.

Intervals: the pointing-game hit rate (a proportion) gets Wilson's score interval, every other
mean a percentile bootstrap (``ci_method`` says which); paired differences and Spearman's rho are
bootstrapped over images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from fundus_review.core.stats import PairedDifference, paired_difference, spearman, summarize

Row = Mapping[str, Any]

# Class names read as "no disease": errors against them are false positives / negatives.
NEGATIVE_CLASS_NAMES = (
    "normal",
    "healthy",
    "negative",
    "no_dr",
    "nodr",
    "no dr",
    "no-dr",
    "control",
    "non_glaucoma",
    "non-glaucoma",
    "no_glaucoma",
    "0",
)
# Columns of every aggregate row, in the order of the aggregates CSV.
AGGREGATE_FIELDS = (
    "table",
    "run",
    "versus",
    "structure",
    "reviewer",
    "group_by",
    "group",
    "metric",
    "ci_method",
    "n",
    "n_dropped",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "seed",
    "n_resamples",
)
# Spearman's rho of fewer pairs is +-1 or undefined whatever the data: reported as missing.
MIN_CORRELATION_N = 3


def ci_method_for(metric: str) -> str:
    """ "wilson" for the 0/1 pointing-game hits, "bootstrap" for every other metric."""
    return "wilson" if metric == "pointing_hit" else "bootstrap"


def guess_negative_class(classes: Sequence[str]) -> str | None:
    """The first class whose name means "no disease" (normal, healthy, no_dr, ...), else None."""
    for c in classes:
        if str(c).strip().lower() in NEGATIVE_CLASS_NAMES:
            return str(c)
    return None


def aggregate_row(**fields: Any) -> dict[str, Any]:
    out = dict.fromkeys(AGGREGATE_FIELDS)
    out.update(fields)
    return out


def group_rows(
    rows: Iterable[Row], fields: Sequence[str], order: Callable[[tuple], Any] | None = None
) -> dict[tuple, list[Row]]:
    """Rows by the values of ``fields``; first-appearance order unless ``order`` sorts the keys."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(f) for f in fields), []).append(row)
    if order is not None:
        groups = {k: groups[k] for k in sorted(groups, key=order)}
    return groups


def grouped_summaries(
    rows: Sequence[Row],
    metrics: Sequence[str],
    *,
    table: str,
    by: Sequence[str] = ("run", "structure", "reviewer"),
    group_by: str | None = None,
    group_order: Sequence[Any] | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
    ci: float = 0.95,
) -> list[dict[str, Any]]:
    """Mean and 95 % CI of each metric per ``by`` key (and per ``group_by`` value within it).

    ``by`` names fields of the aggregate row (run, structure, reviewer); ``group_order`` lists
    the ``group_by`` values in display order (others follow, sorted as text).
    """
    fields = [*by, group_by] if group_by else list(by)
    rank = {v: i for i, v in enumerate(group_order or [])}
    base_first: dict[tuple, int] = {}
    for row in rows:
        base_first.setdefault(tuple(row.get(f) for f in by), len(base_first))

    def order(key: tuple) -> tuple:
        g = key[-1] if group_by else None
        return (base_first[key[: len(by)]], rank.get(g, len(rank)), str(g))

    out: list[dict[str, Any]] = []
    for key, members in group_rows(rows, fields, order).items():
        for metric in metrics:
            method = ci_method_for(metric)
            s = summarize(
                [r.get(metric) for r in members],
                method=method,
                n_resamples=n_resamples,
                ci=ci,
                seed=seed,
            )
            out.append(
                aggregate_row(
                    table=table,
                    **dict(zip(by, key, strict=False)),
                    group_by=group_by or "",
                    group="" if not group_by else key[-1],
                    metric=metric,
                    ci_method=method,
                    n=s.n,
                    n_dropped=s.n_dropped,
                    estimate=s.mean,
                    ci_low=s.ci_low,
                    ci_high=s.ci_high,
                    seed=seed,
                    n_resamples=s.n_resamples,
                )
            )
    return out


def paired_values(
    rows: Sequence[Row], run_a: str, run_b: str, metric: str, key: str = "image_id"
) -> tuple[list[Any], list[Any]]:
    """(a, b): the metric of two runs on the images both have, in the order of run_a's rows."""
    b_by_key = {r[key]: r.get(metric) for r in rows if r["run"] == run_b}
    a_vals, b_vals = [], []
    for r in rows:
        if r["run"] == run_a and r[key] in b_by_key:
            a_vals.append(r.get(metric))
            b_vals.append(b_by_key[r[key]])
    return a_vals, b_vals


def paired_comparisons(
    rows: Sequence[Row],
    metrics: Sequence[str],
    pairs: Sequence[tuple[str, str, str]],
    *,
    within: Sequence[str] = ("structure", "reviewer"),
    seed: int = 0,
    n_resamples: int = 1000,
    ci: float = 0.95,
) -> list[dict[str, Any]]:
    """Mean difference run_a - run_b on the same images with bootstrap CI and sign-flip p.

    ``pairs`` holds (kind, run_a, run_b), kind naming what differs ("methods", "models").
    """
    out: list[dict[str, Any]] = []
    for key, members in group_rows(rows, within).items():
        present = {r["run"] for r in members}
        for kind, run_a, run_b in pairs:
            if run_a not in present or run_b not in present:
                continue
            for metric in metrics:
                a, b = paired_values(members, run_a, run_b, metric)
                d = paired_difference(a, b, n_resamples=n_resamples, ci=ci, seed=seed)
                out.append(
                    paired_row(
                        d,
                        table=f"paired_{kind}",
                        run=run_a,
                        versus=run_b,
                        **dict(zip(within, key, strict=False)),
                        group_by="",
                        group="",
                        metric=metric,
                        seed=seed,
                        n_resamples=n_resamples,
                    )
                )
    return out


def paired_row(d: PairedDifference, **fields: Any) -> dict[str, Any]:
    """The aggregate row of a paired difference (bootstrap CI and sign-flip p over images)."""
    return aggregate_row(
        ci_method="bootstrap",
        n=d.n,
        n_dropped=d.n_dropped,
        estimate=d.estimate,
        ci_low=d.ci_low,
        ci_high=d.ci_high,
        p_value=d.p_value,
        **fields,
    )


def confidence_correlations(
    rows: Sequence[Row],
    metrics: Sequence[str],
    *,
    by: Sequence[str] = ("run", "structure", "reviewer"),
    x: str = "confidence",
    seed: int = 0,
    n_resamples: int = 1000,
    ci: float = 0.95,
) -> list[dict[str, Any]]:
    """Spearman's rho between ``x`` (the model's confidence) and each metric, with CI.

    Groups with fewer than ``MIN_CORRELATION_N`` complete pairs get no rho (n is still given).
    """
    out: list[dict[str, Any]] = []
    for key, members in group_rows(rows, by).items():
        xs = [r.get(x) for r in members]
        for metric in metrics:
            c = spearman(
                xs, [r.get(metric) for r in members], n_resamples=n_resamples, ci=ci, seed=seed
            )
            few = c.n < MIN_CORRELATION_N
            out.append(
                aggregate_row(
                    table="spearman_confidence",
                    **dict(zip(by, key, strict=False)),
                    versus=x,
                    group_by="",
                    group="",
                    metric=metric,
                    ci_method="bootstrap",
                    n=c.n,
                    n_dropped=c.n_dropped,
                    estimate=None if few else c.rho,
                    ci_low=None if few else c.ci_low,
                    ci_high=None if few else c.ci_high,
                    seed=seed,
                    n_resamples=n_resamples,
                )
            )
    return out


def count_table(
    rows: Iterable[Row], by: Sequence[str], group_by: str, table: str
) -> list[dict[str, Any]]:
    """How many rows per ``by`` key and ``group_by`` value (e.g. verdicts per run)."""
    out: list[dict[str, Any]] = []
    for key, members in group_rows(rows, [*by, group_by], order=_text_order).items():
        out.append(
            aggregate_row(
                table=table,
                **dict(zip(by, key, strict=False)),
                group_by=group_by,
                group=key[-1],
                metric="count",
                n=len(members),
                estimate=float(len(members)),
            )
        )
    return out


def _text_order(key: tuple) -> tuple:
    return tuple((v is None, str(v)) for v in key)


def _order_value(value: Any, higher_is_better: bool) -> float:
    """Sort key putting the worst localization first and missing values last."""
    if value is None or not math.isfinite(float(value)):
        return math.inf
    return float(value) if higher_is_better else -float(value)


def gallery_pick(
    values: Sequence[float | None], cap: int, seed: int = 0, higher_is_better: bool = True
) -> tuple[list[int], str]:
    """Indices of the tiles to show, worst localized first, and a sentence saying how.

    Up to ``cap`` items are all shown. Beyond it the ceil(cap / 2) worst are always shown (those
    are the ones a clinician must see) and the other places are drawn without replacement from
    the rest with ``numpy.random.default_rng(seed)``, so the gallery also shows what is typical.
    Missing scores sort last; equal scores keep their input order.
    """
    n = len(values)
    order = sorted(range(n), key=lambda i: (_order_value(values[i], higher_is_better), i))
    if cap <= 0:
        return [], f"gallery disabled (cap {cap}); {n} items in the tables"
    if n <= cap:
        return order, f"all {n} shown (cap {cap}), worst localized first"
    worst = (cap + 1) // 2
    rest = order[worst:]
    rng = np.random.default_rng(seed)
    drawn = rng.choice(len(rest), size=cap - worst, replace=False)
    position = {i: p for p, i in enumerate(order)}
    chosen = sorted(order[:worst] + [rest[int(k)] for k in drawn], key=position.__getitem__)
    note = (
        f"{cap} of {n} shown (cap {cap}): the {worst} worst localized, plus {cap - worst} drawn "
        f"at random (seed {seed}) from the other {n - worst}; worst first"
    )
    return chosen, note
