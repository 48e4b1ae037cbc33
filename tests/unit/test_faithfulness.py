"""inference.faithfulness: ROAD on a model whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import (
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

from fundus_review.core.baselines import gaussian_at, random_map
from fundus_review.inference.faithfulness import (
    FastNoisyLinearImputer,
    keep_mask,
    removal_order,
    road_scores,
)

S = 48  # image side: R = the top-left S/2 x S/2 quadrant (25 % of the pixels)


class TopLeftNet(nn.Module):
    """logit(class 1) = GAIN x mean intensity of the top-left quadrant R; logit(class 0) = 0.
    The answer depends on R only, so only a map that highlights R is faithful."""

    GAIN = 4.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        r = x[:, :, : h // 2, : w // 2].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(r), self.GAIN * r], dim=1)


def _image() -> torch.Tensor:
    """R bright (+1), the rest dark (-1), in normalised units."""
    x = -torch.ones(1, 3, S, S)
    x[:, :, : S // 2, : S // 2] = 1.0
    return x


def _peak(cy: float, cx: float) -> np.ndarray:
    return gaussian_at((S, S), (cy, cx), S / 4)


ON_R = _peak(S / 4, S / 4)  # peaks at the centre of R
ELSEWHERE = _peak(3 * S / 4, 3 * S / 4)  # peaks at the centre of the bottom-right quadrant
RANDOM = random_map((S, S), 0, "image-key")


def _road(cams: list[np.ndarray], seed: int = 0, removed=(0.1, 0.3, 0.5, 0.7, 0.9)):
    batch = _image().repeat(len(cams), 1, 1, 1)
    return road_scores(TopLeftNet(), batch, cams, [1] * len(cams), removed=removed, seed=seed)


def test_a_map_on_the_region_the_model_reads_is_faithful_and_one_elsewhere_is_not() -> None:
    on_r, elsewhere, rnd = _road([ON_R, ELSEWHERE, RANDOM])
    assert on_r.prob == pytest.approx(1 / (1 + np.exp(-TopLeftNet.GAIN)), abs=1e-6)
    # Removing 10 % most-relevant-first leaves a hole inside R that is filled from bright R
    # (ROAD removes information, and there is none in a flat patch); from 30 % on the removal
    # reaches the dark surroundings, R is filled from them and the class-1 probability collapses.
    assert abs(on_r.morf_drops[0]) < 0.01
    assert on_r.morf_drops[1] > 0.5 and all(d > 0.9 for d in on_r.morf_drops[2:])
    assert on_r.road_morf > 0.6
    # ...while removing the least relevant pixels leaves R as it is.
    assert abs(on_r.road_lerf) < 0.05
    assert on_r.road_combined > 0.3
    # A map of the wrong quadrant: MoRF never touches R (the imputation from R keeps it bright).
    assert abs(elsewhere.road_morf) < 0.05
    assert elsewhere.road_lerf > 0.4
    assert elsewhere.road_combined < 0 < on_r.road_combined
    # A random map is in between.
    assert elsewhere.road_combined < rnd.road_combined < on_r.road_combined


def test_definitions_hold_between_the_summaries() -> None:
    (r,) = _road([RANDOM])
    assert r.road_combined == pytest.approx((r.road_morf - r.road_lerf) / 2)
    assert r.road_morf == pytest.approx(r.prob - np.mean(r.morf_probs))
    m = r.metrics()
    assert m["road_morf_prob@0.3"] == r.morf_probs[1] and m["road_prob"] == r.prob
    assert len(m) == 4 + 2 * 5


def test_same_seed_same_numbers_whatever_the_batch() -> None:
    a = _road([RANDOM, ON_R], seed=3)
    b = _road([ON_R], seed=3)
    assert a[1] == b[0]  # the other image in the batch changes nothing
    assert _road([RANDOM], seed=3)[0] == a[0]
    assert _road([RANDOM], seed=4)[0] != a[0]  # the noise really is seeded


def test_a_constant_map_knows_nothing_and_scores_exactly_zero() -> None:
    (r,) = _road([np.ones((S, S), np.float32)])
    assert r.morf_probs == r.lerf_probs
    assert r.road_combined == 0.0


def test_removal_removes_exactly_the_fraction_even_with_ties() -> None:
    cam = np.zeros((10, 10), np.float32)
    cam[:3, :3] = 1.0  # 9 % ones, 91 % zeros (a ReLU'd CAM)
    for most in (True, False):
        order = removal_order(cam, most, seed=0)
        for f in (0.05, 0.1, 0.5):
            mask = keep_mask(order, cam.shape, f)
            assert int((mask == 0).sum()) == round(f * 100)
    morf = keep_mask(removal_order(cam, True, 0), cam.shape, 0.05)
    assert (cam[morf == 0] == 1).all()  # most relevant first: inside the ones
    lerf = keep_mask(removal_order(cam, False, 0), cam.shape, 0.5)
    assert (cam[lerf == 0] == 0).all()


def test_fast_imputer_builds_the_package_system_and_image() -> None:
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.normal(size=(3, 20, 24)).astype(np.float32))
    cam = random_map((20, 24), 1, "k")
    for f in (0.2, 0.7):
        mask = keep_mask(removal_order(cam, True, 0), cam.shape, f)
        a_pkg, b_pkg = NoisyLinearImputer.setup_sparse_system(mask, img.numpy(), neighbors_weights)
        a_new, b_new = FastNoisyLinearImputer.setup_sparse_system(
            mask, img.numpy(), neighbors_weights
        )
        np.testing.assert_allclose(a_new.toarray(), a_pkg.toarray(), atol=1e-12)
        np.testing.assert_allclose(b_new, b_pkg, atol=1e-12)
        m = torch.from_numpy(mask)
        ref = NoisyLinearImputer(noise=0.0)(img, m)
        np.testing.assert_allclose(FastNoisyLinearImputer(noise=0.0)(img, m), ref, atol=1e-5)
        assert torch.equal(ref[:, m == 1], img[:, m == 1])  # kept pixels untouched


def test_matches_the_package_road_on_a_map_without_ties() -> None:
    """Same numbers as pytorch_grad_cam's MoRF/LeRF (percentile p keeps the p % least / most
    relevant) when the map has no ties and the noise is off."""
    cam = (RANDOM + np.linspace(0, 1e-4, S * S).reshape(S, S)).astype(np.float32)
    x = _image() + 0.3 * torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, S, S)))
    x = x.float()
    model = TopLeftNet()
    (ours,) = road_scores(model, x, [cam], [1], removed=(0.3, 0.6), noise=0.0)
    target = [ClassifierOutputSoftmaxTarget(1)]
    for j, f in enumerate((0.3, 0.6)):
        p = round(100 * (1 - f))
        imp = NoisyLinearImputer(noise=0.0)
        morf = PerturbationConfidenceMetric(RemoveMostRelevantFirst(p, imp))
        lerf = PerturbationConfidenceMetric(RemoveLeastRelevantFirst(p, imp))
        d_morf = morf(x, cam[None], target, model)[0]
        d_lerf = lerf(x, cam[None], target, model)[0]
        assert ours.prob - ours.morf_probs[j] == pytest.approx(-d_morf, abs=2e-3)
        assert ours.prob - ours.lerf_probs[j] == pytest.approx(-d_lerf, abs=2e-3)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        _road([RANDOM], removed=(0.0, 0.5))
    with pytest.raises(ValueError, match="model input"):
        road_scores(TopLeftNet(), _image(), [np.ones((4, 4))], [1])
    bad = RANDOM.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _road([bad])
