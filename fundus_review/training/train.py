"""`fundus-review train`: fine-tune a classifier on a fundus dataset and write a model bundle.

The bundle is the same kind the analysis reads (model.toml + weights), plus what a reviewer needs
to trust the numbers: `training_log.csv` (one row per epoch) and `heldout.txt` (the validation
files, which the model never trained on). The card's [training] table records the full
configuration, the best epoch and its validation accuracy and per-class recall.

Reproducibility: the split, the head initialisation, the batch order and every augmentation draw
derive from `seed`; on CPU two runs with the same config give the same weights (torch's
deterministic algorithms are switched on for the run).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from fundus_review.training import data as td
from fundus_review.training import setup as ts
from fundus_review.training.config import (
    EpochStats,
    TrainConfig,
    TrainProgress,
    TrainResult,
    resolve_device,
)
from fundus_review.training.output import EvalResult, evaluate, write_training_bundle
from fundus_review.training.split import load_split

__all__ = [
    "EpochStats",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "make_criterion",
    "make_loader",
    "train_model",
]

ProgressFn = Callable[[TrainProgress], None]


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up, then cosine decay to zero: stable for a fresh head on a pretrained body."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + float(np.cos(np.pi * progress)))


def make_criterion(
    config: TrainConfig, counts: list[int], device: torch.device
) -> nn.CrossEntropyLoss:
    """Cross-entropy; with "weighted_loss" each class weighs n_total / (n_classes * n_class)."""
    weight = None
    if config.class_weighting == "weighted_loss":
        weight = torch.tensor(td.balanced_class_weights(counts), dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight)


def make_loader(
    dataset: Dataset, config: TrainConfig, counts: list[int], shuffle_gen: torch.Generator
) -> DataLoader:
    """Shuffled batches (each image once per epoch), or with "balanced_sampler" as many draws
    with replacement where every class is equally likely."""
    sampler = None
    if config.class_weighting == "balanced_sampler":
        weights = td.balanced_sample_weights(dataset.targets, counts)
        sampler = WeightedRandomSampler(
            weights, num_samples=len(dataset), replacement=True, generator=shuffle_gen
        )
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=shuffle_gen if sampler is None else None,
        num_workers=config.num_workers,
        # BatchNorm cannot normalise a batch of one; drop such a remainder.
        drop_last=len(dataset) % config.batch_size == 1,
    )


def train_model(
    config: TrainConfig,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train as ``config`` says and write the bundle to ``config.out``.

    ``progress`` receives a `TrainProgress` per batch (kind "batch"), per epoch ("epoch") and for
    the preparation stages ("stage"). ``should_stop`` is polled after every batch: when it returns
    True (or on Ctrl-C) training stops, and the best epoch finished so far is written as the
    bundle (marked ``stopped_early``); stopping before the first epoch ends writes nothing.
    """
    config = config.validated()
    if config.fewshot is not None:
        from fundus_review.training.fewshot import train_protonet

        with _deterministic(config.seed):
            return train_protonet(config, progress, should_stop)
    emit = progress or (lambda _ev: None)
    started = time.perf_counter()
    with _deterministic(config.seed):
        split = load_split(config, emit)
        device = resolve_device(config.device)
        init = ts.resolve_init(config.init, config.architecture)
        model = ts.build_model(
            config.architecture, len(split.classes), config.input_size, config.model_kwargs_dict
        )
        fresh_keys, init_bundle = ts.initialise(model, init, config.architecture)
        mean, std = config.mean, config.std
        if mean is None or std is None:
            d_mean, d_std = ts.default_normalisation(
                init, model, getattr(init_bundle, "card", None)
            )
            mean, std = mean or d_mean, std or d_std
        spec = config.preprocess_spec(mean, std)
        target_layers = config.resolved_target_layers(model)
        train_set, val_set, problems = split.datasets(spec, config, emit)
        counts = td.class_counts(train_set.targets, len(split.classes))
        td.require_trainable_classes(split.classes, counts, str(config.data))
        trainable, total = ts.apply_unfreeze(model, config.unfreeze_blocks)
        model.to(device)

        criterion = make_criterion(config, counts, device)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        loader = make_loader(train_set, config, counts, torch.Generator().manual_seed(config.seed))
        steps_per_epoch = len(loader)
        total_steps = steps_per_epoch * config.epochs
        warmup = min(steps_per_epoch, max(1, total_steps // 10))

        history: list[EpochStats] = []
        best: tuple[float, float] | None = None  # (val accuracy, -val loss): higher is better
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch = 0
        stopped = False
        step = 0
        emit(
            TrainProgress(
                kind="stage",
                message=(
                    f"training {len(train_set)} images, validating on {len(val_set)}; {config.architecture} "
                    f"init={init}; {trainable:,}/{total:,} parameters trainable; device {device}"
                ),
            )
        )
        try:
            for epoch in range(1, config.epochs + 1):
                t_epoch = time.perf_counter()
                train_set.epoch = epoch
                model.train()
                ts.freeze_norm_statistics(model)
                loss_sum, correct, seen = 0.0, 0, 0
                epoch_lr = _lr_at(step, total_steps, warmup, config.lr)
                for i, (x, y) in enumerate(loader, start=1):
                    t0 = time.perf_counter()
                    for group in optimizer.param_groups:
                        group["lr"] = _lr_at(step, total_steps, warmup, config.lr)
                    x, y = x.to(device), y.to(device)
                    logits = model(x)
                    loss = criterion(logits, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    loss_value = float(loss.detach())
                    loss_sum += loss_value * len(y)
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
                    emit(
                        TrainProgress(
                            kind="batch",
                            epoch=epoch,
                            epochs=config.epochs,
                            step=i,
                            steps=steps_per_epoch,
                            loss=loss_value,
                            images_per_s=len(y) / max(time.perf_counter() - t0, 1e-9),
                        )
                    )
                    if should_stop is not None and should_stop():
                        raise KeyboardInterrupt
                ev: EvalResult = evaluate(model, val_set, config, device, len(split.classes))
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
                improved = best is None or key > best
                if improved:
                    best, best_epoch = key, epoch
                    best_state = copy.deepcopy(
                        {k: v.detach().cpu() for k, v in model.state_dict().items()}
                    )
                stats.best = improved
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
        return write_training_bundle(
            config=config,
            split=split,
            model=model,
            best_state=best_state,
            best_epoch=best_epoch,
            history=history,
            spec=spec,
            target_layers=target_layers,
            init=init,
            fresh_keys=fresh_keys,
            val_set=val_set,
            device=device,
            problems=problems,
            stopped_early=stopped,
            trainable_params=trainable,
            total_params=total,
            seconds=time.perf_counter() - started,
        )
