"""`fundus-review trust` end to end on the shipped honest demo model and a few demo images:
baselines, randomisation test and ROAD are stored, reused on a second call, and the report's
first page and report.json say the verdicts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fundus_review.cli.main import main
from fundus_review.data.synthetic import write_demo_dataset
from fundus_review.paths import shipped_models_dir

pytestmark = pytest.mark.slow


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("trust")
    data = write_demo_dataset(tmp / "data", n=4, seed=3, size=(256, 256), confounder=True)
    db = tmp / "t.db"
    bundle = shipped_models_dir() / "demo-cdr"
    common = ["--db", str(db), "--quiet"]
    assert main(["analyze", str(data), "--model", str(bundle), "--method", "gradcam", *common]) == 0
    args = ["trust", "--model", str(bundle), "--sample", "3", *common]
    assert main(args) == 0
    return {"db": db, "args": args, "tmp": tmp}


def test_every_check_is_stored(checked: dict) -> None:
    db = checked["db"]
    names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM models")}
    assert "baseline" in names
    stages = {n.split("[randomized: ")[1].rstrip("]") for n in names if "[randomized" in n}
    assert stages == {"head", "last-block", "half", "all"}
    # Randomised maps of the 3 sampled images per stage, scored like every run.
    rand = (
        "FROM heatmaps h JOIN cam_runs r ON r.id = h.cam_run_id JOIN models m ON m.id = "
        "r.model_id WHERE m.name LIKE '%randomized%'"
    )
    assert _count(db, f"SELECT count(*) {rand}") == 4 * 3
    assert _count(db, f"SELECT count(*) FROM scores WHERE heatmap_id IN (SELECT h.id {rand})") > 0
    # ROAD of the run and of the random and centre maps on the same 3 images.
    assert _count(db, "SELECT count(DISTINCT heatmap_id) FROM faithfulness") == 3
    metrics = {r[0] for r in sqlite3.connect(db).execute("SELECT metric FROM faithfulness")}
    assert {"road_combined", "baseline_random:road_combined"} <= metrics


def test_a_second_call_recomputes_nothing(checked: dict, capsys) -> None:
    db = checked["db"]
    before = (
        _count(db, "SELECT count(*) FROM faithfulness"),
        _count(db, "SELECT count(*) FROM heatmaps"),
    )
    capsys.readouterr()
    assert main(checked["args"]) == 0
    out = capsys.readouterr()
    assert "0 maps computed" in out.err
    after = (
        _count(db, "SELECT count(*) FROM faithfulness"),
        _count(db, "SELECT count(*) FROM heatmaps"),
    )
    assert after == before
    assert "randomisation test" in out.out and "faithfulness" in out.out


def test_the_report_states_the_verdicts_on_its_first_page(checked: dict) -> None:
    out = checked["tmp"] / "report"
    assert main(["report", "--db", str(checked["db"]), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "report.json").read_text())
    verdicts = doc["trust"]["randomization_verdicts"]
    assert [v["result"] for v in verdicts] in (["passed"], ["failed"])
    assert doc["trust"]["faithfulness"][0]["verdict"] in ("passed", "failed")
    text = " ".join(doc["headline"])
    assert "Randomisation test: " + verdicts[0]["result"] in text
    assert "Faithfulness (ROAD): " in text and "best baseline" in text
    # Randomised models never appear as runs of the report's tables.
    assert not [r for r in doc["runs"] if "randomized" in r["model"]]

    from pypdf import PdfReader

    first = PdfReader(out / "report.pdf").pages[0].extract_text()
    assert "At a glance" in first and "Hit rate on optic_disc" in first
    assert "Randomisation test: " + verdicts[0]["result"] in " ".join(first.split())
    assert "Contents" not in first  # the contents follow the headline page


def test_trust_without_a_model_runs_only_what_needs_none(checked: dict, capsys) -> None:
    db = checked["db"]
    assert main(["trust", "--db", str(db), "--quiet"]) == 2
    assert "--model is needed" in capsys.readouterr().err
    assert main(["trust", "--db", str(db), "--checks", "baselines", "--quiet"]) == 0
    assert main(["trust", "--db", str(db), "--checks", "nonsense", "--quiet"]) == 2
