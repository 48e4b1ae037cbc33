"""`fundus-review train --fewshot protonet`: episodic training writes a fewshot:protonet bundle
whose support set comes from the training split and whose card records how it was made."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest
import torch

from fundus_review.cli.main import build_parser, main
from fundus_review.cli.train import config_from_args
from fundus_review.data.images import load_image
from fundus_review.data.synthetic import write_demo_dataset
from fundus_review.inference.bundle import load_bundle
from fundus_review.inference.fewshot import PrototypeNetwork
from fundus_review.inference.preprocess import prepare_batch
from fundus_review.training.setup import TrainError
from fundus_review.training.train import TrainConfig, train_model

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 small synthetic fundus images, half with hemorrhages (column `hemorrhage`)."""
    return write_demo_dataset(tmp_path_factory.mktemp("fs") / "data", n=24, seed=9, size=(64, 64))


def _args(synth: Path, out: Path, *more: str) -> list[str]:
    return [
        "train", str(synth), "--out", str(out), "--label-column", "hemorrhage",
        "--fewshot", "protonet", "--arch", "timm:test_resnet", "--image-size", "64",
        "--epochs", "2", "--episodes", "2", "--shots", "2", "--queries", "2",
        "--support-per-class", "3", "--val-fraction", "0.25", "--quiet", *more,
    ]  # fmt: skip


def test_fewshot_training_writes_a_protonet_bundle(synth: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "proto"
    args = _args(synth, out, "--distance", "cosine")
    assert main(args) == 0
    assert "validation accuracy" in capsys.readouterr().out
    bundle = load_bundle(out)
    card = bundle.card
    assert card.architecture == "fewshot:protonet"
    assert card.classes == ["absent", "present"]
    forward = card.extra["forward"]
    assert (forward["backbone"], forward["distance"], forward["temperature"]) == (
        "timm:test_resnet",
        "cosine",
        0.1,
    )
    training = card.extra["training"]
    # The support set: 3 training images per class, none of them held out, with their labels.
    with open(synth / "labels.csv", newline="") as fh:
        labels = {f"images/{r['image']}": r["hemorrhage"] for r in csv.DictReader(fh)}
    heldout = set((out / "heldout.txt").read_text().split())
    support = training["support_files"]
    assert len(support) == 6 and not set(support) & heldout
    for label in ("absent", "present"):
        files = sorted(p.name for p in (out / "support" / label).iterdir())
        # numbered in support-set order, so equal file names from two folders both survive
        assert files == sorted(
            f"{k:03d}_{Path(f).name}" for k, f in enumerate(support) if labels[f] == label
        )
    assert 0.0 <= training["val_accuracy"] <= 1.0 and training["n_val"] == len(heldout)
    assert len((out / "training_log.csv").read_text().splitlines()) == 3  # header + 2 epochs
    # The bundle predicts as the card says, with the held-out accuracy the card records.
    model = bundle.build_model()
    assert isinstance(model, PrototypeNetwork) and model.distance == "cosine"
    files = sorted(heldout)
    x, _ = prepare_batch([load_image(synth / f) for f in files], card)
    with torch.no_grad():
        pred = model(x).argmax(1).tolist()
    acc = sum(card.classes[p] == labels[f] for p, f in zip(pred, files, strict=True)) / len(files)
    assert acc == pytest.approx(training["val_accuracy"])
    # The recorded command parses back to the same configuration.
    ns = build_parser().parse_args(shlex.split(training["command"])[1:])
    assert config_from_args(ns) == config_from_args(build_parser().parse_args(args))


def test_ordinary_training_record_has_no_fewshot_fields() -> None:
    record = TrainConfig(data=Path("."), out=Path("o")).to_record()
    assert not {"episodes", "shots", "queries", "distance"} & set(record)


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (dict(shots=0), "shots must be at least 1"),
        (dict(distance="manhattan"), "distance must be euclidean or cosine"),
        (dict(support_per_class=20), "has .* training images; the support set needs 20"),
        (dict(shots=9, queries=9), "fewer than shots \\+ queries = 18"),
    ],
)
def test_bad_fewshot_settings_are_named(synth: Path, tmp_path: Path, more, message) -> None:
    config = TrainConfig(
        data=synth, out=tmp_path / "x", label_column="hemorrhage", fewshot="protonet",
        architecture="timm:test_resnet", image_size=32, epochs=1, episodes=1,
        val_fraction=0.25, **more,
    )  # fmt: skip
    with pytest.raises(TrainError, match=message):
        train_model(config)
