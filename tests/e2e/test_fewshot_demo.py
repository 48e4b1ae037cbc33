"""The shipped few-shot demo bundle (models/demo-fewshot) analysed end to end as a user would:
`model inspect`, `analyze` (predictions and heatmaps stored), `report` (scores against the
hemorrhage masks), on fresh synthetic images it never saw (training used seed 11)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from fundus_review.cli.main import main
from fundus_review.data.synthetic import write_demo_dataset
from fundus_review.paths import shipped_models_dir

pytestmark = [pytest.mark.slow, pytest.mark.torch]
BUNDLE = shipped_models_dir() / "demo-fewshot"
MAX_BUNDLE_BYTES = 10 * 1024**2


def test_shipped_bundle_is_small_and_inspectable(capsys: pytest.CaptureFixture[str]) -> None:
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert size < MAX_BUNDLE_BYTES
    assert main(["model", "inspect", str(BUNDLE)]) == 0  # built in: no --trust-code needed
    out = capsys.readouterr().out
    assert "fewshot:protonet" in out
    assert "Forward:       support set support: 10 images (absent 5, present 5)" in out
    assert "backbone.blocks.4" in out  # the backbone's candidate layers inside the wrapper


def test_fewshot_demo_analysed_end_to_end(tmp_path: Path) -> None:
    data = write_demo_dataset(tmp_path / "data", n=8, seed=31)
    db = tmp_path / "fs.db"
    args = ["analyze", str(data), "--model", str(BUNDLE), "--method", "gradcam,hirescam",
            "--label-column", "hemorrhage", "--db", str(db), "--quiet"]  # fmt: skip
    assert main(args) == 0
    with sqlite3.connect(db) as conn:
        probs = [row[0] for row in conn.execute("SELECT probs FROM predictions")]
        n_heat = conn.execute("SELECT count(*) FROM heatmaps").fetchone()[0]
    assert len(probs) == 8 and n_heat == 16
    for p in probs:  # a softmax over the two prototypes
        assert abs(sum(json.loads(p)) - 1.0) < 1e-5
    out = tmp_path / "report"
    assert main(["report", "--db", str(db), "--out", str(out), "--structure", "hemorrhage",
                 "--quiet"]) == 0  # fmt: skip
    assert (out / "report.html").is_file() and (out / "report.pdf").is_file()
    with open(out / "scores.csv", newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["structure"] == "hemorrhage" and r["model"] == "demo-fewshot"
        ]
    # Every image with a hemorrhage mask is scored for both methods (the baselines come too).
    with open(data / "labels.csv", newline="") as fh:
        with_lesions = sum(r["hemorrhage"] == "present" for r in csv.DictReader(fh))
    assert len(rows) == 2 * with_lesions > 0
    assert {r["method"] for r in rows} == {"gradcam", "hirescam"}
    assert all(r["pointing_hit"] in ("0.0", "1.0") for r in rows)
    assert all(r["outcome"] in ("correct", "false negative", "misclassified") for r in rows)
    assert {r["true_class"] for r in rows} == {"present"}
    assert "demo-fewshot" in (out / "report.html").read_text(encoding="utf-8")
