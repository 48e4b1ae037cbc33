"""Build an untrained network from a card's `architecture` string, and find its classifier head.

Architectures: `timm:<name>`, `torchvision:<name>`, or an importable `package.module:factory`.
Models are always created with pretrained=False / weights=None: the bundle's weights are loaded
afterwards, and nothing is ever fetched from a hub.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from fundus_review.inference.card import split_architecture


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _build_timm(
    name: str, num_classes: int, input_size: tuple[int, int], kwargs: dict
) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}.{_suggest(name, timm.list_models())}")
    try:
        # Transformers bake the token grid into their position embeddings; tell them the size.
        return timm.create_model(
            name, pretrained=False, num_classes=num_classes, img_size=input_size, **kwargs
        )
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def _build_torchvision(
    name: str, num_classes: int, input_size: tuple[int, int], kwargs: dict
) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models()
    if name not in known:
        raise ValueError(f"unknown torchvision model {name!r}.{_suggest(name, known)}")
    kwargs = dict(kwargs)
    if name.startswith("vit_"):
        if input_size[0] != input_size[1]:
            raise ValueError(f"torchvision {name} needs a square input, got {input_size}")
        kwargs.setdefault("image_size", input_size[0])
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def _build_factory(
    module_name: str, factory_name: str, num_classes: int, kwargs: dict
) -> nn.Module:
    # Only already-installed modules are importable: a bundle folder is never put on sys.path,
    # so loading a bundle cannot execute code shipped inside it.
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    factory: Callable[..., Any] | None = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"module {module_name!r} has no callable {factory_name!r}")
    kwargs = dict(kwargs)
    try:
        params = inspect.signature(factory).parameters
        accepts_num_classes = "num_classes" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
    except (TypeError, ValueError):
        accepts_num_classes = True
    if accepts_num_classes:
        kwargs.setdefault("num_classes", num_classes)
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"{module_name}:{factory_name} returned {type(model).__name__}, not a torch Module"
        )
    return model


def build_architecture(
    architecture: str,
    num_classes: int,
    input_size: tuple[int, int],
    kwargs: dict | None = None,
) -> nn.Module:
    """An untrained model; raises ValueError with a user-readable reason."""
    source, name = split_architecture(architecture)
    kwargs = dict(kwargs or {})
    if source == "timm":
        return _build_timm(name, num_classes, input_size, kwargs)
    if source == "torchvision":
        return _build_torchvision(name, num_classes, input_size, kwargs)
    return _build_factory(source, name, num_classes, kwargs)


def find_head(model: nn.Module) -> tuple[str, nn.Module] | None:
    """(module path, module) of the final classification layer, or None if not found."""
    head = None
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            head = get_classifier()
        except Exception:  # noqa: BLE001 - a custom model's helper may be broken; fall back
            head = None
    linear_like = (nn.Linear, nn.Conv2d)
    if isinstance(head, linear_like):
        for path, module in model.named_modules():
            if module is head:
                return path, module
    # Otherwise: the last Linear created, which is the head for torchvision and most custom nets.
    last = None
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (path, module)
    return last


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
