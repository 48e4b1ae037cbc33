"""The `fundus-review train` command line that reproduces a training config.

Recorded in every trained bundle's card as provenance. It lives in training/, not cli/, because the
bundle writer needs it and training must not import the command line (that made an import circle).
tests/unit/test_train.py parses the recorded command with the real parser, so a renamed option
cannot drift from this table unnoticed.
"""

from __future__ import annotations

import shlex

from fundus_review.training.config import TrainConfig

# TrainConfig field -> command-line option, in the order `command_for` writes them.
OPTIONS = {
    "out": "--out",
    "labels_csv": "--labels",
    "filename_column": "--filename-column",
    "label_column": "--label-column",
    "architecture": "--arch",
    "model_kwargs": "--model-kwargs",
    "init": "--init",
    "image_size": "--image-size",
    "resize": "--resize",
    "crop_pct": "--crop-pct",
    "mean": "--mean",
    "std": "--std",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "unfreeze_blocks": "--unfreeze-blocks",
    "class_weighting": "--class-weighting",
    "val_fraction": "--val-fraction",
    "seed": "--seed",
    "device": "--device",
    "num_workers": "--num-workers",
    "target_layer": "--target-layer",
    "name": "--name",
    "description": "--description",
    "fewshot": "--fewshot",
    "episodes": "--episodes",
    "shots": "--shots",
    "queries": "--queries",
    "support_per_class": "--support-per-class",
    "distance": "--distance",
    "temperature": "--temperature",
}


def _fmt(value: object) -> str:
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) for v in value):
        return ",".join(f"{k}={_fmt(v)}" for k, v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{value[0]}x{value[1]}"
        return ",".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def command_for(config: TrainConfig) -> str:
    """The `fundus-review train` command that reproduces ``config`` (defaults left out)."""
    default = TrainConfig(data=config.data, out=config.out)
    args = ["fundus-review", "train", str(config.data)]
    for name, option in OPTIONS.items():
        value = getattr(config, name)
        if name != "out" and (value is None or value == getattr(default, name) or value == ""):
            continue
        args += [option, _fmt(value)]
    if not config.augment:
        args.append("--no-augment")
    if config.weights_dtype == "float32":
        args.append("--fp32")
    return " ".join(shlex.quote(a) for a in args)
