"""The `[forward]` table of a card: models that need a support set, read without torch.

A few-shot model is not an image -> logits function: it classifies a query image against a
labelled *support set*. The card says so, and where the support set is::

    architecture = "fewshot:protonet"      # built in: prototypes of a timm/torchvision backbone
    input_size = [224, 224]
    weights = "model.safetensors"          # the backbone's state_dict

    [forward]
    kind = "support_set"
    backbone = "timm:resnet18"             # protonet only
    support_dir = "support"                # one sub-folder per class ...
    # support = "support/labels.csv"       # ... or a CSV with columns path,label
    distance = "euclidean"                 # protonet: "euclidean" (squared) | "cosine"

or, for a network of one's own whose forward is `forward(support_images, support_labels,
query_images)` (it runs code, so it needs --trust-code like any `module:factory`)::

    architecture = "mylab.fewshot:metaoptnet"
    [forward]
    kind = "support_set"
    call = "support_labels_query"
    support = "support/labels.csv"

Paths are relative to the bundle folder and must stay inside it. The classes are the sorted
support labels unless the card lists `classes`, which must then be the same set (their order
is the card's). The tool builds the wrapper itself (inference/fewshot.py): the query image is
the only input, so predictions, CAMs, the store and the report treat it as any classifier.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fundus_review.data.images import IMAGE_EXTENSIONS

FEWSHOT_SOURCE = "fewshot"
BUILTIN = {"protonet"}  # `fewshot:<name>` architectures built by the tool itself
KINDS = ("support_set",)
CALLS = ("prototypes", "support_labels_query")
DISTANCES = ("euclidean", "cosine")
_KNOWN = {"kind", "call", "backbone", "support", "support_dir", "distance", "temperature"}
# Written by the tool (read_card recomputes it from the files): not a setting.
_RECORDED = {"support_sha256"}
MAX_SUPPORT = 2000  # images; a support set is a few per class, this only stops accidents


@dataclass(frozen=True)
class ForwardSpec:
    """What the card's `[forward]` table asks for (checked; paths still relative)."""

    kind: str
    call: str  # "prototypes" (fewshot:protonet) | "support_labels_query" (a module:factory)
    backbone: str  # protonet's backbone architecture; "" for a factory
    support_csv: str  # one of support_csv / support_dir is set
    support_dir: str
    distance: str
    temperature: float  # logits = -distance / temperature (cosine: similarity / temperature)

    @property
    def builtin(self) -> bool:
        return self.call == "prototypes"


def parse_forward(table: object, architecture: str) -> ForwardSpec:
    """The checked `[forward]` table; ValueError names the first problem."""
    if not isinstance(table, dict):
        raise ValueError("[forward] must be a table")
    unknown = sorted(set(table) - _KNOWN - _RECORDED)
    if unknown:
        raise ValueError(
            f"[forward] has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}"
        )
    kind = table.get("kind", "support_set")
    if kind not in KINDS:
        raise ValueError(f"[forward] kind is {kind!r}; expected one of {', '.join(KINDS)}")
    source, _, name = architecture.partition(":")
    fewshot = source.strip() == FEWSHOT_SOURCE
    call = table.get("call", "prototypes" if fewshot else "support_labels_query")
    if call not in CALLS:
        raise ValueError(f"[forward] call is {call!r}; expected one of {', '.join(CALLS)}")
    if fewshot and name.strip() not in BUILTIN:
        raise ValueError(
            f"architecture {architecture!r}: the built-in few-shot models are "
            f"{', '.join('fewshot:' + b for b in sorted(BUILTIN))}"
        )
    if fewshot != (call == "prototypes"):
        raise ValueError(
            '[forward] call = "prototypes" goes with architecture = "fewshot:protonet", and '
            'call = "support_labels_query" with a "package.module:factory" architecture'
        )
    backbone = table.get("backbone", "")
    if not isinstance(backbone, str):
        raise ValueError("[forward] backbone must be a string such as 'timm:resnet18'")
    if fewshot:
        bsource = backbone.partition(":")[0].strip()
        if not backbone or bsource not in ("timm", "torchvision"):
            raise ValueError(
                "[forward] backbone must be 'timm:<name>' or 'torchvision:<name>' for "
                f"fewshot:protonet, got {backbone!r}"
            )
    elif backbone:
        raise ValueError("[forward] backbone is for fewshot:protonet; a factory builds its own")
    support, folder = table.get("support", ""), table.get("support_dir", "")
    if not isinstance(support, str) or not isinstance(folder, str) or bool(support) == bool(folder):
        raise ValueError(
            "[forward] needs exactly one of `support` (a CSV with columns path,label) or "
            "`support_dir` (one sub-folder of images per class), relative to the bundle"
        )
    for value in (support, folder):
        if value and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError(f"[forward] support path {value!r} must lie inside the bundle")
    distance = table.get("distance", "euclidean")
    if distance not in DISTANCES:
        raise ValueError(f"[forward] distance is {distance!r}; expected {' or '.join(DISTANCES)}")
    if not fewshot and "distance" in table:
        raise ValueError("[forward] distance is for fewshot:protonet only")
    temperature = table.get("temperature", 1.0 if distance == "euclidean" else 0.1)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or temperature <= 0
    ):
        raise ValueError(f"[forward] temperature must be a number > 0, got {temperature!r}")
    return ForwardSpec(kind, call, backbone.strip(), support, folder, distance, float(temperature))


