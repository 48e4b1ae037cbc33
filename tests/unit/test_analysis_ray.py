"""The Ray engine (``--engine ray``) stores what the local engine stores, and keeps resume,
cancel and progress; on a local Ray instance with 2 CPUs (marker ``ray``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fundus_review.app.analyze import (
    AnalysisProgress,
    AnalysisRequest,
    ImageFailed,
    Started,
    run_analysis,
)
from fundus_review.errors import FundusReviewError
from fundus_review.store import open_database, repo
from fundus_review.store.schema import Heatmap, Image, Prediction, WorkClaim
from tests.unit.test_analysis import _finished, _red_spot_bundle, _run, _spot_image

NO_RAY = 'Ray is not installed (pip install -e ".[scale]")'


@pytest.fixture(autouse=True)
def _trust_test_models() -> None:
    from fundus_review.inference.trust import grant

    grant("tests.unit.cam_models")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason=NO_RAY)
    from fundus_review.app.analyze_ray import init_local_ray

    init_local_ray(num_cpus=2)  # Ray start costs seconds: once for this module
    yield
    ray.shutdown()


def _stored(db_path: Path) -> dict[str, tuple]:
    out = {}
    with open_database(db_path) as db, db.session(read_only=True) as s:
        for img in s.query(Image).all():
            pred = s.query(Prediction).filter_by(image_id=img.id).one_or_none()
            if pred is None:
                continue
            maps = {
                hm.cam_run.method: (hm.target_index, repo.heatmap_array(hm))
                for hm in s.query(Heatmap).filter_by(image_id=img.id)
            }
            out[img.rel_path] = (np.asarray(pred.probs), pred.predicted_index, pred.transform, maps)
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_ray_engine_stores_what_the_local_engine_stores(local_ray: None, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(8):
        _spot_image(data / f"img{i}.png", 48 + 8 * (i % 2), 64, 10 + 3 * i, 20 + 4 * i)
    (data / "broken.png").write_bytes(b"not an image")
    bundle = _red_spot_bundle(tmp_path / "bundle", "letterbox")
    methods = ["gradcam", "hirescam"]
    local = AnalysisRequest(data, bundle, methods, tmp_path / "local.db", batch_size=3)
    on_ray = AnalysisRequest(
        data, bundle, methods, tmp_path / "ray.db", batch_size=3, engine="ray", workers=2
    )
    a = _finished(_run(local))
    events = _run(on_ray)
    b = _finished(events)
    assert events[0].device.startswith("ray: 2 workers") and events[0].engine == "ray"
    assert (a.computed, b.computed) == (8, 8)
    reported = {Path(p).name for p, _ in events[0].problems} | {
        Path(e.path).name for e in events if isinstance(e, ImageFailed)
    }
    assert reported == {"broken.png"}
    assert [e.done for e in events if isinstance(e, AnalysisProgress)][-1] == 8
    lo, ra = _stored(tmp_path / "local.db"), _stored(tmp_path / "ray.db")
    assert sorted(ra) == [f"img{i}.png" for i in range(8)] and ra.keys() == lo.keys()
    for name, (probs, predicted, transform, maps) in ra.items():
        np.testing.assert_allclose(probs, lo[name][0], atol=1e-6, rtol=0)
        assert (predicted, transform) == (lo[name][1], lo[name][2])
        assert maps.keys() == lo[name][3].keys() == set(methods)
        for method, (target, heat) in maps.items():
            assert target == lo[name][3][method][0]
            np.testing.assert_allclose(heat, lo[name][3][method][1], atol=1e-6, rtol=0)
    again = _finished(_run(on_ray))  # resume: everything stored is reused
    assert (again.computed, again.reused) == (0, 8)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_cancel_keeps_finished_batches_and_hands_back_the_rest(
    local_ray: None, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(10):
        _spot_image(data / f"img{i}.png", 48, 64, 10 + 3 * i, 20 + 4 * i)
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    req = AnalysisRequest(
        data, bundle, ["gradcam"], tmp_path / "c.db", batch_size=2, engine="ray", workers=2
    )
    cancel = threading.Event()
    events = []
    for ev in run_analysis(req, cancel):
        events.append(ev)
        if isinstance(ev, AnalysisProgress):
            cancel.set()  # after the first batch back
    part = _finished(events)
    assert part.cancelled and part.computed == 2
    with open_database(req.db) as db, db.session(read_only=True) as s:
        assert s.query(Heatmap).count() == 2
        # the batches still out on the actors were handed back, not left claimed
        assert s.query(WorkClaim).filter(WorkClaim.finished_at.is_(None)).count() == 0
    req.engine = "local"  # the engines share the stored results and the claims
    rest = _finished(_run(req))
    assert (rest.computed, rest.reused) == (8, 2)


def test_without_ray_the_ray_engine_says_how_to_install_it(monkeypatch) -> None:
    from fundus_review.app import analyze_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is missing
    with pytest.raises(FundusReviewError, match=r'pip install -e "\.\[scale\]"'):
        analyze_ray.init_local_ray()


def test_the_workers_encoded_heatmaps_store_the_same_bytes(tmp_path: Path) -> None:
    """What a Ray worker sends back (``BatchResult.encode_heatmaps``) stores exactly what the
    float32 map would; the known answer is the codec's own float16 rounding."""
    from fundus_review.app.analyze import BatchResult

    rng = np.random.default_rng(0)
    maps = rng.random((2, 6, 5)).astype(np.float32)
    batch = BatchResult([1, 2], np.zeros((2, 2)), [{}, {}], np.zeros(2, int), {"gradcam": maps})
    batch.encode_heatmaps()
    with open_database(tmp_path / "e.db") as db, db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path)
        img = repo.upsert_image(s, ds, "a.png", 5, 6, "a" * 64)
        model = repo.get_or_create_model(s, "m", "a", {}, "0" * 64, tmp_path)
        run_a = repo.get_or_create_cam_run(s, model, "gradcam", ["l"], "predicted", {})
        run_b = repo.get_or_create_cam_run(s, model, "hirescam", ["l"], "predicted", {})
        from_array = repo.save_heatmap(s, run_a, img, 0, maps[1])
        from_worker = repo.save_heatmap(s, run_b, img, 0, batch.heatmaps["gradcam"][1])
        assert from_worker.data == from_array.data
        assert (from_worker.height, from_worker.width) == (6, 5)
        np.testing.assert_array_equal(
            repo.heatmap_array(from_worker), maps[1].astype(np.float16).astype(np.float32)
        )


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_cancelled_before_its_first_batch_kills_its_actors(
    local_ray: None, tmp_path: Path, monkeypatch
) -> None:
    """Cancelled before the first step, the engine's generator never starts, so its own
    ``finally`` cannot clean up: the run must close the engine itself."""
    from fundus_review.app import analyze_ray

    engines: list[analyze_ray.RayEngine] = []
    real_init = analyze_ray.RayEngine.__init__

    def spy_init(self, *args, **kwargs) -> None:  # noqa: ANN001
        real_init(self, *args, **kwargs)
        engines.append(self)

    monkeypatch.setattr(analyze_ray.RayEngine, "__init__", spy_init)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        _spot_image(data / f"img{i}.png", 48, 64, 10 + 3 * i, 20 + 4 * i)
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    req = AnalysisRequest(data, bundle, ["gradcam"], tmp_path / "c.db", engine="ray", workers=1)
    cancel = threading.Event()
    events = []
    for ev in run_analysis(req, cancel):
        events.append(ev)
        if isinstance(ev, Started):  # the engine is up; cancel before any batch comes back
            assert engines and engines[0].actors
            cancel.set()
    part = _finished(events)
    assert part.cancelled and part.computed == 0
    assert len(engines) == 1 and engines[0].actors == []  # every actor killed


@pytest.mark.ray
def test_more_gpus_per_worker_than_the_cluster_has_is_refused(
    local_ray: None, tmp_path: Path
) -> None:
    from fundus_review.app.analyze_ray import RayEngine

    req = AnalysisRequest(tmp_path, tmp_path, ["gradcam"], tmp_path / "g.db", engine="ray")
    req.gpus_per_worker = 1
    with pytest.raises(FundusReviewError, match="cluster has 0 GPU"):
        RayEngine(req, model=None)  # refused before the model is needed
