"""The headless pipeline end to end: dataset -> bundle -> CAMs -> database."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from fundus_review.app.analyze import (
    AnalysisProgress,
    AnalysisRequest,
    Finished,
    ImageFailed,
    Started,
    run_analysis,
)
from fundus_review.core.transform import InputTransform
from fundus_review.errors import FundusReviewError
from fundus_review.inference.bundle import ModelCard, write_bundle
from fundus_review.store import repo
from fundus_review.store.db import open_database
from fundus_review.store.schema import Annotation, CamRun, Heatmap, Image, Prediction
from tests.unit.cam_models import RedSpotNet


def _red_spot_bundle(folder: Path, resize: str, size: tuple[int, int] = (64, 64)) -> Path:
    card = ModelCard(
        name=f"red-spot-{resize}",
        architecture="tests.unit.cam_models:red_spot_net",
        classes=["red", "not_red"],
        input_size=size,
        resize=resize,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        target_layers=["features"],
    )
    write_bundle(folder, card, RedSpotNet().state_dict())
    return folder


def _spot_image(path: Path, h: int, w: int, row: int, col: int) -> None:
    img = np.full((h, w, 3), 20, np.uint8)
    img[row - 1 : row + 2, col - 1 : col + 2, 0] = 255  # a 3x3 red spot centred on (row, col)
    PILImage.fromarray(img).save(path)


def _run(req: AnalysisRequest, cancel: threading.Event | None = None) -> list:
    return list(run_analysis(req, cancel))


def _finished(events: list) -> Finished:
    assert isinstance(events[0], Started)
    assert isinstance(events[-1], Finished)
    return events[-1]


@pytest.mark.parametrize("resize", ["resize", "center_crop", "letterbox"])
def test_stored_heatmap_lines_up_with_the_original_image(tmp_path: Path, resize: str) -> None:
    """The known answer: the CAM of RedSpotNet peaks on the red spot, wherever the policy puts it."""
    data = tmp_path / "data"
    data.mkdir()
    spots = {"a.png": (90, 150, 45, 80), "b.png": (120, 100, 70, 40)}  # h, w, row, col
    for name, (h, w, row, col) in spots.items():
        _spot_image(data / name, h, w, row, col)
    bundle = _red_spot_bundle(tmp_path / "bundle", resize)
    req = AnalysisRequest(
        dataset=data, bundle=bundle, methods=["gradcam", "hirescam"], db=tmp_path / "a.db"
    )
    fin = _finished(_run(req))
    assert fin.computed == 2 and not fin.failed

    with open_database(tmp_path / "a.db") as db, db.session() as s:
        for run_id in fin.run_ids.values():
            for image in s.query(Image).all():
                h, w, row, col = spots[image.rel_path]
                hm, transform, target = repo.load_heatmap(s, run_id, image)
                assert target == 0  # "red" is predicted: the spot raises class 0's score
                orig = InputTransform.from_dict(transform).heatmap_to_original(hm)
                assert orig.shape == (h, w)
                peak_row, peak_col = np.unravel_index(np.argmax(orig), orig.shape)
                # one input pixel covers up to ~2.3 original pixels here
                assert abs(peak_row - row) <= 2 and abs(peak_col - col) <= 2, (
                    resize,
                    image.rel_path,
                )


def test_predictions_come_with_every_class_probability(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _spot_image(data / "x.png", 64, 64, 30, 30)
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    _finished(_run(AnalysisRequest(data, bundle, ["gradcam"], tmp_path / "p.db")))
    with open_database(tmp_path / "p.db") as db, db.session() as s:
        pred = s.query(Prediction).one()
        net = RedSpotNet().eval()
        x = torch.from_numpy((np.asarray(PILImage.open(data / "x.png")) / 255.0 - 0.5) / 0.5)
        with torch.no_grad():
            expected = torch.softmax(net(x.permute(2, 0, 1)[None].float()), 1)[0].numpy()
        np.testing.assert_allclose(pred.probs, expected, atol=1e-5)
        assert pred.predicted_index == int(np.argmax(expected))


@pytest.fixture
def spot_dataset(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(7):
        _spot_image(data / f"img{i}.png", 48, 64, 10 + 3 * i, 20 + 4 * i)
    return data


def test_rerun_reuses_results_and_force_recomputes(tmp_path: Path, spot_dataset: Path) -> None:
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    req = AnalysisRequest(spot_dataset, bundle, ["gradcam"], tmp_path / "r.db", batch_size=3)
    first = _finished(_run(req))
    assert (first.computed, first.reused) == (7, 0)
    again = _finished(_run(req))
    assert (again.computed, again.reused) == (0, 7)
    # a new method only computes what is missing for it, and the old run keeps its rows
    req.methods = ["gradcam", "xgradcam"]
    both = _finished(_run(req))
    assert both.computed == 7
    req.force = True
    forced = _finished(_run(req))
    assert (forced.computed, forced.reused) == (7, 0)
    with open_database(tmp_path / "r.db") as db, db.session() as s:
        assert s.query(CamRun).count() == 2
        assert s.query(Heatmap).count() == 14  # replaced, not duplicated
        assert s.query(Prediction).count() == 7


def test_unreadable_files_are_reported_and_skipped(tmp_path: Path, spot_dataset: Path) -> None:
    (spot_dataset / "broken.png").write_bytes(b"not an image at all")
    good = spot_dataset / "img0.png"
    (spot_dataset / "truncated.png").write_bytes(good.read_bytes()[:60])
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    events = _run(AnalysisRequest(spot_dataset, bundle, ["gradcam"], tmp_path / "b.db"))
    fin = _finished(events)
    started = events[0]
    reported = {Path(p).name for p, _ in started.problems} | {
        Path(e.path).name for e in events if isinstance(e, ImageFailed)
    }
    assert {"broken.png", "truncated.png"} <= reported
    assert fin.computed == 7
    with open_database(tmp_path / "b.db") as db, db.session() as s:
        assert s.query(Heatmap).count() == 7


def test_cancel_keeps_every_finished_batch(tmp_path: Path, spot_dataset: Path) -> None:
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    req = AnalysisRequest(spot_dataset, bundle, ["gradcam"], tmp_path / "c.db", batch_size=2)
    cancel = threading.Event()
    events = []
    for ev in run_analysis(req, cancel):
        events.append(ev)
        if isinstance(ev, AnalysisProgress):
            cancel.set()  # after the first batch
    fin = _finished(events)
    assert fin.cancelled and fin.computed == 2
    with open_database(tmp_path / "c.db") as db, db.session() as s:
        assert s.query(Heatmap).count() == 2
    rest = _finished(_run(req))
    assert (rest.computed, rest.reused) == (5, 2)


def test_explicit_target_class_is_its_own_run(tmp_path: Path, spot_dataset: Path) -> None:
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    req = AnalysisRequest(spot_dataset, bundle, ["gradcam"], tmp_path / "t.db", target="not_red")
    fin = _finished(_run(req))
    with open_database(tmp_path / "t.db") as db, db.session() as s:
        run = s.get(CamRun, fin.run_ids["gradcam"])
        assert run.target_policy == "class:not_red"
        assert {h.target_index for h in s.query(Heatmap)} == {1}
    req.target = "glaucoma"
    with pytest.raises(FundusReviewError, match="not one of the model's classes: red, not_red"):
        _run(req)


def test_idrid_images_get_predictions_heatmaps_and_expert_masks(
    tmp_path: Path, shared_data: Path
) -> None:
    import timm

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=2)
    card = ModelCard(
        name="untrained", architecture="timm:resnet10t", classes=["a", "b"], input_size=(128, 128)
    )
    bundle = write_bundle(tmp_path / "bundle", card, net.state_dict()).path
    req = AnalysisRequest(
        shared_data / "idrid_seg", bundle, ["gradcam", "hirescam"], tmp_path / "i.db"
    )
    events = _run(req)
    fin = _finished(events)
    assert fin.computed == 12 and not fin.failed
    assert events[0].masks_imported > 12  # optic disc + lesions, as reviewer "reference"
    with open_database(tmp_path / "i.db") as db, db.session() as s:
        assert s.query(Heatmap).count() == 24
        images = s.query(Image).all()
        assert {(i.width, i.height) for i in images} == {(1024, 680)}
        disc = s.query(Annotation).filter_by(structure="optic_disc").count()
        assert disc == 12
        for image in images[:2]:
            hm, transform, _ = repo.load_heatmap(s, fin.run_ids["gradcam"], image)
            orig = InputTransform.from_dict(transform).heatmap_to_original(hm)
            assert orig.shape == (680, 1024) and np.isfinite(orig).all()