def list_support(bundle_dir: Path, spec: ForwardSpec) -> list[tuple[Path, str]]:
    """(image file, label) of every support image, in a fixed order; ValueError when the
    support set is missing, empty, outside the bundle or has a class with no image."""
    root = Path(bundle_dir).resolve()
    items: list[tuple[Path, str]] = []
    if spec.support_dir:
        folder = root / spec.support_dir
        if not folder.is_dir():
            raise ValueError(f"[forward] support_dir {spec.support_dir!r}: no such folder")
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = sorted(
                p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            items.extend((p, sub.name) for p in files)
        if not items:
            raise ValueError(
                f"[forward] support_dir {spec.support_dir!r} holds no images in class "
                "sub-folders (expected <support_dir>/<class>/<image>)"
            )
    else:
        items = _read_support_csv(root, spec.support_csv)
    for path, _label in items:
        if not path.resolve().is_relative_to(root):
            raise ValueError(f"[forward] support image {path} lies outside the bundle")
    if len(items) > MAX_SUPPORT:
        raise ValueError(
            f"[forward] the support set has {len(items)} images (at most {MAX_SUPPORT})"
        )
    return items


def _read_support_csv(root: Path, rel: str) -> list[tuple[Path, str]]:
    path = root / rel
    if not path.is_file():
        raise ValueError(f"[forward] support {rel!r}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise ValueError(f"[forward] support {rel!r} needs columns path,label; has {columns}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    items = []
    for n, row in enumerate(rows, start=2):
        if not row["path"] or not row["label"]:
            raise ValueError(f"[forward] support {rel!r} line {n}: empty path or label")
        # Relative to the bundle folder; a path relative to the CSV's own folder is accepted too.
        file = root / row["path"]
        if not file.is_file():
            file = path.parent / row["path"]
        if not file.is_file():
            raise ValueError(f"[forward] support {rel!r} line {n}: no image {row['path']!r}")
        items.append((file, row["label"]))
    if not items:
        raise ValueError(f"[forward] support {rel!r} lists no images")
    return items


def support_classes(items: list[tuple[Path, str]], card_classes: list[str] | None) -> list[str]:
    """The model's classes: the card's (same set as the support labels) or the sorted labels."""
    labels = sorted({label for _, label in items})
    if not card_classes:
        return labels
    if set(card_classes) != set(labels):
        only_card = sorted(set(card_classes) - set(labels))
        only_support = sorted(set(labels) - set(card_classes))
        raise ValueError(
            f"`classes` {card_classes} and the support set's labels {labels} differ"
            + (f"; no support image for {only_card}" if only_card else "")
            + (f"; not in `classes`: {only_support}" if only_support else "")
            + " (omit `classes` to take them from the support set)"
        )
    return list(card_classes)


def support_digest(bundle_dir: Path, items: list[tuple[Path, str]]) -> str:
    """sha256 over every support image's path in the bundle, label and content (any order)."""
    from fundus_review.data.images import file_sha256

    root = Path(bundle_dir).resolve()
    lines = sorted(
        f"{path.resolve().relative_to(root).as_posix()}\t{label}\t{file_sha256(path)}\n"
        for path, label in items
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()
