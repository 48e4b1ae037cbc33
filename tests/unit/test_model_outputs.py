"""Networks whose output is a dict, a tuple, or one sigmoid logit (card: output_key,
output_index, score = "sigmoid"): predictions and CAM targets as for a plain classifier."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from fundus_review.errors import BundleError
from fundus_review.inference.bundle import (
    ModelBundle,
    ModelCard,
    describe_bundle,
    load_bundle,
    write_bundle,
)
from fundus_review.inference.cam import CamEngine
from tests.unit.cam_models import RedGreenLogitNet, RedSpotNet, TupleOutputNet

SIZE = (64, 64)
MODULE = "tests.unit.cam_models"


def _bundle(folder: Path, factory: str, state: dict, **card) -> ModelBundle:
    base = dict(name="o", architecture=f"{MODULE}:{factory}", classes=["a", "b"], input_size=SIZE)
    return write_bundle(folder, ModelCard(**{**base, **card}), state)


def _spots() -> torch.Tensor:
    """Image 0: a big red spot at (10, 12) and a small green one at (45, 50); image 1: the
    reverse sizes. Zero elsewhere, so the ReLU'd channels are the spots themselves."""
    x = torch.zeros(2, 3, *SIZE)
    x[0, 0, 8:13, 10:15] = 1.0  # red 5x5
    x[0, 1, 44:47, 49:52] = 1.0  # green 3x3
    x[1, 0, 9:12, 11:14] = 1.0  # red 3x3
    x[1, 1, 43:48, 48:53] = 1.0  # green 5x5
    return x


def _peak(heatmap: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(np.argmax(heatmap), heatmap.shape))


def _near(p: tuple[int, int], q: tuple[int, int]) -> bool:
    return abs(p[0] - q[0]) <= 2 and abs(p[1] - q[1]) <= 2


def test_dict_output_with_output_key(tmp_path: Path) -> None:
    plain = RedSpotNet()
    bundle = _bundle(tmp_path / "d", "dict_output_net", plain.state_dict(), output_key="logits")
    model = bundle.build_model(trust_code=True)
    x = _spots()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)
    with CamEngine(model, [model.features], ["gradcam"]) as engine:
        got = engine.run(x, targets=[0, 0])
    with CamEngine(plain, [plain.features], ["gradcam"]) as engine:
        want = engine.run(x, targets=[0, 0])
    np.testing.assert_array_equal(got.heatmaps["gradcam"], want.heatmaps["gradcam"])
    np.testing.assert_array_equal(got.probs, want.probs)
    assert "Output:        network output['logits'], softmax" in describe_bundle(
        bundle, trust_code=True
    )


def test_dict_output_without_or_with_a_wrong_key_is_explained(tmp_path: Path) -> None:
    state = RedSpotNet().state_dict()
    with pytest.raises(BundleError, match=r"a dict with keys embedding, logits.*`output_key`"):
        _bundle(tmp_path / "none", "dict_output_net", state).build_model(trust_code=True)
    bundle = _bundle(tmp_path / "w", "dict_output_net", state, output_key="scores")
    with pytest.raises(BundleError, match=r"output_key 'scores'.*keys embedding, logits"):
        bundle.build_model(trust_code=True)


def test_tuple_output_with_output_index(tmp_path: Path) -> None:
    net = TupleOutputNet()
    state = net.state_dict()
    model = _bundle(tmp_path / "t", "tuple_output_net", state, output_index=1).build_model(
        trust_code=True
    )
    x = _spots()
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x)[1], rtol=0, atol=0)
    with pytest.raises(BundleError, match=r"output_index 2: .*a tuple of 2"):
        _bundle(tmp_path / "t2", "tuple_output_net", state, output_index=2).build_model(
            trust_code=True
        )
    with pytest.raises(ValueError, match="not both"):
        ModelCard(
            name="x", architecture="timm:resnet18", classes=["a"], input_size=SIZE,
            output_key="logits", output_index=0,
        )  # fmt: skip


