"""Training data: seeded stratified split, class weights, and a torch Dataset with augmentation.

Training images go through exactly the preprocessing used at inference (`prepare_image`: the same
resize policy, resampling and normalisation), so a bundle sees at analysis time what it saw while
it learned. Augmentation is applied afterwards, on the model-input grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fundus_review.data.images import load_image
from fundus_review.errors import DatasetError, ImageLoadError
from fundus_review.inference.preprocess import PreprocessSpec, prepare_image

# Preprocessed inputs are kept in memory (float16) when they fit in this budget; beyond it every
# epoch decodes the files again (slower, but a 50k-image set must not exhaust RAM).
CACHE_BUDGET_BYTES = 2 * 1024**3


def stratified_split(
    labels: Sequence[str], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, validation), each sorted; every class keeps its share in both parts.

    Per class, round(n * val_fraction) items go to validation, but at least one when the class has
    two or more items (so every class is validated) and never all of them (so every class is
    trained). A class with a single item stays in training. Same labels + seed -> same split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for cls in sorted(set(labels)):
        idx = np.array([i for i, lab in enumerate(labels) if lab == cls])
        idx = idx[rng.permutation(len(idx))]
        n_val = int(math.floor(len(idx) * val_fraction + 0.5))
        if val_fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = min(n_val, max(len(idx) - 1, 0))
        val.extend(int(i) for i in idx[:n_val])
        train.extend(int(i) for i in idx[n_val:])
    return sorted(train), sorted(val)


def class_counts(targets: Sequence[int], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for t in targets:
        counts[int(t)] += 1
    return counts


def balanced_class_weights(counts: Sequence[int]) -> list[float]:
    """Loss weight per class, n_total / (n_classes * n_c): each class contributes equally.

    The same rule as scikit-learn's class_weight="balanced"; a balanced set gets all ones.
    """
    if any(c <= 0 for c in counts):
        raise ValueError(
            f"every class needs at least one training image, counts are {list(counts)}"
        )
    total = float(sum(counts))
    return [total / (len(counts) * c) for c in counts]


def balanced_sample_weights(targets: Sequence[int], counts: Sequence[int]) -> list[float]:
    """Sampling weight per item, 1 / n_class: each class is drawn equally often on average."""
    return [1.0 / counts[int(t)] for t in targets]


@dataclass(frozen=True)
class AugmentSpec:
    """Light, fundus-safe augmentation: left/right eyes are mirror images; cameras rotate a few
    degrees; exposure and colour balance vary between devices. No vertical flip (superior and
    inferior retina are not interchangeable) and no crop (a lesion near the rim must stay)."""

    hflip: bool = True
    max_rotation_deg: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """An RNG per (seed, epoch, item), so augmentation does not depend on worker scheduling."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def augment(
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    spec: AugmentSpec,
    gen: torch.Generator,
) -> torch.Tensor:
    """Augment one normalised (3, h, w) input; returns a new normalised tensor."""

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=gen))

    img = x.float() * std + mean  # back to [0, 1] so black stays black and jitter is in RGB
    if spec.hflip and float(torch.rand((), generator=gen)) < 0.5:
        img = img.flip(-1)
    if spec.max_rotation_deg > 0:
        angle = math.radians(uniform(-spec.max_rotation_deg, spec.max_rotation_deg))
        h, w = img.shape[-2:]
        cos, sin = math.cos(angle), math.sin(angle)
        # affine_grid works in [-1, 1] coordinates; correct for non-square inputs.
        theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=img.dtype)
        grid = F.affine_grid(theta[None], [1, 3, h, w], align_corners=False)
        img = F.grid_sample(
            img[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )[0]
    if spec.brightness > 0:
        img = img * uniform(1 - spec.brightness, 1 + spec.brightness)
    if spec.contrast > 0:
        m = img.mean()
        img = (img - m) * uniform(1 - spec.contrast, 1 + spec.contrast) + m
    if spec.saturation > 0:
        gray = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        img = (img - gray) * uniform(1 - spec.saturation, 1 + spec.saturation) + gray
    img = img.clamp(0.0, 1.0)
    return (img - mean) / std


class ImageSet(Dataset):
    """Files + class indices -> (normalised input, target), with optional augmentation.

    Unreadable images are found up front by `preload` (or on first access when not cached) and
    raise `ImageLoadError`; the trainer drops them before training starts.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        targets: Sequence[int],
        spec: PreprocessSpec,
        augment_spec: AugmentSpec | None,
        seed: int,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.targets = [int(t) for t in targets]
        self.spec = spec
        self.augment_spec = augment_spec
        self.seed = seed
        self.epoch = 0  # set by the trainer before each epoch (workers get a fresh copy)
        self.mean = torch.tensor(spec.mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(spec.std, dtype=torch.float32)[:, None, None]
        self._cache: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _prepare(self, i: int) -> torch.Tensor:
        arr, _ = prepare_image(load_image(self.paths[i]), self.spec)
        return torch.from_numpy(arr)

    def input_bytes(self) -> int:
        h, w = (int(v) for v in self.spec.input_size)
        return len(self) * 3 * h * w * 2

    def preload(
        self, threads: int = 2, on_item: Callable[[int], None] | None = None
    ) -> list[tuple[int, str]]:
        """Decode and preprocess every image into memory; returns (index, reason) of failures."""
        failures: list[tuple[int, str]] = []
        cache: list[torch.Tensor | None] = [None] * len(self)

        def work(i: int) -> None:
            try:
                cache[i] = self._prepare(i).to(torch.float16)
            except ImageLoadError as exc:
                failures.append((i, exc.reason))
            if on_item is not None:
                on_item(i)

        # Pillow releases the GIL while decoding and resizing, so threads do overlap.
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            list(pool.map(work, range(len(self))))
        self._cache = cache  # type: ignore[assignment]  # None only at failed indices
        return sorted(failures)

    def without(self, drop: set[int]) -> ImageSet:
        """A copy without the items at `drop` (keeping the preloaded inputs of the others)."""
        keep = [i for i in range(len(self)) if i not in drop]
        out = ImageSet(
            [self.paths[i] for i in keep],
            [self.targets[i] for i in keep],
            self.spec,
            self.augment_spec,
            self.seed,
        )
        if self._cache is not None:
            out._cache = [self._cache[i] for i in keep]
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self._cache[i].float() if self._cache is not None else self._prepare(i)
        if self.augment_spec is not None:
            x = augment(
                x, self.mean, self.std, self.augment_spec, item_generator(self.seed, self.epoch, i)
            )
        return x, self.targets[i]


def check_readable(paths: Sequence[Path], threads: int = 2) -> list[tuple[int, str]]:
    """(index, reason) for each file that cannot be decoded, without keeping the pixels."""
    failures: list[tuple[int, str]] = []

    def work(i: int) -> None:
        try:
            load_image(paths[i])
        except ImageLoadError as exc:
            failures.append((i, exc.reason))

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(work, range(len(paths))))
    return sorted(failures)


def require_trainable_classes(classes: Sequence[str], counts: Sequence[int], where: str) -> None:
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise DatasetError(f"{where}: no training images for class(es) {', '.join(empty)}")
