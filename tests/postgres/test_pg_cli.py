"""The command line with ``--db postgresql+psycopg://...``: analyze, import-masks, report."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import create_engine, text

from fundus_review.cli.main import main
from tests.e2e.test_cli import _dataset, bundle  # noqa: F401 - bundle is a fixture


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.torch  # runs a model (the folder rule in tests/conftest.py cannot see it)
def test_analyze_import_masks_and_report_against_a_server(
    pg_url: str,
    tmp_path: Path,
    bundle: Path,  # noqa: F811 - the imported fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _dataset(tmp_path / "d", 3)
    args = ["analyze", str(data), "--model", str(bundle), "--method", "gradcam,layercam"]
    args += ["--trust-code", "--db", pg_url, "--quiet"]  # the bundle is this suite's own module
    assert main(args) == 0
    assert "3 analyzed, 0 reused" in capsys.readouterr().out
    assert _count(pg_url, "heatmaps") == 6
    assert main(args) == 0
    assert "0 analyzed, 3 reused" in capsys.readouterr().out

    masks = tmp_path / "masks" / "optic_disc"
    masks.mkdir(parents=True)
    mask = np.zeros((48, 48), np.uint8)
    mask[10:20, 10:20] = 255
    PILImage.fromarray(mask).save(masks / "im001.png")
    importing = ["import-masks", str(data), str(tmp_path / "masks"), "--reviewer", "dr_a"]
    assert main([*importing, "--db", pg_url]) == 0
    assert _count(pg_url, "annotations") == 1

    out = tmp_path / "report"
    assert main(["report", "--db", pg_url, "--out", str(out), "--quiet"]) == 0
    with (out / "scores.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["run_kind"] == "model"]
    assert sorted(r["method"] for r in rows) == ["gradcam", "layercam"]
    for r in rows:  # the 10 x 10 expert square on a 48 x 48 image, read back from the server
        assert (r["image"], r["structure"], r["reviewer"]) == ("im001.png", "optic_disc", "dr_a")
        assert float(r["mask_area_fraction"]) == pytest.approx(100 / (48 * 48))
    assert {"report.html", "report.json"} <= {p.name for p in out.iterdir()}
