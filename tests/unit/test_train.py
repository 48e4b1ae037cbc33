"""`fundus-review train`: the bundle it writes, the split, class balancing, the best-epoch
checkpoint, initialisation from a bundle, and the errors a user sees for a bad dataset."""

from __future__ import annotations

import csv
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset

from fundus_review.cli.main import build_parser, main
from fundus_review.cli.train import config_from_args
from fundus_review.data.images import load_image
from fundus_review.data.synthetic import write_demo_dataset
from fundus_review.errors import DatasetError, FundusReviewError
from fundus_review.inference.bundle import load_bundle
from fundus_review.inference.preprocess import prepare_batch
from fundus_review.training import data as td
from fundus_review.training import train as train_mod
from fundus_review.training.command import command_for
from fundus_review.training.output import EvalResult
from fundus_review.training.setup import TrainError, apply_unfreeze, build_model
from fundus_review.training.split import synthetic_provenance
from fundus_review.training.train import TrainConfig, train_model

TINY = "tests.unit.test_train:tiny_cnn"


@pytest.fixture(autouse=True)
def _trust_tiny_cnn() -> None:
    # Bundles trained here are built by this module, which a user would allow with --trust-code;
    # tests/conftest.py revokes the grant after each test.
    from fundus_review.inference.trust import grant

    grant("tests.unit.test_train")


class TinyCNN(nn.Module):
    """Two conv blocks with BatchNorm and a linear head: trains in milliseconds."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4))
        self.block2 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.block2(torch.relu(self.block1(x))))
        return self.head(x.mean(dim=(2, 3)))


def tiny_cnn(num_classes: int = 2, **_: object) -> nn.Module:
    return TinyCNN(num_classes)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 small synthetic fundus images, 8 per class, with labels.csv (column `diagnosis`)."""
    return write_demo_dataset(
        tmp_path_factory.mktemp("synth") / "data", n=16, seed=5, size=(64, 64), lesions=False
    )


def _config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict = dict(
        data=data,
        out=out,
        architecture=TINY,
        image_size=32,
        epochs=2,
        batch_size=4,
        val_fraction=0.25,
        weights_dtype="float32",
    )
    base.update(kw)
    return TrainConfig(**base)


def _labels(data: Path) -> dict[str, str]:
    with open(data / "labels.csv", newline="") as fh:
        return {f"images/{r['image']}": r["diagnosis"] for r in csv.DictReader(fh)}


# ---------------------------------------------------------------- the bundle
@pytest.mark.slow
def test_train_writes_a_complete_bundle_that_loads_and_predicts(
    synth: Path, tmp_path: Path
) -> None:
    result = train_model(_config(synth, tmp_path / "b", epochs=3))
    out = tmp_path / "b"
    assert sorted(p.name for p in out.iterdir()) == [
        "heldout.txt", "model.safetensors", "model.toml", "training_log.csv",
    ]  # fmt: skip
    bundle = load_bundle(out)
    card = bundle.card
    assert card.classes == ["glaucoma", "normal"] and card.input_size == (32, 32)
    assert card.architecture == TINY and card.name == "b"
    training = card.extra["training"]
    assert training["n_train"] == 12 and training["n_val"] == 4
    assert training["class_counts_train"] == {"glaucoma": 6, "normal": 6}
    assert training["command"] == command_for(_config(synth, out, epochs=3))

    with open(out / "training_log.csv", newline="") as fh:
        log = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in log] == [1, 2, 3]
    assert sum(int(r["best"]) for r in log) >= 1
    assert result.history[-1].epoch == 3

    heldout = (out / "heldout.txt").read_text().splitlines()
    labels = _labels(synth)
    assert len(heldout) == 4 and set(heldout) <= set(labels)
    assert sorted(labels[f] for f in heldout) == ["glaucoma", "glaucoma", "normal", "normal"]

    # The bundle, run through the inference path, reproduces the accuracy the card reports.
    model = bundle.build_model("cpu")
    images = [load_image(synth / f) for f in heldout]
    batch, _ = prepare_batch(images, card)
    with torch.no_grad():
        probs = torch.softmax(model(batch), dim=1)
    assert probs.shape == (4, 2)
    assert torch.allclose(probs.sum(1), torch.ones(4))
    predicted = [card.classes[i] for i in probs.argmax(1).tolist()]
    accuracy = np.mean([p == labels[f] for p, f in zip(predicted, heldout, strict=True)])
    assert accuracy == pytest.approx(training["val_accuracy"])
    assert result.val_accuracy == pytest.approx(training["val_accuracy"])


