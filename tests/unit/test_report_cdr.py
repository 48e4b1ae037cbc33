"""The report's "Cup-to-disc ratio" section and report.json "cdr", on the analysed test world."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fundus_review.app.selection import ResultSelection
from fundus_review.core.cdr import cup_disc_ratio
from fundus_review.core.stats import spearman
from fundus_review.report import ReportRequest, write_report
from fundus_review.store import open_database, repo
from tests.unit.test_report import SEED, world  # noqa: F401 - the module-scoped fixture

pytestmark = pytest.mark.slow


def _cup_of(disc: np.ndarray, k: int) -> np.ndarray:
    """A cup inside the disc: its upper rows, more of them for larger k (CDR grows with k)."""
    rows = np.flatnonzero(disc.any(axis=1))
    keep = rows[: max(1, len(rows) * (k + 1) // 6)]
    cup = np.zeros_like(disc)
    cup[keep] = disc[keep]
    return cup


def test_section_and_json_hold_hand_computed_ratios(world: dict, tmp_path: Path) -> None:  # noqa: F811
    db_path = tmp_path / "cdr.db"
    shutil.copy(world["db"], db_path)
    masks = world["masks"]
    expected = {}
    with open_database(db_path) as db, db.session() as s:
        ds = repo.list_datasets(s)[0]
        ref = repo.get_or_create_reviewer(s, "reference")
        for k, rel in enumerate(sorted(masks)[:4]):
            cup = _cup_of(masks[rel], k)
            img = repo.get_image(s, ds, rel)
            repo.add_annotation(s, img, ref, "optic_cup", "mask", mask=cup)
            expected[rel] = cup_disc_ratio(masks[rel], cup)
    out = tmp_path / "out"
    # Only the disc is scored; the ratio still uses the cups (it is not a heatmap score).
    req = ReportRequest(
        out, seed=SEED, gallery_cap=1, selection=ResultSelection(structures=["optic_disc"])
    )
    write_report(db_path, req, fov_cache=world["cache"])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    cdr = report["cdr"]
    got = {r["image"]: r for r in cdr["rows"]}
    assert sorted(got) == sorted(expected)
    for rel, ratio in expected.items():
        row = got[rel]
        assert row["reviewer"] == "reference" and row["dataset_cdr"] is None
        assert (row["vertical"], row["horizontal"], row["area"]) == pytest.approx(
            (ratio.vertical, ratio.horizontal, ratio.area)
        )
    assert cdr["between_reviewers"] == [] and cdr["against_dataset"] == []

    # Model confidence vs vertical CDR, recomputed from the report's own per-image rows.
    conf = {r["image_id"]: r["confidence"] for r in report["scores"] if r["run_kind"] == "model"}
    ids = sorted(r["image_id"] for r in cdr["rows"])
    vcdr = {r["image_id"]: r["vertical"] for r in cdr["rows"]}
    want = spearman([conf[i] for i in ids], [vcdr[i] for i in ids], req.n_resamples, seed=SEED)
    (rel_conf,) = [c for c in cdr["model_vs_vertical_cdr"] if c["quantity"] == "confidence"]
    assert rel_conf["model"] == "tiny" and rel_conf["n"] == 4
    assert rel_conf["rho"] == pytest.approx(want.rho)
    assert rel_conf["ci_low"] == pytest.approx(want.ci_low)
    assert any(c["quantity"] == "p(glaucoma)" for c in cdr["model_vs_vertical_cdr"])

    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Cup-to-disc ratio" in html and "Model output vs vertical CDR" in html
    assert html.index("Trust checks") < html.index("Cup-to-disc ratio")


def test_no_cup_no_section(world: dict) -> None:  # noqa: F811
    report = json.loads((world["out"] / "report.json").read_text(encoding="utf-8"))
    assert report["cdr"] is None
    assert "Cup-to-disc ratio" not in (world["out"] / "report.html").read_text(encoding="utf-8")
