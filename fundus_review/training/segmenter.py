"""`fundus-review train-segmenter`: train the disc/cup segmenter and measure it honestly.

One run (``train_segmenter``) first trains the model that is shipped on *all* images, writes it,
then runs k-fold cross-validation of the very same recipe (folds dealt per dataset stratum,
``segmenter_data.assign_folds``): every fold's model is trained without its held-out images and
scored only on them, on the photograph's own grid, through the same post-processing and
polygon the application proposes. The card records per-fold and pooled Dice with bootstrap CIs;
the shipped model is never scored on images it was trained on.
"""

from __future__ import annotations

import csv
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fundus_review.core.stats import bootstrap_ci
from fundus_review.data.images import load_image
from fundus_review.data.masks_io import load_mask
from fundus_review.inference.segment_post import dice, disc_cup_masks, shapes_from_masks
from fundus_review.inference.segmenter import (
    DiscCupNet,
    Segmenter,
    SegmenterCard,
    make_backbone,
    write_segmenter,
)
from fundus_review.training.segmenter_data import (
    SegSample,
    assign_folds,
    augment,
    find_samples,
    preload,
)


@dataclass
class SegTrainConfig:
    data: list[Path]
    out: Path
    name: str = "segmenter-disc-cup"
    image_size: int = 256
    epochs: int = 24
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    folds: int = 3
    seed: int = 0
    threads: int = 1
    init: str = "imagenet"  # "imagenet" (EfficientNet-Lite0 encoder) | "none"
    cv: bool = True
    limit: int | None = None  # at most this many images per dataset (smoke tests)
    data_labels: list[str] = field(default_factory=list)  # how the card names the data


def command_for(cfg: SegTrainConfig) -> str:
    parts = ["fundus-review", "train-segmenter", *map(str, cfg.data), "--out", str(cfg.out)]
    d = SegTrainConfig(data=[], out=Path("."))
    for opt in ("name", "image_size", "epochs", "batch_size", "lr", "folds", "seed", "init"):
        if getattr(cfg, opt) != getattr(d, opt):
            parts += [f"--{opt.replace('_', '-')}", str(getattr(cfg, opt))]
    if not cfg.cv:
        parts.append("--no-cv")
    if cfg.limit is not None:
        parts += ["--limit", str(cfg.limit)]
    return shlex.join(parts)