def test_float16_bundle_stores_half_precision_weights(synth: Path, tmp_path: Path) -> None:
    train_model(_config(synth, tmp_path / "b", epochs=1, weights_dtype="float16"))
    tensors = load_file(tmp_path / "b" / "model.safetensors")
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}


def test_existing_output_is_refused_unless_overwrite(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match="already exists"):
        train_model(_config(synth, out, epochs=1))
    assert (out / "notes.txt").read_text() == "mine"
    train_model(_config(synth, out, epochs=1, overwrite=True))
    assert (out / "model.toml").is_file() and not (out / "notes.txt").exists()


def test_same_config_gives_identical_weights_and_split(synth: Path, tmp_path: Path) -> None:
    train_model(_config(synth, tmp_path / "a"))
    train_model(_config(synth, tmp_path / "b"))
    train_model(_config(synth, tmp_path / "c", seed=1))
    a, b, c = (load_file(tmp_path / x / "model.safetensors") for x in "abc")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    held = [(tmp_path / x / "heldout.txt").read_text() for x in "abc"]
    assert held[0] == held[1] and held[0] != held[2]


# ---------------------------------------------------------------- the split
def test_stratified_split_keeps_each_class_share_and_is_seeded() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"]
    train, val = td.stratified_split(labels, 0.2, seed=3)
    assert sorted(train + val) == list(range(16))
    val_labels = sorted(labels[i] for i in val)
    # a: round(10 * 0.2) = 2; b: round(1.0) = 1; c has a single image: it stays in training.
    assert val_labels == ["a", "a", "b"]
    assert td.stratified_split(labels, 0.2, seed=3) == (train, val)
    others = {tuple(td.stratified_split(labels, 0.2, seed=s)[1]) for s in range(10)}
    assert len(others) > 1


def test_stratified_split_validates_every_class_with_two_or_more_images() -> None:
    labels = ["a"] * 20 + ["b"] * 2
    _, val = td.stratified_split(labels, 0.1, seed=0)  # b: round(0.2) = 0, raised to 1
    assert sorted(labels[i] for i in val) == ["a", "a", "b"]
    _, val = td.stratified_split(labels, 0.0, seed=0)
    assert val == []


def test_heldout_file_is_the_seeded_stratified_split(synth: Path, tmp_path: Path) -> None:
    train_model(_config(synth, tmp_path / "b", epochs=1, seed=7))
    labels = _labels(synth)
    files = sorted(labels)
    _, val = td.stratified_split([labels[f] for f in files], 0.25, seed=7)
    assert (tmp_path / "b" / "heldout.txt").read_text().splitlines() == [files[i] for i in val]


# ---------------------------------------------------------------- class balancing
def test_balanced_class_weights_are_inverse_frequency() -> None:
    # n_total / (n_classes * n_c): 40 / (2 * 30) and 40 / (2 * 10)
    assert td.balanced_class_weights([30, 10]) == pytest.approx([2 / 3, 2.0])
    assert td.balanced_class_weights([5, 5, 5]) == pytest.approx([1.0, 1.0, 1.0])
    # Each class then carries the same total weight.
    w = td.balanced_class_weights([88, 12])
    assert 88 * w[0] == pytest.approx(12 * w[1])
    with pytest.raises(ValueError, match="at least one"):
        td.balanced_class_weights([3, 0])


def test_weighted_loss_uses_the_balanced_weights() -> None:
    counts = [30, 10]
    cfg = TrainConfig(data=Path("."), out=Path("x"), class_weighting="weighted_loss")
    criterion = train_mod.make_criterion(cfg, counts, torch.device("cpu"))
    assert torch.allclose(criterion.weight, torch.tensor([2 / 3, 2.0]))
    # A wrong guess on the rare class costs three times as much as one on the common class.
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    per_item = nn.functional.cross_entropy(logits, torch.tensor([0, 1]), reduction="none")
    weighted = criterion(logits, torch.tensor([0, 1]))
    expected = (2 / 3 * per_item[0] + 2.0 * per_item[1]) / (2 / 3 + 2.0)
    assert weighted == pytest.approx(float(expected))
    plain = train_mod.make_criterion(replace_weighting(cfg, "none"), counts, torch.device("cpu"))
    assert plain.weight is None


def replace_weighting(cfg: TrainConfig, weighting: str) -> TrainConfig:
    from dataclasses import replace

    return replace(cfg, class_weighting=weighting)


