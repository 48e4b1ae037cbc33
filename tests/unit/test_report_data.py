"""core.report_data: grouped summaries, pairing, correlations and the gallery sampling rule."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.core.score_tables import (
    AGGREGATE_FIELDS,
    ci_method_for,
    confidence_correlations,
    count_table,
    gallery_pick,
    grouped_summaries,
    guess_negative_class,
    paired_comparisons,
    paired_values,
)
from fundus_review.core.stats import paired_difference, spearman, summarize


def _rows() -> list[dict]:
    rows = []
    for run, offset in (("A", 0.0), ("B", 0.1)):
        for i, (cls, e, hit) in enumerate(
            [("dr", 0.2, 1.0), ("normal", 0.4, 0.0), ("dr", None, None), ("normal", 0.8, 1.0)]
        ):
            rows.append(
                {
                    "run": run,
                    "image_id": i,
                    "structure": "optic_disc",
                    "reviewer": "ref",
                    "true_class": cls,
                    "confidence": 0.5 + 0.1 * i,
                    "energy_in_mask": None if e is None else e + offset,
                    "pointing_hit": hit,
                }
            )
    return rows


def test_grouped_summaries_use_core_stats_in_row_order() -> None:
    rows = _rows()
    out = grouped_summaries(
        rows, ["energy_in_mask", "pointing_hit"], table="summary", seed=3, n_resamples=1000
    )
    assert [(a["run"], a["metric"]) for a in out] == [
        ("A", "energy_in_mask"),
        ("A", "pointing_hit"),
        ("B", "energy_in_mask"),
        ("B", "pointing_hit"),
    ]
    assert all(list(a) == list(AGGREGATE_FIELDS) for a in out)
    a_energy = out[0]
    assert a_energy["n"] == 3 and a_energy["n_dropped"] == 1
    assert a_energy["estimate"] == pytest.approx((0.2 + 0.4 + 0.8) / 3)
    ref = summarize([0.2, 0.4, None, 0.8], n_resamples=1000, seed=3)
    assert (a_energy["ci_low"], a_energy["ci_high"]) == (ref.ci_low, ref.ci_high)
    hits = out[1]
    assert hits["ci_method"] == "wilson" and hits["estimate"] == pytest.approx(2 / 3)
    assert hits["n_resamples"] == 0  # Wilson's interval draws nothing


def test_group_order_and_unknown_groups() -> None:
    out = grouped_summaries(
        _rows(),
        ["energy_in_mask"],
        table="by_true_class",
        group_by="true_class",
        group_order=["normal"],
        seed=0,
        n_resamples=1000,
    )
    assert [(a["run"], a["group"], a["n"]) for a in out] == [
        ("A", "normal", 2),
        ("A", "dr", 1),
        ("B", "normal", 2),
        ("B", "dr", 1),
    ]
    assert out[0]["estimate"] == pytest.approx(0.6)


def test_paired_values_align_by_image_and_skip_missing_partners() -> None:
    rows = [r for r in _rows() if not (r["run"] == "B" and r["image_id"] == 0)]
    a, b = paired_values(rows, "A", "B", "energy_in_mask")
    assert a == [0.4, None, 0.8]
    assert b == pytest.approx([0.5, None, 0.9])
    (d,) = paired_comparisons(
        rows, ["energy_in_mask"], [("methods", "A", "B")], seed=1, n_resamples=1000
    )
    ref = paired_difference(a, b, n_resamples=1000, seed=1)
    assert d["table"] == "paired_methods" and (d["run"], d["versus"]) == ("A", "B")
    assert d["estimate"] == pytest.approx(-0.1) and d["n"] == 2 and d["n_dropped"] == 1
    assert (d["ci_low"], d["ci_high"], d["p_value"]) == (ref.ci_low, ref.ci_high, ref.p_value)
    assert paired_comparisons(rows, ["energy_in_mask"], [("models", "A", "C")]) == []


def test_confidence_correlations() -> None:
    out = confidence_correlations(_rows(), ["energy_in_mask"], seed=2, n_resamples=1000)
    assert [a["run"] for a in out] == ["A", "B"]
    # confidence 0.5, 0.6, 0.8 against energy 0.2, 0.4, 0.8: same order -> rho = 1
    assert out[0]["estimate"] == pytest.approx(1.0) and out[0]["n"] == 3
    ref = spearman([0.5, 0.6, 0.7, 0.8], [0.2, 0.4, None, 0.8], n_resamples=1000, seed=2)
    assert (out[0]["ci_low"], out[0]["ci_high"]) == (ref.ci_low, ref.ci_high)
    two = [r for r in _rows() if r["image_id"] < 2]
    (few,) = confidence_correlations(two[:2], ["energy_in_mask"], n_resamples=1000)
    assert few["n"] == 2 and few["estimate"] is None  # rho of 2 pairs is always +-1


def test_count_table() -> None:
    rows = [{"run": "A", "verdict": v} for v in ("yes", "no", "yes")]
    out = count_table(rows, ("run",), "verdict", "verdict_counts")
    assert [(a["group"], a["n"]) for a in out] == [("no", 1), ("yes", 2)]


def test_gallery_pick_all_when_under_cap_worst_first() -> None:
    idx, note = gallery_pick([0.5, None, 0.1, 0.3], cap=10)
    assert idx == [2, 3, 0, 1]  # missing last
    assert "all 4 shown" in note
    idx, _ = gallery_pick([5.0, 1.0, 3.0], cap=10, higher_is_better=False)
    assert idx == [0, 2, 1]  # a distance: the largest is the worst


def test_gallery_pick_caps_keeps_the_worst_and_samples_the_rest() -> None:
    values = list(np.linspace(1.0, 0.0, 20))  # index 19 is the worst
    idx, note = gallery_pick(values, cap=6, seed=4)
    assert len(idx) == 6 and len(set(idx)) == 6
    assert idx[:3] == [19, 18, 17]  # ceil(6 / 2) worst always shown, worst first
    assert [values[i] for i in idx] == sorted(values[i] for i in idx)
    assert idx == gallery_pick(values, cap=6, seed=4)[0]  # seeded
    assert any(gallery_pick(values, cap=6, seed=s)[0] != idx for s in range(5, 10))
    assert "6 of 20 shown (cap 6)" in note and "seed 4" in note
    assert gallery_pick(values, cap=0)[0] == []


def test_negative_class_and_ci_method() -> None:
    assert guess_negative_class(["glaucoma", "Normal"]) == "Normal"
    assert guess_negative_class(["0", "1"]) == "0"
    assert guess_negative_class(["cat", "dog"]) is None
    assert ci_method_for("pointing_hit") == "wilson"
    assert ci_method_for("energy_in_mask") == "bootstrap"
