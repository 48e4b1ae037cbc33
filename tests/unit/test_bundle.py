"""Model bundles: writing, loading, checkpoint formats, and every mismatch a user can make."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from fundus_review.errors import BundleError
from fundus_review.inference.bundle import (
    ModelCard,
    describe_bundle,
    load_bundle,
    write_bundle,
)
from fundus_review.inference.toml_writer import dump_toml

SIZE = (64, 64)


class Pickled:
    """A custom class: a pickle containing it must never be unpickled by load_bundle."""

    def __init__(self) -> None:
        self.payload = 1


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=2).eval()


def _card(**over) -> ModelCard:
    base = dict(name="dr", architecture="timm:resnet18", classes=["healthy", "dr"], input_size=SIZE)
    base.update(over)
    return ModelCard(**base)


def _write_card(folder: Path, weights: str, **over) -> None:
    doc = _card(**over).to_dict()
    doc["weights"] = weights
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.toml").write_text(dump_toml(doc), encoding="utf-8")


def _x() -> torch.Tensor:
    return torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))


def test_fp16_bundle_round_trip(tmp_path: Path, resnet: nn.Module) -> None:
    training = {
        "epochs": 3, "lr": 1e-4, "finished": "2025-01-02T03:04:05+00:00",
        "per_class_recall": {"healthy": 0.9, "dr / severe": 0.5}, "note": 'quote " and \\ slash\nnew line',
        "fresh_parameters": [], "flags": [True, False],
    }  # fmt: skip
    card = _card(target_layers=["layer4[-1]"], description="test ✓", extra={"training": training})
    bundle = write_bundle(tmp_path / "b", card, resnet.state_dict(), dtype=torch.float16)
    assert sorted(p.name for p in bundle.path.iterdir()) == ["model.safetensors", "model.toml"]
    stored = load_file(str(bundle.weights_path))
    assert stored["fc.weight"].dtype == torch.float16
    assert stored["bn1.num_batches_tracked"].dtype == torch.int64  # integers are not cast
    assert bundle.weights_sha256 == hashlib.sha256(bundle.weights_path.read_bytes()).hexdigest()
    again = load_bundle(tmp_path / "b" / "model.toml")
    assert again.card == bundle.card
    assert again.card.extra["training"] == training
    assert again.card.input_size == SIZE and again.card.classes == ["healthy", "dr"]

    model = bundle.build_model()
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    torch.testing.assert_close(model.fc.weight, resnet.fc.weight.half().float(), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), resnet(_x()), atol=2e-2, rtol=1e-2)


def test_lightning_checkpoint_loads(tmp_path: Path, resnet: nn.Module) -> None:
    state = {f"model.{k}": v for k, v in resnet.state_dict().items()}
    state["loss_fn.weight"] = torch.ones(2)  # a LightningModule's own buffer, not the network's
    ckpt = {"epoch": 7, "global_step": 70, "pytorch-lightning_version": "2.4.0",
            "state_dict": state, "hyper_parameters": {"lr": 0.01, "name": "x"}}  # fmt: skip
    folder = tmp_path / "lightning"
    folder.mkdir()
    torch.save(ckpt, folder / "last.ckpt")
    _write_card(folder, "last.ckpt")
    model = load_bundle(folder).build_model()
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), resnet(_x()))


def test_dataparallel_state_dict_loads_and_weights_are_found_without_card_entry(
    tmp_path: Path, resnet: nn.Module
) -> None:
    folder = tmp_path / "dp"
    folder.mkdir()
    torch.save({f"module.{k}": v for k, v in resnet.state_dict().items()}, folder / "w.pth")
    doc = _card().to_dict()
    del doc["weights"]
    (folder / "model.toml").write_text(dump_toml(doc), encoding="utf-8")
    bundle = load_bundle(folder)
    assert bundle.weights_path.name == "w.pth"
    torch.testing.assert_close(bundle.build_model().fc.bias, resnet.fc.bias)


def test_custom_pickle_is_refused(tmp_path: Path, resnet: nn.Module) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"state_dict": resnet.state_dict(), "extra": Pickled()}, folder / "model.pt")
    _write_card(folder, "model.pt")
    bundle = load_bundle(folder)
    with pytest.raises(BundleError, match="refused to load") as info:
        bundle.build_model()
    assert str(folder) in str(info.value) and "model.pt" in str(info.value)


def test_wrong_class_count_names_head_and_numbers(tmp_path: Path, resnet: nn.Module) -> None:
    folder = tmp_path / "three"
    write_bundle(folder, _card(), resnet.state_dict())
    _write_card(folder, "model.safetensors", classes=["a", "b", "c"])
    with pytest.raises(BundleError) as info:
        load_bundle(folder).build_model()
    msg = str(info.value)
    assert "3 classes" in msg and "`fc`" in msg and "2 outputs" in msg and str(folder) in msg


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path, resnet: nn.Module) -> None:
    state = dict(resnet.state_dict())
    del state["layer4.1.conv2.weight"]
    state["extra_head.weight"] = torch.zeros(3)
    write_bundle(tmp_path / "k", _card(), state)
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "k").build_model()
    msg = str(info.value)
    assert "missing keys: layer4.1.conv2.weight" in msg
    assert "unexpected keys: extra_head.weight" in msg


def test_weights_of_another_architecture(tmp_path: Path, resnet: nn.Module) -> None:
    write_bundle(tmp_path / "arch", _card(architecture="timm:resnet34"), resnet.state_dict())
    with pytest.raises(BundleError, match=r"missing keys: .*layer1\.2\."):
        load_bundle(tmp_path / "arch").build_model()


def test_vit_input_size_different_from_training_is_explained(tmp_path: Path) -> None:
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=32)
    card = _card(architecture="timm:vit_tiny_patch16_224", input_size=(32, 32))
    bundle = write_bundle(tmp_path / "vit", card, vit.state_dict())
    assert bundle.build_model() is not None
    _write_card(
        tmp_path / "vit", "model.safetensors", architecture=card.architecture, input_size=(64, 64)
    )
    with pytest.raises(BundleError, match=r"pos_embed.*input_size"):
        load_bundle(tmp_path / "vit").build_model()


def test_torchvision_and_factory_architectures(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=2).eval()
    for arch in ("torchvision:mobilenet_v3_small", "torchvision.models:mobilenet_v3_small"):
        folder = tmp_path / arch.replace(":", "_")
        model = write_bundle(folder, _card(architecture=arch), net.state_dict()).build_model()
        with torch.no_grad():
            torch.testing.assert_close(model(_x()), net(_x()))


@pytest.mark.parametrize(
    ("toml_text", "pattern"),
    [
        ('name = "x"\narchitecture = timm:resnet18\n', r"invalid TOML.*at line 2"),
        ('classes = ["a", "b"]\ninput_size = [64, 64]\n', "missing required field.*architecture"),
        ('architecture = "timm:resnet18"\nclasses = ["a"]\ninput_size = [8, 8]\n', "input_size.*not acceptable"),
        ('architecture = "timm:resnet18"\nclasses = ["a"]\ninput_size = [64, 64]\nresize = "stretch"\n', "resize"),
        ('architecture = "timm:resnet18"\nclasses = ["a", "a"]\ninput_size = [64, 64]\n', "duplicates"),
        ('architecture = "resnet18"\nclasses = ["a"]\ninput_size = [64, 64]\n', "timm:<name>"),
        ('architecture = "timm:resnet18"\nclasses = ["a"]\ninput_size = [64, 64]\nweights = "../x.pt"\n', "inside the bundle"),
    ],
)  # fmt: skip
def test_bad_cards(tmp_path: Path, toml_text: str, pattern: str) -> None:
    (tmp_path / "model.toml").write_text(toml_text, encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(BundleError, match=pattern) as info:
        load_bundle(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_missing_pieces(tmp_path: Path, resnet: nn.Module) -> None:
    with pytest.raises(BundleError, match="no such folder"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no model.toml"):
        load_bundle(tmp_path / "empty")
    _write_card(tmp_path / "now", "weights.safetensors")
    with pytest.raises(BundleError, match="'weights.safetensors' not found"):
        load_bundle(tmp_path / "now")


def test_unknown_architecture_suggests_names(tmp_path: Path, resnet: nn.Module) -> None:
    write_bundle(tmp_path / "u", _card(architecture="timm:resnet181"), resnet.state_dict())
    with pytest.raises(BundleError, match=r"unknown timm model 'resnet181'.*resnet18"):
        load_bundle(tmp_path / "u").build_model()
    write_bundle(tmp_path / "m", _card(architecture="no_such_pkg.mod:make"), resnet.state_dict())
    with pytest.raises(BundleError, match="cannot import module 'no_such_pkg.mod'"):
        load_bundle(tmp_path / "m").build_model(trust_code=True)  # untrusted: never imported


def test_corrupt_weights_file(tmp_path: Path, resnet: nn.Module) -> None:
    bundle = write_bundle(tmp_path / "c", _card(), resnet.state_dict())
    data = bundle.weights_path.read_bytes()
    bundle.weights_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="cannot read safetensors"):
        load_bundle(tmp_path / "c").build_model()
    torch.save([1, 2, 3], tmp_path / "c" / "list.pt")
    _write_card(tmp_path / "c", "list.pt")
    with pytest.raises(BundleError, match="holds no state_dict"):
        load_bundle(tmp_path / "c").build_model()


def test_rewriting_a_bundle_keeps_other_files(tmp_path: Path, resnet: nn.Module) -> None:
    folder = tmp_path / "again"
    first = write_bundle(folder, _card(), resnet.state_dict())
    (folder / "log.csv").write_text("epoch,loss\n", encoding="utf-8")
    second = write_bundle(folder, _card(description="v2"), resnet.state_dict(), dtype=torch.float16)
    assert (folder / "log.csv").exists()
    assert second.weights_sha256 != first.weights_sha256
    assert second.card.description == "v2"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_written_toml_is_plain_and_readable(tmp_path: Path, resnet: nn.Module) -> None:
    bundle = write_bundle(
        tmp_path / "t", _card(extra={"model_kwargs": {"drop_rate": 0.1}}), resnet.state_dict()
    )
    doc = tomllib.loads((bundle.path / "model.toml").read_text(encoding="utf-8"))
    assert doc["architecture"] == "timm:resnet18" and doc["input_size"] == [64, 64]
    assert doc["model_kwargs"] == {"drop_rate": 0.1}
    assert bundle.build_model().drop_rate == 0.1  # model_kwargs reach the constructor


def test_describe_bundle(tmp_path: Path, resnet: nn.Module) -> None:
    bundle = write_bundle(tmp_path / "d", _card(), resnet.state_dict())
    text = describe_bundle(bundle)
    n_params = sum(p.numel() for p in resnet.parameters())
    assert f"{n_params:,}" in text
    assert "timm:resnet18" in text and "healthy, dr" in text
    assert "layer4[-1] (family default)" in text
    assert re.search(r"layer4\.1\s+\(512, 2, 2\)", text)
    assert bundle.weights_sha256 in text
