"""No code runs from a bundle unless the user allowed its module (inference/trust.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.cli.main import main
from fundus_review.errors import BundleError, FundusReviewError
from fundus_review.inference.bundle import ModelCard, load_bundle, write_bundle
from fundus_review.inference.trust import UntrustedCodeError
from tests.reliability.hostile_code import make

HOSTILE = "tests.reliability.hostile_code"


def _card_bundle(folder: Path, architecture: str, extra: str = "") -> Path:
    folder.mkdir(parents=True)
    (folder / "model.toml").write_text(
        f'name = "x"\narchitecture = "{architecture}"\nclasses = ["a", "b"]\n'
        f"input_size = [32, 32]\n{extra}",
        encoding="utf-8",
    )
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def _hostile_bundle(folder: Path) -> Path:
    card = ModelCard(
        name="h", architecture=f"{HOSTILE}:make", classes=["a", "b"], input_size=(32, 32)
    )
    return write_bundle(folder, card, make(2).state_dict()).path


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ran"
    monkeypatch.setenv("FUNDUS_REVIEW_TEST_MARKER", str(path))
    monkeypatch.delitem(sys.modules, HOSTILE, raising=False)
    return path


def _dataset(folder: Path) -> Path:
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((24, 24, 3), 40 * i, np.uint8)).save(folder / f"im{i}.png")
    return folder


def test_a_subprocess_card_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = tmp_path / "x"
    bundle = _card_bundle(
        tmp_path / "b", "subprocess:getoutput", f'[model_kwargs]\ncmd = "id > {x}"\n'
    )
    assert main(["model", "inspect", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert not x.exists()
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert str(bundle) in err and "'subprocess'" in err and "--trust-code" in err
    assert "trusted_code.toml" in err

    data = _dataset(tmp_path / "d")
    args = ["analyze", str(data), "--model", str(bundle), "--db", str(tmp_path / "a.db")]
    assert main([*args, "--quiet"]) == 2
    assert "'subprocess'" in capsys.readouterr().err
    assert not x.exists()


def test_the_named_module_is_not_even_imported(
    tmp_path: Path, marker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _hostile_bundle(tmp_path / "b")
    with pytest.raises(UntrustedCodeError, match=HOSTILE) as info:
        load_bundle(bundle).build_model()
    assert info.value.module == HOSTILE
    assert main(["model", "inspect", str(bundle)]) == 2
    assert HOSTILE in capsys.readouterr().err
    assert HOSTILE not in sys.modules and not marker.exists()


def test_trust_code_allows_the_module_of_that_bundle(
    tmp_path: Path, marker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _hostile_bundle(tmp_path / "b")
    assert main(["model", "inspect", str(bundle), "--trust-code"]) == 0
    assert f"{HOSTILE}:make" in capsys.readouterr().out
    assert marker.exists()  # the user allowed it, so it ran


def test_the_allow_list_allows_a_package_and_its_modules(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _hostile_bundle(tmp_path / "b")
    config = tmp_path / "config"
    config.mkdir()
    monkeypatch.setenv("FUNDUS_REVIEW_CONFIG", str(config))
    (config / "trusted_code.toml").write_text('modules = ["tests.reliability"]\n', "utf-8")
    assert load_bundle(bundle).build_model() is not None
    (config / "trusted_code.toml").write_text('modules = ["tests.reliability.other"]\n', "utf-8")
    with pytest.raises(UntrustedCodeError):
        load_bundle(bundle).build_model()
    (config / "trusted_code.toml").write_text("modules = [\n", "utf-8")
    with pytest.raises(FundusReviewError, match=r"trusted_code.toml: invalid TOML"):
        load_bundle(bundle).build_model()


def test_a_module_inside_the_bundle_is_refused_even_when_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    x = tmp_path / "x"
    bundle = _card_bundle(tmp_path / "b", "shipped_code_xyz:make")
    (bundle / "shipped_code_xyz.py").write_text(
        f"open({str(x)!r}, 'w').write('ran')\ndef make(**kw):\n    return None\n", "utf-8"
    )
    # As if the user ran `python -m fundus_review` inside the bundle folder.
    monkeypatch.syspath_prepend(str(bundle))
    assert main(["model", "inspect", str(bundle), "--trust-code"]) == 2
    err = capsys.readouterr().err
    assert "bundle's own folder" in err and "shipped_code_xyz" in err
    assert not x.exists() and "shipped_code_xyz" not in sys.modules


@pytest.mark.parametrize(
    "kwargs", ['checkpoint_path = "/etc/passwd"', "pretrained = true", 'weights = "DEFAULT"']
)
def test_library_models_may_not_load_files_or_download(tmp_path: Path, kwargs: str) -> None:
    bundle = _card_bundle(tmp_path / "b", "timm:resnet18", f"[model_kwargs]\n{kwargs}\n")
    with pytest.raises(BundleError, match="load a file or download weights"):
        load_bundle(bundle).build_model()


def test_timm_and_torchvision_names_need_no_trust(tmp_path: Path) -> None:
    import torchvision

    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=2)
    for arch in ("torchvision:mobilenet_v3_small", "torchvision.models:mobilenet_v3_small"):
        card = ModelCard(name="t", architecture=arch, classes=["a", "b"], input_size=(32, 32))
        bundle = write_bundle(tmp_path / arch.replace(":", "_"), card, net.state_dict())
        assert bundle.build_model() is not None
