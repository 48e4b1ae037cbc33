"""Validation metrics and the bundle a training run leaves behind."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fundus_review import __version__
from fundus_review.inference.bundle import ModelCard, load_bundle, write_bundle
from fundus_review.training import data as td
from fundus_review.training.command import command_for
from fundus_review.training.config import (
    EpochStats,
    PreprocessConfig,
    TrainConfig,
    TrainResult,
)
from fundus_review.training.split import DataSplit, synthetic_provenance

LOG_FILE = "training_log.csv"
HELDOUT_FILE = "heldout.txt"
LOG_COLUMNS = (
    "epoch", "train_loss", "val_loss", "val_acc", "lr",
    "train_acc", "val_balanced_acc", "seconds", "best",
)  # fmt: skip


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    balanced_accuracy: float
    recall: list[float | None]  # per class; None when the class has no validation image
    n: int


def evaluate(
    model: nn.Module,
    dataset: td.ImageSet,
    config: TrainConfig,
    device: torch.device,
    num_classes: int,
) -> EvalResult:
    """Plain (unweighted) cross-entropy, accuracy and per-class recall on ``dataset``."""
    if len(dataset) == 0:
        nan = float("nan")
        return EvalResult(nan, nan, nan, [None] * num_classes, 0)
    model.eval()
    loader = DataLoader(dataset, batch_size=config.batch_size * 2, shuffle=False, num_workers=0)
    loss_sum = 0.0
    preds: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    with torch.no_grad():
        for x, y in loader:
            logits = model(x.to(device)).float()
            y = y.to(device)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            preds.append(logits.argmax(1).cpu().numpy())
            truth.append(y.cpu().numpy())
    p, t = np.concatenate(preds), np.concatenate(truth)
    recall: list[float | None] = []
    for c in range(num_classes):
        sel = t == c
        recall.append(float((p[sel] == c).mean()) if sel.any() else None)
    present = [r for r in recall if r is not None]
    return EvalResult(
        loss=loss_sum / len(t),
        accuracy=float((p == t).mean()),
        balanced_accuracy=float(np.mean(present)),
        recall=recall,
        n=len(t),
    )


def _log_csv(history: list[EpochStats]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for s in history:
        row = s.as_dict()
        writer.writerow(
            [row["epoch"]] + [f"{row[c]:.6g}" for c in LOG_COLUMNS[1:-1]] + [int(row["best"])]
        )
    return buf.getvalue()


def _rounded(state: dict[str, torch.Tensor], dtype_name: str) -> dict[str, torch.Tensor]:
    """The weights exactly as they will be stored (fp16 rounding included)."""
    dtype = torch.float16 if dtype_name == "float16" else torch.float32
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}


def write_training_bundle(
    *,
    config: TrainConfig,
    split: DataSplit,
    model: nn.Module,
    best_state: dict[str, torch.Tensor],
    best_epoch: int,
    history: list[EpochStats],
    spec: PreprocessConfig,
    target_layers: list[str],
    init: str,
    fresh_keys: list[str],
    val_set: td.ImageSet,
    device: torch.device,
    problems: list[tuple[str, str]],
    stopped_early: bool,
    trainable_params: int,
    total_params: int,
    seconds: float,
) -> TrainResult:
    """Evaluate the stored (rounded) best weights and write the bundle folder atomically."""
    stored = _rounded(best_state, config.weights_dtype)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in stored.items()})
    ev = evaluate(model, val_set, config, device, len(split.classes))
    recall = {c: r for c, r in zip(split.classes, ev.recall, strict=True) if r is not None}
    training = {
        **config.to_record(),
        "init": init,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "val_accuracy": ev.accuracy,
        "val_balanced_accuracy": ev.balanced_accuracy,
        "val_loss": ev.loss,
        "per_class_recall": recall,
        "data_sha256": split.digest(),
        **synthetic_provenance(Path(config.data)),
        "n_train": len(split.train_idx),
        "n_val": len(split.val_idx),
        "class_counts_train": {
            c: sum(1 for i in split.train_idx if split.targets[i] == k)
            for k, c in enumerate(split.classes)
        },
        "trainable_parameters": trainable_params,
        "total_parameters": total_params,
        "new_parameters": fresh_keys,
        "device": str(device),
        "seconds": round(seconds, 1),
        "torch_version": torch.__version__,
        "fundus_review_version": __version__,
        "finished": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }
    # The one command that reproduces this bundle, whatever called train_model.
    training["command"] = command_for(config)
    out = Path(config.out)
    card = ModelCard(
        name=config.name or out.name,
        architecture=config.architecture,
        classes=list(split.classes),
        input_size=spec.input_size,
        resize=spec.resize,
        crop_pct=spec.crop_pct,
        mean=spec.mean,
        std=spec.std,
        target_layers=target_layers,
        description=config.description,
        # model_kwargs first: the card reads as "what network", then "how it was trained".
        extra={
            **({"model_kwargs": config.model_kwargs_dict} if config.model_kwargs else {}),
            "training": training,
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / LOG_FILE).write_text(_log_csv(history), encoding="utf-8")
        (tmp / HELDOUT_FILE).write_text(
            "".join(f"{f}\n" for f in split.heldout_files()), encoding="utf-8"
        )
        write_bundle(tmp, card, stored)
        _publishable(tmp)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle = load_bundle(out)
    return TrainResult(
        bundle_path=bundle.path,
        classes=list(split.classes),
        best_epoch=best_epoch,
        val_accuracy=ev.accuracy,
        val_balanced_accuracy=ev.balanced_accuracy,
        val_loss=ev.loss,
        per_class_recall=recall,
        n_train=len(split.train_idx),
        n_val=len(split.val_idx),
        device=str(device),
        seconds=seconds,
        history=history,
        problems=problems,
        stopped_early=stopped_early,
    )


def _publishable(folder: Path) -> None:
    """mkdtemp/mkstemp create owner-only entries; a bundle is meant to be shared like any file
    the user writes, so apply the usual permissions (respecting the umask)."""
    probe = folder / ".mode-probe"
    probe.touch()  # created with 0o666 & ~umask; reading it avoids changing the process umask
    file_mode = probe.stat().st_mode & 0o777
    probe.unlink()
    folder.chmod(file_mode | ((file_mode & 0o444) >> 2))  # x wherever r: a traversable folder
    for f in folder.iterdir():
        if f.is_file():  # sub-folders (a few-shot bundle's support/) were made by mkdir: fine
            f.chmod(file_mode)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; an existing ``out`` (overwrite) is replaced only
    once the new one is complete, so an interrupted run never leaves half a bundle."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / out.name, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