class _Targets(Dataset):
    def __init__(self, targets: list[int]) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor(i), self.targets[i]


def _drawn(loader: torch.utils.data.DataLoader, epochs: int) -> list[int]:
    return [int(i) for _ in range(epochs) for batch, _ in loader for i in batch]


def test_balanced_sampler_draws_each_class_equally_often() -> None:
    targets = [0] * 88 + [1] * 12  # a quality set: 12% "inadequate"
    counts = td.class_counts(targets, 2)
    assert counts == [88, 12]
    weights = td.balanced_sample_weights(targets, counts)
    assert weights[0] == pytest.approx(1 / 88) and weights[-1] == pytest.approx(1 / 12)
    assert sum(weights[:88]) == pytest.approx(sum(weights[88:])) == pytest.approx(1.0)

    cfg = TrainConfig(data=Path("."), out=Path("x"), batch_size=10)
    balanced = train_mod.make_loader(
        _Targets(targets), replace_weighting(cfg, "balanced_sampler"), counts,
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    drawn = _drawn(balanced, epochs=30)
    assert len(drawn) == 30 * 100  # an epoch still has one draw per training image
    rare = np.mean([targets[i] >= 1 for i in drawn])
    assert 0.45 < rare < 0.55  # 12% of the images, half of the draws
    assert len(set(drawn[:100])) < 100  # drawn with replacement: repeats within an epoch

    plain = train_mod.make_loader(_Targets(targets), cfg, counts, torch.Generator().manual_seed(0))
    one_epoch = _drawn(plain, epochs=1)
    assert sorted(one_epoch) == list(range(100))  # every image exactly once
    assert one_epoch != list(range(100))  # shuffled


def test_loader_drops_a_trailing_batch_of_one() -> None:
    cfg = TrainConfig(data=Path("."), out=Path("x"), batch_size=4)
    loader = train_mod.make_loader(
        _Targets([0, 1] * 4 + [0]), cfg, [5, 4], torch.Generator().manual_seed(0)
    )
    assert [len(b) for b, _ in loader] == [4, 4]  # BatchNorm cannot train on a single image


def test_balanced_sampler_training_runs_on_an_imbalanced_folder_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "quality"
    for cls, n in (("adequate", 14), ("inadequate", 4)):
        (data / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / cls / f"{i}.png")
    result = train_model(
        _config(data, tmp_path / "b", epochs=1, class_weighting="balanced_sampler")
    )
    training = load_bundle(tmp_path / "b").card.extra["training"]
    # validation: round(14 * 0.25) = 4 and round(4 * 0.25) = 1 images
    assert training["class_counts_train"] == {"adequate": 10, "inadequate": 3}
    assert training["class_weighting"] == "balanced_sampler"
    assert set(result.per_class_recall) == {"adequate", "inadequate"}  # both validated


# ---------------------------------------------------------------- best epoch
def _scripted_evaluation(monkeypatch: pytest.MonkeyPatch, accuracy: list[float], loss: list[float]):
    """Replace the per-epoch validation with scripted numbers; record the weights at each call."""
    snapshots: list[dict[str, torch.Tensor]] = []

    def fake(model: nn.Module, dataset: object, config: object, device: object, n: int):
        k = len(snapshots)
        snapshots.append({key: v.detach().clone() for key, v in model.state_dict().items()})
        return EvalResult(loss[k], accuracy[k], accuracy[k], [accuracy[k]] * n, 4)

    monkeypatch.setattr(train_mod, "evaluate", fake)
    return snapshots


@pytest.mark.parametrize(
    ("accuracy", "loss", "best"),
    [
        ([0.5, 0.9, 0.6], [0.7, 0.6, 0.5], 2),  # the highest accuracy wins over a lower loss
        ([0.5, 0.9, 0.9], [0.7, 0.6, 0.4], 3),  # equal accuracy: the lower loss breaks the tie
        ([0.9, 0.5, 0.5], [0.1, 0.2, 0.3], 1),
    ],
)
@pytest.mark.slow
def test_best_epoch_by_validation_accuracy_is_the_one_stored(
    synth: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    accuracy: list[float],
    loss: list[float],
    best: int,
) -> None:
    snapshots = _scripted_evaluation(monkeypatch, accuracy, loss)
    result = train_model(_config(synth, tmp_path / "b", epochs=3))
    assert result.best_epoch == best
    stored = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(stored[k], snapshots[best - 1][k]) for k in stored)
    last = snapshots[-1]
    assert best == 3 or not all(torch.equal(stored[k], last[k]) for k in stored)
    with open(tmp_path / "b" / "training_log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["val_acc"]) for r in rows] == accuracy
    improved = [int(r["best"]) for r in rows]
    assert improved[best - 1] == 1 and improved[0] == 1
    assert load_bundle(tmp_path / "b").card.extra["training"]["best_epoch"] == best


@pytest.mark.slow
def test_stop_request_keeps_the_best_finished_epoch(synth: Path, tmp_path: Path) -> None:
    batches = 0

    def stop() -> bool:
        nonlocal batches
        batches += 1
        return batches > 3 + 1  # 3 batches per epoch: stop in the second epoch

    result = train_model(_config(synth, tmp_path / "b", epochs=5), should_stop=stop)
    assert result.stopped_early and result.best_epoch == 1 and len(result.history) == 1
    assert load_bundle(tmp_path / "b").card.extra["training"]["stopped_early"] is True

    with pytest.raises(TrainError, match="before the first epoch"):
        train_model(_config(synth, tmp_path / "c"), should_stop=lambda: True)
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- initialisation and freezing
@pytest.mark.slow
def test_continue_from_a_bundle_with_frozen_body_changes_only_the_head(
    synth: Path, tmp_path: Path
) -> None:
    train_model(_config(synth, tmp_path / "first", epochs=1))
    result = train_model(
        _config(synth, tmp_path / "second", init=str(tmp_path / "first"), unfreeze_blocks=0)
    )
    first = load_file(tmp_path / "first" / "model.safetensors")
    second = load_file(tmp_path / "second" / "model.safetensors")
    body = [k for k in first if not k.startswith("head.")]
    assert "block1.1.running_mean" in body  # frozen BatchNorm keeps its statistics too
    assert all(torch.equal(first[k], second[k]) for k in body)
    assert not torch.equal(first["head.weight"], second["head.weight"])
    training = load_bundle(tmp_path / "second").card.extra["training"]
    assert training["trainable_parameters"] == 8 * 2 + 2
    assert training["new_parameters"] == []  # same classes: the head was reused
    assert result.best_epoch >= 1


def test_unfreeze_counts_blocks_from_the_output_end() -> None:
    model = build_model("timm:resnet10t", 2, (32, 32))
    trainable, total = apply_unfreeze(model, 1)
    expected = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("layer4", "fc")))
    assert trainable == expected < total
    assert apply_unfreeze(model, -1) == (total, total)
    head_only, _ = apply_unfreeze(model, 0)
    assert head_only == model.fc.weight.numel() + model.fc.bias.numel()


