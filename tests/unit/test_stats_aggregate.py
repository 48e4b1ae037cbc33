"""Heatmap similarity, resampling, grouped summaries, grouping
helpers; metrics on real masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.metrics import mask_agreement, scaled_tolerance, score_heatmap
from fundus_review.core.score_tables import grouped_summaries
from fundus_review.core.similarity import (
    confidence_band,
    heatmap_rank_correlation,
    heatmap_top_overlap,
    prediction_outcome,
    resample_heatmap,
)
from fundus_review.core.stats import summarize
from fundus_review.store.codec import encode_heatmap


def _blob(shape: tuple[int, int], cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


# -- heatmap similarity ----------------------------------------------------------------------


def test_rank_correlation_known_cases() -> None:
    h = _blob((40, 50), 10, 30, 8)
    assert heatmap_rank_correlation(h, h) == pytest.approx(1.0)
    assert heatmap_rank_correlation(h, np.sqrt(h) * 3) == pytest.approx(1.0)
    assert heatmap_rank_correlation(h, 1.0 - h) == pytest.approx(-1.0)
    assert heatmap_rank_correlation(h, np.full_like(h, 0.2)) is None
    far = _blob((40, 50), 35, 5, 8)
    assert heatmap_rank_correlation(h, far) < 0


def test_rank_correlation_subsample_is_deterministic_and_close() -> None:
    rng = np.random.default_rng(0)
    a = _blob((120, 150), 40, 60, 30)
    b = a + rng.normal(0, 0.2, a.shape)
    fov = np.ones(a.shape, bool)
    fov[:, :10] = False
    full = heatmap_rank_correlation(a, b, fov)
    sub = heatmap_rank_correlation(a, b, fov, max_pixels=5000)
    assert sub == heatmap_rank_correlation(a, b, fov, max_pixels=5000)
    assert sub != full and sub == pytest.approx(full, abs=0.03)
    with pytest.raises(MetricInputError, match="same grid|one grid"):
        heatmap_rank_correlation(a, b[:10])


def test_top_overlap_identical_and_disjoint() -> None:
    a = _blob((30, 30), 5, 5, 3)
    assert heatmap_top_overlap(a, a) == 1.0
    assert heatmap_top_overlap(a, _blob((30, 30), 25, 25, 3), top_percent=5) == 0.0


# -- resampling -----------------------------------------------------------------------------


def test_resample_area_bilinear_nearest_by_hand() -> None:
    h = np.arange(16, dtype=float).reshape(4, 4)
    assert resample_heatmap(h, (2, 2), "area").tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert resample_heatmap(np.array([[0.0, 3.0, 6.0]]), (1, 2), "area").tolist() == [[1.0, 5.0]]
    up = resample_heatmap(np.array([[0.0, 1.0]]), (1, 4), "bilinear")
    assert up.tolist() == [[0.0, 0.25, 0.75, 1.0]]
    assert resample_heatmap(np.array([[0.0, 1.0]]), (2, 4), "nearest").tolist() == [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
    ]
    assert np.array_equal(resample_heatmap(h, (4, 4)), h)
    with pytest.raises(MetricInputError, match="resampling"):
        resample_heatmap(h, (2, 2), "cubic")


def test_area_resampling_keeps_the_mean_for_any_factor() -> None:
    h = np.random.default_rng(2).random((37, 53))
    assert resample_heatmap(h, (10, 7), "area").mean() == pytest.approx(h.mean())


def test_a_nan_heatmap_is_never_stored() -> None:
    # so no NaN reaches a mean map (the registered means: tests/unit/test_mean_maps_*.py)
    bad = np.zeros((4, 4))
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        encode_heatmap(bad)


# -- grouping helpers -------------------------------------------------------------------------


def test_confidence_band_edges_go_up() -> None:
    assert [confidence_band(c) for c in (0.2, 0.5, 0.79, 0.8, 1.0)] == [
        "< 0.5",
        "0.5-0.8",
        "0.5-0.8",
        ">= 0.8",
        ">= 0.8",
    ]
    assert confidence_band(0.95, thresholds=[0.9]) == ">= 0.9"
    assert confidence_band(None) == "unknown"


def test_prediction_outcome_names_false_positives_and_negatives() -> None:
    assert prediction_outcome("glaucoma", "glaucoma", "normal") == "correct"
    assert prediction_outcome("normal", "glaucoma", "normal") == "false positive"
    assert prediction_outcome("glaucoma", "normal", "normal") == "false negative"
    assert prediction_outcome("dr", "glaucoma", "normal") == "misclassified"
    assert prediction_outcome("normal", "glaucoma") == "misclassified"
    assert prediction_outcome(None, "glaucoma") == "unlabeled"


def test_grouped_summaries_group_drop_missing_and_keep_order() -> None:
    # The report's grouped summaries: groups in the order their first row appears (the report
    # sorts its rows), values within a group by group_order, else as text.
    rows = [
        {"cls": "normal", "ok": True, "iou": 0.2, "confidence": 0.3},
        {"cls": "glaucoma", "ok": True, "iou": 0.6, "confidence": 0.9},
        {"cls": "glaucoma", "ok": False, "iou": None, "confidence": 0.6},
        {"cls": "glaucoma", "ok": True, "iou": 0.8, "confidence": 0.95},
        {"cls": None, "ok": True, "iou": 0.5, "confidence": 0.85},
    ]
    by_class = grouped_summaries(rows, ["iou"], table="t", by=("cls",), n_resamples=200)
    assert [g["cls"] for g in by_class] == ["normal", "glaucoma", None]
    g = by_class[1]
    assert (g["n"], g["n_dropped"], g["estimate"]) == (2, 1, pytest.approx(0.7))
    two = grouped_summaries(rows, ["iou"], table="t", by=("cls",), group_by="ok", n_resamples=200)
    assert [(t["cls"], t["group"]) for t in two][1:3] == [("glaucoma", False), ("glaucoma", True)]
    assert two[1]["n"] == 0 and two[1]["estimate"] is None
    for r in rows:  # grouping by a function of the row: the report stores it as a column
        r["band"] = confidence_band(r["confidence"], thresholds=[0.8])
    banded = grouped_summaries(
        rows, ["iou"], table="t", by=(), group_by="band", group_order=["< 0.8", ">= 0.8"]
    )
    assert [(b["group"], b["n"]) for b in banded] == [("< 0.8", 1), (">= 0.8", 3)]


# -- real expert masks --------------------------------------------------------------------------


def _load_mask(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) > 127


def test_metrics_on_a_real_optic_disc_mask(shared_data: Path) -> None:
    disc = _load_mask(shared_data / "idrid_seg/masks/optic_disc/IDRiD_01.png")
    rows, cols = np.nonzero(disc)
    cy, cx = rows.mean(), cols.mean()
    radius = np.sqrt(disc.sum() / np.pi)
    tol = scaled_tolerance(*disc.shape)
    on = score_heatmap(_blob(disc.shape, cy, cx, radius), disc, None, tolerance_px=tol)
    assert on["pointing_hit"] == 1.0 and on["pixel_auc"] > 0.99
    assert on["energy_in_mask"] > 5 * on["mask_area_fraction"]
    assert on["iou_area_match"] > 0.8
    off_cx = disc.shape[1] - cx
    off = score_heatmap(_blob(disc.shape, cy, off_cx, radius), disc, None, tolerance_px=tol)
    assert off["pointing_hit"] == 0.0 and off["pixel_auc"] < 0.5
    assert off["pointing_distance_px"] == pytest.approx(abs(cx - off_cx) - radius, rel=0.1)
    assert off["iou_otsu"] == 0.0


def test_reviewer_agreement_on_real_cup_and_disc(shared_data: Path) -> None:
    root = shared_data / "drishti_gs1_train/masks"
    disc = _load_mask(root / "optic_disc/drishtiGS_002.png")
    cup = _load_mask(root / "optic_cup/drishtiGS_002.png")
    assert not (cup & ~disc).any()  # the cup lies inside the disc
    agree = mask_agreement(cup, disc)
    assert agree["iou"] == pytest.approx(cup.sum() / disc.sum())
    shifted = np.roll(disc, 3, axis=1)
    assert 0.8 < mask_agreement(disc, shifted)["dice"] < 1.0
    summary = summarize([agree["iou"], agree["iou"]])
    assert summary.n == 2
