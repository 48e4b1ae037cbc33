"""`fundus-review demo`: the demo set is written once into the chosen home, both shipped models
run with GradCAM and HiResCAM, the masks are imported and scored, and a re-run reuses everything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fundus_review.cli import demo as cli_demo
from fundus_review.cli.main import main
from fundus_review.data.synthetic import demo_dataset_info
from fundus_review.errors import BundleError, DatasetError


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


def test_demo_paths_live_under_the_home(tmp_path: Path) -> None:
    data, db, report = cli_demo.demo_paths(tmp_path)
    assert (data, db, report) == (
        tmp_path / "demo" / "data",
        tmp_path / "demo" / "demo.db",
        tmp_path / "demo" / "report",
    )


def test_demo_set_is_written_once_with_an_agreeing_marker(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    assert cli_demo.ensure_demo_data(folder, n=4) is True
    info = demo_dataset_info(folder)
    assert info is not None
    assert (info["n"], info["seed"], info["size"]) == (4, cli_demo.DEMO_SEED, [512, 512])
    assert info["confounder"] is True and info["confounder_strength"] == 1.0
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert cli_demo.ensure_demo_data(folder, n=10) is False  # an existing set is kept as is
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before


REAL = "m.name != 'baseline'"
BY_MODEL = "JOIN models m ON m.id = p.model_id"
HEATMAPS = (
    "SELECT count(*) FROM heatmaps h JOIN cam_runs r ON r.id = h.cam_run_id "
    "JOIN models m ON m.id = r.model_id WHERE "
)


def test_demo_runs_both_models_scores_and_reuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli_demo.run_demo(n=4, home=tmp_path, quiet=True, report=False, trust_sample=0)
    db = result.db
    assert result.generated and db.is_file()
    assert _count(db, "SELECT count(*) FROM images") == 4
    assert _count(db, f"SELECT count(*) FROM models m WHERE {REAL}") == 2
    assert _count(db, f"SELECT count(*) FROM predictions p {BY_MODEL} WHERE {REAL}") == 2 * 4
    assert _count(db, HEATMAPS + REAL) == 2 * 2 * 4  # models x methods x images
    # The baselines: 4 fixed maps per image and a leave-one-out mean map per run and image.
    assert _count(db, HEATMAPS + "NOT " + REAL) == 4 * 4 + 4 * 4
    # exact masks of disc, cup and marker (lesions on some images) were imported and scored
    assert _count(db, "SELECT count(DISTINCT structure) FROM annotations") >= 3
    assert _count(db, "SELECT count(*) FROM scores") > 0
    capsys.readouterr()

    again = cli_demo.run_demo(n=4, home=tmp_path, quiet=True, report=False, trust_sample=0)
    assert not again.generated
    assert _count(db, HEATMAPS + REAL) == 2 * 2 * 4
    assert "0 analyzed, 4 reused" in capsys.readouterr().out


def test_too_few_images_and_missing_bundles_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["demo", "--no-gui", "--n", "1", "--home", str(tmp_path)]) == 2
    with pytest.raises(DatasetError, match="at least 2"):
        cli_demo.run_demo(n=1, home=tmp_path)
    monkeypatch.setattr(cli_demo, "shipped_models_dir", lambda: tmp_path / "nowhere")
    with pytest.raises(BundleError, match="demo-cdr"):
        cli_demo.run_demo(n=4, home=tmp_path)
    assert not (tmp_path / "demo").exists()  # nothing written before the check


def test_no_gui_prints_the_pointing_summary_and_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import fundus_review.report as report

    def broken(db: object, out: object, **_: object) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report, "write_report", broken)
    # --trust-sample 0: the costly trust checks are tested in test_trust_cli.
    args = ["demo", "--no-gui", "--n", "4", "--home", str(tmp_path), "--quiet"]
    args += ["--trust-sample", "0"]
    assert main(args) == 1  # the analyses are kept; the failed report is said, not hidden
    captured = capsys.readouterr()
    db = tmp_path / "demo" / "demo.db"
    assert "report could not be written (RuntimeError: plotting failed)" in captured.err
    assert f"database:     {db}" in captured.out
    lines = [ln.split() for ln in captured.out.splitlines() if ln.startswith("  demo-cdr")]
    assert {(ln[0], ln[1]) for ln in lines} == {
        (m, k) for m in cli_demo.DEMO_MODELS for k in cli_demo.DEMO_METHODS
    }
    assert all(ln[-3:] == ["of", "4", "images"] for ln in lines)
    # The printed rates are the stored pointing-game scores.
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT avg(s.value) FROM scores s JOIN heatmaps h ON h.id = s.heatmap_id "
            "JOIN cam_runs r ON r.id = h.cam_run_id JOIN models m ON m.id = r.model_id "
            f"WHERE s.structure = 'optic_disc' AND s.metric = 'pointing_hit' AND {REAL}"
        ).fetchone()[0]
    rates = [float(ln[2].rstrip("%")) / 100 for ln in lines]
    assert sum(rates) / len(rates) == pytest.approx(stored, abs=1e-3)

    written: dict[str, Path] = {}

    def fake(db_arg: object, out: Path, **_: object) -> object:
        written["out"] = out
        paths = {k: out / f"report.{k}" for k in ("html", "pdf", "json")}
        return type("R", (), {"paths": {**paths, "csv": out / "scores.csv"}, "problems": []})()

    monkeypatch.setattr(report, "write_report", fake)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert written["out"] == tmp_path / "demo" / "report"
    assert f"report html:  {tmp_path / 'demo' / 'report' / 'report.html'}" in out
