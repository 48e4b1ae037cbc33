"""Faithfulness of a heatmap by ROAD: does removing the pixels it highlights change the answer?

Source: Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and Efficient Evaluation Strategy
for Attribution Methods" (ICML 2022; ROAD = RemOve And Debias), as shipped in
``pytorch_grad_cam.metrics.road`` (its ``NoisyLinearImputer`` and ``ClassifierOutputSoftmaxTarget``
are used here).

Definitions (one image x, its heatmap m on the model-input grid of N = H x W pixels, the class c
the heatmap explains, p(x) = softmax(model(x))[c]):

- A *removal fraction* f in (0, 1) removes k = round(f N) pixels (all channels). **MoRF** (most
  relevant first) removes the k pixels of highest m, **LeRF** (least relevant first) the k of
  lowest m. Ties in m (zeros of a ReLU'd CAM, the plateaus of a float16 map) are broken by a
  seeded random order shared by both orders, so exactly k pixels go and a constant map removes
  the same pixels under MoRF and LeRF. (The package's ``RemoveMostRelevantFirst(p)`` instead
  thresholds at the p-th percentile and KEEPS the pixels strictly below it, which removes the top
  (100 - p) % only when m has no ties; its LeRF twin removes far more than asked when a CAM is
  0 on a large area. Our fractions name what is REMOVED: f = 1 - p / 100.)
- Removed pixels are *imputed* by the noisy linear imputation of ROAD: each removed pixel is the
  weighted mean of its 8 neighbours (weight 1/6 for the 4 edge neighbours, 1/12 for the 4
  diagonal ones, renormalised at the border), solved jointly as one sparse linear system per
  channel, plus Gaussian noise of standard deviation 0.01 (in the units of the model input, i.e.
  after normalisation). The imputation removes the information in the pixels without the
  out-of-distribution artefact of a constant fill (the "debias" of ROAD).
- ``drop_f = p(x) - p(x with the fraction f removed)`` for each order.
- ``road_morf`` = mean over the fractions of the MoRF drop (higher: removing the highlighted
  pixels hurts more); ``road_lerf`` = mean LeRF drop (lower is better: removing what the map says
  is irrelevant should not matter);
- ``road_combined`` = (mean_f p_LeRF,f - mean_f p_MoRF,f) / 2 = (road_morf - road_lerf) / 2,
  the package's ``ROADCombined`` (in [-0.5, 0.5]; higher = more faithful, about 0 for a map that
  knows nothing, e.g. a constant map gives exactly 0).

Reproducibility: the imputation noise of fraction j is drawn from ``torch.manual_seed`` of a seed
derived from (seed, j) inside ``torch.random.fork_rng`` (the caller's random state is untouched),
and the tie-breaking order from ``numpy.random.default_rng((seed, H, W))``; so the same seed
gives the same numbers whatever the batch is made of.

Cost: the sparse solve dominates (about 0.1-0.3 s per 224 x 224 image and fraction on one CPU
core, growing with the fraction); the model sees one batch of 2B perturbed images per fraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

from fundus_review.inference.outputs import PROBABILITIES_ATTR

ROAD_VERSION = 1
DEFAULT_REMOVED: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
DEFAULT_NOISE = 0.01  # NoisyLinearImputer's default


@dataclass(frozen=True)
class RoadResult:
    """ROAD of one heatmap: the target's probability (softmax; a multi-label network's sigmoid)
    before and after each removal."""

    target_index: int
    removed: tuple[float, ...]
    prob: float
    morf_probs: tuple[float, ...]
    lerf_probs: tuple[float, ...]

    @property
    def morf_drops(self) -> tuple[float, ...]:
        return tuple(self.prob - p for p in self.morf_probs)

    @property
    def lerf_drops(self) -> tuple[float, ...]:
        return tuple(self.prob - p for p in self.lerf_probs)

    @property
    def road_morf(self) -> float:
        return float(np.mean(self.morf_drops))

    @property
    def road_lerf(self) -> float:
        return float(np.mean(self.lerf_drops))

    @property
    def road_combined(self) -> float:
        return float((np.mean(self.lerf_probs) - np.mean(self.morf_probs)) / 2.0)

    def metrics(self) -> dict[str, float]:
        """Flat name -> value: the three summaries, the original probability and every curve
        point (``morf_prob@0.3`` = probability with 30 % of the pixels removed, MoRF)."""
        out = {
            "road_combined": self.road_combined,
            "road_morf": self.road_morf,
            "road_lerf": self.road_lerf,
            "road_prob": float(self.prob),
        }
        for f, pm, pl in zip(self.removed, self.morf_probs, self.lerf_probs, strict=True):
            out[f"road_morf_prob@{f:g}"] = float(pm)
            out[f"road_lerf_prob@{f:g}"] = float(pl)
        return out


def check_fractions(removed: Sequence[float]) -> tuple[float, ...]:
    """The removal fractions as a tuple, each strictly between 0 and 1, without duplicates."""
    out = tuple(float(f) for f in removed)
    if not out:
        raise ValueError("ROAD needs at least one removal fraction")
    if any(not 0.0 < f < 1.0 for f in out) or len(set(out)) != len(out):
        raise ValueError(f"removal fractions must be distinct and in (0, 1), got {list(out)}")
    return out


def removal_order(cam: np.ndarray, most_relevant_first: bool, seed: int) -> np.ndarray:
    """Flat pixel indices in removal order: by decreasing (MoRF) or increasing (LeRF) heatmap
    value, ties broken by one seeded random permutation shared by both orders."""
    flat = np.asarray(cam, dtype=np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError("the heatmap has NaN or infinite values")
    h, w = np.shape(cam)
    tiebreak = np.random.default_rng((int(seed), int(h), int(w))).permutation(flat.size)
    key = -flat if most_relevant_first else flat
    return np.lexsort((tiebreak, key))  # last key sorts first


def keep_mask(order: np.ndarray, shape: tuple[int, int], fraction: float) -> np.ndarray:
    """float32 (H, W): 1 = kept, 0 = removed (the first round(fraction N) pixels of ``order``)."""
    n = int(shape[0]) * int(shape[1])
    k = int(round(fraction * n))
    mask = np.ones(n, dtype=np.float32)
    mask[order[:k]] = 0.0
    return mask.reshape(shape)


class FastNoisyLinearImputer(NoisyLinearImputer):
    """``NoisyLinearImputer`` with the same equation system assembled in one vectorised COO
    build instead of ``lil_matrix`` item assignment (which is half of the cost at 224 x 224; the
    test suite checks that both give the same matrix and image). The package's ``__call__``
    names its own class for the assembly, so overriding the static method is not enough."""

    @staticmethod
    def setup_sparse_system(mask: np.ndarray, img: np.ndarray, neighbors_weights: list) -> tuple:
        h, w = mask.shape
        maskflt = mask.reshape(-1)
        imgflat = img.reshape((img.shape[0], -1))
        indices = np.flatnonzero(maskflt == 0)
        n_eq = indices.size
        coords_to_vidx = np.zeros(maskflt.size, dtype=np.int64)
        coords_to_vidx[indices] = np.arange(n_eq)
        b = np.zeros((n_eq, img.shape[0]))
        diag = np.ones(n_eq)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        y0, x0 = indices // w, indices % w
        for (dy, dx), weight in neighbors_weights:
            y, x = y0 + dy, x0 + dx
            valid = (y >= 0) & (x >= 0) & (y < h) & (x < w)
            diag[~valid] -= weight  # a missing border neighbour: renormalise the weights
            ids = np.flatnonzero(valid)
            nb = y[valid] * w + x[valid]
            known = maskflt[nb] > 0.5
            b[ids[known], :] -= weight * imgflat[:, nb[known]].T
            rows.append(ids[~known])
            cols.append(coords_to_vidx[nb[~known]])
            vals.append(np.full(int((~known).sum()), weight))
        rows.append(np.arange(n_eq))
        cols.append(np.arange(n_eq))
        vals.append(-diag)
        a = coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_eq, n_eq),
        )
        return a.tocsc(), b

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        imgflt = img.reshape(img.shape[0], -1)
        m = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        missing = np.flatnonzero(m.reshape(-1) == 0)
        if missing.size == 0:
            return img.clone()
        a, b = self.setup_sparse_system(m, img.numpy(), neighbors_weights)
        res = torch.tensor(np.asarray(spsolve(a, b)).reshape(missing.size, -1), dtype=torch.float)
        out = imgflt.clone()
        out[:, missing] = res.t() + self.noise * torch.randn_like(res.t())
        return out.reshape_as(img)


def _fraction_seed(seed: int, j: int) -> int:
    return (int(seed) * 1_000_003 + 7919 * (j + 1)) % (2**63 - 1)


def road_scores(
    model: nn.Module,
    batch: torch.Tensor,
    cams: Sequence[np.ndarray] | np.ndarray,
    target_indices: Sequence[int],
    removed: Sequence[float] = DEFAULT_REMOVED,
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
) -> list[RoadResult]:
    """ROAD of each heatmap ``cams[i]`` (H x W, the grid of ``batch``) for the class
    ``target_indices[i]`` of image ``batch[i]`` (the normalised model input, on the model's
    device). One forward for the originals, then one per fraction holding the MoRF and the
    LeRF versions of every image. Raises ValueError for a heatmap of the wrong shape or with
    non-finite values (the caller reports it for that image)."""
    fractions = check_fractions(removed)
    if batch.ndim != 4:
        raise ValueError(f"expected a [B, C, H, W] batch, got shape {tuple(batch.shape)}")
    n, _, h, w = batch.shape
    cam_list = [np.asarray(c, dtype=np.float32) for c in cams]
    if len(cam_list) != n or len(target_indices) != n:
        raise ValueError(f"{n} images need {n} heatmaps and targets")
    for c in cam_list:
        if c.shape != (h, w):
            raise ValueError(f"heatmap is {c.shape}, the model input is {(h, w)}")
    multilabel = getattr(model, PROBABILITIES_ATTR, "softmax") == "sigmoid"
    targets = [
        _SigmoidTarget(int(t)) if multilabel else ClassifierOutputSoftmaxTarget(int(t))
        for t in target_indices
    ]
    orders = [(removal_order(c, True, seed), removal_order(c, False, seed)) for c in cam_list]
    imputer = FastNoisyLinearImputer(noise=noise)
    device = batch.device
    cpu = batch.detach().to("cpu", torch.float32)
    was_training = model.training
    model.eval()
    try:
        prob = _probs(model, batch, targets)
        morf = np.zeros((n, len(fractions)))
        lerf = np.zeros((n, len(fractions)))
        for j, f in enumerate(fractions):
            perturbed = []
            with torch.random.fork_rng(devices=[]):
                for i in range(n):
                    for order in orders[i]:
                        # Re-seeded per image and order: an image's numbers do not depend on
                        # which other images share the batch.
                        torch.manual_seed(_fraction_seed(seed, j))
                        mask = torch.from_numpy(keep_mask(order, (h, w), f))
                        perturbed.append(imputer(cpu[i], mask))
            stacked = torch.stack(perturbed).to(device, batch.dtype)
            p = _probs(model, stacked, [t for t in targets for _ in range(2)])
            morf[:, j], lerf[:, j] = p[0::2], p[1::2]
    finally:
        model.train(was_training)
    return [
        RoadResult(
            target_index=int(target_indices[i]),
            removed=fractions,
            prob=float(prob[i]),
            morf_probs=tuple(float(v) for v in morf[i]),
            lerf_probs=tuple(float(v) for v in lerf[i]),
        )
        for i in range(n)
    ]


def _probs(model: nn.Module, x: torch.Tensor, targets: list) -> np.ndarray:
    with torch.no_grad():
        out = model(x)
    return np.array([float(t(o).detach().cpu()) for t, o in zip(targets, out, strict=True)])


class _SigmoidTarget:
    """p(label) of a multi-label network: the sigmoid of that label's logit (outputs.py)."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if model_output.ndim == 1:
            return torch.sigmoid(model_output[self.category])
        return torch.sigmoid(model_output[:, self.category])
