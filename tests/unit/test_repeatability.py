"""app.repeatability: map-to-map agreement of two models of the same task, on stored maps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fundus_review.app.baselines import BASELINE_MODEL
from fundus_review.app.repeatability import common_grid, compare_runs, repeatability_pairs
from fundus_review.core.transform import InputTransform, make_transform
from fundus_review.store import Database, open_database, repo

H, W, N = 60, 80, 12


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "r.db")
    yield database
    database.close()


def _blob(k: int) -> tuple[float, float]:
    return 10.0 + 3 * k, 15.0 + 4 * k  # centre (row, col) of image k's hot spot, original px


def _render(tf: InputTransform, k: int) -> np.ndarray:
    """Image k's map (a Gaussian on the ORIGINAL image) sampled at each model-input pixel
    centre; 0 on letterbox padding."""
    yy, xx = np.mgrid[0 : tf.in_h, 0 : tf.in_w]
    pts = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
    orig = tf.to_original_points(pts)
    cy, cx = _blob(k)
    d2 = (orig[:, 1] - cy) ** 2 + (orig[:, 0] - cx) ** 2
    hm = np.exp(-d2 / (2 * 8.0**2))
    inside = (orig[:, 0] >= 0) & (orig[:, 0] < W) & (orig[:, 1] >= 0) & (orig[:, 1] < H)
    return np.where(inside, hm, 0.0).reshape(tf.in_h, tf.in_w).astype(np.float32)


def _world(db: Database) -> dict[str, int]:
    """Models A and B (same classes, other weights, other input geometry), C (other classes),
    the baseline pseudo-model and a randomised copy of A; per model a 'gradcam' run with the
    same blobs and a 'gradcam++' run of independent noise."""
    tf_a = make_transform(H, W, 64, 64, "resize")
    tf_b = make_transform(H, W, 48, 56, "letterbox")
    rng = np.random.default_rng(0)
    runs: dict[str, int] = {}
    with db.session() as s:
        ds = repo.get_or_create_dataset(s, "/nowhere", name="synthetic")
        images = [repo.upsert_image(s, ds, f"i{k:02d}.png", W, H, f"{k:064x}") for k in range(N)]
        specs = {
            "A": ("1" * 64, {"classes": ["g", "n"]}, tf_a),
            "B": ("2" * 64, {"classes": ["g", "n"]}, tf_b),
            "C": ("3" * 64, {"classes": ["x", "y"]}, tf_a),
            BASELINE_MODEL: ("4" * 64, {"kind": "baseline", "classes": ["g", "n"]}, tf_a),
            "A [randomized: all]": (
                "1" * 64,
                {"classes": ["g", "n"], "randomization": {"stage": "all"}},
                tf_a,
            ),
        }
        for name, (sha, card, tf) in specs.items():
            model = repo.get_or_create_model(s, name, "arch", card, sha, "/b")
            cam = repo.get_or_create_cam_run(s, model, "gradcam", ["l"])
            noise = repo.get_or_create_cam_run(s, model, "gradcam++", ["l"])
            runs[name], runs[name + "++"] = cam.id, noise.id
            for k, img in enumerate(images):
                repo.save_prediction(s, img, model, [0.5, 0.5], 0, tf.to_dict())
                repo.save_heatmap(s, cam, img, 0, _render(tf, k))
                repo.save_heatmap(s, noise, img, 0, rng.random((tf.in_h, tf.in_w), np.float32))
    return runs


def test_a_run_against_itself_is_perfectly_repeatable(db: Database) -> None:
    runs = _world(db)
    calls: list[tuple[int, int]] = []
    row = compare_runs(db, runs["A"], runs["A"], progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (N, N)
    assert row.spearman.n == N and row.spearman.mean == pytest.approx(1.0)
    assert row.ssim.mean == pytest.approx(1.0)
    assert (row.model_a, row.model_b, row.method) == ("A", "A", "gradcam")


def test_the_same_map_through_two_geometries_agrees(db: Database) -> None:
    runs = _world(db)
    row = compare_runs(db, runs["A"], runs["B"])
    assert row.spearman.n == N and not row.problems
    assert row.spearman.ci_low > 0.95
    assert row.ssim.mean > 0.9
    assert common_grid(H, W) == (168, 224)


def test_independent_noise_maps_do_not_agree(db: Database) -> None:
    runs = _world(db)
    row = compare_runs(db, runs["A++"], runs["B++"])
    assert row.spearman.n == N
    assert abs(row.spearman.mean) < 0.05
    assert all(abs(p.spearman) < 0.15 for p in row.per_image)
    assert row.ssim.mean < 0.2


def test_sample_and_problems(db: Database) -> None:
    runs = _world(db)
    assert compare_runs(db, runs["A"], runs["B"], sample=5).spearman.n == 5
    assert compare_runs(db, runs["A"], runs["B"], cancelled=lambda: True).spearman.n == 0
    # One prediction of B now claims another image size: that image is reported, not compared.
    with db.session() as s:
        img = repo.dataset_images(s, 1)[3]
        b = next(m for m in repo.list_models(s) if m.name == "B")
        repo.save_prediction(
            s, img, b, [0.5, 0.5], 0, make_transform(H, W + 20, 48, 56, "letterbox").to_dict()
        )
    row = compare_runs(db, runs["A"], runs["B"])
    assert row.spearman.n == N - 1
    assert [p for p, _ in row.problems] == ["i03.png"]


def test_pairs_are_same_method_same_task_real_models(db: Database) -> None:
    runs = _world(db)
    pairs = repeatability_pairs(db)
    got = {(p.run_a, p.run_b, p.method, p.shared_images) for p in pairs}
    assert got == {(runs["A"], runs["B"], "gradcam", N), (runs["A++"], runs["B++"], "gradcam++", N)}
