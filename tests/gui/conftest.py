"""A tiny labelled fundus-like dataset with disc masks and a tiny random-weight model bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["glaucoma", "normal"]


def fundus_like(
    h: int, w: int, disc_xy: tuple[int, int], disc_r: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """An orange disc (the retina) on black with a bright optic disc; returns (rgb, disc mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    retina = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 <= (0.45 * min(h, w) * 1.3) ** 2
    disc = (xx - disc_xy[0]) ** 2 + (yy - disc_xy[1]) ** 2 <= disc_r**2
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[retina] = (180, 80, 30)
    rgb[disc & retina] = (250, 220, 150)
    rgb = np.clip(rgb.astype(int) + rng.integers(-10, 10, rgb.shape) * retina[..., None], 0, 255)
    return rgb.astype(np.uint8), disc & retina


@pytest.fixture(scope="session")
def gui_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gui_data")
    k = 0
    for label in CLASSES:
        (root / label).mkdir()
        for i in range(3):
            rgb, disc = fundus_like(96, 128, (40 + 15 * i, 48), 10 + 3 * i, seed=k)
            stem = f"{label}_{i}"
            Image.fromarray(rgb).save(root / label / f"{stem}.png")
            mdir = root / "masks" / "optic_disc"
            mdir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(disc.astype(np.uint8) * 255).save(mdir / f"{stem}.png")
            k += 1
    return root


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    import timm
    import torch

    from fundus_review.inference.bundle import ModelCard, write_bundle

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=len(CLASSES))
    card = ModelCard(
        name="tiny",
        architecture="timm:resnet18",
        classes=list(CLASSES),
        input_size=(64, 64),
        resize="resize",
        target_layers=["layer4"],
    )
    return write_bundle(tmp_path_factory.mktemp("bundle") / "tiny", card, model.state_dict()).path


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """Caches and default database inside tmp_path: tests never touch the user's files."""
    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FUNDUS_REVIEW_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture(scope="session")
def analyzed_db(tmp_path_factory, gui_dataset, tiny_bundle) -> Path:
    """A database where gradcam and eigencam ran over the dataset and were scored (made once)."""
    from fundus_review.app.analyze import AnalysisRequest, run_analysis
    from fundus_review.app.scoring import score_database
    from fundus_review.app.selection import ResultSelection
    from fundus_review.store.db import open_database

    work = tmp_path_factory.mktemp("analyzed")
    db_path = work / "analyzed.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNDUS_REVIEW_CACHE", str(work / "cache"))
        req = AnalysisRequest(
            dataset=gui_dataset, bundle=tiny_bundle, methods=["gradcam", "eigencam"], db=db_path
        )
        events = list(run_analysis(req))
        db = open_database(db_path)
        summary = score_database(db, ResultSelection(dataset=events[-1].dataset_id))
        db.close()
    assert events[-1].computed == 6 and summary.scored > 0 and not summary.problems
    return db_path


@pytest.fixture
def db_copy(analyzed_db, tmp_path) -> Path:
    """A private copy of the analyzed database (tests may add runs and scores to it)."""
    import shutil

    dest = tmp_path / "copy.db"
    shutil.copy(analyzed_db, dest)
    return dest


def open_window(qtbot, db, dataset, bundle, settings):
    """A shown MainWindow with all 6 rows listed, their files read (masks imported) and the
    first photo loaded."""
    from fundus_review.gui.main_window import MainWindow

    win = MainWindow(db=db, dataset=dataset, model=bundle, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.browser.model.rowCount() == 6, timeout=30_000)
    qtbot.waitUntil(lambda: win.photo is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not win._registering, timeout=30_000)
    # ... and what the end of the registration started (rows, overlays with the imported masks).
    qtbot.waitUntil(lambda: win.tasks.pool.activeThreadCount() == 0, timeout=30_000)
    return win
