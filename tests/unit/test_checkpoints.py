"""Checkpoints as research code saves them: wrappers, prefixes, Lightning, strict/non-strict."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from fundus_review.errors import BundleError
from fundus_review.inference.bundle import (
    ModelCard,
    PartialWeightsWarning,
    describe_bundle,
    load_bundle,
    read_card,
)
from fundus_review.inference.toml_writer import dump_toml
from fundus_review.inference.weights import WeightsError, load_into, read_weights

SIZE = (64, 64)


class Tiny(nn.Module):
    """A conv, a batch norm (buffers, num_batches_tracked) and a head: every kind of entry."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)


class HoldsModule(nn.Module):
    """A network whose own attribute is called `module`: its keys start with `module.`."""

    def __init__(self) -> None:
        super().__init__()
        self.module = Tiny()


def _trained(net: nn.Module, seed: int = 3) -> dict[str, torch.Tensor]:
    """A state_dict with values no fresh initialisation has (so a load is visible)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 5)
        for k, v in net.state_dict().items()
    }


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


FORMS = {
    "plain": lambda s: s,
    "model_state_dict": lambda s: {"epoch": 3, "model_state_dict": s, "optimizer": {}},
    "state_dict": lambda s: {"state_dict": s},
    "model": lambda s: {"model": s, "args": {"lr": 0.1}},
    "module_prefix": lambda s: _prefixed(s, "module."),
    "model_prefix_in_state_dict": lambda s: {"state_dict": _prefixed(s, "model.")},
    "ddp_and_compile": lambda s: {"model_state_dict": _prefixed(s, "module._orig_mod.")},
    "lightning": lambda s: {
        "epoch": 9,
        "global_step": 90,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {**_prefixed(s, "model."), "criterion.pos_weight": torch.ones(1)},
        "hyper_parameters": {"lr": 0.01},
        "optimizer_states": [],
    },
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("suffix", [".pt", ".ckpt"])
def test_each_checkpoint_form_round_trips_to_the_same_weights(
    tmp_path: Path, form: str, suffix: str
) -> None:
    source = _trained(Tiny())
    path = tmp_path / f"w{suffix}"
    torch.save(FORMS[form](source), path)
    net = Tiny()
    report = load_into(net, read_weights(path), ["a", "b"])
    assert not report.partial
    assert report.ignored == (["criterion.pos_weight"] if form == "lightning" else [])
    loaded = net.state_dict()
    assert loaded.keys() == source.keys()
    for key, value in source.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_prefixed_safetensors_round_trip(tmp_path: Path) -> None:
    source = _trained(Tiny())
    save_file(_prefixed(source, "module."), str(tmp_path / "w.safetensors"))
    net = Tiny()
    load_into(net, read_weights(tmp_path / "w.safetensors"), ["a", "b"])
    torch.testing.assert_close(net.fc.weight, source["fc.weight"], rtol=0, atol=0)


def test_a_prefix_is_kept_when_it_is_the_networks_own() -> None:
    # Stripping `module.` would make no key match; the names as stored match all of them.
    source = _trained(HoldsModule())
    net = HoldsModule()
    report = load_into(net, dict(source), ["a", "b"])
    assert not report.partial and report.ignored == []
    torch.testing.assert_close(net.module.conv.weight, source["module.conv.weight"])


def test_whole_pickled_module_is_refused(tmp_path: Path) -> None:
    torch.save(Tiny(), tmp_path / "net.pt")  # the classic `torch.save(model)`: pickled code
    with pytest.raises(WeightsError, match="refused to load: the file contains pickled"):
        read_weights(tmp_path / "net.pt")


# --- bundles: strict by default, `strict_weights = false` loads and lists ---------------------


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=2).state_dict()


def _bundle(folder: Path, state: dict, strict: bool | None = None) -> Path:
    doc = ModelCard(
        name="p", architecture="timm:resnet18", classes=["healthy", "dr"], input_size=SIZE
    ).to_dict()
    doc["weights"] = "w.ckpt"
    if strict is not None:
        doc["strict_weights"] = strict
    folder.mkdir(parents=True)
    (folder / "model.toml").write_text(dump_toml(doc), encoding="utf-8")
    torch.save({"pytorch-lightning_version": "2.4.0", "state_dict": state}, folder / "w.ckpt")
    return folder


def _partial(resnet_state: dict) -> dict[str, torch.Tensor]:
    state = _prefixed(resnet_state, "model.")
    del state["model.layer4.1.conv2.weight"], state["model.layer4.1.bn2.weight"]
    state["model.aux_head.weight"] = torch.zeros(3, 4)
    return state


def test_partial_checkpoint_is_refused_under_strict(tmp_path: Path, resnet_state: dict) -> None:
    folder = _bundle(tmp_path / "s", _partial(resnet_state))
    with pytest.raises(BundleError) as info:
        load_bundle(folder).build_model()
    msg = str(info.value)
    assert "w.ckpt" in msg and str(folder) in msg
    assert "missing keys: layer4.1.conv2.weight, layer4.1.bn2.weight" in msg
    assert "unexpected keys: aux_head.weight" in msg
    assert "strict_weights = false" in msg  # the way out is named


def test_partial_checkpoint_loads_listed_under_non_strict(
    tmp_path: Path, resnet_state: dict
) -> None:
    bundle = load_bundle(_bundle(tmp_path / "n", _partial(resnet_state), strict=False))
    assert bundle.card.strict_weights is False
    with pytest.warns(PartialWeightsWarning) as caught:
        model = bundle.build_model()
    text = str(caught[0].message)
    assert "w.ckpt" in text and "layer4.1.conv2.weight" in text and "aux_head.weight" in text
    report = bundle.load_report
    assert report is not None and not report.strict
    assert report.missing == ["layer4.1.conv2.weight", "layer4.1.bn2.weight"]
    assert report.unexpected == ["aux_head.weight"]
    torch.testing.assert_close(model.fc.weight, resnet_state["fc.weight"], rtol=0, atol=0)
    torch.testing.assert_close(
        model.layer4[0].conv1.weight, resnet_state["layer4.0.conv1.weight"], rtol=0, atol=0
    )
    with pytest.warns(PartialWeightsWarning):
        shown = describe_bundle(bundle)
    assert "Weights load:  not strict (strict_weights = false), PARTIAL: 2 missing keys" in shown
    assert "layer4.1.bn2.weight" in shown and "1 unexpected keys (not loaded): aux_head" in shown


def test_complete_checkpoint_under_non_strict_is_silent(tmp_path: Path, resnet_state: dict) -> None:
    bundle = load_bundle(_bundle(tmp_path / "c", _prefixed(resnet_state, "model."), strict=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PartialWeightsWarning)
        bundle.build_model()
    assert bundle.load_report is not None and not bundle.load_report.partial


def test_non_strict_still_refuses_wrong_shapes_and_foreign_weights(
    tmp_path: Path, resnet_state: dict
) -> None:
    wrong = dict(resnet_state)
    wrong["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(BundleError, match=r"shape mismatches: layer1\.0\.conv1\.weight"):
        load_bundle(_bundle(tmp_path / "shape", wrong, strict=False)).build_model()
    foreign = {"encoder.weight": torch.zeros(2, 2)}
    with pytest.raises(BundleError, match="no key matches the network"):
        load_bundle(_bundle(tmp_path / "foreign", foreign, strict=False)).build_model()


def test_strict_weights_card_key(tmp_path: Path, resnet_state: dict) -> None:
    folder = _bundle(tmp_path / "bad", resnet_state)
    text = (folder / "model.toml").read_text(encoding="utf-8")
    (folder / "model.toml").write_text(text + 'strict_weights = "no"\n', encoding="utf-8")
    with pytest.raises(BundleError, match="strict_weights` must be true or false"):
        load_bundle(folder)
    card = ModelCard(
        name="x", architecture="timm:resnet18", classes=["a"], input_size=SIZE, strict_weights=False
    )
    assert card.to_dict()["strict_weights"] is False
    assert "strict_weights" not in ModelCard(**{**vars(card), "strict_weights": True}).to_dict()
    (tmp_path / "rt").mkdir()
    (tmp_path / "rt" / "model.toml").write_text(dump_toml(card.to_dict()), encoding="utf-8")
    assert read_card(tmp_path / "rt")[1].strict_weights is False
