"""Hostile names (image files, reviewers, the model) appear in the HTML report as text only."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.app.analyze import AnalysisRequest, run_analysis
from fundus_review.inference.bundle import ModelCard, write_bundle
from fundus_review.report import ReportRequest, write_report
from fundus_review.store import repo
from fundus_review.store.db import open_database
from tests.reliability.hostile_files import XSS_NAME

REVIEWER = "<script>alert('reviewer')</script>"
MODEL = '<b onmouseover="alert(2)">model</b>'


def _photo(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:64]
    disc = (xx - 20 - 4 * seed) ** 2 + (yy - 24) ** 2 <= 64
    rgb = np.full((48, 64, 3), (170, 80, 30), np.uint8)
    rgb[disc] = (250, 220, 150)
    return np.clip(rgb + rng.integers(0, 15, rgb.shape), 0, 255).astype(np.uint8), disc


@pytest.mark.slow
def test_an_image_named_like_a_tag_is_escaped_in_the_report(tmp_path: Path) -> None:
    import timm
    import torch

    root = tmp_path / "data"
    names = {"glaucoma": [XSS_NAME, "g1.png"], "normal": ["n0.png", "n1.png"]}
    (root / "masks" / "optic_disc").mkdir(parents=True)
    for k, (label, files) in enumerate(names.items()):
        (root / label).mkdir()
        for j, name in enumerate(files):
            rgb, disc = _photo(2 * k + j)
            Image.fromarray(rgb).save(root / label / name, format="PNG")
            mask = root / "masks" / "optic_disc" / f"{Path(name).stem}.png"
            Image.fromarray(disc.astype(np.uint8) * 255).save(mask)
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=2)
    card = ModelCard(
        name=MODEL, architecture="timm:test_resnet", classes=["glaucoma", "normal"],
        input_size=(64, 64), target_layers=["layer3"],
    )  # fmt: skip
    bundle = write_bundle(tmp_path / "bundle", card, model.state_dict()).path
    db = tmp_path / "r.db"
    req = AnalysisRequest(root, bundle, ["gradcam"], db, reviewer=REVIEWER)
    assert list(run_analysis(req))[-1].computed == 4
    with open_database(db) as opened, opened.session() as s:
        assert REVIEWER in [r.name for r in repo.list_reviewers(s)]

    result = write_report(db, ReportRequest(tmp_path / "report", gallery_cap=8))
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    for hostile in (XSS_NAME, REVIEWER, MODEL):
        assert html.escape(hostile) in page, hostile  # shown, as text
    # ... and never as markup: the only tags are the report's own.
    assert "<img src=x" not in page and "<script" not in page and "<b onmouseover" not in page
    assert result.rows >= 4  # every image was scored and listed