@pytest.mark.slow
def test_timm_architecture_trains_through_the_command_line(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "resnet"
    args = [
        "train", str(synth), "--out", str(out), "--arch", "timm:resnet10t", "--image-size", "32",
        "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.25", "--quiet",
        "--model-kwargs", "drop_rate=0.25",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "validation accuracy" in printed and str(out) in printed
    bundle = load_bundle(out)
    card = bundle.card
    assert card.target_layers == ["layer4[-1]"]
    assert card.extra["model_kwargs"] == {"drop_rate": 0.25}  # rebuilt with the same arguments
    assert bundle.build_model("cpu").drop_rate == 0.25
    assert card.extra["training"]["init"] == "none"
    # The recorded command parses back to the same configuration.
    command = card.extra["training"]["command"]
    ns = build_parser().parse_args(shlex.split(command)[1:])
    assert config_from_args(ns) == config_from_args(build_parser().parse_args(args))


# ---------------------------------------------------------------- bad input
def test_one_class_only_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "one"
    data.mkdir()
    for i in range(4):
        Image.new("RGB", (24, 24), (i * 40, 0, 0)).save(data / f"{i}.png")
    (data / "labels.csv").write_text(
        "image,diagnosis\n" + "".join(f"{i}.png,normal\n" for i in range(4))
    )
    with pytest.raises(DatasetError, match="at least two classes, found only 'normal'") as exc:
        train_model(_config(data, tmp_path / "b"))
    assert str(data) in str(exc.value)
    # A single class sub-folder is a container, not a label: no labels at all.
    (data / "labels.csv").unlink()
    folder = tmp_path / "folder"
    (folder / "normal").mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (24, 24), (i * 40, 0, 0)).save(folder / "normal" / f"{i}.png")
    with pytest.raises(DatasetError, match="at least two classes, found no labels"):
        train_model(_config(folder, tmp_path / "b"))
    assert not (tmp_path / "b").exists()


def test_unknown_architecture_is_a_clear_error(synth: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="timm:resnet10x.*unknown timm model"):
        train_model(_config(synth, tmp_path / "b", architecture="timm:resnet10x"))
    with pytest.raises(TrainError, match="needs architecture timm:tf_efficientnet_lite0"):
        train_model(_config(synth, tmp_path / "b", architecture=TINY, init="imagenet-effnet-lite0"))
    with pytest.raises(TrainError, match="with {'nonsense': 1}"):
        train_model(
            _config(
                synth,
                tmp_path / "b",
                architecture="timm:resnet10t",
                model_kwargs=(("nonsense", 1),),
            )
        )
    with pytest.raises(TrainError, match="model argument"):
        train_model(_config(synth, tmp_path / "b", model_kwargs=(("not a name", 1),)))
    with pytest.raises(TrainError, match="neither"):
        train_model(_config(synth, tmp_path / "b", init=str(tmp_path / "missing")))
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs must be at least 1"),
        ("batch_size", 1, "batch size must be at least 2"),
        ("class_weighting", "oversample", "class weighting 'oversample'"),
        ("val_fraction", 1.0, "validation fraction"),
        ("image_size", 8, "too small"),
    ],
)
def test_bad_settings_are_named(
    synth: Path, tmp_path: Path, field: str, value: object, message: str
) -> None:
    with pytest.raises(FundusReviewError, match=message):
        train_model(_config(synth, tmp_path / "b", **{field: value}))