def _loss(logits: torch.Tensor, target: torch.Tensor, has_cup: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice per channel; the cup channel only for images that have a cup mask."""
    weight = torch.ones_like(target[:, :, :1, :1])
    weight[:, 1] = has_cup.float()[:, None, None]
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight.expand_as(target))
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(2, 3))
    denom = p.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
    soft_dice = 1 - (2 * inter + 1) / (denom + 1)  # (B, 2)
    w = weight[:, :, 0, 0]
    return bce + (soft_dice * w).sum() / w.sum().clamp(min=1)


def _new_net(cfg: SegTrainConfig) -> DiscCupNet:
    backbone = make_backbone()
    if cfg.init == "imagenet":
        from fundus_review.training.pretrained import load_imagenet_effnet_lite0

        load_imagenet_effnet_lite0(backbone)
    elif cfg.init != "none":
        raise ValueError(f"--init must be 'imagenet' or 'none', not {cfg.init!r}")
    return DiscCupNet(backbone=backbone)


def fit(
    cfg: SegTrainConfig,
    samples: list[SegSample],
    log: Callable[[str], None] = print,
    tag: str = "all",
    rows: list[dict] | None = None,
) -> DiscCupNet:
    """Train a fresh network on ``samples`` with the config's recipe (seeded)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = preload(samples, int(round(cfg.image_size * 1.25)))
    net = _new_net(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(samples) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    )
    start = time.monotonic()
    for epoch in range(cfg.epochs):
        net.train()
        # one view of each image per step: the whole photo or its disc box, half and half
        order = 2 * torch.randperm(len(samples), generator=gen)
        order += (torch.rand(len(samples), generator=gen) < 0.5).long()
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two
                continue
            x, y = augment(data.images[idx], data.targets[idx], cfg.image_size, gen)
            loss = _loss(net(x), y, data.has_cup[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        mean = total / len(samples)
        elapsed = time.monotonic() - start
        log(f"[{tag}] epoch {epoch + 1}/{cfg.epochs} loss {mean:.4f} ({elapsed:.0f} s)")
        if rows is not None:
            rows.append({"model": tag, "epoch": epoch + 1, "loss": round(mean, 5),
                         "seconds": round(elapsed, 1)})  # fmt: skip
    net.eval()
    return net


def score_images(net: DiscCupNet, cfg: SegTrainConfig, samples: list[SegSample]) -> list[dict]:
    """Dice of the proposed polygons against the masks, per held-out image, at full size."""
    seg = Segmenter(Path("."), SegmenterCard(cfg.name, input_size=cfg.image_size), net, "")
    rows = []
    for s in samples:
        rgb = load_image(s.path)
        disc_p, cup_p = seg.predict(rgb)
        disc, cup = disc_cup_masks(disc_p, cup_p)
        shapes = {p.structure: p.mask(rgb.shape[:2]) for p in shapes_from_masks(disc, cup)}
        empty = np.zeros(rgb.shape[:2], bool)
        row = {"image": s.path.name, "stratum": s.stratum}
        truth_disc = load_mask(s.disc_path, rgb.shape[:2])
        row["dice_disc"] = dice(shapes.get("optic_disc", empty), truth_disc)
        if s.cup_path is not None:
            truth_cup = load_mask(s.cup_path, rgb.shape[:2])
            row["dice_cup"] = dice(shapes.get("optic_cup", empty), truth_cup)
        rows.append(row)
    return rows


def _summary(values: list[float | None]) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0}
    mean, low, high = bootstrap_ci(vals, seed=0)
    return {"n": len(vals), "mean": round(mean, 4), "ci_low": round(low, 4),
            "ci_high": round(high, 4)}  # fmt: skip


def cross_validate(
    cfg: SegTrainConfig, samples: list[SegSample], log: Callable[[str], None], rows: list[dict]
) -> tuple[dict, list[dict]]:
    folds = assign_folds(samples, cfg.folds, cfg.seed)
    per_image: list[dict] = []
    per_fold = []
    for k in range(cfg.folds):
        train = [s for s, f in zip(samples, folds, strict=True) if f != k]
        held = [s for s, f in zip(samples, folds, strict=True) if f == k]
        t0 = time.monotonic()
        net = fit(cfg, train, log, tag=f"fold{k + 1}", rows=rows)
        scored = score_images(net, cfg, held)
        for r in scored:
            r["fold"] = k + 1
        per_image += scored
        fold = {"fold": k + 1, "n_train": len(train), "n_held_out": len(held),
                "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
        for ch in ("disc", "cup"):
            fold[f"dice_{ch}"] = _summary([r.get(f"dice_{ch}") for r in scored])
        log(f"[fold{k + 1}] held-out Dice disc {fold['dice_disc']} cup {fold['dice_cup']}")
        per_fold.append(fold)
    result: dict = {"folds": cfg.folds, "grouping": "dealt round-robin within each dataset"}
    for ch in ("disc", "cup"):
        result[f"dice_{ch}"] = _summary([r.get(f"dice_{ch}") for r in per_image])
        for stratum in sorted({s.stratum for s in samples}):
            sub = [r.get(f"dice_{ch}") for r in per_image if r["stratum"] == stratum]
            if any(v is not None for v in sub):
                result[f"dice_{ch}_{stratum}"] = _summary(sub)
    result["per_fold"] = per_fold
    return result, per_image


def train_segmenter(cfg: SegTrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train on all images and write the segmenter; then cross-validate and rewrite its card."""
    torch.set_num_threads(cfg.threads)
    samples = find_samples(cfg.data)
    if cfg.limit is not None:
        samples = [s for st in dict.fromkeys(x.stratum for x in samples)
                   for s in [x for x in samples if x.stratum == st][: cfg.limit]]  # fmt: skip
    counts = {st: sum(s.stratum == st for s in samples) for st in dict.fromkeys(
        s.stratum for s in samples)}  # fmt: skip
    log(f"{len(samples)} images: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    rows: list[dict] = []
    start = time.monotonic()
    net = fit(cfg, samples, log, tag="all", rows=rows)
    training = {
        "command": command_for(cfg),
        "data": cfg.data_labels or [str(p) for p in cfg.data],
        "images": counts,
        "cup_masks": sum(s.has_cup for s in samples),
        "recipe": {
            k: v
            for k, v in asdict(cfg).items()
            if k not in ("data", "out", "data_labels", "cv", "limit")
        },  # fmt: skip
        "shipped_model": f"trained on all {len(samples)} images (none held out)",
        "seconds_shipped_model": round(time.monotonic() - start, 1),
        "torch": torch.__version__,
        "cross_validation": "pending" if cfg.cv else "not run (--no-cv)",
    }
    card = SegmenterCard(
        cfg.name,
        input_size=cfg.image_size,
        description="Optic disc and cup proposals: U-Net on an EfficientNet-Lite0 encoder "
        f"(ImageNet init), trained on {_describe(samples)}.",
        training=training,
    )
    write_segmenter(cfg.out, card, net)
    log(f"wrote {cfg.out} ({training['seconds_shipped_model']:.0f} s)")
    if cfg.cv:
        cv, per_image = cross_validate(cfg, samples, log, rows)
        training["cross_validation"] = cv
        training["seconds_total"] = round(time.monotonic() - start, 1)
        write_segmenter(cfg.out, card, net)
        _write_csv(cfg.out / "cv_per_image.csv", per_image)
        log(f"cross-validated Dice: disc {cv['dice_disc']}, cup {cv['dice_cup']}")
    _write_csv(cfg.out / "training_log.csv", rows)
    return cfg.out


def _describe(samples: list[SegSample]) -> str:
    """``drishti_gs1_train (50, disc + cup), idrid_seg (12, disc)``: what the card was trained on."""
    parts = []
    for st in dict.fromkeys(s.stratum for s in samples):
        sub = [s for s in samples if s.stratum == st]
        cups = sum(s.has_cup for s in sub)
        what = "disc + cup" if cups == len(sub) else "disc" if not cups else f"disc, {cups} cups"
        parts.append(f"{st} ({len(sub)}, {what})")
    return ", ".join(parts)


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
