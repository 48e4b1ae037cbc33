"""Batched class-activation maps: predictions and every requested CAM from one forward pass.

``CamEngine(model, target_layers, methods).run(batch)`` returns the softmax probabilities, the
target class of each image and one heatmap per method, each (B, h, w) float32 in [0, 1] on the
model-input grid. The maps equal those of pytorch-grad-cam 1.5.7 (same weights, ReLU, per-image
min-max scaling, bilinear resize and layer averaging), but all gradient methods share a single
forward pass whose backward pass reaches only from the class scores down to the target layers.
What each method is and how it is computed is on its record (cam_methods.py); this engine names
no method. cam_fast.py is the single pass, cam_delegate.py the methods the library runs itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fundus_review.inference import cam_fast
from fundus_review.inference.cam_delegate import run_delegate
from fundus_review.inference.cam_formulas import LayerFusion
from fundus_review.inference.cam_methods import (
    CAM_METHODS,
    CamError,
    CamMethod,
    UnknownCamMethodError,
    canonical_method,
    method_display_name,
)
from fundus_review.inference.outputs import probabilities

__all__ = [
    "CAM_METHODS",
    "CamEngine",
    "CamError",
    "CamMethod",
    "CamResult",
    "UnknownCamMethodError",
    "canonical_method",
    "method_display_name",
]


@dataclass
class CamResult:
    # (B, C) float32 softmax of the logits of the same forward pass (per-label sigmoid for a
    # multi-label network, inference/outputs.py)
    probs: np.ndarray
    target_index: np.ndarray  # (B,) int64: the class each map explains
    heatmaps: dict[str, np.ndarray]  # method -> (B, in_h, in_w) float32 in [0, 1]


@contextlib.contextmanager
def _model_prepared(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for one run; afterwards the model is exactly as found.

    Restored: every module's training flag, every parameter's requires_grad and .grad (the
    library calls model.zero_grad()), and every module's children (Ablation-CAM swaps a layer
    out while it runs, and an error must not leave it swapped).
    """
    modes = [(m, m.training) for m in model.modules()]
    children = [(m, dict(m._modules)) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _, _ in params:
            p.requires_grad_(False)
        yield
    finally:
        for module, modules in children:
            if module._modules != modules:
                module._modules.clear()
                module._modules.update(modules)
        for module, training in modes:
            module.training = training
        for p, requires_grad, grad in params:
            p.requires_grad_(requires_grad)
            p.grad = grad


def _model_device(model: torch.nn.Module) -> tuple[torch.device, torch.dtype | None]:
    for p in model.parameters():
        return p.device, (p.dtype if p.is_floating_point() else None)
    return torch.device("cpu"), None


class CamEngine:
    """Computes predictions and heatmaps for batches of model inputs.

    model: a classifier returning (B, classes) scores, already on its device.
    target_layers: modules of the model (see inference.layers.resolve_layer); with several, the
        maps of the layers are averaged as pytorch-grad-cam does.
    methods: names from CAM_METHODS (any spelling canonical_method accepts), or CamMethod
        records (a method of one's own, or a registered one computed another way).
    reshape_transform: turns a layer's output into (B, C, h, w), e.g. for ViT/Swin tokens.
    No hook stays on the model between runs; close() exists for symmetry and use in `with`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        target_layers: Sequence[torch.nn.Module],
        methods: Sequence[str | CamMethod],
        reshape_transform: Callable | None = None,
    ) -> None:
        if isinstance(methods, str | CamMethod):
            methods = [methods]
        records: dict[str, CamMethod] = {}
        for method in methods:
            record = (
                method if isinstance(method, CamMethod) else CAM_METHODS[canonical_method(method)]
            )
            records.setdefault(record.name, record)
        if not records:
            raise CamError("no CAM method requested")
        layers = list(target_layers)
        if not layers:
            raise CamError("no target layer given")
        members = {id(m) for m in model.modules()}
        for i, layer in enumerate(layers):
            if not isinstance(layer, torch.nn.Module) or id(layer) not in members:
                raise CamError(
                    f"target layer #{i} ({type(layer).__name__}) is not a module of the model"
                )
        self.model = model
        self.target_layers = layers
        self.methods = list(records)
        self.records = list(records.values())
        self.reshape_transform = reshape_transform
        self._closed = False
        self._device, self._dtype = _model_device(model)

    # -- public API --

    def run(self, batch: torch.Tensor, targets: Sequence[int] | None = None) -> CamResult:
        """Predictions and heatmaps for a (B, 3, h, w) batch of model inputs.

        targets: one class index per image, or None for each image's predicted class.
        """
        if self._closed:
            raise CamError("this CamEngine was closed")
        batch = self._check_batch(batch)
        target_tensor = self._check_targets(targets, batch.shape[0])
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        heatmaps: dict[str, torch.Tensor | np.ndarray] = {}
        logits = None
        with _model_prepared(self.model):
            single = [m for m in self.records if m.single_pass]
            if single:
                # Each score is differentiated once, however many methods read its gradients.
                scores = list(dict.fromkeys(m.score for m in single if m.score is not None))
                result = cam_fast.single_pass(
                    self.model,
                    self.target_layers,
                    batch,
                    target_tensor,
                    scores=scores,
                    reshape_transform=self.reshape_transform,
                )
                logits, target_tensor = result.logits, result.target_index
                with cam_fast.one_cpu_thread(batch.device):
                    heatmaps.update(self._single_pass_maps(single, result, size))
            # Methods that need known targets run last, when the other methods have fixed them.
            library_run = [m for m in self.records if not m.single_pass]
            library_run.sort(key=lambda m: m.needs_known_targets)
            if library_run and hasattr(self.model, "query_rows"):
                raise CamError(
                    f"{', '.join(m.name for m in library_run)}: not available for a network "
                    "that runs its support set through the target layers itself; use a "
                    "gradient method (gradcam, hirescam, ...)"
                )
            for method in library_run:
                if method.needs_known_targets and logits is None:
                    logits = self._plain_forward(batch)
                    target_tensor = logits.argmax(dim=1) if target_tensor is None else target_tensor
                known = None if target_tensor is None else target_tensor.tolist()
                maps, first_logits = run_delegate(
                    method.build,
                    self.model,
                    self.target_layers,
                    self.reshape_transform,
                    batch,
                    known,
                    needs_parameter_graph=method.needs_parameter_graph,
                )
                if logits is None:
                    logits = first_logits
                    if target_tensor is None:
                        target_tensor = logits.argmax(dim=1)
                heatmaps[method.name] = maps
        assert logits is not None and target_tensor is not None
        if int(target_tensor.max()) >= logits.shape[1]:
            raise CamError(
                f"target class {int(target_tensor.max())} does not exist: "
                f"the model has {logits.shape[1]} classes"
            )
        probs = probabilities(self.model, logits).cpu().numpy()
        return CamResult(
            probs=probs.astype(np.float32, copy=False),
            target_index=target_tensor.cpu().numpy().astype(np.int64),
            heatmaps={n: self._to_numpy(heatmaps[n]) for n in self.methods},
        )

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> CamEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --

    def _check_batch(self, batch: torch.Tensor) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[0] == 0:
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise CamError(f"expected a (batch, channels, height, width) tensor, got {shape}")
        batch = batch.detach().to(self._device)
        if self._dtype is not None and batch.dtype != self._dtype:
            batch = batch.to(self._dtype)
        return batch

    def _check_targets(self, targets: Sequence[int] | None, n: int) -> torch.Tensor | None:
        if targets is None:
            return None
        values = np.asarray(targets).reshape(-1)
        if len(values) != n or not np.issubdtype(values.dtype, np.integer):
            raise CamError(f"expected {n} integer target classes (one per image), got {targets!r}")
        if values.min() < 0:
            raise CamError(f"target classes must be >= 0, got {values.tolist()}")
        return torch.as_tensor(values, dtype=torch.long, device=self._device)

    def _plain_forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(batch).detach()

    def _single_pass_maps(
        self, methods: list[CamMethod], result: cam_fast.PassResult, size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        acts = result.activations
        for i, act in enumerate(acts):
            cam_fast.check_feature_map(act, i)
        # Methods that combine their layers the same way are computed together: per layer, their
        # maps stacked as (M, B, h, w) and resized in one call; then one fusion for all of them.
        groups: dict[LayerFusion, list[CamMethod]] = {}
        for method in methods:
            groups.setdefault(method.fuse_layers, []).append(method)
        out: dict[str, torch.Tensor] = {}
        for fuse, group in groups.items():
            layer_maps: list[torch.Tensor] = []
            for i, act in enumerate(acts):
                raw = [
                    m.formula(act, None if m.score is None else result.gradients[m.score][i])
                    for m in group
                ]
                layer_maps.append(cam_fast.layer_map(torch.stack(raw).flatten(0, 1), size))
            # (M*B, H, W) -> (M, B, H, W)
            final = fuse(layer_maps).unflatten(0, (len(group), -1))
            out.update(zip((m.name for m in group), final, strict=True))
        return out

    @staticmethod
    def _to_numpy(maps: torch.Tensor | np.ndarray) -> np.ndarray:
        if isinstance(maps, torch.Tensor):
            maps = maps.detach().cpu().numpy()
        return np.ascontiguousarray(maps, dtype=np.float32)
