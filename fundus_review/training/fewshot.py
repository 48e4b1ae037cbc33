"""`fundus-review train --fewshot protonet`: episodic training of a prototypical network.

Each episode draws `shots` support and `queries` query images of every class from the training
split (augmented as in ordinary training); the backbone embeds them, each class's prototype is
the mean of its support embeddings, and the loss is the cross-entropy of the queries' logits
(minus distance to each prototype, over the temperature). One "epoch" is `episodes` episodes;
after each the validation split is classified against the bundle's own support set (the first
`support_per_class` training images of each class in a seeded order, never augmented), which
is how the analysis will use the model, and the best epoch is kept.

The bundle is a `fewshot:protonet` bundle (inference/support.py): the backbone's weights, the
support images copied into `support/<class>/`, `training_log.csv`, `heldout.txt`, and the card's
[training] table with the configuration and the validation numbers.
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fundus_review import __version__
from fundus_review.inference.bundle import ModelCard, load_bundle, write_bundle
from fundus_review.inference.fewshot import PrototypeNetwork, _drop_head, class_means
from fundus_review.training import data as td
from fundus_review.training import setup as ts
from fundus_review.training.command import command_for
from fundus_review.training.config import (
    EpochStats,
    TrainConfig,
    TrainProgress,
    TrainResult,
    resolve_device,
)
from fundus_review.training.output import (
    HELDOUT_FILE,
    LOG_FILE,
    _log_csv,
    _publishable,
    _rounded,
    _swap_into_place,
    evaluate,
)
from fundus_review.training.split import DataSplit, load_split, synthetic_provenance

SUPPORT_DIR = "support"
ProgressFn = Callable[[TrainProgress], None]


def _backbone(config: TrainConfig, init: str) -> tuple[nn.Module, list[str]]:
    """The architecture without its head, initialised as `init` says."""
    # Built with a head so that an ImageNet init finds every tensor it expects, then dropped.
    model = ts.build_model(config.architecture, 2, config.input_size, config.model_kwargs_dict)
    fresh, _bundle = ts.initialise(model, init, config.architecture)
    reset = getattr(model, "reset_classifier", None)
    if callable(reset):
        reset(0)
    else:
        _drop_head(model)
    return model, fresh


def choose_support(split: DataSplit, per_class: int, seed: int) -> list[int]:
    """Record indices of the bundle's support set: `per_class` training images of each class,
    in a seeded order."""
    rng = np.random.default_rng(seed + 7919)
    chosen: list[int] = []
    for c in range(len(split.classes)):
        pool = [i for i in split.train_idx if split.targets[i] == c]
        if len(pool) < per_class:
            raise ts.TrainError(
                f"train: class '{split.classes[c]}' has {len(pool)} training images; the support "
                f"set needs {per_class} (--support-per-class)"
            )
        chosen += sorted(rng.permutation(pool)[:per_class].tolist())
    return chosen


def _episode(
    by_class: list[list[int]], shots: int, queries: int, gen: torch.Generator
) -> tuple[list[int], list[int]]:
    support, query = [], []
    for pool in by_class:
        pick = torch.randperm(len(pool), generator=gen)[: shots + queries].tolist()
        support += [pool[k] for k in pick[:shots]]
        query += [pool[k] for k in pick[shots:]]
    return support, query


def train_protonet(
    config: TrainConfig,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a prototypical network as `config` says (`config.fewshot == "protonet"`) and write
    its bundle to `config.out`. Called by `train_model`, which has validated the config."""
    emit = progress or (lambda _ev: None)
    started = time.perf_counter()
    split = load_split(config, emit)
    n_classes = len(split.classes)
    device = resolve_device(config.device)
    init = ts.resolve_init(config.init, config.architecture)
    backbone, fresh = _backbone(config, init)
    mean, std = config.mean, config.std
    if mean is None or std is None:
        d_mean, d_std = ts.default_normalisation(init, backbone, None)
        mean, std = mean or d_mean, std or d_std
    spec = config.preprocess_spec(mean, std)
    support_idx = choose_support(split, config.support_per_class, config.seed)
    train_set, val_set, problems = split.datasets(spec, config, emit)
    counts = td.class_counts(train_set.targets, n_classes)
    need = config.shots + config.queries
    short = [c for c, n in zip(split.classes, counts, strict=True) if n < need]
    if short:
        raise ts.TrainError(
            f"train: class(es) {', '.join(short)} have fewer than shots + queries = {need} "
            "training images"
        )
    support_set = td.ImageSet(
        [split.records[i].path for i in support_idx],
        [split.targets[i] for i in support_idx],
        spec,
        None,
        config.seed,
    )
    support_x = torch.stack([support_set[i][0] for i in range(len(support_set))])
    support_y = torch.tensor(support_set.targets, dtype=torch.long)
    trainable, total = ts.apply_unfreeze(backbone, config.unfreeze_blocks)
    temperature = config.resolved_temperature
    net = PrototypeNetwork(backbone, n_classes, config.distance, temperature)
    net.to(device)
    target_layers = [f"backbone.{p}" for p in config.resolved_target_layers(backbone)]
    optimizer = torch.optim.AdamW(
        [p for p in backbone.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    by_class = [[i for i, t in enumerate(train_set.targets) if t == c] for c in range(n_classes)]
    gen = torch.Generator().manual_seed(config.seed)
    total_steps = config.epochs * config.episodes
    history: list[EpochStats] = []
    best: tuple[float, float] | None = None
    best_state, best_epoch, stopped, step = None, 0, False, 0
    emit(
        TrainProgress(
            kind="stage",
            message=(
                f"episodic training: {config.epochs} x {config.episodes} episodes of "
                f"{n_classes} classes x ({config.shots} support + {config.queries} query); "
                f"{config.architecture} init={init}; {trainable:,}/{total:,} parameters "
                f"trainable; validating on {len(val_set)} against {len(support_idx)} support "
                f"images; device {device}"
            ),
        )
    )
    try:
        for epoch in range(1, config.epochs + 1):
            t_epoch = time.perf_counter()
            train_set.epoch = epoch
            loss_sum, correct, seen = 0.0, 0, 0
            epoch_lr = _cosine(step, total_steps, config.lr)
            for i in range(1, config.episodes + 1):
                t0 = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = _cosine(step, total_steps, config.lr)
                s_idx, q_idx = _episode(by_class, config.shots, config.queries, gen)
                x = torch.stack([train_set[k][0] for k in s_idx + q_idx]).to(device)
                y_s = torch.tensor([train_set.targets[k] for k in s_idx], device=device)
                y_q = torch.tensor([train_set.targets[k] for k in q_idx], device=device)
                net.train()
                ts.freeze_norm_statistics(backbone)
                z = net.embed(x)
                protos = class_means(z[: len(s_idx)], y_s, n_classes)
                logits = net.logits_from_embeddings(z[len(s_idx) :], protos)
                loss = nn.functional.cross_entropy(logits, y_q)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                loss_sum += float(loss.detach()) * len(q_idx)
                correct += int((logits.argmax(1) == y_q).sum())
                seen += len(q_idx)
                emit(
                    TrainProgress(
                        kind="batch",
                        epoch=epoch,
                        epochs=config.epochs,
                        step=i,
                        steps=config.episodes,
                        loss=float(loss.detach()),
                        images_per_s=len(x) / max(time.perf_counter() - t0, 1e-9),
                    )
                )
                if should_stop is not None and should_stop():
                    raise KeyboardInterrupt
            net.bind_support(support_x, support_y)
            ev = evaluate(net, val_set, config, device, n_classes)
            stats = EpochStats(
                epoch=epoch,
                train_loss=loss_sum / max(seen, 1),
                train_acc=correct / max(seen, 1),
                val_loss=ev.loss,
                val_acc=ev.accuracy,
                val_balanced_acc=ev.balanced_accuracy,
                lr=epoch_lr,
                seconds=time.perf_counter() - t_epoch,
            )
            key = (ev.accuracy, -ev.loss) if len(val_set) else (float(epoch), 0.0)
            stats.best = best is None or key > best
            if stats.best:
                best, best_epoch = key, epoch
                best_state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
                )
            history.append(stats)
            emit(TrainProgress(kind="epoch", epoch=epoch, epochs=config.epochs, stats=stats))
    except KeyboardInterrupt:
        stopped = True
    if best_state is None:
        raise ts.TrainError(
            f"training stopped before the first epoch finished; nothing written to {config.out}"
        )
    emit(
        TrainProgress(
            kind="stage", message=f"writing bundle {config.out} (best epoch {best_epoch})"
        )
    )
    stored = _rounded(best_state, config.weights_dtype)
    backbone.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in stored.items()}
    )
    net.bind_support(support_x, support_y)
    ev = evaluate(net, val_set, config, device, n_classes)
    recall = {c: r for c, r in zip(split.classes, ev.recall, strict=True) if r is not None}
    training = {
        **config.to_record(),
        "init": init,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": stopped,
        "val_accuracy": ev.accuracy,
        "val_balanced_accuracy": ev.balanced_accuracy,
        "val_loss": ev.loss,
        "per_class_recall": recall,
        "data_sha256": split.digest(),
        **synthetic_provenance(Path(config.data)),
        "n_train": len(split.train_idx),
        "n_val": len(split.val_idx),
        "support_files": [split.records[i].rel_path for i in support_idx],
        "trainable_parameters": trainable,
        "total_parameters": total,
        "new_parameters": fresh,
        "device": str(device),
        "seconds": round(time.perf_counter() - started, 1),
        "torch_version": torch.__version__,
        "fundus_review_version": __version__,
        "finished": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "command": command_for(config),
    }
    out = Path(config.out)
    forward = {
        "kind": "support_set",
        "backbone": config.architecture,
        "support_dir": SUPPORT_DIR,
        "distance": config.distance,
        "temperature": temperature,
    }
    card = ModelCard(
        name=config.name or out.name,
        architecture="fewshot:protonet",
        classes=list(split.classes),
        input_size=spec.input_size,
        resize=spec.resize,
        crop_pct=spec.crop_pct,
        mean=spec.mean,
        std=spec.std,
        target_layers=target_layers,
        description=config.description,
        extra={
            **({"model_kwargs": config.model_kwargs_dict} if config.model_kwargs else {}),
            "forward": forward,
            "training": training,
        },
    )
    _write(out, card, stored, split, support_idx, history)
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
        seconds=time.perf_counter() - started,
        history=history,
        problems=problems,
        stopped_early=stopped,
    )


def _cosine(step: int, total: int, base: float) -> float:
    """Cosine decay from `base` to zero over the run (a pretrained body needs no warm-up here:
    there is no fresh head)."""
    return base * 0.5 * (1.0 + float(np.cos(np.pi * step / max(1, total))))


def _write(
    out: Path,
    card: ModelCard,
    stored: dict[str, torch.Tensor],
    split: DataSplit,
    support_idx: list[int],
    history: list[EpochStats],
) -> None:
    """The bundle folder, built beside `out` and swapped in complete (support images first, so
    the card is readable when it appears)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for k, i in enumerate(support_idx):
            rec = split.records[i]
            folder = tmp / SUPPORT_DIR / split.classes[split.targets[i]]
            folder.mkdir(parents=True, exist_ok=True)
            # Numbered: siteA/1.png and siteB/1.png of one class must not overwrite each other
            # (the bundle's support set would no longer be the one it was validated with).
            shutil.copyfile(rec.path, folder / f"{k:03d}_{Path(rec.rel_path).name}")
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
