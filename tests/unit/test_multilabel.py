"""Multi-label heads (`score = "multilabel"`): one sigmoid per label, probabilities that need not
sum to 1, a CAM per chosen label, ROAD on the label's sigmoid; a known-answer tiny network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fundus_review.errors import BundleError
from fundus_review.inference.bundle import ModelCard, describe_bundle, write_bundle
from fundus_review.inference.cam import CamEngine
from fundus_review.inference.faithfulness import road_scores
from fundus_review.inference.outputs import predicted_labels
from tests.unit.cam_models import MultiLabelSpotNet

pytestmark = pytest.mark.torch
CLASSES = ["red", "green", "blue"]


def _bundle(folder: Path, **card):
    base = dict(
        name="ml",
        architecture="tests.unit.cam_models:multi_label_spot_net",
        classes=CLASSES,
        input_size=(64, 64),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        score="multilabel",
        target_layers=["features"],
    )
    return write_bundle(folder, ModelCard(**{**base, **card}), MultiLabelSpotNet().state_dict())


def _images() -> torch.Tensor:
    """Image 0: a red spot at rows 8-15, cols 10-17 and a green one at rows 40-47, cols 44-51;
    image 1: only a blue spot at rows 30-37, cols 20-27."""
    x = torch.zeros(2, 3, 64, 64)
    x[0, 0, 8:16, 10:18] = 1.0
    x[0, 1, 40:48, 44:52] = 1.0
    x[1, 2, 30:38, 20:28] = 1.0
    return x


def test_multilabel_probabilities_are_one_sigmoid_per_label(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    model = bundle.build_model(trust_code=True)
    x = _images()
    with CamEngine(model, [model.features], ["gradcam"]) as engine:
        got = engine.run(x)
    z_spot = 100 * 64 / 4096 - 0.5  # an 8x8 spot: channel mean 1/64
    p_spot, p_none = 1 / (1 + np.exp(-z_spot)), 1 / (1 + np.exp(0.5))
    np.testing.assert_allclose(got.probs[0], [p_spot, p_spot, p_none], rtol=1e-5)
    np.testing.assert_allclose(got.probs[1], [p_none, p_none, p_spot], rtol=1e-5)
    assert got.probs[0].sum() > 1.2  # not a softmax
    assert predicted_labels(got.probs[0], CLASSES) == ["red", "green"]
    assert predicted_labels(got.probs[1], CLASSES) == ["blue"]


@pytest.mark.parametrize(
    ("label", "rows", "cols"), [(0, (8, 16), (10, 18)), (1, (40, 48), (44, 52))]
)
def test_multilabel_cam_explains_the_chosen_label(tmp_path: Path, label, rows, cols) -> None:
    bundle = _bundle(tmp_path / "b")
    model = bundle.build_model(trust_code=True)
    with CamEngine(model, [model.features], ["gradcam", "hirescam"]) as engine:
        got = engine.run(_images()[:1], targets=[label])
    for method in ("gradcam", "hirescam"):
        heat = got.heatmaps[method][0]
        # The map is the chosen label's channel: 1 on its spot, 0 on the other label's spot.
        assert heat[rows[0] : rows[1], cols[0] : cols[1]].min() > 0.99
        other = (slice(40, 48), slice(44, 52)) if label == 0 else (slice(8, 16), slice(10, 18))
        assert heat[other].max() < 1e-3


def test_road_scores_the_labels_sigmoid(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    model = bundle.build_model(trust_code=True)
    x = _images()[:1]
    heat = np.zeros((1, 64, 64), np.float32)
    heat[0, 8:16, 10:18] = 1.0
    (result,) = road_scores(model, x, heat, [0], removed=(0.5,))
    z_spot = 100 * 64 / 4096 - 0.5
    assert result.prob == pytest.approx(1 / (1 + np.exp(-z_spot)), rel=1e-5)


def test_multilabel_card_and_inspect(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "b")
    text = describe_bundle(bundle, trust_code=True)
    assert "multi-label: one logit per label, p(label) = sigmoid(z_label)" in text
    assert 'score = "multilabel"' in (tmp_path / "b" / "model.toml").read_text()
    wrong = _bundle(tmp_path / "w", classes=["red", "green"])
    with pytest.raises(BundleError, match="the weights' classification head `head` has 3 outputs"):
        wrong.build_model(trust_code=True)


@pytest.mark.parametrize(("score", "outcome"), [("multilabel", "correct"), (None, "misclassified")])
def test_a_multilabel_outcome_counts_the_true_label_among_the_predicted_ones(
    tmp_path, score, outcome
) -> None:  # noqa: ANN001
    """Probabilities (0.9, 0.7, 0.1) and true label "b": a multi-label head predicts a and b
    (p >= 0.5), so the image is correct; the same numbers from a softmax head predict a only."""
    from fundus_review.app.mean_maps import group_values
    from fundus_review.store import open_database, repo
    from fundus_review.store.repo_query import iter_results

    card = {"classes": ["a", "b", "c"], **({"score": score} if score else {})}
    with open_database(tmp_path / "m.db") as db, db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path)
        img = repo.upsert_image(s, ds, "x.png", 4, 4, "0" * 64)
        repo.set_label(s, img, "b", "manual")
        model = repo.get_or_create_model(s, "m", "a", card, "0" * 64, tmp_path)
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["l"], "predicted", {})
        repo.save_prediction(s, img, model, [0.9, 0.7, 0.1], 0, {})
        repo.save_heatmap(s, run, img, 0, np.zeros((4, 4), np.float32))
        s.flush()
        (row,) = list(iter_results(s))
    assert row.multilabel is (score == "multilabel") and row.predicted_class == "a"
    assert ("outcome", outcome) in group_values(row)
