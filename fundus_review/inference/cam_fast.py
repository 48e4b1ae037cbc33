"""The single-pass path: one forward, one short backward, every gradient CAM from it.

pytorch-grad-cam runs a full backward pass through the whole network (parameter gradients
included) for each method. A class-activation map needs only d(score)/d(activation) at the target
layers, so here:

- the model's parameters do not require gradients (the caller freezes them), hence nothing below
  the lowest target layer records an autograd graph;
- the lowest target layer's output is replaced by a fresh leaf tensor that requires grad, so the
  graph spans only the layers between it and the class scores;
- one ``torch.autograd.grad`` call per score (the class score; Finer-CAM's contrast) returns the
  gradients at every target layer, and every requested method is computed from the same
  activations and gradients, batched on the model's device, with the library's post-processing
  (ReLU, per-image min-max, bilinear resize, layer mean). Which score and which formula a method
  uses is on its record (cam_methods.py); this module names no method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fundus_review.inference.cam_errors import CamError

# (logits with their graph, explicit targets or None, the class each map explains) -> the scalar
# whose gradients at the target layers a method reads; see cam_formulas.py.
ScoreFunction = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]


@dataclass
class PassResult:
    logits: torch.Tensor  # (B, C), detached
    target_index: torch.Tensor  # (B,) long
    activations: list[torch.Tensor]  # per target layer, after reshape_transform
    # score -> d(score)/d(activation), per target layer, after reshape_transform
    gradients: dict[ScoreFunction, list[torch.Tensor]]


class _LayerCapture:
    """Forward hooks that turn target-layer outputs into the tensors we differentiate against."""

    def __init__(
        self,
        layers: Sequence[torch.nn.Module],
        query_rows: Callable[[int], slice | None] | None = None,
    ) -> None:
        # query_rows: a support-set network's (inference/fewshot.py) rows of a layer output
        # that belong to the query images (None: a pass over the support set, not captured).
        self.query_rows = query_rows
        self.tensors: list[torch.Tensor | None] = [None] * len(layers)
        self.calls = [0] * len(layers)
        self.handles = [
            layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)
        ]

    def _hook(self, index: int) -> Callable:
        def hook(module: torch.nn.Module, inputs: object, output: object) -> torch.Tensor | None:
            if not isinstance(output, torch.Tensor):
                raise CamError(
                    f"target layer {type(module).__name__} returns {type(output).__name__}, "
                    "not a tensor; choose a layer whose output is a feature map"
                )
            rows = slice(None)
            if self.query_rows is not None:
                try:
                    found = self.query_rows(int(output.shape[0]))
                except ValueError as exc:
                    raise CamError(str(exc)) from exc
                if found is None:
                    return None  # the support images' pass
                rows = found
            self.calls[index] += 1
            if self.calls[index] > 1:
                return None
            part = output if rows == slice(None) else output[rows]
            if torch.is_grad_enabled() and not part.requires_grad:
                # Nothing below this layer reached it through autograd (frozen parameters), so it
                # becomes the root of the only graph recorded in this pass.
                captured = part.detach().requires_grad_(True)
            else:
                captured = part
            self.tensors[index] = captured
            # The network continues on a copy: an in-place op after the layer (ReLU(inplace),
            # "out += identity") would otherwise fail on a leaf or alter the captured activation.
            if rows == slice(None):
                return captured.clone()
            start, stop, _ = rows.indices(int(output.shape[0]))
            return torch.cat([output[:start].detach(), captured.clone(), output[stop:].detach()])

        return hook

    def release(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def single_pass(
    model: torch.nn.Module,
    layers: Sequence[torch.nn.Module],
    batch: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    scores: Sequence[ScoreFunction],
    reshape_transform: Callable | None,
) -> PassResult:
    """Run the model once and return logits, activations and the gradients of each score.

    scores: the objectives the requested methods differentiate (each once, however many methods
    read it); none means no graph is recorded at all. The caller has put the model in eval mode
    with frozen parameters.
    """
    capture = _LayerCapture(layers, getattr(model, "query_rows", None))
    try:
        with torch.set_grad_enabled(bool(scores)):
            logits = model(batch)
    finally:
        capture.release()

    for i, count in enumerate(capture.calls):
        if count != 1:
            name = type(layers[i]).__name__
            raise CamError(
                f"target layer #{i} ({name}) ran {count} times in one forward pass; "
                "choose a layer that runs exactly once"
            )
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise CamError(
            "the model must return class scores of shape (batch, classes); "
            f"it returned {type(logits).__name__}"
            + (f" of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else "")
        )
    if targets is not None and int(targets.max()) >= logits.shape[1]:
        raise CamError(
            f"target class {int(targets.max())} does not exist: the model has "
            f"{logits.shape[1]} classes"
        )
    target_index = logits.detach().argmax(dim=1) if targets is None else targets
    tensors = [t for t in capture.tensors if t is not None]

    def grads_of(score: torch.Tensor, retain: bool) -> list[torch.Tensor]:
        if not score.requires_grad:
            raise CamError(
                "the class scores do not depend on the target layers; "
                "is the model computing them without autograd?"
            )
        found = torch.autograd.grad(score, tensors, retain_graph=retain, allow_unused=True)
        # A layer that does not influence the scores has zero gradient, not a missing one.
        return [
            torch.zeros_like(t) if g is None else g for g, t in zip(found, tensors, strict=False)
        ]

    def reshaped(values: list[torch.Tensor]) -> list[torch.Tensor]:
        values = [v.detach() for v in values]
        if reshape_transform is not None:
            values = [reshape_transform(v) for v in values]
        return [v.float() for v in values]

    gradients: dict[ScoreFunction, list[torch.Tensor]] = {}
    for k, score_of in enumerate(scores):
        # The graph is kept until the last score has been differentiated.
        score = score_of(logits, targets, target_index)
        gradients[score_of] = reshaped(grads_of(score, retain=k < len(scores) - 1))

    return PassResult(
        logits=logits.detach(),
        target_index=target_index,
        activations=reshaped(tensors),
        gradients=gradients,
    )


# --- post-processing, batched: pytorch_grad_cam.utils.image.scale_cam_image and BaseCAM ---


def scale_maps(maps: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-map min-max scaling, then (optionally) bilinear resize to size=(h, w).

    The library's order: normalise first, then cv2.resize(INTER_LINEAR), whose sampling grid
    (pixel centres, edge clamping) is F.interpolate(bilinear, align_corners=False).
    """
    # One pass for both extremes. Rounding is monotonic, so max(map - low) == high - low exactly
    # and this equals the library's subtract-then-divide-by-the-new-max bit for bit.
    low, high = torch.aminmax(maps.flatten(-2), dim=-1, keepdim=True)
    low, high = low[..., None], high[..., None]
    maps = (maps - low) / (1e-7 + (high - low))
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return maps


