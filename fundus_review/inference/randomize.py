"""Cascading model-parameter randomisation: which modules each stage re-initialises, and the copy.

The model-parameter randomisation test of Adebayo et al., "Sanity checks for saliency maps"
(NeurIPS 2018), re-initialises a trained classifier's weights from the top layer downwards
("cascading randomisation") and asks whether a saliency method's maps change; Arun et al.,
"Assessing the trustworthiness of saliency maps for localizing abnormalities in medical imaging"
(Radiology: AI 2021) apply it to medical classifiers. A map that survives the loss of the
learned weights cannot be explaining what the model learned.

Definitions (``randomization_stages(model, target_layers)``):

- A *parameterised module* owns at least one parameter directly (``parameters(recurse=False)``
  is not empty); P is the list of them in registration order (``named_modules``). Every
  parameter of the model belongs to exactly one of them, so re-initialising all of P
  re-initialises the whole network. Stages list module names from P, in P's order.
- ``head``: the classifier, i.e. timm's ``get_classifier()`` when it is a Linear/Conv2d, else the
  last ``nn.Linear`` (``inference.architectures.find_head``), else the last module of P.
- ``last-block``: head + every module of P inside the last block of each CAM target layer. The
  last block is the target layer's last child when the target layer is a container whose last
  child has parameters (``layer4`` -> ``layer4.1``, ``blocks.5`` -> ``blocks.5.3``), else the
  target layer itself (``layer4.1``, whose last child is an activation).
- ``half``: last-block + the top half of P, i.e. P[len(P) // 2 :].
- ``all``: every module of P.

Each stage contains the previous one (cascading). ``randomized_copy`` re-initialises a deep copy:
each named module draws from its own CPU generator seeded by sha256(f"{seed}:{name}"), so the
same seed gives the same weights on every device, and a module randomised at several stages
gets the same random weights at each of them (the stages differ only in how much is random).
A module re-initialises with its own ``reset_parameters()`` (PyTorch's default initialisation)
when it has one and no child with parameters (a container's reset could reach modules that are
not named); otherwise its direct parameters are drawn from N(0, 0.02^2), biases (and other 1-D
parameters whose name ends in "bias") set to 0. BatchNorm running statistics are reset (mean 0,
variance 1), as ``reset_parameters`` of BatchNorm does.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from fundus_review.inference.architectures import find_head
from fundus_review.inference.layers import layer_name, resolve_layer

STAGES = ("head", "last-block", "half", "all")
SCHEDULE_VERSION = 1
FALLBACK_STD = 0.02


def _has_own_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def parameterised_modules(model: nn.Module) -> list[str]:
    """Names of the modules owning parameters directly, in registration order."""
    return [name for name, m in model.named_modules() if _has_own_parameters(m)]


def _inside(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _head_modules(model: nn.Module, params: list[str]) -> list[str]:
    found = find_head(model)
    if found is not None:
        path = found[0]
        inside = [n for n in params if _inside(n, path)]
        if inside:
            return inside
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters to randomise")
    return [params[-1]]


def _last_block(model: nn.Module, layer: nn.Module | str) -> str:
    module = resolve_layer(model, layer) if isinstance(layer, str) else layer
    name = layer_name(model, module)
    children = list(module.named_children())
    if children:
        child_name, child = children[-1]
        if next(child.parameters(), None) is not None:
            return f"{name}.{child_name}" if name else child_name
    return name


def randomization_stages(
    model: nn.Module, target_layers: Sequence[nn.Module | str]
) -> dict[str, list[str]]:
    """The cascading schedule {stage: names of the parameterised modules it re-initialises}."""
    params = parameterised_modules(model)
    head = set(_head_modules(model, params))
    blocks = [_last_block(model, layer) for layer in target_layers]
    if not blocks:
        raise ValueError("the randomisation schedule needs the CAM's target layers")
    block = {n for n in params if any(_inside(n, b) for b in blocks)}
    top_half = set(params[len(params) // 2 :])
    chosen = {
        "head": head,
        "last-block": head | block,
        "half": head | block | top_half,
        "all": set(params),
    }
    return {stage: [n for n in params if n in chosen[stage]] for stage in STAGES}


def module_seed(seed: int, name: str) -> int:
    """The seed of one module's generator: independent of the other modules in the stage."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()[:8], "little")


def _reinit(module: nn.Module) -> None:
    has_param_children = any(next(c.parameters(), None) is not None for c in module.children())
    reset = getattr(module, "reset_parameters", None)
    if callable(reset) and not has_param_children:
        reset()
    else:
        with torch.no_grad():
            for pname, p in module.named_parameters(recurse=False):
                if pname.endswith("bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, FALLBACK_STD)
    reset_stats = getattr(module, "reset_running_stats", None)
    if callable(reset_stats):
        reset_stats()


def randomized_copy(model: nn.Module, module_names: Sequence[str], seed: int) -> nn.Module:
    """A deep copy of ``model`` with the named modules re-initialised (the model is untouched).

    The copy is re-initialised on the CPU (same numbers whatever the device), then moved to the
    model's device; it keeps the model's dtype and training/eval mode.
    """
    modules = dict(model.named_modules())
    missing = [n for n in module_names if n not in modules]
    if missing:
        raise ValueError(f"no module(s) {missing} in {type(model).__name__}")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    clone = copy.deepcopy(model).to("cpu")
    clone_modules = dict(clone.named_modules())
    # fork_rng(devices=[]) restores the global CPU generator afterwards; only the CPU default
    # generator is re-seeded (torch.manual_seed would also reseed CUDA, outside the fork).
    with torch.random.fork_rng(devices=[]):
        for name in dict.fromkeys(module_names):
            torch.default_generator.manual_seed(module_seed(seed, name))
            _reinit(clone_modules[name])
    clone = clone.to(device)
    # A support-set network's prototypes depend on its weights: recomputed with the new ones.
    refresh = getattr(clone, "refresh_support", None)
    if callable(refresh):
        refresh()
    return clone
