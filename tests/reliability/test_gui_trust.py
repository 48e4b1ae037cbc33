"""The window asks before a bundle's code runs, and names the module (gui/trust_prompt.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from fundus_review.gui.trust_prompt import allow_bundle_code  # noqa: E402
from fundus_review.inference.trust import UntrustedCodeError, is_trusted  # noqa: E402

pytestmark = pytest.mark.gui


def _bundle(folder: Path, architecture: str) -> Path:
    folder.mkdir()
    (folder / "model.toml").write_text(
        f'architecture = "{architecture}"\nclasses = ["a", "b"]\ninput_size = [32, 32]\n', "utf-8"
    )
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def _answer(monkeypatch: pytest.MonkeyPatch, button: QMessageBox.StandardButton) -> list[str]:
    asked: list[str] = []

    def question(_parent, _title, text, *_args):  # noqa: ANN001, ANN202 - QMessageBox's shape
        asked.append(text)
        return button

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


def test_declining_refuses_with_the_module_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _answer(monkeypatch, QMessageBox.StandardButton.No)
    bundle = _bundle(tmp_path / "b", "mylab_models_xyz.nets:make")
    with pytest.raises(UntrustedCodeError, match=r"'mylab_models_xyz\.nets'.*--trust-code"):
        allow_bundle_code(None, bundle)
    assert len(asked) == 1 and "mylab_models_xyz.nets" in asked[0]
    assert "trusted_code.toml" in asked[0]
    assert not is_trusted("mylab_models_xyz.nets")


def test_allowing_grants_the_module_for_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    bundle = _bundle(tmp_path / "b", "mylab_models_xyz.nets:make")
    allow_bundle_code(None, bundle)
    assert is_trusted("mylab_models_xyz.nets")
    allow_bundle_code(None, bundle)  # asked once per session
    assert len(asked) == 1


def test_library_models_and_broken_cards_ask_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _answer(monkeypatch, QMessageBox.StandardButton.No)
    allow_bundle_code(None, _bundle(tmp_path / "t", "timm:resnet18"))
    (tmp_path / "broken").mkdir()
    allow_bundle_code(None, tmp_path / "broken")  # the job reports the missing card
    assert asked == []
