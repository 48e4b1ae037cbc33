"""app.randomization: randomised maps stored as runs of derived models, compared, judged.

The demo model's Grad-CAM must pass (its maps change when the weights go); a "method" that
ignores the model (an edge detector of the input, Adebayo et al.'s counter-example) must fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fundus_review.app.analyze import AnalysisRequest, Finished, run_analysis
from fundus_review.app.importing import register_dataset
from fundus_review.app.randomization import RandomizationSummary, run_randomization
from fundus_review.app.randomization_records import STAGES, derived_name
from fundus_review.app.randomization_similarity import (
    SPEARMAN_PASS_BELOW,
    RandomizationRow,
    compare_maps,
    randomization_similarity,
    randomization_verdicts,
    stage_passes,
)
from fundus_review.app.scoring import score_database
from fundus_review.app.selection import ResultSelection
from fundus_review.core.stats import summarize
from fundus_review.data.images import load_image
from fundus_review.data.synthetic import write_demo_dataset
from fundus_review.errors import FundusReviewError
from fundus_review.inference import randomize
from fundus_review.inference.bundle import ModelCard, write_bundle
from fundus_review.inference.preprocess import prepare_image
from fundus_review.paths import shipped_models_dir
from fundus_review.store import Database, open_database, repo
from tests.unit.cam_models import RedSpotNet


@pytest.fixture(autouse=True)
def _trust_test_models() -> None:
    # The bundles here are built by this suite's own module, which the user would allow with
    # --trust-code; tests/conftest.py revokes the grant after each test.
    from fundus_review.inference.trust import grant

    grant("tests.unit.cam_models")


N_DEMO = 4


def test_stage_names_match_the_schedule() -> None:
    assert STAGES == randomize.STAGES


# -- the pass/fail rule on synthetic similarity values --


def _row(stage: str, values: list[float], run_id: int = 1) -> RandomizationRow:
    s = summarize(values)
    return RandomizationRow(run_id, "gradcam", ["l"], "predicted", stage, 9, s, s, 0, s, s)


def test_rule_is_the_upper_ci_bound_of_the_mean_spearman_below_the_threshold() -> None:
    assert SPEARMAN_PASS_BELOW == 0.5
    assert stage_passes(summarize([0.1, 0.2, 0.3])) is True
    assert stage_passes(summarize([0.45, 0.49, 0.499])) is True
    assert stage_passes(summarize([0.2, 0.3, 0.9])) is False  # mean 0.47, but the CI reaches 0.9
    assert stage_passes(summarize([0.5, 0.5])) is False
    assert stage_passes(summarize([])) is None


def test_verdicts_per_run() -> None:
    rows = [
        _row("head", [0.9, 0.95], 1),
        _row("last-block", [0.1, 0.2], 1),
        _row("all", [0.0, 0.1], 1),
        _row("head", [1.0, 1.0], 2),
        _row("all", [0.97, 0.99], 2),
        _row("head", [0.1], 3),
    ]
    v = {x.run_id: x for x in randomization_verdicts(rows)}
    assert (v[1].result, v[1].passes_at_last_block) == ("passed", True)
    assert "passes" in v[1].text and "head and last block" in v[1].text
    assert (v[2].result, v[2].passes_at_last_block) == ("failed", None)
    assert "FAILS" in v[2].text
    assert v[3].result == "not run"  # no "all" stage


def test_a_constant_randomised_map_has_lost_the_ranking() -> None:
    yy, xx = np.mgrid[0:20, 0:20]
    original = np.exp(-((yy - 5) ** 2 + (xx - 12) ** 2) / 10.0)
    got = compare_maps(original, np.zeros((20, 20)), 7)
    assert got.image_id == 7 and got.spearman == 0.0 and got.randomized_constant
    assert compare_maps(np.ones((20, 20)), original).spearman is None  # nothing to keep
    same = compare_maps(original, original * 2)
    assert same.spearman == pytest.approx(1.0) and same.ssim == pytest.approx(1.0)
    assert isinstance(compare_maps(original[:5], original[:5]), str)  # below SSIM's window


# -- a model-agnostic "method" (edge detector) on a tiny bundle: the test must fail it --


def _edge(arr: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the mean channel: depends on the input only, never on weights."""
    gy, gx = np.gradient(arr.mean(axis=0).astype(np.float64))
    mag = np.hypot(gx, gy)
    return (mag / mag.max()).astype(np.float32)