def test_missing_dataset_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=f"dataset folder {tmp_path / 'nope'} does not exist"):
        train_model(_config(tmp_path / "nope", tmp_path / "b"))


def test_unreadable_image_is_skipped_and_reported(tmp_path: Path) -> None:
    data = tmp_path / "set"
    for cls in ("a", "b"):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (24, 24), (60 * i, 100 if cls == "a" else 0, 0)).save(
                data / cls / f"{i}.png"
            )
    (data / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = train_model(_config(data, tmp_path / "b", epochs=1))
    assert any(p.endswith("broken.png") for p, _ in result.problems)
    assert result.n_train + result.n_val == 8
    heldout = (tmp_path / "b" / "heldout.txt").read_text()
    assert "broken" not in heldout


# ---------------------------------------------------------------- provenance of the data
@pytest.mark.slow
def test_card_records_the_data_digest_and_how_synthetic_data_was_made(
    synth: Path, tmp_path: Path
) -> None:
    train_model(_config(synth, tmp_path / "a", epochs=1))
    training = load_bundle(tmp_path / "a").card.extra["training"]
    assert training["synthetic_data"]["seed"] == 5 and training["synthetic_data"]["n"] == 16
    assert "data_command" not in training  # lesions=False cannot be said on the command line
    copy = tmp_path / "copy"
    shutil.copytree(synth, copy)
    with open(copy / "labels.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    rows[1][1] = "normal" if rows[1][1] == "glaucoma" else "glaucoma"  # one label changed
    with open(copy / "labels.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    train_model(_config(copy, tmp_path / "b", epochs=1))
    other = load_bundle(tmp_path / "b").card.extra["training"]["data_sha256"]
    assert len(training["data_sha256"]) == 64 and other != training["data_sha256"]


def test_recorded_demo_data_command_writes_the_same_files(tmp_path: Path) -> None:
    original = write_demo_dataset(
        tmp_path / "orig", n=2, seed=3, size=(64, 64), confounder=True, confounder_strength=0.5
    )
    command = synthetic_provenance(original)["data_command"]
    expected = f"fundus-review demo-data {original} --n 2 --seed 3 --size 64 --confounder"
    assert command == expected + " --confounder-strength 0.5"
    args = shlex.split(command)[1:]
    args[1] = str(tmp_path / "again")
    assert main(args) == 0
    files = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
    assert files and all(
        (original / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files
    )
    assert synthetic_provenance(tmp_path) == {}  # not a synthetic set


def test_every_recorded_option_is_one_the_train_command_accepts() -> None:
    # The option table lives in training/ (the bundle writer records it); the parser in cli/.
    from fundus_review.training.command import OPTIONS

    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    accepted = {s for a in sub._actions for s in a.option_strings}
    assert set(OPTIONS.values()) <= accepted, set(OPTIONS.values()) - accepted
