"""app.faithfulness: ROAD of stored runs on the seeded sample, stored once, tabulated with CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fundus_review.app import faithfulness as af
from fundus_review.app.analyze import AnalysisRequest, Finished, run_analysis
from fundus_review.core import baselines as bl
from fundus_review.core.sampling import seeded_sample
from fundus_review.data.images import file_sha256, load_image
from fundus_review.inference import faithfulness as inf
from fundus_review.inference.bundle import ModelCard, load_bundle, write_bundle
from fundus_review.inference.preprocess import prepare_batch
from fundus_review.store import Database, open_database, repo
from fundus_review.store import repo_faithfulness as rf
from tests.unit.cam_models import RedSpotNet


@pytest.fixture(autouse=True)
def _trust_test_models() -> None:
    # The bundles here are built by this suite's own module, which the user would allow with
    # --trust-code; tests/conftest.py revokes the grant after each test.
    from fundus_review.inference.trust import grant

    grant("tests.unit.cam_models")


REMOVED = (0.2, 0.6)


def _world(tmp_path: Path, n: int = 5) -> tuple[Path, Path, Path, int]:
    """n photographs with a red square at different places, analysed with Grad-CAM by RedSpotNet
    (class 0 = how red: the CAM is the red square); returns (data, bundle, db path, run id)."""
    data = tmp_path / "data"
    data.mkdir()
    for k in range(n):
        img = np.full((40, 40, 3), 20, np.uint8)
        img[4 + 5 * k : 14 + 5 * k, 24 - 4 * k : 34 - 4 * k, 0] = 255
        PILImage.fromarray(img).save(data / f"i{k}.png")
    card = ModelCard(
        name="red-spot",
        architecture="tests.unit.cam_models:red_spot_net",
        classes=["red", "not_red"],
        input_size=(32, 32),
        resize="resize",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        target_layers=["features"],
    )
    bundle = tmp_path / "bundle"
    weights = RedSpotNet().state_dict()
    weights["head.weight"] *= 40.0  # a confident model (p ~ 0.99), so drops are large
    write_bundle(bundle, card, weights)
    events = list(run_analysis(AnalysisRequest(data, bundle, ["gradcam"], tmp_path / "f.db")))
    fin = events[-1]
    assert isinstance(fin, Finished) and fin.computed == n
    return data, bundle, tmp_path / "f.db", fin.run_ids["gradcam"]


def _stored(db: Database, run_id: int) -> dict[int, dict]:
    with db.session(read_only=True) as s:
        hms = [r.heatmap_id for r in repo.iter_results(s) if r.run_id == run_id]
        return rf.faithfulness_values(s, hms, af.road_params(REMOVED, 0))


def test_constants_agree_with_the_inference_module() -> None:
    assert af.ROAD_VERSION == inf.ROAD_VERSION
    assert af.DEFAULT_REMOVED == inf.DEFAULT_REMOVED
    assert af.DEFAULT_NOISE == inf.DEFAULT_NOISE


def test_stored_once_on_the_seeded_sample_and_tabulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, bundle, db_path, run_id = _world(tmp_path)
    calls: list[tuple[int, int]] = []
    with open_database(db_path) as db:
        first = af.run_faithfulness(
            db, bundle, sample=3, removed=REMOVED, progress=lambda d, t: calls.append((d, t))
        )
        assert (first.computed, first.reused, first.images, first.problems) == (3, 0, 3, [])
        assert calls[-1] == (3, 3)
        stored = _stored(db, run_id)
        assert len(stored) == 3
        assert all(set(v) == set(af.expected_metrics(REMOVED)) for v in stored.values())
        # The sample is core.sampling's, keyed by image content.
        with db.session(read_only=True) as s:
            rows = [r for r in repo.iter_results(s) if r.run_id == run_id]
        sample = set(seeded_sample([r.sha256 for r in rows], 3, 0))
        assert {r.heatmap_id for r in rows if r.sha256 in sample} == set(stored)

        # The stored numbers are road_scores of the stored heatmap on the prepared image, and the
        # random baseline is the seeded random map of that image on the model-input grid.
        r0 = next(r for r in rows if r.heatmap_id in stored)
        path = data / r0.rel_path
        x, _ = prepare_batch([load_image(path)], load_bundle(bundle).card)
        with db.session(read_only=True) as s:
            heat, _, target = repo.load_heatmap(s, run_id, r0.image_id)
        net = load_bundle(bundle).build_model("cpu")
        rnd = bl.random_map((32, 32), 0, file_sha256(path))
        own, base = inf.road_scores(net, x.repeat(2, 1, 1, 1), [heat, rnd], [target] * 2, REMOVED)
        got = stored[r0.heatmap_id]
        assert got["road_combined"] == pytest.approx(own.road_combined, abs=1e-6)
        assert got["road_morf_prob@0.6"] == pytest.approx(own.morf_probs[1], abs=1e-6)
        assert got["baseline_random:road_combined"] == pytest.approx(base.road_combined, abs=1e-6)

        # Second call: nothing is recomputed (ROAD is not even called).
        def boom(*_a: object, **_k: object) -> None:
            raise AssertionError("recomputed")

        monkeypatch.setattr(inf, "road_scores", boom)
        again = af.run_faithfulness(db, bundle, sample=3, removed=REMOVED)
        assert (again.computed, again.reused) == (0, 3)
        monkeypatch.undo()
        forced = af.run_faithfulness(db, bundle, sample=3, removed=REMOVED, force=True)
        assert (forced.computed, forced.reused) == (3, 0)
        again_values = _stored(db, run_id)  # seeded: the same numbers again
        assert again_values.keys() == stored.keys()
        for hm, values in stored.items():
            assert again_values[hm] == pytest.approx(values, abs=1e-9)
        other = af.run_faithfulness(db, bundle, sample=3, removed=REMOVED, seed=1)
        assert other.reused == 0  # another seed is another parameter set

        (row,) = af.faithfulness_table(db, removed=REMOVED, n_resamples=200)
        assert (row.run_id, row.method, row.n) == (run_id, "gradcam", 3)
        vals = list(stored.values())
        assert row.summaries["road_combined"].mean == pytest.approx(
            np.mean([v["road_combined"] for v in vals])
        )
        diff = row.vs_baseline["random"]
        assert diff.n == 3
        assert diff.estimate == pytest.approx(
            np.mean([v["road_combined"] - v["baseline_random:road_combined"] for v in vals])
        )
        # The known answer: the CAM of RedSpotNet is the red square, which the model reads, so
        # removing it first hurts far more than removing random blobs or the image centre.
        assert diff.estimate > 0.1 and diff.ci_low > 0
        assert row.summaries["road_combined"].mean > row.baselines["centre"]["road_combined"].mean
        assert row.sentence().startswith("gradcam: ROAD combined ")
        assert af.faithfulness_table(db, removed=REMOVED, methods=["hirescam"]) == []


def test_one_bad_image_is_reported_and_the_rest_computed(tmp_path: Path) -> None:
    data, bundle, db_path, run_id = _world(tmp_path, n=3)
    (data / "i1.png").write_bytes(b"not a png any more")
    with open_database(db_path) as db:
        out = af.run_faithfulness(db, bundle, sample=None, removed=REMOVED)
        assert out.computed == 2
        assert len(out.problems) == 1 and out.problems[0][0].endswith("i1.png")
        assert "changed since it was analysed" in out.problems[0][1]
        assert len(_stored(db, run_id)) == 2


def test_cancel_keeps_what_is_finished(tmp_path: Path) -> None:
    _, bundle, db_path, run_id = _world(tmp_path, n=3)
    with open_database(db_path) as db:
        done: list[int] = []
        out = af.run_faithfulness(
            db,
            bundle,
            sample=None,
            removed=REMOVED,
            progress=lambda d, _t: done.append(d),
            cancelled=lambda: len(done) >= 1,
        )
        assert out.cancelled and out.computed == 1
        assert len(_stored(db, run_id)) == 1
        rest = af.run_faithfulness(db, bundle, sample=None, removed=REMOVED)
        assert (rest.computed, rest.reused) == (2, 1)


def test_a_later_method_reuses_the_stored_baselines_of_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, bundle, db_path, grad_run = _world(tmp_path, n=2)
    with open_database(db_path) as db:
        af.run_faithfulness(db, bundle, sample=None, removed=REMOVED)
        events = list(run_analysis(AnalysisRequest(data, bundle, ["hirescam"], db_path), db=db))
        hires_run = events[-1].run_ids["hirescam"]
        sizes: list[int] = []
        real = inf.road_scores

        def counting(model, batch, cams, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            sizes.append(len(cams))
            return real(model, batch, cams, *a, **k)

        monkeypatch.setattr(inf, "road_scores", counting)
        out = af.run_faithfulness(db, bundle, sample=None, removed=REMOVED)
        assert (out.computed, out.reused) == (2, 2)
        assert sizes == [1, 1]  # only the new heatmap of each image, no baseline maps
        grad, hires = _stored(db, grad_run), _stored(db, hires_run)
        with db.session(read_only=True) as s:
            image_of = {r.heatmap_id: r.image_id for r in repo.iter_results(s)}
        by_image = {image_of[h]: v for h, v in grad.items()}
        for h, values in hires.items():
            for name in af.expected_metrics(REMOVED):
                if name.startswith("baseline_"):
                    assert values[name] == by_image[image_of[h]][name]
        assert len(af.faithfulness_table(db, removed=REMOVED, n_resamples=50)) == 2
