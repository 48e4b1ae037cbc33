"""app.baselines: baseline runs are stored like CAM runs and scored by the same code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fundus_review.app.baselines import (
    BASELINE_MODEL,
    MEAN_GRID,
    compute_baselines,
    image_grid,
)
from fundus_review.app.scoring import score_database
from fundus_review.core import baselines as bl
from fundus_review.core.similarity import resample_heatmap
from fundus_review.core.transform import InputTransform, make_transform
from fundus_review.data.fov import FovCache
from fundus_review.data.images import file_sha256
from fundus_review.data.masks_io import write_mask_atomic
from fundus_review.store import Database, open_database, repo

H, W = 60, 80  # not square: the baseline grid keeps the aspect (224 x 168)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "b.db")
    yield database
    database.close()


@pytest.fixture
def cache(tmp_path: Path) -> FovCache:
    return FovCache(tmp_path / "fov")


def _world(db: Database, tmp_path: Path, cache: FovCache, n: int = 3) -> dict:
    """n images; a real run whose map of image k is a blob at column 10 + 20 k; disc masks in the
    top-right corner; the FOV is the right half of every image."""
    root = tmp_path / "data"
    root.mkdir()
    fov = np.zeros((H, W), bool)
    fov[:, W // 2 :] = True
    out: dict = {"ids": [], "maps": []}
    with db.session() as s:
        ds = repo.get_or_create_dataset(s, root, name="tiny")
        model = repo.get_or_create_model(
            s, "m", "timm:resnet18", {"classes": ["a", "b"]}, "1" * 64, "m"
        )
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
        ref = repo.get_or_create_reviewer(s, "reference")
        mask = np.zeros((H, W), bool)
        mask[2:10, 66:76] = True
        for k in range(n):
            path = root / f"i{k}.png"
            PILImage.fromarray(np.full((H, W, 3), 50 + k, np.uint8)).save(path)
            sha = file_sha256(path)
            write_mask_atomic(cache.path_for(sha), fov)
            img = repo.upsert_image(s, ds, path.name, W, H, sha)
            repo.save_prediction(
                s, img, model, [0.4, 0.6], 1, make_transform(H, W, H, W, "resize").to_dict()
            )
            hm = np.zeros((H, W), np.float32)
            hm[20:30, 10 + 20 * k : 15 + 20 * k] = 1.0
            repo.save_heatmap(s, run, img, 1, hm)
            repo.replace_imported_mask(s, img, ref, "optic_disc", mask, source=f"import:{k}")
            out["ids"].append(img.id)
            out["maps"].append(hm)
        out["run"] = run.id
    return out


def _baseline_runs(db: Database) -> dict[str, int]:
    with db.session(read_only=True) as s:
        model = next(m for m in repo.list_models(s) if m.name == BASELINE_MODEL)
        return {r.method: r.id for r in repo.list_cam_runs(s, model)}


def _map(db: Database, run_id: int, image_id: int) -> np.ndarray:
    with db.session(read_only=True) as s:
        heat, tf, _ = repo.load_heatmap(s, run_id, image_id)
    return InputTransform.from_dict(tf).heatmap_to_original(heat)


def test_every_baseline_is_stored_for_every_image(db, tmp_path, cache) -> None:
    w = _world(db, tmp_path, cache)
    summary = compute_baselines(db, fov_cache=cache, seed=7)
    assert summary.problems == []
    assert (summary.images, summary.computed, summary.mean_maps) == (3, 12, 1)
    runs = _baseline_runs(db)
    assert set(runs) == set(bl.BASELINE_KINDS)
    tf = image_grid(H, W)
    assert (tf.in_h, tf.in_w) == (168, 224)
    img = w["ids"][0]
    centre = _map(db, runs["centre"], img)
    r, c = np.unravel_index(np.argmax(centre), centre.shape)
    assert abs(r - H / 2) <= 1 and abs(c - W / 2) <= 1
    fovc = _map(db, runs["fov-centre"], img)
    r, c = np.unravel_index(np.argmax(fovc), fovc.shape)
    assert abs(c - 3 * W / 4) <= 1.5  # the centroid of the right half
    assert np.allclose(_map(db, runs["uniform"], img), 1.0)
    # Second call: nothing recomputed.
    again = compute_baselines(db, fov_cache=cache, seed=7)
    assert (again.computed, again.reused, again.mean_maps) == (0, 12, 0)


def test_mean_map_leaves_the_own_image_out(db, tmp_path, cache) -> None:
    w = _world(db, tmp_path, cache)
    compute_baselines(db, fov_cache=cache)
    run = _baseline_runs(db)[bl.MEAN_MAP]
    got = _map(db, run, w["ids"][0])
    # Image 0's own blob (cols 10-14) is absent; the other two (cols 30-34, 50-54) are there.
    assert got[22:28, 11:14].max() < 0.05
    assert got[22:28, 31:34].min() > 0.5 and got[22:28, 51:54].min() > 0.5
    others = [resample_heatmap(m, (MEAN_GRID, MEAN_GRID)) for m in w["maps"][1:]]
    expected = bl.leave_one_out_mean(sum(others), 2, None)
    stored = resample_heatmap(got, (MEAN_GRID, MEAN_GRID))
    assert np.corrcoef(stored.ravel(), expected.ravel())[0, 1] > 0.95


def test_baselines_are_scored_by_the_same_code(db, tmp_path, cache) -> None:
    w = _world(db, tmp_path, cache)
    compute_baselines(db, fov_cache=cache)
    summary = score_database(db, fov_cache=cache)
    assert summary.problems == []
    runs = _baseline_runs(db)
    with db.session(read_only=True) as s:

        def hit(run_id: int) -> float:
            hm = repo.get_heatmap(s, run_id, w["ids"][0])
            return {sc.metric: sc.value for sc in repo.list_scores(s, heatmap=hm)}["pointing_hit"]

        # The constant map "hits" any target (all its pixels are maxima); the two Gaussians peak
        # in the middle of the image / of the FOV, far from the corner target.
        assert hit(runs["uniform"]) == 1.0
        assert hit(runs["centre"]) == 0.0
        assert hit(runs["fov-centre"]) == 0.0
        # Image 0's real map is zero inside the FOV (its blob is left of it): constant there, so
        # it "hits" like the uniform map; n_maxima in the stored scores lets reports flag that.
        assert hit(w["run"]) == 1.0


def test_seed_changes_the_random_baseline_only(db, tmp_path, cache) -> None:
    w = _world(db, tmp_path, cache)
    compute_baselines(db, fov_cache=cache, seed=1)
    compute_baselines(db, fov_cache=cache, seed=2)
    with db.session(read_only=True) as s:
        models = [m for m in repo.list_models(s) if m.name == BASELINE_MODEL]
        assert len(models) == 2  # the seed is part of the baseline card: maps never mix
        rids = [
            next(r.id for r in repo.list_cam_runs(s, m) if r.method == "random") for m in models
        ]
    maps = [_map(db, rid, w["ids"][0]) for rid in rids]
    assert not np.allclose(maps[0], maps[1])
