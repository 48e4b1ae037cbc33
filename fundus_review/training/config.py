"""What a training run is told (TrainConfig), what it reports while running (TrainProgress), and
what it returns (TrainResult)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn

from fundus_review.core.transform import POLICIES
from fundus_review.training.setup import TrainError

ARCHITECTURE_DEFAULT = "timm:tf_efficientnet_lite0"
CLASS_WEIGHTING = ("none", "weighted_loss", "balanced_sampler")
WEIGHTS_DTYPES = ("float16", "float32")
FEWSHOT_FIELDS = ("episodes", "shots", "queries", "support_per_class", "distance", "temperature")


@dataclass(frozen=True)
class PreprocessConfig:
    """The preprocessing fields of a ModelCard, for building training inputs."""

    input_size: tuple[int, int]
    resize: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and is recorded in the bundle's card).

    ``image_size``: one int (square) or (h, w). ``init``: "auto" | "none" |
    "imagenet-effnet-lite0" | a bundle folder. ``unfreeze_blocks``: how many final blocks are
    trained (the head always is); -1 trains everything. ``mean``/``std`` default to those of the
    initial weights. ``target_layer``: Grad-CAM layer written to the card (default: the
    architecture family's usual layer). ``model_kwargs``: (name, value) pairs for the
    architecture's constructor, e.g. (("output_stride", 16),) for a 14x14 final feature map at
    224 px; written to the card's [model_kwargs] so that the bundle rebuilds the same network.
    """

    data: Path
    out: Path
    labels_csv: Path | None = None
    filename_column: str | None = None
    label_column: str | None = None
    architecture: str = ARCHITECTURE_DEFAULT
    model_kwargs: tuple[tuple[str, int | float | bool | str], ...] = ()
    init: str = "auto"
    image_size: int | tuple[int, int] = 224
    resize: str = "resize"
    crop_pct: float = 1.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    unfreeze_blocks: int = -1
    class_weighting: str = "none"
    augment: bool = True
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    target_layer: str | None = None
    name: str | None = None
    description: str = ""
    weights_dtype: str = "float16"
    overwrite: bool = False
    # Few-shot training (`--fewshot protonet`, training/fewshot.py): an epoch is `episodes`
    # episodes of `shots` support + `queries` query images per class; the bundle ships
    # `support_per_class` training images per class as its support set.
    fewshot: str | None = None
    episodes: int = 50
    shots: int = 5
    queries: int = 5
    support_per_class: int = 5
    distance: str = "euclidean"
    temperature: float | None = None  # None: 1 (euclidean) or 0.1 (cosine)

    @property
    def resolved_temperature(self) -> float:
        if self.temperature is not None:
            return float(self.temperature)
        return 1.0 if self.distance == "euclidean" else 0.1

    @property
    def input_size(self) -> tuple[int, int]:
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        h, w = self.image_size
        return (int(h), int(w))

    def validated(self) -> TrainConfig:
        """A copy with paths as Path objects; raises TrainError naming the first bad field."""

        def bad(what: str) -> TrainError:
            return TrainError(f"train: {what}")

        cfg = replace(
            self,
            data=Path(self.data),
            out=Path(self.out),
            labels_csv=Path(self.labels_csv) if self.labels_csv else None,
        )
        if min(cfg.input_size) < 16:
            raise bad(f"image size {cfg.input_size} is too small (at least 16 px)")
        if cfg.resize not in POLICIES:
            raise bad(f"resize policy '{cfg.resize}' is not one of {', '.join(POLICIES)}")
        if not 0.0 < cfg.crop_pct <= 1.0:
            raise bad(f"crop_pct must be in (0, 1], got {cfg.crop_pct}")
        if cfg.epochs < 1:
            raise bad(f"epochs must be at least 1, got {cfg.epochs}")
        if cfg.batch_size < 2:
            raise bad(f"batch size must be at least 2 (BatchNorm), got {cfg.batch_size}")
        if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
            raise bad(f"learning rate must be positive, got {cfg.lr}")
        if cfg.weight_decay < 0:
            raise bad(f"weight decay must be >= 0, got {cfg.weight_decay}")
        if cfg.unfreeze_blocks < -1:
            raise bad(f"unfreeze_blocks must be -1 (all) or >= 0, got {cfg.unfreeze_blocks}")
        if cfg.class_weighting not in CLASS_WEIGHTING:
            raise bad(
                f"class weighting '{cfg.class_weighting}' is not one of {', '.join(CLASS_WEIGHTING)}"
            )
        if not 0.0 <= cfg.val_fraction < 1.0:
            raise bad(f"validation fraction must be in [0, 1), got {cfg.val_fraction}")
        if cfg.num_workers < 0:
            raise bad(f"num_workers must be >= 0, got {cfg.num_workers}")
        if cfg.weights_dtype not in WEIGHTS_DTYPES:
            raise bad(
                f"weights dtype '{cfg.weights_dtype}' is not one of {', '.join(WEIGHTS_DTYPES)}"
            )
        for name, value in (("mean", cfg.mean), ("std", cfg.std)):
            if value is not None and (len(value) != 3 or (name == "std" and min(value) <= 0)):
                raise bad(
                    f"{name} must be three numbers{' > 0' if name == 'std' else ''}, got {value}"
                )
        for item in cfg.model_kwargs:
            if (
                not isinstance(item, tuple | list)
                or len(item) != 2
                or not isinstance(item[0], str)
                or not item[0].isidentifier()
                or not isinstance(item[1], int | float | bool | str)
            ):
                raise bad(f"model argument {item!r} must be a (name, number|bool|text) pair")
        cfg = replace(cfg, model_kwargs=tuple((str(k), v) for k, v in cfg.model_kwargs))
        if cfg.fewshot is not None:
            if cfg.fewshot != "protonet":
                raise bad(f"--fewshot '{cfg.fewshot}': the built-in few-shot model is protonet")
            for name in ("episodes", "shots", "queries", "support_per_class"):
                if getattr(cfg, name) < 1:
                    raise bad(f"{name} must be at least 1, got {getattr(cfg, name)}")
            if cfg.distance not in ("euclidean", "cosine"):
                raise bad(f"distance must be euclidean or cosine, got '{cfg.distance}'")
            if cfg.temperature is not None and not cfg.temperature > 0:
                raise bad(f"temperature must be > 0, got {cfg.temperature}")
        if not cfg.data.is_dir():
            raise bad(f"dataset folder {cfg.data} does not exist")
        if cfg.labels_csv is not None and not cfg.labels_csv.is_file():
            raise bad(f"labels file {cfg.labels_csv} does not exist")
        if cfg.out.exists() and not cfg.overwrite:
            if not cfg.out.is_dir() or any(cfg.out.iterdir()):
                raise bad(
                    f"output {cfg.out} already exists; choose another folder or pass --overwrite"
                )
        return cfg

    @property
    def model_kwargs_dict(self) -> dict:
        return dict(self.model_kwargs)

    def preprocess_spec(self, mean: tuple, std: tuple) -> PreprocessConfig:
        return PreprocessConfig(
            input_size=self.input_size,
            resize=self.resize,
            crop_pct=float(self.crop_pct),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
        )

    def resolved_target_layers(self, model: nn.Module) -> list[str]:
        from fundus_review.inference.layers import default_target_layers, resolve_layer

        if self.target_layer:
            try:
                resolve_layer(model, self.target_layer)
            except Exception as exc:  # noqa: BLE001 - resolve_layer's own message says why
                raise TrainError(f"train: target layer '{self.target_layer}': {exc}") from exc
            return [self.target_layer]
        return list(default_target_layers(model, self.architecture, self.input_size))

    def to_record(self) -> dict:
        """TOML-friendly dict of the settings (no None values; paths as strings)."""
        out: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in ("overwrite", "model_kwargs"):
                continue
            if self.fewshot is None and f.name in FEWSHOT_FIELDS:
                continue  # an ordinary classifier's record stays as it was
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_balanced_acc: float
    lr: float
    seconds: float
    best: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainProgress:
    """One progress event. kind "stage": ``message``; "batch": epoch/step/steps/loss/images_per_s;
    "epoch": epoch/epochs/``stats`` (the epoch's summary)."""

    kind: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float = float("nan")
    images_per_s: float = 0.0
    message: str = ""
    stats: EpochStats | None = None


@dataclass
class TrainResult:
    bundle_path: Path
    classes: list[str]
    best_epoch: int
    val_accuracy: float
    val_balanced_accuracy: float
    val_loss: float
    per_class_recall: dict[str, float]
    n_train: int
    n_val: int
    device: str
    seconds: float
    history: list[EpochStats] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    stopped_early: bool = False


def resolve_device(preference: str) -> torch.device:
    from fundus_review.inference.device import pick_device

    return pick_device(None if preference == "auto" else preference)
