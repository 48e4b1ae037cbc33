"""store.repo_faithfulness and migration 0003: faithfulness values per heatmap."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from fundus_review.store import open_database, repo
from fundus_review.store import repo_faithfulness as rf
from fundus_review.store.db import MIGRATIONS_DIR
from fundus_review.store.migrate import migrate_to_head

P = {"measure": "road", "version": 1, "removed": [0.1, 0.5], "seed": 0}


def _heatmaps(s, n: int = 2) -> tuple[int, list[int]]:  # noqa: ANN001
    """A run with n heatmaps (image k: constant k); returns (run id, heatmap ids)."""
    ds = repo.get_or_create_dataset(s, "/data")
    model = repo.get_or_create_model(s, "m", "a", {"classes": ["x"]}, "1" * 64, "m")
    run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
    ids = []
    for k in range(n):
        img = repo.upsert_image(s, ds, f"{k}.png", 4, 4, hashlib.sha256(bytes([k])).hexdigest())
        repo.save_prediction(s, img, model, [1.0], 0, {})
        ids.append(repo.save_heatmap(s, run, img, 0, np.full((4, 4), k, np.float32)).id)
    return run.id, ids


def test_round_trip_replace_and_parameters_kept_apart(tmp_path: Path) -> None:
    with open_database(tmp_path / "f.db") as db:
        with db.session() as s:
            run, (h0, h1) = _heatmaps(s)
            rf.save_faithfulness(s, h0, {"road_combined": 0.2, "road_morf": float("nan")}, P)
            rf.save_faithfulness(s, h1, {"road_combined": -0.1}, P)
            rf.save_faithfulness(s, h0, {"road_combined": 0.9}, {**P, "seed": 1})
        with db.session() as s:
            assert rf.faithfulness_values(s, [h0, h1], P) == {
                h0: {"road_combined": 0.2, "road_morf": None},  # NaN is stored as undefined
                h1: {"road_combined": -0.1},
            }
            assert rf.faithfulness_values(s, [h0], {**P, "seed": 1}) == {h0: {"road_combined": 0.9}}
            # the key is the canonical JSON: key order does not matter
            assert rf.params_key(dict(reversed(list(P.items())))) == rf.params_key(P)
            rf.save_faithfulness(s, h0, {"road_combined": 0.3}, P)  # replaces, no duplicate
        with db.session() as s:
            rows = rf.list_faithfulness(s, heatmap=h0, params=P)
            assert [(r.metric, r.value) for r in rows] == [
                ("road_combined", 0.3),
                ("road_morf", None),
            ]
            assert rows[0].params == P
            assert len(rf.list_faithfulness(s, run=run)) == 4
            assert rf.heatmaps_done(s, [h0, h1], P, ["road_combined", "road_morf"]) == {h0}
            assert rf.heatmaps_done(s, [h0, h1], P, ["road_combined"]) == {h0, h1}
            assert rf.delete_faithfulness(s, run=run, params={**P, "seed": 1}) == 1
            assert rf.delete_faithfulness(s, heatmap=h1) == 1
            assert len(rf.list_faithfulness(s)) == 2
            with pytest.raises(ValueError, match="128"):
                rf.save_faithfulness(s, h0, {"x" * 129: 1.0}, P)


def test_values_go_with_their_heatmap(tmp_path: Path) -> None:
    with open_database(tmp_path / "g.db") as db:
        with db.session() as s:
            run, (h0, h1) = _heatmaps(s)
            rf.save_faithfulness(s, h0, {"road_combined": 0.2}, P)
            rf.save_faithfulness(s, h1, {"road_combined": 0.4}, P)
        with db.session() as s:
            img0 = rf.list_faithfulness(s, heatmap=h0)[0].heatmap.image_id
            # same pixels again: the values stay; new pixels: they were computed from the old map
            repo.save_heatmap(s, run, img0, 0, np.full((4, 4), 0, np.float32))
            assert rf.faithfulness_values(s, [h0], P) == {h0: {"road_combined": 0.2}}
            repo.save_heatmap(s, run, img0, 0, np.eye(4, dtype=np.float32))
            assert rf.faithfulness_values(s, [h0], P) == {}
        with db.session() as s:  # deleting the image cascades to heatmap and values
            s.execute(text("DELETE FROM images"))
            assert rf.list_faithfulness(s) == []


@pytest.mark.parametrize("start", ["0001", "0002"])
def test_an_older_database_migrates_and_keeps_its_heatmaps(tmp_path: Path, start: str) -> None:
    path = tmp_path / f"v{start}.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate_to_head(engine, path.name, MIGRATIONS_DIR, target=start)
    t = "2026-01-01 00:00:00"
    sha = hashlib.sha256(b"a").hexdigest()
    with engine.begin() as conn:
        for sql in (
            "INSERT INTO datasets (id, name, root, created_at) VALUES (1, 'd', '/d', :t)",
            "INSERT INTO images (id, dataset_id, rel_path, width, height, sha256, created_at,"
            " updated_at) VALUES (1, 1, 'a.png', 4, 4, :sha, :t, :t)",
            "INSERT INTO models (id, name, architecture, card, weights_sha256, card_sha256,"
            " bundle_path, created_at) VALUES (1, 'm', 'a', '{}', :sha, :sha, 'm', :t)",
            "INSERT INTO cam_runs (id, model_id, method, layers_json, target_policy, params_json,"
            " created_at) VALUES (1, 1, 'gradcam', '[\"l\"]', 'predicted', '{}', :t)",
            "INSERT INTO heatmaps (id, cam_run_id, image_id, target_index, height, width, dtype,"
            " data, created_at, updated_at) VALUES (1, 1, 1, 0, 1, 1, 'x', x'00', :t, :t)",
        ):
            conn.execute(text(sql), {"t": t, "sha": sha})
    engine.dispose()
    with open_database(path) as db, db.session() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
        assert s.execute(text("SELECT count(*) FROM heatmaps")).scalar() == 1
        rf.save_faithfulness(s, 1, {"road_combined": 0.25}, P)
        s.flush()
        assert rf.faithfulness_values(s, [1], P) == {1: {"road_combined": 0.25}}
        assert s.execute(text("PRAGMA foreign_key_check")).fetchall() == []
