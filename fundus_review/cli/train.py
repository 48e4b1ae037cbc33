"""Command-line face of training: `fundus-review train DATASET --out BUNDLE [options]`.

`add_train_parser(sub)` registers the sub-command; `config_from_args` turns parsed options into a
`TrainConfig`. The command that reproduces a config (``training.command.command_for``) is
recorded in every bundle's card.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from fundus_review.training.config import CLASS_WEIGHTING, TrainConfig, TrainProgress


def _size(text: str) -> int | tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"image size {text!r}: use N or HxW, e.g. 224 or 224x288"
        ) from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(f"image size {text!r}: use N or HxW")


def _triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected three comma-separated numbers"
        ) from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three comma-separated numbers")
    return values  # type: ignore[return-value]


def _scalar(text: str) -> int | float | bool | str:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _kwargs(text: str) -> tuple[tuple[str, int | float | bool | str], ...]:
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip().isidentifier():
            raise argparse.ArgumentTypeError(
                f"model argument {part!r}: use name=value, e.g. output_stride=16"
            )
        pairs.append((name.strip(), _scalar(value)))
    return tuple(pairs)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig(data=Path("."), out=Path("."))
    p.add_argument("data", type=Path, help="dataset folder (class sub-folders, or a labels CSV)")
    p.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    p.add_argument(
        "--labels",
        dest="labels_csv",
        type=Path,
        help="labels CSV (default: <dataset>/labels.csv or sub-folders)",
    )
    p.add_argument("--filename-column", help="CSV column with the image file name (auto-detected)")
    p.add_argument("--label-column", help="CSV column with the class label (auto-detected)")
    p.add_argument(
        "--arch",
        dest="architecture",
        default=d.architecture,
        help="timm:<name>, torchvision:<name> or package.module:factory (default %(default)s)",
    )
    p.add_argument(
        "--model-kwargs",
        type=_kwargs,
        help="constructor arguments name=value[,name=value], e.g. output_stride=16 (a finer "
        "final feature map, hence finer Grad-CAM); stored in the card",
    )
    p.add_argument(
        "--init",
        default=d.init,
        help="auto | none | imagenet-effnet-lite0 | a bundle folder to continue from "
        "(auto: ImageNet weights for EfficientNet-Lite0, else none)",
    )
    p.add_argument(
        "--image-size", type=_size, default=d.image_size, help="N or HxW (default %(default)s)"
    )
    p.add_argument("--resize", default=d.resize, choices=["resize", "center_crop", "letterbox"])
    p.add_argument("--crop-pct", type=float, default=d.crop_pct, help="for --resize center_crop")
    p.add_argument("--mean", type=_triple, help="normalisation mean R,G,B (default: the init's)")
    p.add_argument("--std", type=_triple, help="normalisation std R,G,B (default: the init's)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--lr", type=float, default=d.lr, help="peak learning rate (AdamW, cosine decay)"
    )
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument(
        "--unfreeze-blocks",
        type=int,
        default=d.unfreeze_blocks,
        help="train only the last N blocks and the head; -1 = all (default)",
    )
    p.add_argument(
        "--class-weighting",
        default=d.class_weighting,
        choices=list(CLASS_WEIGHTING),
        help="for imbalanced sets: weighted_loss or balanced_sampler",
    )
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="no flip / rotation / colour jitter",
    )
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--num-workers", type=int, default=d.num_workers, help="image loading threads/processes"
    )
    p.add_argument(
        "--target-layer", help="Grad-CAM layer written to the card (default: family default)"
    )
    f = p.add_argument_group(
        "few-shot (--fewshot protonet)",
        "episodic training of a prototypical network over --arch as its backbone; the bundle "
        "ships a support set (README, Few-shot and custom-forward models)",
    )
    f.add_argument("--fewshot", choices=["protonet"], help="train a few-shot model instead")
    f.add_argument("--episodes", type=int, default=d.episodes, help="episodes per epoch")
    f.add_argument(
        "--shots", type=int, default=d.shots, help="support images per class per episode"
    )
    f.add_argument(
        "--queries", type=int, default=d.queries, help="query images per class per episode"
    )
    f.add_argument(
        "--support-per-class",
        type=int,
        default=d.support_per_class,
        help="training images per class copied into the bundle as its support set",
    )
    f.add_argument("--distance", default=d.distance, choices=["euclidean", "cosine"])
    f.add_argument(
        "--temperature", type=float, help="logits = -distance / T (default 1; cosine: 0.1)"
    )
    p.add_argument("--name", help="model name in the card (default: the --out folder name)")
    p.add_argument("--description", default="", help="free text for the card")
    p.add_argument("--fp32", action="store_true", help="store float32 weights (default float16)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out bundle")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    kwargs = {k: v for k, v in vars(ns).items() if k in known and v is not None}
    kwargs["weights_dtype"] = "float32" if getattr(ns, "fp32", False) else "float16"
    return TrainConfig(**kwargs)


class _ProgressPrinter:
    """tqdm bar per epoch (loss, images/s) and one summary line per epoch."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def __call__(self, ev: TrainProgress) -> None:
        from tqdm import tqdm

        if ev.kind == "stage":
            print(ev.message, file=sys.stderr)
        elif ev.kind == "batch" and not self.quiet:
            if self.bar is None:
                self.bar = tqdm(
                    total=ev.steps,
                    desc=f"epoch {ev.epoch}/{ev.epochs}",
                    unit="batch",
                    file=sys.stderr,
                    dynamic_ncols=True,
                    leave=False,
                )
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{ev.loss:.3f}", img_s=f"{ev.images_per_s:.1f}")
        elif ev.kind == "epoch" and ev.stats is not None:
            self.close()
            s = ev.stats
            print(
                f"epoch {s.epoch}/{ev.epochs}: train loss {s.train_loss:.4f} acc {s.train_acc:.3f} | "
                f"val loss {s.val_loss:.4f} acc {s.val_acc:.3f} (balanced {s.val_balanced_acc:.3f}) | "
                f"lr {s.lr:.2e} | {s.seconds:.0f} s" + ("  *best*" if s.best else ""),
                file=sys.stderr,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from fundus_review.training.train import train_model

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    printer = _ProgressPrinter(args.quiet)
    try:
        result = train_model(config, progress=printer)
    finally:
        printer.close()
    for path, reason in result.problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    recall = ", ".join(f"{c} {r:.3f}" for c, r in result.per_class_recall.items())
    print(
        f"{'stopped early; ' if result.stopped_early else ''}best epoch {result.best_epoch}: "
        f"validation accuracy {result.val_accuracy:.3f} on {result.n_val} images "
        f"(recall: {recall}); {result.seconds:.0f} s on {result.device} -> {result.bundle_path}"
    )
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a classifier on a fundus dataset and write a model bundle",
        description="Fine-tune a timm / torchvision / module:factory classifier and write a bundle "
        "(model.toml + weights + training_log.csv + heldout.txt).",
    )
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)
