"""Methods the library runs itself: they need many forward passes, input gradients or second
derivatives, so the single pass cannot serve them.

The engine only decides the targets, keeps the model's state, releases the library's hooks after
every call, and takes the class scores from the library's own first forward pass. How each such
method is built (and whether it needs the parameters' graph) is on its record in cam_methods.py;
the builders that need more than the library class's constructor are here.
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

# (model, target layers, reshape_transform) -> a library CAM object, called as cam(batch, targets).
DelegateBuilder = Callable[[torch.nn.Module, list[torch.nn.Module], Callable | None], object]


def _release_library_hooks(cam: object) -> None:
    # A BaseCAM holds its hooks itself; FinerCAM wraps one BaseCAM, RefineCAM one per layer.
    inner = [cam, getattr(cam, "base_cam", None), *getattr(cam, "base_cam_per_layer", [])]
    for part in inner:
        hooks = getattr(part, "activations_and_grads", None)
        if hooks is not None:
            hooks.release()


@contextlib.contextmanager
def _quiet_progress(module: types.ModuleType) -> Iterator[None]:
    """Silence a library module's tqdm bars: the CLI and the GUI show their own progress."""
    saved = module.tqdm
    module.tqdm = types.SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    try:
        yield
    finally:
        module.tqdm = saved


def _remove_handles(cam: pgc.base_cam.BaseCAM) -> None:
    for handle in cam.activations_and_grads.handles:
        handle.remove()


class ScoreCAMWithoutHooks(pgc.ScoreCAM):
    """Score-CAM that drops its activation hooks once the activations are taken, and is quiet.

    The library keeps its activation hooks during the hundreds of scoring passes, and each pass
    appends a full activation tensor to a list (gigabytes for a ResNet-50 batch). The activations
    it needs are already taken, so the hooks go before the scoring starts.
    """

    def get_cam_weights(self, *args, **kwargs):  # noqa: ANN002, ANN003
        _remove_handles(self)
        with _quiet_progress(score_cam):
            return super().get_cam_weights(*args, **kwargs)


class AblationCAMWithoutHooks(pgc.AblationCAM):
    """Ablation-CAM without hooks during its scoring passes (as ScoreCAMWithoutHooks), quiet."""

    def get_cam_weights(self, *args, **kwargs):  # noqa: ANN002, ANN003
        _remove_handles(self)
        with _quiet_progress(ablation_cam):
            return super().get_cam_weights(*args, **kwargs)


def build_ablation_cam(
    model: torch.nn.Module, layers: list[torch.nn.Module], reshape_transform: Callable | None
) -> object:
    # A fresh ablation layer per run: the library's default argument is one shared instance.
    layer = pgc.AblationLayerVit() if reshape_transform is not None else pgc.AblationLayer()
    return AblationCAMWithoutHooks(model, layers, reshape_transform, ablation_layer=layer)


def build_fullgrad(
    model: torch.nn.Module, layers: list[torch.nn.Module], reshape_transform: Callable | None
) -> object:
    # FullGrad always uses every bias layer; an empty list avoids the library's warning print.
    return pgc.FullGrad(model, [], reshape_transform)


def run_delegate(
    build: DelegateBuilder,
    model: torch.nn.Module,
    layers: Sequence[torch.nn.Module],
    reshape_transform: Callable | None,
    batch: torch.Tensor,
    targets: Sequence[int] | None,
    *,
    needs_parameter_graph: bool,
) -> tuple[np.ndarray, torch.Tensor | None]:
    """Run one library method; return its maps (B, H, W) and the logits of its first forward.

    build: the method record's builder. With targets None the library picks the predicted class
    of each image from that same forward.
    """
    first_output: list[torch.Tensor] = []

    def keep_first(module: torch.nn.Module, inputs: object, output: object) -> None:
        if not first_output and isinstance(output, torch.Tensor):
            first_output.append(output.detach())

    if needs_parameter_graph:
        # The caller froze the parameters; some methods then find no graph to differentiate
        # (SESS's Grad-CAM calls loss.backward() on an input that does not require grad, and
        # ShapleyCAM differentiates activation gradients that, behind a linear head, depend only
        # on the weights). The caller restores every requires_grad flag and .grad afterwards.
        for p in model.parameters():
            p.requires_grad_(True)
    cam = None
    handle = model.register_forward_hook(keep_first)
    try:
        cam = build(model, list(layers), reshape_transform)
        library_targets = (
            None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
        )
        maps = cam(batch, library_targets)
    finally:
        handle.remove()
        if cam is not None:
            _release_library_hooks(cam)
    logits = first_output[0] if first_output else None
    return np.asarray(maps, dtype=np.float32), logits
