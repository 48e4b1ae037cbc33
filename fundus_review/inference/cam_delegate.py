"""Methods the library runs itself (Score-CAM, Ablation-CAM, FullGrad, ShapleyCAM, SESS).

The engine only decides the targets, keeps the model's state, releases the library's hooks after
every call, and takes the class scores from the library's own first forward pass.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam import ablation_cam, score_cam
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

_NEEDS_PARAMETER_GRAPH = {"shapleycam", "sess"}


def _release_library_hooks(cam: object) -> None:
    inner = getattr(cam, "base_cam", cam)
    hooks = getattr(inner, "activations_and_grads", None)
    if hooks is not None:
        hooks.release()


class _ScoreCAM(pgc.ScoreCAM):
    def get_cam_weights(self, *args, **kwargs):  # noqa: ANN002, ANN003
        # The library keeps its activation hooks during the hundreds of scoring passes, and each
        # pass appends a full activation tensor to a list (gigabytes for a ResNet-50 batch). The
        # activations it needs are already taken, so the hooks go before the scoring starts.
        _remove_handles(self)
        return super().get_cam_weights(*args, **kwargs)


class _AblationCAM(pgc.AblationCAM):
    def get_cam_weights(self, *args, **kwargs):  # noqa: ANN002, ANN003
        _remove_handles(self)  # same reason as _ScoreCAM
        return super().get_cam_weights(*args, **kwargs)


def _remove_handles(cam: pgc.base_cam.BaseCAM) -> None:
    for handle in cam.activations_and_grads.handles:
        handle.remove()


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence the library's tqdm bars: the CLI and the GUI show their own progress."""
    modules = (score_cam, ablation_cam)
    saved = [module.tqdm for module in modules]
    silent = types.SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    for module in modules:
        module.tqdm = silent
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=False):
            module.tqdm = original


def _build(
    name: str,
    model: torch.nn.Module,
    layers: list[torch.nn.Module],
    reshape_transform: Callable | None,
) -> object:
    if name == "scorecam":
        return _ScoreCAM(model, layers, reshape_transform)
    if name == "ablationcam":
        # A fresh ablation layer per run: the library's default argument is one shared instance.
        layer = pgc.AblationLayerVit() if reshape_transform is not None else pgc.AblationLayer()
        return _AblationCAM(model, layers, reshape_transform, ablation_layer=layer)
    if name == "fullgrad":
        # FullGrad always uses every bias layer; an empty list avoids the library's warning print.
        return pgc.FullGrad(model, [], reshape_transform)
    if name == "shapleycam":
        return pgc.ShapleyCAM(model, layers, reshape_transform)
    if name == "sess":
        return pgc.SESS(model, layers, reshape_transform)
    raise KeyError(name)


def run_delegate(
    name: str,
    model: torch.nn.Module,
    layers: Sequence[torch.nn.Module],
    reshape_transform: Callable | None,
    batch: torch.Tensor,
    targets: Sequence[int] | None,
) -> tuple[np.ndarray, torch.Tensor | None]:
    """Run one library method; return its maps (B, H, W) and the logits of its first forward.

    With targets None the library picks the predicted class of each image from that same forward.
    """
    first_output: list[torch.Tensor] = []

    def keep_first(module: torch.nn.Module, inputs: object, output: object) -> None:
        if not first_output and isinstance(output, torch.Tensor):
            first_output.append(output.detach())

    if name in _NEEDS_PARAMETER_GRAPH:
        # The caller froze the parameters; these methods then find no graph to differentiate
        # (SESS's Grad-CAM calls loss.backward() on an input that does not require grad, and
        # ShapleyCAM differentiates activation gradients that, behind a linear head, depend only
        # on the weights). The caller restores every requires_grad flag and .grad afterwards.
        for p in model.parameters():
            p.requires_grad_(True)
    cam = None
    handle = model.register_forward_hook(keep_first)
    try:
        cam = _build(name, model, list(layers), reshape_transform)
        library_targets = (
            None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
        )
        with _quiet_progress():
            maps = cam(batch, library_targets)
    finally:
        handle.remove()
        if cam is not None:
            _release_library_hooks(cam)
    logits = first_output[0] if first_output else None
    return np.asarray(maps, dtype=np.float32), logits
