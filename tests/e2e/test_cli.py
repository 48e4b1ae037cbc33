"""The command line as a user types it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fundus_review.cli.main import main
from fundus_review.inference.bundle import ModelCard, write_bundle
from tests.conftest import REPO_ROOT
from tests.unit.cam_models import RedSpotNet


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    card = ModelCard(
        name="red-spot",
        architecture="tests.unit.cam_models:red_spot_net",
        classes=["red", "not_red"],
        input_size=(64, 64),
        target_layers=["features"],
    )
    return write_bundle(tmp_path / "bundle", card, RedSpotNet().state_dict()).path


def _dataset(folder: Path, n: int, size: int = 48) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        PILImage.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            folder / f"im{i:03d}.png"
        )
    return folder


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db, timeout=0.5)  # a short wait: the poll below must not stall
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in (
        "analyze",
        "import-masks",
        "model",
        "demo-data",
        "train",
        "score",
        "report",
        "export",
        "import-labelme",
        "demo",
        "gui",
    ):
        assert command in out


def test_model_inspect_prints_card_parameters_and_layers(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", "inspect", str(bundle), "--trust-code"]) == 0
    out = capsys.readouterr().out
    assert "tests.unit.cam_models:red_spot_net" in out
    assert "red" in out and "not_red" in out
    assert "features" in out  # a candidate target layer with its output shape
    assert "(1, 64, 64)" in out or "1x64x64" in out or "[1, 64, 64]" in out


def test_bad_bundle_is_a_clear_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dataset(tmp_path / "d", 1)
    (tmp_path / "nobundle").mkdir()
    code = main(["analyze", str(data), "--model", str(tmp_path / "nobundle"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nobundle" in err and "model.toml" in err


def test_analyze_then_import_masks(
    tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dataset(tmp_path / "d", 3)
    db = tmp_path / "x.db"
    args = ["analyze", str(data), "--model", str(bundle), "--method", "gradcam,layercam"]
    args += ["--trust-code"]  # the bundle's architecture is this suite's own module
    assert main([*args, "--db", str(db), "--quiet"]) == 0
    assert "3 analyzed, 0 reused" in capsys.readouterr().out
    assert _count(db, "heatmaps") == 6
    assert main([*args, "--db", str(db), "--quiet"]) == 0
    assert "0 analyzed, 3 reused" in capsys.readouterr().out

    masks = tmp_path / "masks" / "optic_disc"
    masks.mkdir(parents=True)
    mask = np.zeros((48, 48), np.uint8)
    mask[10:20, 10:20] = 255
    PILImage.fromarray(mask).save(masks / "im001.png")
    PILImage.fromarray(mask).save(masks / "unknown.png")
    code = main(
        ["import-masks", str(data), str(tmp_path / "masks"), "--reviewer", "dr_a", "--db", str(db)]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "Imported 1 masks" in captured.out and "'dr_a'" in captured.out
    assert "unknown" in captured.err
    assert _count(db, "annotations") == 1


def test_ctrl_c_stops_cleanly_and_keeps_finished_batches(tmp_path: Path, bundle: Path) -> None:
    data = _dataset(tmp_path / "d", 400, size=160)
    db = tmp_path / "sig.db"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "fundus_review", "analyze", str(data), "--model", str(bundle)]
    cmd += ["--db", str(db), "--batch-size", "2", "--quiet", "--trust-code"]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As in a terminal: a shell without job control (`... &`, some CI runners) starts its
        # children with SIGINT ignored, and Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if db.exists() and _count(db, "heatmaps") >= 2:
                break
        except sqlite3.OperationalError:
            pass  # the schema is being created
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by Ctrl-C" in err and "Traceback" not in err
    kept = _count(db, "heatmaps")
    assert 2 <= kept < 400
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # every stored heatmap has its prediction: batches are all-or-nothing
        orphan = conn.execute(
            "SELECT count(*) FROM heatmaps h LEFT JOIN predictions p "
            "ON p.image_id = h.image_id WHERE p.id IS NULL"
        ).fetchone()[0]
        assert orphan == 0
