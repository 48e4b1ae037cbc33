"""Choose the torch device: CUDA when present, else Apple MPS, else CPU; or what the user asks."""

from __future__ import annotations

import torch

from fundus_review.errors import FundusReviewError


class DeviceError(FundusReviewError):
    """The requested device does not exist on this machine."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(preference: str | None = None) -> torch.device:
    """`None`/"auto": cuda > mps > cpu. "cpu", "cuda", "cuda:N", "mps": that device, or a
    DeviceError saying why it cannot be used."""
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(pref)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(
            f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {preference!r} requested but CUDA is not available on this machine "
                "(no NVIDIA GPU, or torch was installed without CUDA support); use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"device {preference!r} requested but only {count} CUDA device(s) exist "
                f"(cuda:0..cuda:{count - 1})"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError(
                f"device {preference!r} requested but Apple MPS is not available; use --device cpu"
            )
        return device
    raise DeviceError(f"unsupported device {preference!r}; use auto, cpu, cuda, cuda:N or mps")