def test_sigmoid_head_probabilities_and_signed_cam_targets(tmp_path: Path) -> None:
    net = RedGreenLogitNet()
    bundle = _bundle(
        tmp_path / "s", "red_green_logit_net", net.state_dict(), classes=["neg", "pos"],
        score="sigmoid",
    )  # fmt: skip
    again = load_bundle(bundle.path)
    assert again.card.score == "sigmoid" and again.card.n_outputs == 1
    model = again.build_model(trust_code=True)
    assert model.head.out_features == 1  # built with one logit, not one per class
    x = _spots()
    with torch.no_grad():
        z = net(x)[:, 0]
        out = model(x)
    # z = mean(red) - mean(green): image 0 (25 red, 9 green pixels) is positive, image 1 not.
    torch.testing.assert_close(z, torch.tensor([16.0, -16.0]) / (64 * 64))
    torch.testing.assert_close(torch.softmax(out, dim=1)[:, 1], torch.sigmoid(z))
    with CamEngine(model, [model.features], ["gradcam", "scorecam"]) as engine:
        predicted = engine.run(x)
        as_neg = engine.run(x, targets=[0, 0])
        as_pos = engine.run(x, targets=[1, 1])
    assert predicted.target_index.tolist() == [1, 0]
    np.testing.assert_allclose(predicted.probs[:, 1], torch.sigmoid(z).numpy(), rtol=1e-6)
    red, green = (10, 12), (45, 50)  # spot centres
    for method in ("gradcam", "scorecam"):
        for i in range(2):
            assert _near(_peak(as_pos.heatmaps[method][i]), red), (method, i)
            assert _near(_peak(as_neg.heatmaps[method][i]), green), (method, i)
    shown = describe_bundle(again, trust_code=True)
    assert "Output:        network output, one logit z, p(pos) = sigmoid(z)" in shown
    # Re-initialised copies (randomize.py deep-copies the network) keep the adapter.
    with torch.no_grad():
        assert copy.deepcopy(model)(x).shape == (2, 2)


def test_sigmoid_card_needs_two_classes_and_matching_weights(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[negative, positive\]"):
        ModelCard(name="x", architecture="timm:resnet18", classes=["a", "b", "c"],
                  input_size=SIZE, score="sigmoid")  # fmt: skip
    with pytest.raises(ValueError, match="`score` is 'softmx'"):
        ModelCard(name="x", architecture="timm:resnet18", classes=["a", "b"],
                  input_size=SIZE, score="softmx")  # fmt: skip
    two_logits = RedGreenLogitNet(num_classes=2).state_dict()
    bundle = _bundle(
        tmp_path / "w", "red_green_logit_net", two_logits, classes=["neg", "pos"], score="sigmoid"
    )
    with pytest.raises(BundleError, match=r'2 classes with one logit \(score = "sigmoid"\).*2 out'):
        bundle.build_model(trust_code=True)
    # One-logit weights under a softmax card: the head's size is named.
    one = _bundle(tmp_path / "o", "red_green_logit_net", RedGreenLogitNet().state_dict())
    with pytest.raises(BundleError, match=r"lists 2 classes but .* has 1 outputs"):
        one.build_model(trust_code=True)


def test_sigmoid_bundle_end_to_end_through_analysis(tmp_path: Path) -> None:
    """analyze stores p = sigmoid(z) and each image's map explains its predicted class."""
    from PIL import Image as PILImage

    from fundus_review.app.analyze import AnalysisRequest, Finished, run_analysis
    from fundus_review.inference.trust import grant
    from fundus_review.store import repo
    from fundus_review.store.db import open_database
    from fundus_review.store.schema import Image, Prediction

    grant(MODULE)  # tests/conftest.py revokes it after the test
    data = tmp_path / "data"
    data.mkdir()
    x = _spots()
    for i, name in enumerate(("pos.png", "neg.png")):
        pixels = (x[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        PILImage.fromarray(pixels).save(data / name)
    card = dict(classes=["neg", "pos"], score="sigmoid", mean=(0, 0, 0), std=(1, 1, 1))
    bundle = _bundle(tmp_path / "b", "red_green_logit_net", RedGreenLogitNet().state_dict(), **card)
    events = list(run_analysis(AnalysisRequest(data, bundle.path, ["gradcam"], tmp_path / "a.db")))
    fin = events[-1]
    assert isinstance(fin, Finished) and fin.computed == 2 and not fin.failed
    with torch.no_grad():
        p_pos = torch.sigmoid(RedGreenLogitNet()(x)[:, 0]).numpy()
    with open_database(tmp_path / "a.db") as db, db.session() as s:
        (run_id,) = fin.run_ids.values()
        for image in s.query(Image).all():
            i = 0 if image.rel_path == "pos.png" else 1
            pred = s.query(Prediction).filter_by(image_id=image.id).one()
            np.testing.assert_allclose(pred.probs, [1 - p_pos[i], p_pos[i]], rtol=1e-5)
            hm, _, target = repo.load_heatmap(s, run_id, image)
            assert target == 1 - i  # pos.png is predicted pos, neg.png neg
            assert _near(_peak(hm), (10, 12) if i == 0 else (45, 50)), image.rel_path
