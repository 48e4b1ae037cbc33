"""Training data of the disc/cup segmenter: dataset folders with ``masks/optic_disc`` (+ cup).

Each dataset folder is one *stratum* (DRISHTI-GS1: disc-centred crops with disc and cup;
IDRiD: whole fundus photographs with the disc only). An image without a cup mask contributes no
cup loss (``has_cup`` False), never a "no cup here" target. Images are kept in memory stretched
to a square a little larger than the network input so augmentation can crop and zoom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fundus_review.data.images import load_image
from fundus_review.data.masks_io import find_mask_files, load_mask
from fundus_review.errors import FundusReviewError
from fundus_review.inference.segmenter import CROP_FACTOR, crop_padded, disc_crop_box


class SegmenterDataError(FundusReviewError):
    """A training folder has no usable image with an optic disc mask."""


@dataclass(frozen=True)
class SegSample:
    path: Path
    disc_path: Path
    cup_path: Path | None
    stratum: str

    @property
    def has_cup(self) -> bool:
        return self.cup_path is not None


def find_samples(folders: list[Path]) -> list[SegSample]:
    """Every image (under ``<folder>/images`` or ``<folder>``) with an optic-disc mask."""
    samples: list[SegSample] = []
    for folder in folders:
        folder = Path(folder)
        masks = find_mask_files(folder / "masks")
        images = {p.stem: p for p in sorted((folder / "images").glob("*")) if p.is_file()}
        if not images:
            images = {p.stem: p for p in sorted(folder.glob("*")) if p.is_file()}
        found = [
            SegSample(images[stem], entry["optic_disc"], entry.get("optic_cup"), folder.name)
            for stem, entry in sorted(masks.items())
            if "optic_disc" in entry and stem in images
        ]
        if not found:
            raise SegmenterDataError(
                f"{folder}: no image with a mask in masks/optic_disc/<image stem>.png"
            )
        samples.extend(found)
    return samples


def assign_folds(samples: list[SegSample], k: int, seed: int) -> list[int]:
    """Fold of every sample: within each stratum a seeded shuffle dealt round-robin, so every
    fold holds about the same share of each dataset."""
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    folds = [0] * len(samples)
    rng = np.random.default_rng(seed)
    offset = 0
    for stratum in sorted({s.stratum for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.stratum == stratum]
        for j, i in enumerate(rng.permutation(idx)):
            folds[int(i)] = (j + offset) % k
        offset += len(idx)
    return folds


@dataclass
class Preloaded:
    images: torch.Tensor  # (N, 3, P, P) uint8
    targets: torch.Tensor  # (N, 2, P, P) float16 in [0, 1] (area-resized masks)
    has_cup: torch.Tensor  # (N,) bool


def _square(a: np.ndarray, size: int, mode: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a)).float()
    t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
    if mode == "area":
        return F.interpolate(t, size=(size, size), mode="area")[0]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True)[0]


def preload(samples: list[SegSample], size: int) -> Preloaded:
    """Two views per image: the whole photograph, and the box of ``CROP_FACTOR`` disc
    diameters around the true disc (the view of the segmenter's second pass); views 2i, 2i+1."""
    images, targets, has_cup = [], [], []
    for s in samples:
        rgb = load_image(s.path)
        disc_b = load_mask(s.disc_path, rgb.shape[:2])
        cup_b = load_mask(s.cup_path, rgb.shape[:2]) if s.cup_path else np.zeros_like(disc_b)
        box = disc_crop_box(disc_b, CROP_FACTOR)
        for view in (None, box):
            img = rgb if view is None else crop_padded(rgb, view)
            disc = (disc_b if view is None else crop_padded(disc_b, view)).astype(np.float32)
            cup = (cup_b if view is None else crop_padded(cup_b, view)).astype(np.float32)
            images.append(_square(img, size, "bilinear").round().clamp(0, 255).to(torch.uint8))
            targets.append(torch.cat([_square(disc, size, "area"), _square(cup, size, "area")]))
            has_cup.append(s.has_cup)
    return Preloaded(
        torch.stack(images), torch.stack(targets).half(), torch.tensor(has_cup, dtype=torch.bool)
    )


def augment(
    images: torch.Tensor, targets: torch.Tensor, out: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random zoom (0.75-1.33), rotation (±20°), shift (±10 %), flips, colour -> [-1, 1] input.

    The same affine grid samples the image (bilinear) and the soft masks, so they stay aligned;
    outside the photograph is black, like a fundus camera's surround.
    """
    n = images.shape[0]

    def u(lo: float, hi: float, size: int = n) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(size, generator=gen)

    zoom = torch.exp(u(math.log(0.75), math.log(1.33)))
    angle = u(-20, 20) * math.pi / 180
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    vflip = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin * vflip
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos * vflip
    theta[:, :, 2] = torch.stack([u(-0.1, 0.1), u(-0.1, 0.1)], dim=1)
    grid = F.affine_grid(theta, [n, 3, out, out], align_corners=False)
    x = F.grid_sample(images.float() / 255.0, grid, mode="bilinear", align_corners=False)
    y = F.grid_sample(targets.float(), grid, mode="bilinear", align_corners=False)
    gain = u(0.75, 1.25)[:, None, None, None] * u(0.9, 1.1, n * 3).view(n, 3, 1, 1)
    gamma = u(0.75, 1.33)[:, None, None, None]
    x = (x.clamp(1e-4, 1.0) ** gamma * gain).clamp(0, 1)
    return (x - 0.5) / 0.5, y
