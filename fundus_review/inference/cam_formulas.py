"""The arithmetic of each single-pass method, which its record in cam_methods.py points to.

Three kinds of function, as pytorch-grad-cam splits a method into target, weights and layer
aggregation:

- a *score* (``cam_fast.ScoreFunction``): the scalar the single pass differentiates, from the logits of
  the batch; its gradients at the target layers are what the method's formula reads;
- a *formula* (``LayerFormula``): one layer's (B, C, h, w) activations and gradients -> the raw
  (B, h, w) map before ReLU and scaling, batched in torch; each reproduces the library's
  ``get_cam_weights`` / ``get_cam_image`` for 2-D feature maps (unit tests prove the equality),
  or calls the library's own ``get_cam_image`` (``LibraryFormula``);
- a *fusion* (``LayerFusion``): the per-layer maps (ReLU'd, scaled, resized) -> the final map.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

from fundus_review.inference.cam_errors import CamError
from fundus_review.inference.cam_fast import aggregate_layers, scale_maps

# (activations, gradients or None) -> raw maps, (B, C, h, w) -> (B, h, w).
LayerFormula = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
# per-layer maps, (N, H, W) each -> the final (N, H, W) maps in [0, 1].
LayerFusion = Callable[[Sequence[torch.Tensor]], torch.Tensor]

# FinerCAM's defaults in pytorch-grad-cam 1.5.7 (FinerCAM.forward).
FINER_COMPARISON_CATEGORIES = (1, 2, 3)
FINER_ALPHA = 1.0


# --- scores: what the single pass differentiates ---


def class_score(
    logits: torch.Tensor, targets: torch.Tensor | None, target_index: torch.Tensor
) -> torch.Tensor:
    """The sum over the batch of each image's target-class score (ClassifierOutputTarget).

    In eval mode the images of a batch are independent, so the gradient of the sum is, image by
    image, the gradient of that image's own score.
    """
    return logits.gather(1, target_index[:, None]).sum()


def _finer_targets(logits: torch.Tensor, targets: torch.Tensor | None) -> list[FinerWeightedTarget]:
    """Finer-CAM's per-image targets exactly as FinerCAM.forward builds them.

    With explicit targets, the library's ``target_idx`` logic is applied per image, so the map
    contrasts the requested class with the classes the model finds most similar to it.
    """
    output = logits.detach().cpu().numpy()
    num_classes = output.shape[-1]
    if num_classes < 2:
        raise CamError("finercam needs a model with at least two classes")
    comparison = list(FINER_COMPARISON_CATEGORIES[: max(num_classes - 1, 0)])
    if targets is None:
        target_logits = np.max(output, axis=-1)
    else:
        target_logits = output[np.arange(len(output)), targets.cpu().numpy()]
    order = np.argsort(np.abs(output - target_logits[:, None]), axis=-1)
    return [
        FinerWeightedTarget(int(order[i, 0]), [int(order[i, k]) for k in comparison], FINER_ALPHA)
        for i in range(len(output))
    ]


def finer_score(
    logits: torch.Tensor, targets: torch.Tensor | None, target_index: torch.Tensor
) -> torch.Tensor:
    """Finer-CAM's objective: the target score minus those of its most similar classes."""
    finer_targets = _finer_targets(logits, targets)
    return torch.stack([t(row) for t, row in zip(finer_targets, logits, strict=False)]).sum()


# --- formulas: one layer's activations and gradients -> raw maps, batched ---


def _weighted(weights: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    # One batched matrix product instead of a (B, C, h, w) temporary and a reduction over it.
    return torch.einsum("bc,bchw->bhw", weights, act)


def gradcam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return _weighted(grad.mean(dim=(2, 3)), act)


def hirescam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return (grad * act).sum(dim=1)


def gradcam_plusplus(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    grads_2 = grad * grad
    grads_3 = grads_2 * grad
    sum_act = act.sum(dim=(2, 3), keepdim=True)
    aij = grads_2 / (2 * grads_2 + sum_act * grads_3 + 0.000001)
    aij = torch.where(grad != 0, aij, torch.zeros_like(aij))
    weights = (grad.clamp(min=0) * aij).sum(dim=(2, 3))
    return _weighted(weights, act)


def xgradcam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    sum_act = act.sum(dim=(2, 3), keepdim=True)
    weights = (grad * act / (sum_act + 1e-7)).sum(dim=(2, 3))
    return _weighted(weights, act)


def layercam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return (grad.clamp(min=0) * act).sum(dim=1)


def gradcam_elementwise(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return (grad * act).clamp(min=0).sum(dim=1)


class LibraryFormula:
    """The library class's own ``get_cam_image`` on the activations (and gradients) of the pass.

    For maps that involve an SVD, a kernel PCA or a threshold, whose sign or outcome depends on
    the exact numerical routine: reimplementing them could flip a map where the library's own
    code cannot. The instance is used only for its arithmetic; it is built once, on first use,
    on a one-parameter stand-in model with no target layers, so it registers no hook anywhere,
    while its method parameters (FEM's k, KPCA's kernel...) keep the library's defaults.
    """

    def __init__(self, library_class: type) -> None:
        self.library_class = library_class
        self._calculator: object | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LibraryFormula({self.library_class.__name__})"

    def _get_calculator(self) -> object:
        with self._lock:
            if self._calculator is None:
                # skip_init: the stand-in's weights are never read, and drawing them would
                # advance torch's global random generator behind the caller's back.
                stand_in = torch.nn.utils.skip_init(torch.nn.Linear, 1, 1)
                self._calculator = self.library_class(stand_in, [])
            return self._calculator

    def __call__(self, act: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        act_np = act.cpu().numpy()
        # A method without gradients gets the activations in their place: the only one that
        # reads that argument at all (RandomCAM) reads only its shape.
        grad_np = act_np if grad is None else grad.cpu().numpy()
        cam = self._get_calculator().get_cam_image(None, None, None, act_np, grad_np, False)
        return torch.from_numpy(np.asarray(cam, dtype=np.float32)).to(act.device)


# --- fusions: per-layer maps -> one map ---


def mean_of_layers(per_layer: Sequence[torch.Tensor]) -> torch.Tensor:
    """BaseCAM.aggregate_multi_layers: ReLU, mean over layers, scale again."""
    return aggregate_layers(per_layer)


def product_of_layers(per_layer: Sequence[torch.Tensor]) -> torch.Tensor:
    """RefineCAM: each layer's map as a one-layer CAM of its own, multiplied, scaled again."""
    return scale_maps(torch.stack([aggregate_layers([m]) for m in per_layer]).prod(dim=0))
