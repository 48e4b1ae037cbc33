"""A small analysis and scoring run on PostgreSQL stores what the same run stores in SQLite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fundus_review.app.analyze import AnalysisRequest
from fundus_review.app.scoring import score_database
from fundus_review.data.fov import FovCache
from fundus_review.store import Database, open_database, repo
from fundus_review.store.schema import Heatmap, Image, Prediction, Score
from tests.unit.test_analysis import _finished, _red_spot_bundle, _run, _spot_image


@pytest.fixture(autouse=True)
def _trust_test_models() -> None:
    # As in tests/unit/test_analysis.py: the suite's own model module, allowed per test.
    from fundus_review.inference.trust import grant

    grant("tests.unit.cam_models")


def _stored(db: Database) -> dict[str, tuple[np.ndarray, np.ndarray, dict[str, float | None]]]:
    """Per image file: its class probabilities, its heatmap, and its scores by metric."""
    out = {}
    with db.session(read_only=True) as s:
        for img in s.query(Image).all():
            pred = s.query(Prediction).filter_by(image_id=img.id).one()
            hm = s.query(Heatmap).filter_by(image_id=img.id).one()
            scores = {sc.metric: sc.value for sc in s.query(Score).filter_by(heatmap_id=hm.id)}
            out[img.rel_path] = (np.asarray(pred.probs), repo.heatmap_array(hm), scores)
    return out


def _analyse_and_score(data: Path, bundle: Path, url: str | Path, tmp: Path) -> Database:
    req = AnalysisRequest(data, bundle, ["gradcam"], url, batch_size=3)
    first = _finished(_run(req))
    assert (first.computed, first.reused) == (5, 0)
    again = _finished(_run(req))
    assert (again.computed, again.reused) == (0, 5)  # resume/reuse works on the server too
    db = open_database(url)
    with db.session() as s:
        img = s.query(Image).filter_by(rel_path="img2.png").one()
        mask = np.zeros((img.height, img.width), bool)
        mask[12:22, 22:34] = True  # a box around the red spot at (16, 28)
        expert = repo.get_or_create_reviewer(s, "Dr. Rao")
        repo.add_annotation(s, img, expert, "hemorrhage", "mask", mask=mask)
    score_database(db, fov_cache=FovCache(tmp / "fov"))
    return db


@pytest.mark.slow
def test_analysis_and_scores_on_postgresql_equal_sqlite(pg_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        _spot_image(data / f"img{i}.png", 48, 64, 10 + 3 * i, 20 + 4 * i)
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    with (
        _analyse_and_score(data, bundle, pg_url, tmp_path) as pg,
        _analyse_and_score(data, bundle, tmp_path / "lite.db", tmp_path) as lite,
    ):
        on_pg, on_lite = _stored(pg), _stored(lite)
    assert sorted(on_pg) == [f"img{i}.png" for i in range(5)]
    assert on_pg.keys() == on_lite.keys()
    for name, (probs, heat, scores) in on_pg.items():
        np.testing.assert_allclose(probs, on_lite[name][0], atol=1e-6)
        np.testing.assert_array_equal(heat, on_lite[name][1])
        assert scores == pytest.approx(on_lite[name][2], nan_ok=True)
        assert (len(scores) > 0) == (name == "img2.png")  # only the annotated image is scored
    spot = on_pg["img2.png"][2]  # the expert box holds the red spot the model looks at
    assert spot["mask_area_fraction"] == pytest.approx(10 * 12 / (48 * 64))
    assert spot["pointing_hit"] == 1.0 and spot["energy_in_mask"] == pytest.approx(1.0)
