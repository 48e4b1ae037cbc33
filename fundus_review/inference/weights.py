"""Read a weights file safely and fit its state_dict to a model, explaining every mismatch.

`.safetensors` holds tensors only. `.pt/.pth/.ckpt/.bin` go through
`torch.load(weights_only=True)`, which refuses pickled Python objects other than tensors and
plain containers, so a bundle can never execute code when it is loaded.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fundus_review.inference.architectures import find_head
from fundus_review.inference.card import WEIGHT_SUFFIXES

# Where training frameworks nest the network's state_dict inside a checkpoint.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")
# Wrappers that prefix every key: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class WeightsError(ValueError):
    """A weights file cannot be read or does not fit the model; the message says why."""


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file as a flat state_dict (on CPU, dtypes as stored)."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - the Rust reader raises its own error types
            raise WeightsError(f"cannot read safetensors file: {exc}") from exc
    if suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(
            f"unsupported weights file type {suffix!r}; use one of {', '.join(WEIGHT_SUFFIXES)}"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "Unsupported global" in line), "")
        raise WeightsError(
            "refused to load: the file contains pickled Python objects, not just tensors "
            "(loading it could run arbitrary code). Save `model.state_dict()` instead, "
            f"ideally as .safetensors. {detail}".strip()
        ) from exc
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, ...
        raise WeightsError(f"cannot read weights file: {exc}") from exc
    return _unwrap(obj)


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    for _ in range(3):  # checkpoints nest at most a couple of levels
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        nested = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            break
        obj = nested
    keys = list(obj.keys())[:8] if isinstance(obj, Mapping) else []
    raise WeightsError(
        "the file holds no state_dict (expected a dict of tensors, or one under "
        f"{'/'.join(_NESTED_KEYS)}); top-level keys: {keys or type(obj).__name__}"
    )


def _strip(keys: list[str], prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: k for k in keys if k.startswith(prefix)}


def align_keys(
    state: dict[str, torch.Tensor], model_keys: set[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename keys to the model's: strip wrapper prefixes (`module.` of DataParallel/DDP,
    `_orig_mod.` of torch.compile) and a Lightning-style attribute prefix (`model.`, `net.`, ...).

    A renaming is used only when it makes more keys match the model than the names as stored
    (a network whose own attribute is called `module` keeps its keys). Returns (state, keys
    dropped because they lie outside the chosen attribute prefix).
    """
    identity = {k: k for k in state}
    # Candidates in order of preference: on a tie the earlier (less renaming) wins.
    candidates: list[tuple[dict[str, str], list[str]]] = [(identity, [])]
    renamed = identity
    for prefix in _WRAPPER_PREFIXES:
        while renamed and all(new.startswith(prefix) for new in renamed):
            renamed = {new[len(prefix) :]: old for new, old in renamed.items()}
    candidates.append((renamed, []))
    # A LightningModule stores its network under an attribute (usually `model.`); its other
    # entries (loss weights, metrics) are not part of the network.
    firsts = Counter(new.split(".", 1)[0] for new in renamed if "." in new)
    for first, _ in firsts.most_common(4):
        stripped = _strip(list(renamed), first + ".")
        kept = {new: renamed[old] for new, old in stripped.items()}
        candidates.append((kept, [renamed[k] for k in renamed if not k.startswith(first + ".")]))
    best, dropped = candidates[0]
    best_score = len(model_keys & best.keys())
    for mapping, lost in candidates[1:]:
        score = len(model_keys & mapping.keys())
        if score > best_score:
            best, dropped, best_score = mapping, lost, score
    return {new: state[old] for new, old in best.items()}, dropped


def _listing(keys: list[str], limit: int = 5) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@dataclass(frozen=True)
class LoadReport:
    """What loading a checkpoint into a network did.

    missing: network keys the checkpoint lacks (left at the architecture's initialisation);
    unexpected: checkpoint keys the network lacks (not loaded); ignored: checkpoint keys outside
    the network's attribute prefix in a training wrapper (a LightningModule's loss weights).
    Under strict loading missing and unexpected are always empty.
    """

    strict: bool
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        """True when the network did not receive exactly the checkpoint's tensors."""
        return bool(self.missing or self.unexpected)

    def summary(self, limit: int = 5) -> str:
        """One line naming the keys that did not load ("" for a complete load)."""
        parts = []
        if self.missing:
            parts.append(
                f"{len(self.missing)} missing keys (left untrained): {_listing(self.missing, limit)}"
            )
        if self.unexpected:
            parts.append(
                f"{len(self.unexpected)} unexpected keys (not loaded): {_listing(self.unexpected, limit)}"
            )
        return "; ".join(parts)


def load_into(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    classes: list[str],
    strict: bool = True,
    n_outputs: int | None = None,
) -> LoadReport:
    """Load `state` into `model` (converting e.g. fp16 to the model's dtype).

    Strict (the default): every network key must be in the checkpoint and vice versa, else
    WeightsError naming the first few of each. Not strict: missing and unexpected keys are
    allowed and listed in the returned report; shapes must still agree, and at least one key
    must match (a checkpoint of another network is never "loaded" as nothing at all).
    `n_outputs`: the head's logits per image when not one per class (1 for a sigmoid head).
    """
    model_state = model.state_dict()
    state, dropped = align_keys(state, set(model_state))
    head = find_head(model)
    if head is not None:
        head_name, _ = head
        key = f"{head_name}.weight"
        if key in state and key in model_state and state[key].shape != model_state[key].shape:
            n = len(classes) if n_outputs is None else n_outputs
            lists = f"{len(classes)} classes" + (
                ' with one logit (score = "sigmoid")' if n != len(classes) else ""
            )
            raise WeightsError(
                f"the card lists {lists} but the weights' classification head "
                f"`{head_name}` has {state[key].shape[0]} outputs ({key} has shape "
                f"{list(state[key].shape)}; a {n}-output head would be "
                f"{list(model_state[key].shape)})"
            )
    missing = [k for k in model_state if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in model_state]
    mismatched = [
        f"{k} {list(state[k].shape)} vs model {list(model_state[k].shape)}"
        for k in model_state
        if k in state and state[k].shape != model_state[k].shape
    ]
    problems = []
    if strict and missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched, 3)}")
        if any(
            k.split(" ")[0].endswith(("pos_embed", "relative_position_bias_table"))
            for k in mismatched
        ):
            problems.append("position embeddings differ: is input_size the size it was trained at?")
    if not strict and not problems and not set(state) & set(model_state):
        problems.append(
            f"no key matches the network (checkpoint keys: {_listing(sorted(state))}; "
            f"network keys: {_listing(list(model_state))})"
        )
    if problems:
        hint = (
            ""
            if not (strict and (missing or unexpected))
            else (
                " (a card with `strict_weights = false` loads the matching keys and lists the rest)"
            )
        )
        raise WeightsError("the weights do not fit the architecture: " + "; ".join(problems) + hint)
    full = dict(model_state)  # keeps num_batches_tracked of old checkpoints that lack it
    for k, v in state.items():
        if k not in model_state:
            continue  # unexpected, allowed only when not strict: listed in the report
        target = model_state[k]
        full[k] = v.to(target.dtype) if v.is_floating_point() else v
    model.load_state_dict(full, strict=True)
    return LoadReport(strict=strict, missing=missing, unexpected=unexpected, ignored=dropped)