def _edge_maps(model, layers, methods, batch, targets, reshape):  # noqa: ANN001, ANN202
    maps = np.stack([_edge(a) for a in batch.cpu().numpy()])
    return np.full((len(maps), 2), 0.5, np.float32), {m: maps for m in methods}


@dataclass
class EdgeWorld:
    db: Database
    model_id: int
    paths: list[Path]
    card: ModelCard
    bundle: Path


@pytest.fixture
def edge_world(tmp_path: Path) -> Iterator[EdgeWorld]:
    card = ModelCard(
        name="red-spot",
        architecture="tests.unit.cam_models:red_spot_net",
        classes=["red", "not_red"],
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        target_layers=["features"],
    )
    bundle = write_bundle(tmp_path / "bundle", card, RedSpotNet().state_dict())
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for k in range(5):
        img = np.full((40, 48, 3), 30, np.uint8)
        y, x = rng.integers(2, 28), rng.integers(2, 34)
        img[y : y + 10, x : x + 12] = rng.integers(100, 255, 3)
        paths.append(root / f"im{k}.png")
        PILImage.fromarray(img).save(paths[-1])
    db = open_database(tmp_path / "e.db")
    reg = register_dataset(db, root)
    with db.session() as s:
        model = repo.get_or_create_model(
            s, card.name, card.architecture, card.to_dict(), bundle.weights_sha256, bundle.path
        )
        run = repo.get_or_create_cam_run(s, model, "edge", ["features"])
        for path in paths:
            arr, tf = prepare_image(load_image(path), card)
            image_id = reg.image_ids[path.name]
            repo.save_prediction(s, image_id, model, [0.5, 0.5], 0, tf.to_dict())
            repo.save_heatmap(s, run, image_id, 0, _edge(arr))
        model_id = model.id
    yield EdgeWorld(db, model_id, paths, card, bundle.path)
    db.close()


def test_a_map_that_ignores_the_model_fails(edge_world: EdgeWorld) -> None:
    summary = run_randomization(edge_world.db, "red-spot", map_fn=_edge_maps)
    assert (summary.computed, summary.reused, summary.problems) == (5 * 4, 0, [])
    rows = randomization_similarity(edge_world.db, "red-spot")
    assert [r.stage for r in rows] == list(STAGES)
    for r in rows:
        assert r.spearman.n == 5 and r.spearman.mean == pytest.approx(1.0)
        assert r.ssim.mean == pytest.approx(1.0, abs=1e-6)
    (verdict,) = randomization_verdicts(rows)
    assert verdict.result == "failed" and verdict.method == "edge"


def test_unreadable_images_are_reported_and_the_rest_computed(edge_world: EdgeWorld) -> None:
    edge_world.paths[2].write_bytes(b"not an image")
    summary = run_randomization(
        edge_world.db, edge_world.model_id, stages=["all"], map_fn=_edge_maps
    )
    assert summary.computed == 4
    assert [p for p, _ in summary.problems] == [str(edge_world.paths[2])]


def test_progress_and_cancel(edge_world: EdgeWorld) -> None:
    db = edge_world.db
    stopped = run_randomization(db, "red-spot", map_fn=_edge_maps, cancelled=lambda: True)
    assert stopped.cancelled and stopped.computed == 0
    calls: list[tuple[int, int]] = []
    summary = run_randomization(
        db, "red-spot", map_fn=_edge_maps, batch_size=2, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (20, 20) and len(calls) == 4 * 3  # 3 batches of <= 2 images per stage
    assert not summary.cancelled
    with pytest.raises(FundusReviewError, match="unknown randomisation stage"):
        run_randomization(db, "red-spot", stages=["everything"], map_fn=_edge_maps)
    with pytest.raises(FundusReviewError, match="not a real one"):
        run_randomization(db, derived_name("red-spot", "all"), map_fn=_edge_maps)


def test_a_bundle_whose_input_changed_is_refused(edge_world: EdgeWorld) -> None:
    card = replace(edge_world.card, input_size=(40, 40))
    write_bundle(edge_world.bundle, card, RedSpotNet().state_dict())  # same weights
    with pytest.raises(FundusReviewError, match="changed input_size"):
        run_randomization(edge_world.db, "red-spot", map_fn=_edge_maps)


# -- the demo model's Grad-CAM --


@dataclass
class DemoWorld:
    db: Database
    finished: Finished
    summary: RandomizationSummary


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWorld]:
    tmp = tmp_path_factory.mktemp("demo")
    data = write_demo_dataset(tmp / "data", n=N_DEMO, seed=11, size=(256, 256))
    db = open_database(tmp / "d.db")
    req = AnalysisRequest(data, shipped_models_dir() / "demo-cdr", ["gradcam"], tmp / "d.db")
    events = list(run_analysis(req, db=db))
    summary = run_randomization(db, "demo-cdr")
    yield DemoWorld(db, events[-1], summary)
    db.close()


