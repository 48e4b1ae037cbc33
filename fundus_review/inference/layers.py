"""Target layers: resolve module paths, per-family defaults, candidates, token reshapes.

Paths accept both the attribute style of grad-cam's README and `named_modules` names:
`layer4[-1]`, `features.7`, `blocks.-1`, `layers[-1].blocks[-1].norm1`, `model.layer4[-1]`.
A numeric segment indexes the children of any container in order, so `features[-1]` is
`features.norm5` in a torchvision DenseNet.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

import torch
from torch import nn

from fundus_review.errors import FundusReviewError

_PATH = re.compile(r"^(?:[^.\[\]\s]+|\[-?\d+\])(?:\.[^.\[\]\s]+|\[-?\d+\])*$")
_TOKEN = re.compile(r"\[(-?\d+)\]|([^.\[\]]+)")
# Modules that never make sense as a CAM target: they add nothing a neighbour does not show.
_SKIP_TYPES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout2d, nn.Identity)


class LayerError(FundusReviewError):
    """A target layer path does not name a module of the model."""


def _tokens(path: str) -> list[str]:
    if not isinstance(path, str) or not _PATH.match(path.strip()):
        raise LayerError(
            f"layer path {path!r} is malformed; use module names separated by dots, with "
            "optional [index], e.g. 'layer4[-1]', 'features.7', 'blocks[-1].norm1'"
        )
    return [idx if idx else name for idx, name in _TOKEN.findall(path.strip())]


def _child(module: nn.Module, token: str) -> nn.Module | None:
    if token in module._modules:
        return module._modules[token]
    if re.fullmatch(r"-?\d+", token):
        children = list(module.children())
        index = int(token)
        if -len(children) <= index < len(children):
            return children[index]
    return None


def _describe_children(module: nn.Module, limit: int = 12) -> str:
    names = list(module._modules)
    if not names:
        return "it has no sub-modules"
    shown = ", ".join(names[:limit]) + (
        f", ... ({len(names)} in all)" if len(names) > limit else ""
    )
    return f"its children are: {shown}"


def resolve_layer(model: nn.Module, path: str) -> nn.Module:
    """The sub-module named by `path`; LayerError lists the valid names near the mistake."""
    tokens = _tokens(path)
    if tokens[0] == "model" and "model" not in model._modules and len(tokens) > 1:
        tokens = tokens[1:]  # grad-cam's README writes `model.layer4[-1]`
    module, walked = model, []
    for token in tokens:
        child = _child(module, token)
        if child is None:
            where = ".".join(walked) or f"the model ({type(model).__name__})"
            all_names = [n for n, _ in model.named_modules() if n]
            close = difflib.get_close_matches(path, all_names, n=4, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise LayerError(
                f"no layer {path!r}: {where} has no {token!r}; {_describe_children(module)}.{hint}"
            )
        module, walked = child, [*walked, token]
    return module


def layer_name(model: nn.Module, layer: nn.Module | str) -> str:
    """The canonical dotted name (as in `named_modules`) of a module or path: `layer4[-1]` ->
    `layer4.1`. Stored results are keyed by it, so two spellings of one layer match."""
    module = resolve_layer(model, layer) if isinstance(layer, str) else layer
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise LayerError(f"{type(module).__name__} is not a sub-module of {type(model).__name__}")


def _family(model: nn.Module, architecture: str) -> str:
    cls = type(model).__name__.lower()
    arch = architecture.lower()
    source = (
        "torchvision"
        if arch.startswith("torchvision:")
        else "timm"
        if arch.startswith("timm:")
        else "other"
    )
    if "swin" in cls:
        return "swin"
    if "visiontransformer" in cls or ("vit" in cls and hasattr(model, "blocks")):
        return "vit"
    if isinstance(getattr(model, "layer4", None), nn.Sequential):
        return "resnet"
    if "densenet" in cls:
        return "densenet"
    if "vgg" in cls:
        return "vgg"
    if "convnext" in cls:
        return "convnext"
    if source == "timm" and hasattr(model, "blocks") and hasattr(model, "conv_head"):
        return "timm_efficientnet"
    if source == "torchvision" and ("efficientnet" in cls or "mobilenet" in cls):
        return "features"
    return "unknown"


def _last_conv_in(model: nn.Module, container: str) -> str:
    seq = getattr(model, container)
    children = list(seq.named_children())
    for i in range(len(children) - 1, -1, -1):
        name, child = children[i]
        if isinstance(child, nn.Conv2d):
            # Take the ReLU right after it when there is one: the rectified maps are what the
            # Grad-CAM paper visualises, and an in-place ReLU would rewrite the conv's output.
            if i + 1 < len(children) and isinstance(children[i + 1][1], nn.ReLU):
                name = children[i + 1][0]
            return f"{container}.{name}"
    return f"{container}[-1]"


def _wrapped(model: nn.Module) -> tuple[str, nn.Module, str] | None:
    """(attribute, inner network, its architecture) of a support-set wrapper (fewshot.py)."""
    from fundus_review.inference.fewshot import SupportSetModel

    if isinstance(model, SupportSetModel):
        return model.inner_name, model.inner, model.inner_architecture
    return None


def default_target_layers(
    model: nn.Module, architecture: str, input_size: tuple[int, int] = (224, 224)
) -> list[str]:
    """Per-family default (grad-cam's recommendations); else the last spatial feature map.

    For a support-set wrapper: the default of its backbone, under the backbone's attribute.
    """
    wrapped = _wrapped(model)
    if wrapped is not None:
        name, inner, inner_arch = wrapped
        # The prototype backbone runs on images alone; a factory network needs the wrapper's
        # forward (it takes the support set too) unless its family is known.
        if not isinstance(model, _support_call_type()) or _family(inner, inner_arch) != "unknown":
            return [f"{name}.{p}" for p in default_target_layers(inner, inner_arch, input_size)]
        return [_last_spatial_module(model, input_size)]
    family = _family(model, architecture)
    tv = architecture.lower().startswith("torchvision:")
    if family == "swin":
        return ["features[-1][-1].norm1"] if tv else ["layers[-1].blocks[-1].norm1"]
    if family == "vit":
        return ["encoder.layers[-1].ln_1"] if tv else ["blocks[-1].norm1"]
    if family == "resnet":
        return ["layer4[-1]"]
    if family == "densenet":
        return ["features[-1]"]
    if family == "vgg":
        return [_last_conv_in(model, "features")]
    if family == "convnext":
        return ["features[-1]"] if tv else ["stages[-1]"]
    if family == "timm_efficientnet":
        # EfficientNet's conv_head runs before pooling; MobileNetV3's after it (1x1 maps).
        return ["conv_head"] if hasattr(model, "bn2") else ["blocks[-1]"]
    if family == "features":
        return ["features[-1]"]
    return [_last_spatial_module(model, input_size)]


def _support_call_type() -> type:
    from fundus_review.inference.fewshot import SupportCallNetwork

    return SupportCallNetwork


def _last_spatial_module(model: nn.Module, input_size: tuple[int, int]) -> str:
    # timm models name their last feature stage themselves.
    info = getattr(model, "feature_info", None)
    if isinstance(info, list) and info and isinstance(info[-1], dict) and info[-1].get("module"):
        name = str(info[-1]["module"])
        modules = dict(model.named_modules())
        if name in modules and not isinstance(modules[name], _SKIP_TYPES):
            return name
    modules = dict(model.named_modules())
    spatial = [
        n
        for n, s in _output_shapes(model, input_size)
        if len(s) == 3 and s[1] > 1 and s[2] > 1 and not isinstance(modules[n], _SKIP_TYPES)
    ]
    if not spatial:
        raise LayerError(
            f"cannot choose a default target layer for {type(model).__name__}: no module "
            f"produces a spatial feature map at input size {tuple(input_size)}; name one in "
            "the card's target_layers"
        )
    return spatial[-1]


def _output_shapes(model: nn.Module, input_size: tuple[int, int]) -> list[tuple[str, tuple]]:
    """(name, per-image output shape) of every tensor-returning sub-module, in the order
    they finish during one dummy forward pass."""
    records: list[tuple[str, tuple]] = []
    seen: set[str] = set()

    def hook_for(name: str) -> Callable:
        def hook(_module: nn.Module, _inp: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and name not in seen and out.dim() >= 2:
                seen.add(name)
                records.append((name, tuple(out.shape[1:])))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=device, dtype=dtype))
    except Exception as exc:  # noqa: BLE001 - e.g. a ViT built for another input size
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LayerError(
            f"{type(model).__name__} does not run on a {tuple(input_size)} input: {first}"
        ) from exc
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return records


def candidate_layers(
    model: nn.Module, input_size: tuple[int, int], limit: int = 15
) -> list[tuple[str, tuple[int, ...]]]:
    """The last `limit` plausible CAM targets, in network order, as (dotted name, output shape
    per image): feature maps (C, H, W) or token sequences (N, C), at block level, plus the
    family's default target layers."""
    modules = dict(model.named_modules())
    plain = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    # Inside a support-set wrapper the backbone's own tree is what is listed.
    wrapped = _wrapped(model)
    root = f"{wrapped[0]}." if wrapped else ""

    def is_block(name: str) -> bool:
        # An element of a plain container that is not a container itself (a ResNet block).
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        return bool(parent) and type(modules[parent]) in plain and type(modules[name]) not in plain

    def block_level(name: str) -> bool:
        # Stages and the elements of stages, not the convs inside a block.
        if root:
            if not name.startswith(root):
                return False
            name = name[len(root) :]
        if "." not in name:
            return True
        parts = name.split(".")
        if type(modules[root + ".".join(parts[:-1])]) not in plain:
            return False
        return not any(is_block(root + ".".join(parts[:i])) for i in range(1, len(parts) - 1))

    defaults = set()
    try:
        for path in default_target_layers(model, _guess_architecture(model), input_size):
            defaults.add(layer_name(model, path))
    except LayerError:
        pass
    found: list[tuple[str, tuple]] = []
    for name, shape in _output_shapes(model, input_size):
        module = modules[name]
        if isinstance(module, _SKIP_TYPES) or type(module).__name__ == "DropPath":
            continue
        spatial = len(shape) == 3 and shape[1] > 1 and shape[2] > 1
        tokens = len(shape) == 2 and shape[0] > 1
        if name in defaults or ((spatial or tokens) and block_level(name)):
            found.append((name, shape))
    # The defaults always stay listed, even when they are not among the last `limit`.
    keep = {n for n, _ in found if n not in defaults}
    keep = set(list(n for n, _ in found if n in keep)[-limit:]) | defaults
    return [(n, s) for n, s in found if n in keep]


def _guess_architecture(model: nn.Module) -> str:
    """'timm:' or 'torchvision:' from where the model class lives (for family defaults)."""
    root = type(model).__module__.split(".")[0]
    return f"{root}:?" if root in ("timm", "torchvision") else ""


class TokenReshape:
    """ViT tokens (B, N, C) -> (B, C, h, w): drop the class/distillation/register tokens."""

    def __init__(self, grid: tuple[int, int], prefix_tokens: int) -> None:
        self.grid = (int(grid[0]), int(grid[1]))
        self.prefix_tokens = int(prefix_tokens)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        h, w = self.grid
        n = tensor.shape[1]
        if n == h * w + self.prefix_tokens:
            tensor = tensor[:, self.prefix_tokens :]
        elif n != h * w:
            raise LayerError(
                f"cannot reshape {n} tokens to a {h}x{w} grid (+{self.prefix_tokens} prefix tokens)"
            )
        return tensor.reshape(tensor.shape[0], h, w, tensor.shape[2]).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokenReshape(grid={self.grid}, prefix_tokens={self.prefix_tokens})"


def nhwc_to_nchw(tensor: torch.Tensor) -> torch.Tensor:
    """Swin blocks keep (B, H, W, C); CAM methods expect (B, C, H, W)."""
    return tensor.permute(0, 3, 1, 2)


def reshape_transform_for(model: nn.Module, architecture: str) -> Callable | None:
    """The activation reshape a CAM needs for this model's target layers (None for CNNs);
    for a support-set wrapper, its backbone's."""
    wrapped = _wrapped(model)
    if wrapped is not None:
        return reshape_transform_for(wrapped[1], wrapped[2])
    family = _family(model, architecture)
    if family == "swin":
        return nhwc_to_nchw
    if family != "vit":
        return None
    if architecture.lower().startswith("torchvision:"):
        side = model.image_size // model.patch_size
        return TokenReshape((side, side), 1)
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None:
        raise LayerError(f"cannot find the token grid of {type(model).__name__}")
    return TokenReshape(tuple(grid), getattr(model, "num_prefix_tokens", 1))
