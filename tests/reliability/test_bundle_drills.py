"""Drills on broken model bundles: `analyze` and `model inspect` end with one line that names
the bundle (or its card) and says what is wrong, and nothing already stored is lost."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from fundus_review.cli.main import main
from fundus_review.inference.bundle import ModelCard, write_bundle

CLASSES = ["a", "b"]


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    import timm

    return timm.create_model("resnet10t", pretrained=False, num_classes=2).eval()


def _card(**over: object) -> ModelCard:
    base: dict = dict(name="t", architecture="timm:resnet10t", classes=CLASSES, input_size=(32, 32))
    return ModelCard(**{**base, **over})


def _wrong_class_count(folder: Path, tiny: nn.Module) -> str:
    write_bundle(folder, _card(classes=["a", "b", "c"]), tiny.state_dict())
    return "3 classes but the weights' classification head `fc` has 2 outputs"


def _no_card(folder: Path, tiny: nn.Module) -> str:
    write_bundle(folder, _card(), tiny.state_dict())
    (folder / "model.toml").unlink()
    return "no model.toml"


def _garbage_toml(folder: Path, tiny: nn.Module) -> str:
    write_bundle(folder, _card(), tiny.state_dict())
    (folder / "model.toml").write_bytes(b"\x00\xff garbage = = [\n")
    return "model.toml: invalid TOML"


def _unknown_architecture(folder: Path, tiny: nn.Module) -> str:
    write_bundle(folder, _card(architecture="timm:resnet10tt"), tiny.state_dict())
    return "unknown timm model 'resnet10tt'. Did you mean: resnet10t"


def _missing_layer(folder: Path, tiny: nn.Module) -> str:
    write_bundle(folder, _card(target_layers=["layer9[-1]"]), tiny.state_dict())
    return "model.toml: target_layers: no layer 'layer9[-1]'"


def _other_architecture(folder: Path, tiny: nn.Module) -> str:
    import torchvision

    other = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=2)
    write_bundle(folder, _card(), other.state_dict())
    return "the weights do not fit the architecture: missing keys"


def _truncated_weights(folder: Path, tiny: nn.Module) -> str:
    bundle = write_bundle(folder, _card(), tiny.state_dict())
    data = bundle.weights_path.read_bytes()
    bundle.weights_path.write_bytes(data[: len(data) // 3])
    return "model.safetensors): cannot read safetensors file"


DRILLS: dict[str, Callable[[Path, nn.Module], str]] = {
    "wrong class count": _wrong_class_count,
    "no card": _no_card,
    "garbage TOML": _garbage_toml,
    "unknown architecture": _unknown_architecture,
    "missing layer": _missing_layer,
    "weights of another architecture": _other_architecture,
    "truncated safetensors": _truncated_weights,
}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, tiny: nn.Module) -> tuple[Path, Path]:
    """A dataset and a database that already holds one good analysis."""
    root = tmp_path_factory.mktemp("drills")
    data = root / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(data / f"im{i}.png")
    good = write_bundle(root / "good", _card(name="good"), tiny.state_dict()).path
    db = root / "kept.db"
    assert main(["analyze", str(data), "--model", str(good), "--db", str(db), "--quiet"]) == 0
    return data, db


def _heatmaps(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM heatmaps").fetchone()[0]


@pytest.mark.parametrize("drill", list(DRILLS))
def test_a_broken_bundle_is_one_clear_line_and_loses_nothing(
    drill: str,
    tmp_path: Path,
    tiny: nn.Module,
    stored: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, db = stored
    bundle = tmp_path / "bundle"
    expected = DRILLS[drill](bundle, tiny)
    before = _heatmaps(db)
    code = main(["analyze", str(data), "--model", str(bundle), "--db", str(db), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(bundle) in err and expected in err, err
    assert _heatmaps(db) == before  # the earlier analysis is intact

    code = main(["model", "inspect", str(bundle)])
    captured = capsys.readouterr()
    if drill == "missing layer":  # inspect shows the candidates that fix it
        assert code == 0 and expected in captured.out and "Candidate target layers" in captured.out
    else:
        assert code == 2 and expected in captured.err and str(bundle) in captured.err
