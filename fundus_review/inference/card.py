"""The model card (`model.toml`) of a bundle, read and checked without importing torch.

The GUI reads a card to offer its classes and target layers while the dataset opens; importing
torch for that would hold the interpreter for seconds (see `inference/bundle.py` for the
weights and the network).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from fundus_review.core.transform import POLICIES
from fundus_review.errors import BundleError
from fundus_review.inference.support import (
    FEWSHOT_SOURCE,
    ForwardSpec,
    list_support,
    parse_forward,
    support_classes,
    support_digest,
)

CARD_FILE = "model.toml"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
WEIGHTS_FILE = "model.safetensors"
# How logits become class probabilities (inference/outputs.py): one softmax over the classes;
# one sigmoid logit for [negative, positive]; or one sigmoid per label (multi-label).
SCORES = ("softmax", "sigmoid", "multilabel")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_INPUT, MAX_INPUT = 16, 4096
_KNOWN_FIELDS = {
    "name", "architecture", "classes", "input_size", "resize", "crop_pct",
    "mean", "std", "target_layers", "weights", "description", "strict_weights",
    "output_key", "output_index", "score",
}  # fmt: skip


@dataclass
class ModelCard:
    name: str
    architecture: str
    classes: list[str]
    input_size: tuple[int, int]  # (h, w)
    resize: str = "resize"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    target_layers: list[str] = field(default_factory=list)
    weights: str = WEIGHTS_FILE
    description: str = ""
    # False: load the checkpoint's matching keys and list the missing/unexpected ones
    # (bundle.py warns and `model inspect` shows them) instead of refusing the bundle.
    strict_weights: bool = True
    # A network returning a dict / tuple: the entry holding the logits (inference/outputs.py).
    output_key: str = ""
    output_index: int | None = None
    # "sigmoid": one logit z, p(classes[1]) = sigmoid(z); classes must be [negative, positive].
    # "multilabel": one logit per label, p(label) = sigmoid(z_label), not summing to 1.
    score: str = "softmax"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Normalise types and raise ValueError with the first problem found."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("`name` must be a non-empty string")
        if not isinstance(self.architecture, str):
            raise ValueError("`architecture` must be a string")
        split_architecture(self.architecture)
        classes = self.classes
        if not isinstance(classes, list | tuple) or not classes:
            raise ValueError("`classes` must be a non-empty list of class names")
        if not all(isinstance(c, str) and c.strip() for c in classes):
            raise ValueError("`classes` must contain non-empty strings")
        if len(set(classes)) != len(classes):
            raise ValueError(f"`classes` has duplicates: {list(classes)}")
        self.classes = list(classes)
        self.input_size = _input_size(self.input_size)
        if self.resize not in POLICIES:
            raise ValueError(f"`resize` is {self.resize!r}; expected one of {', '.join(POLICIES)}")
        if not isinstance(self.crop_pct, int | float) or not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"`crop_pct` must be a number in (0, 1], got {self.crop_pct!r}")
        self.crop_pct = float(self.crop_pct)
        self.mean = _triple("mean", self.mean)
        self.std = _triple("std", self.std)
        if min(self.std) <= 0:
            raise ValueError(f"`std` values must be > 0, got {list(self.std)}")
        layers = [self.target_layers] if isinstance(self.target_layers, str) else self.target_layers
        if not isinstance(layers, list | tuple) or not all(isinstance(t, str) for t in layers):
            raise ValueError("`target_layers` must be a list of module paths")
        self.target_layers = list(layers)
        w = self.weights
        if not isinstance(w, str) or not w or Path(w).is_absolute() or ".." in Path(w).parts:
            raise ValueError(f"`weights` must be a file name inside the bundle, got {w!r}")
        if not isinstance(self.description, str):
            raise ValueError("`description` must be a string")
        if not isinstance(self.strict_weights, bool):
            raise ValueError(f"`strict_weights` must be true or false, got {self.strict_weights!r}")
        if not isinstance(self.output_key, str):
            raise ValueError(f"`output_key` must be a string, got {self.output_key!r}")
        index = self.output_index
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise ValueError(f"`output_index` must be an integer, got {index!r}")
        if self.output_key and index is not None:
            raise ValueError("give `output_key` (dict output) or `output_index` (tuple), not both")
        if self.score not in SCORES:
            raise ValueError(f"`score` is {self.score!r}; expected one of {', '.join(SCORES)}")
        if self.score == "sigmoid" and len(self.classes) != 2:
            raise ValueError(
                '`score = "sigmoid"` is one logit for two classes: `classes` must be '
                f"[negative, positive], got {self.classes}"
            )
        if not isinstance(self.extra, dict):
            raise ValueError("`extra` must be a dict")
        spec = self.forward
        if spec is None and split_architecture(self.architecture)[0] == FEWSHOT_SOURCE:
            raise ValueError(
                f"architecture {self.architecture!r} needs a [forward] table with the support "
                "set (README, Few-shot and custom-forward models)"
            )
        if spec is not None and spec.builtin and self.score != "softmax":
            raise ValueError(
                "fewshot:protonet scores classes by their distance to the prototypes (a "
                "softmax over them); `score` does not apply"
            )
        if spec is not None and spec.builtin and (self.output_key or self.output_index is not None):
            raise ValueError("fewshot:protonet: `output_key` and `output_index` do not apply")

    @property
    def forward(self) -> ForwardSpec | None:
        """The `[forward]` table (a support-set model), checked; None for a plain classifier."""
        if "forward" not in self.extra:
            return None
        return parse_forward(self.extra["forward"], self.architecture)

    def to_dict(self) -> dict:
        """The TOML document: known fields first, then the free-form extra tables/keys."""
        doc = {
            "name": self.name,
            "architecture": self.architecture,
            "classes": list(self.classes),
            "input_size": list(self.input_size),
            "resize": self.resize,
            "crop_pct": self.crop_pct,
            "mean": list(self.mean),
            "std": list(self.std),
            "target_layers": list(self.target_layers),
            "weights": self.weights,
            "description": self.description,
        }
        if not self.strict_weights:  # the default is not written: cards stay as they were
            doc["strict_weights"] = False
        if self.output_key:
            doc["output_key"] = self.output_key
        if self.output_index is not None:
            doc["output_index"] = self.output_index
        if self.score != "softmax":
            doc["score"] = self.score
        doc.update(self.extra)
        return doc

    @property
    def n_outputs(self) -> int:
        """How many logits the network itself returns per image (1 for a sigmoid head)."""
        return 1 if self.score == "sigmoid" else len(self.classes)

    @classmethod
    def from_dict(cls, doc: dict, default_name: str = "model") -> ModelCard:
        missing = [k for k in ("architecture", "classes", "input_size") if k not in doc]
        if missing:
            raise ValueError(f"missing required field(s): {', '.join(missing)}")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in doc.items() if k in known}
        kwargs.setdefault("name", default_name)
        extra = {k: v for k, v in doc.items() if k not in known}
        return cls(**kwargs, extra=extra)


def _input_size(value: object) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"`input_size` must be [height, width] in pixels, got {value!r}")
    h, w = value
    if not (MIN_INPUT <= h <= MAX_INPUT and MIN_INPUT <= w <= MAX_INPUT):
        raise ValueError(
            f"`input_size` {[h, w]} is not acceptable: each side must be {MIN_INPUT}..{MAX_INPUT}"
        )
    return int(h), int(w)


def _triple(name: str, value: object) -> tuple[float, float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"`{name}` must be three numbers (R, G, B), got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def split_architecture(architecture: str) -> tuple[str, str]:
    """'timm:resnet18' -> ('timm', 'resnet18'); 'pkg.mod:factory' -> ('pkg.mod', 'factory')."""
    source, sep, name = architecture.partition(":")
    if not sep or not source.strip() or not name.strip():
        raise ValueError(
            f"architecture {architecture!r} must look like 'timm:<name>', 'torchvision:<name>' "
            "or 'package.module:factory'"
        )
    return source.strip(), name.strip()


def _find_weights(folder: Path) -> str:
    found = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)
    if WEIGHTS_FILE in found:
        return WEIGHTS_FILE
    if len(found) == 1:
        return found[0]
    what = f"several weight files ({', '.join(found)})" if found else "no weights file"
    raise BundleError(f"bundle {folder}: the card names no `weights` and the folder has {what}")


def read_card(path: str | os.PathLike) -> tuple[Path, ModelCard]:
    """(bundle folder, checked card) of a bundle folder or its model.toml. Raises BundleError."""
    path = Path(path)
    folder = path.parent if path.name == CARD_FILE else path
    if not folder.is_dir():
        raise BundleError(f"bundle {folder}: no such folder")
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        present = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
        raise BundleError(
            f"bundle {folder}: no {CARD_FILE} (the folder holds: {present}); a bundle is a folder "
            f"with {CARD_FILE} beside its weights (README, Model bundles)"
        )
    try:
        doc = tomllib.loads(card_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{card_path}: invalid TOML: {exc}; fix or replace the card") from exc
    if "weights" not in doc:
        doc["weights"] = _find_weights(folder)
    try:
        if "forward" in doc:
            # A support-set model's classes come from its support set (README, Few-shot models).
            spec = parse_forward(doc["forward"], str(doc.get("architecture", "")))
            items = list_support(folder, spec)
            doc["classes"] = support_classes(items, doc.get("classes"))
            # Part of the model's identity in the store: other support images, another model.
            doc["forward"] = {**doc["forward"], "support_sha256": support_digest(folder, items)}
        card = ModelCard.from_dict(doc, default_name=folder.name)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{card_path}: {exc}") from exc
    return folder, card