def layer_map(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """BaseCAM.compute_cam_per_layer for one layer: ReLU, scale, resize to the input size."""
    return scale_maps(cam.clamp(min=0), size)


def aggregate_layers(per_layer: Sequence[torch.Tensor]) -> torch.Tensor:
    """BaseCAM.aggregate_multi_layers: ReLU, mean over layers, scale again.

    per_layer: outputs of layer_map, (N, H, W) each.
    """
    if len(per_layer) == 1:
        # layer_map's maps are >= 0 (min-max scaled, then bilinear weights are convex), so ReLU
        # and the mean of one map leave them unchanged; only the second scaling remains.
        return scale_maps(per_layer[0])
    stacked = torch.stack(list(per_layer), dim=1).clamp(min=0)
    return scale_maps(stacked.mean(dim=1))


@contextlib.contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Compute the maps from activations and gradients on a single CPU thread.

    These tensors are small (a few MB), so splitting each elementwise op across threads saves
    microseconds but costs a synchronisation per op. On a CPU shared with other processes every
    such synchronisation can wait a whole scheduler slice for a busy core: on a loaded 2-core
    machine a (16, 224, 224) subtraction took 12 ms with 2 threads and 0.16 ms with one, which
    made the map arithmetic cost a sixth of an EfficientNet-B0 forward pass. The forward and
    backward passes keep every thread.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_feature_map(act: torch.Tensor, layer_number: int) -> None:
    if act.ndim != 4:
        raise CamError(
            f"target layer #{layer_number} gives activations of shape {tuple(act.shape)}; "
            "a (batch, channels, height, width) feature map is needed (for a transformer, "
            "pass the reshape_transform of its architecture)"
        )
