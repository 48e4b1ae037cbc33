"""pick_device: cuda > mps > cpu by default, clear errors for devices that are not there."""

from __future__ import annotations

import pytest
import torch

from fundus_review.inference import device as device_mod
from fundus_review.inference.device import DeviceError, pick_device


def _fake(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, count: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if cuda else 0)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_prefers_cuda_then_mps_then_cpu(
    monkeypatch, cuda: bool, mps: bool, expected: str
) -> None:
    _fake(monkeypatch, cuda, mps)
    assert pick_device(None).type == expected
    assert pick_device("auto").type == expected
    assert pick_device(" AUTO ").type == expected


def test_explicit_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, cuda=True, mps=False, count=2)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match=r"only 2 CUDA device\(s\)"):
        pick_device("cuda:2")
    with pytest.raises(DeviceError, match="MPS is not available"):
        pick_device("mps")


def test_missing_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, cuda=False, mps=False)
    with pytest.raises(DeviceError, match="CUDA is not available.*--device cpu"):
        pick_device("cuda")


def test_unknown_device_names() -> None:
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
    with pytest.raises(DeviceError, match="unsupported device 'meta'"):
        pick_device("meta")


def test_real_machine_default_is_usable() -> None:
    dev = pick_device()
    assert torch.zeros(1, device=dev).device.type == dev.type