@pytest.mark.slow
def test_randomised_maps_are_runs_of_derived_models(demo: DemoWorld) -> None:
    assert demo.summary.computed == N_DEMO * 4 and not demo.summary.problems
    original_run = demo.finished.run_ids["gradcam"]
    with demo.db.session(read_only=True) as s:
        models = {m.id: m for m in repo.list_models(s)}
        original = models[demo.finished.model_id]
        image_ids = [row.image_id for row in repo.iter_results(s, model=original.id)]
        assert len(image_ids) == N_DEMO
        sizes = []
        for stage in STAGES:
            (mid,) = demo.summary.derived_models[stage]
            m = models[mid]
            assert m.name == derived_name("demo-cdr", stage)
            assert m.weights_sha256 == original.weights_sha256
            assert m.bundle_path == original.bundle_path
            r = m.card["randomization"]
            assert (r["stage"], r["seed"], r["of_model"]) == (stage, 0, original.id)
            assert {k: v for k, v in m.card.items() if k != "randomization"} == original.card
            sizes.append(r["n_modules"])
            (run,) = repo.list_cam_runs(s, m)
            assert demo.summary.runs[(original_run, stage)] == run.id
            assert (run.method, run.layers, run.target_policy) == (
                "gradcam",
                ["blocks.5"],
                "predicted",
            )
            for image_id in image_ids:
                _, tf_rand, t_rand = repo.load_heatmap(s, run, image_id)
                _, tf_orig, t_orig = repo.load_heatmap(s, original_run, image_id)
                assert t_rand == t_orig and tf_rand == tf_orig  # the original's target class
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # cascading: more at each stage


@pytest.mark.slow
def test_second_call_recomputes_nothing_and_force_does(demo: DemoWorld) -> None:
    again = run_randomization(demo.db, "demo-cdr")
    assert (again.computed, again.reused) == (0, N_DEMO * 4)
    assert again.runs == demo.summary.runs
    forced = run_randomization(demo.db, "demo-cdr", stages=["head"], force=True)
    assert forced.computed == N_DEMO
    assert forced.runs[next(iter(forced.runs))] == demo.summary.runs[next(iter(forced.runs))]


@pytest.mark.slow
def test_demo_gradcam_passes(demo: DemoWorld) -> None:
    rows = randomization_similarity(demo.db, "demo-cdr")
    assert [r.stage for r in rows] == list(STAGES)
    for r in rows:
        assert r.spearman.n == N_DEMO
        assert r.ssim.mean < 0.9  # every stage changes the maps
    (verdict,) = randomization_verdicts(rows)
    assert verdict.result == "passed", verdict.text


@pytest.mark.slow
def test_score_database_scores_the_randomised_maps(demo: DemoWorld) -> None:
    derived = [mid for ids in demo.summary.derived_models.values() for mid in ids]
    only = ResultSelection(models=derived, randomized=True, baselines=False)
    result = score_database(demo.db, only)
    assert result.heatmaps == N_DEMO * 4 and not result.problems
    assert result.scored > 0
    with demo.db.session(read_only=True) as s:
        for stage in STAGES:
            run_id = demo.summary.runs[(demo.finished.run_ids["gradcam"], stage)]
            for row in repo.iter_results(s, model=demo.summary.derived_models[stage][0]):
                assert row.run_id == run_id
                hits = repo.list_scores(s, row.heatmap_id, "optic_disc", metric="pointing_hit")
                assert len(hits) == 1
