"""Turn what a network returns into the (B, n_classes) logits the rest of the tool expects.

Two card settings describe networks that are not a plain image -> logits function:

- `output_key = "logits"` / `output_index = 0`: the network returns a dict / a tuple or list;
  the logits are that entry.
- `score = "sigmoid"`: a binary network with one logit z per image, p(pos) = sigmoid(z), and
  `classes = [neg, pos]`. It is presented as the two logits (-z/2, +z/2): their softmax is
  exactly (1 - sigmoid(z), sigmoid(z)), so predictions, stored probabilities and ROAD's scores
  are the sigmoid's; the CAM target of `pos` is +z/2 and of `neg` -z/2, the logit with the
  class's sign (the factor 1/2 scales every gradient map uniformly, which the per-image min-max
  scaling of each heatmap removes).

- `score = "multilabel"`: one logit per label, p(label) = sigmoid(z_label) each; the
  probabilities need not sum to 1 and the labels with p >= 0.5 are the predicted set. The
  logits are used as they are (a CAM's target is one label's logit z_label); `probabilities`
  applies the sigmoid wherever the tool turns logits into stored probabilities (CamEngine,
  ROAD), reading the mark `mark_probabilities` leaves on the network.

The adapter is a forward hook on the network itself, not a wrapper module, so module paths
(target layers, `model inspect`), the state_dict and re-initialised copies (randomize.py
deep-copies the network, hook included) are those of the network as built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from fundus_review.core.vocabulary import MULTILABEL_THRESHOLD, predicted_labels  # noqa: F401
from fundus_review.inference.card import SCORES  # noqa: F401 - the card checks the names


class OutputError(ValueError):
    """The network's output is not what the card's output settings describe."""


def describe_output(out: object) -> str:
    """A short account of a network output: a tensor's shape, a dict's keys, a tuple's length."""
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {list(out.shape)}"
    if isinstance(out, Mapping):
        return f"a dict with keys {', '.join(map(str, out))}"
    if isinstance(out, tuple | list):
        inner = ", ".join(describe_output(o) for o in out[:4])
        return f"a {type(out).__name__} of {len(out)} ({inner})"
    return f"a {type(out).__name__}"


@dataclass(frozen=True)
class OutputAdapter:
    """The forward hook: select the logits entry, then map one sigmoid logit to two logits."""

    output_key: str = ""
    output_index: int | None = None
    score: str = "softmax"

    def __call__(self, module: nn.Module, args: object, out: object) -> torch.Tensor:
        if self.output_key:
            if not isinstance(out, Mapping) or self.output_key not in out:
                raise OutputError(
                    f"output_key {self.output_key!r}: the network returned {describe_output(out)}"
                )
            out = out[self.output_key]
        elif self.output_index is not None:
            if not isinstance(out, tuple | list) or not -len(out) <= self.output_index < len(out):
                raise OutputError(
                    f"output_index {self.output_index}: the network returned {describe_output(out)}"
                )
            out = out[self.output_index]
        if not isinstance(out, torch.Tensor):
            raise OutputError(
                f"the network returned {describe_output(out)}, not a logits tensor; the card's "
                "`output_key` (dict) or `output_index` (tuple) names the entry holding them"
            )
        if self.score == "sigmoid":
            if out.ndim == 1:
                out = out[:, None]
            if out.ndim != 2 or out.shape[1] != 1:
                raise OutputError(
                    f'score = "sigmoid" needs one logit per image; the network returned '
                    f"{describe_output(out)}"
                )
            half = out / 2
            out = torch.cat([-half, half], dim=1)
        return out

    @property
    def needed(self) -> bool:
        """False when the network's output is used as it is (no hook is attached)."""
        return (
            bool(self.output_key)
            or self.output_index is not None
            or self.score not in ("softmax", "multilabel")
        )


def attach(model: nn.Module, adapter: OutputAdapter) -> nn.Module:
    """Register `adapter` as `model`'s output hook when it changes anything; returns `model`."""
    if adapter.needed:
        model.register_forward_hook(adapter)
    return model


# The attribute on a network saying how its logits become probabilities ("softmax" when absent).
PROBABILITIES_ATTR = "fundus_review_probabilities"


def mark_probabilities(model: nn.Module, score: str) -> nn.Module:
    """Record on `model` that its logits are per-label sigmoid scores (`score = "multilabel"`);
    deep copies (randomised networks) keep the mark."""
    if score == "multilabel":
        setattr(model, PROBABILITIES_ATTR, "sigmoid")
    return model


def probabilities(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """(B, C) probabilities of (B, C) logits: softmax, or per-label sigmoid for a marked network."""
    if getattr(model, PROBABILITIES_ATTR, "softmax") == "sigmoid":
        return torch.sigmoid(logits.float())
    return torch.softmax(logits.float(), dim=1)
