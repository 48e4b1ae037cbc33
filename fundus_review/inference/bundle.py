"""Model bundles: a folder with `model.toml` (the card) and a weights file.

Example card::

    name = "dr-resnet18"
    architecture = "timm:resnet18"          # or "torchvision:<name>"; "package.module:factory"
                                            # runs code: only when trusted (inference/trust.py)
    classes = ["no_dr", "dr"]
    input_size = [224, 224]                 # [h, w]
    resize = "resize"                       # "resize" | "center_crop" | "letterbox"
    crop_pct = 0.875                        # used by center_crop
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    target_layers = ["layer4[-1]"]          # optional; family default otherwise
    weights = "model.safetensors"
    description = "..."
    strict_weights = true                   # false: load matching keys, list the rest
    output_key = "logits"                   # optional: a dict output's logits entry, or
                                            # output_index = 0 for a tuple output
    score = "softmax"                       # "sigmoid": one logit, classes = [neg, pos];
                                            # "multilabel": one sigmoid per label

    [training]                              # free-form, kept in ModelCard.extra["training"]
    epochs = 10

An optional `[model_kwargs]` table is passed to the model constructor (e.g. `drop_rate`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from fundus_review.atomic import atomic_write_bytes
from fundus_review.data.images import file_sha256
from fundus_review.errors import BundleError, FundusReviewError
from fundus_review.inference.architectures import build_architecture
from fundus_review.inference.card import (  # noqa: F401 - re-exported: the bundle's public API
    CARD_FILE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHT_SUFFIXES,
    WEIGHTS_FILE,
    ModelCard,
    read_card,
)
from fundus_review.inference.outputs import (
    OutputAdapter,
    OutputError,
    attach,
    describe_output,
    mark_probabilities,
)
from fundus_review.inference.toml_writer import dump_toml
from fundus_review.inference.trust import UntrustedCodeError
from fundus_review.inference.weights import LoadReport, WeightsError, load_into, read_weights


class PartialWeightsWarning(UserWarning):
    """A bundle with `strict_weights = false` loaded without some of its network's keys."""


@dataclass
class ModelBundle:
    path: Path
    card: ModelCard
    weights_path: Path
    weights_sha256: str
    # How the weights went in, set by the latest build_model (None before the first).
    load_report: LoadReport | None = field(default=None, compare=False)

    def build_model(
        self,
        device: str | torch.device = "cpu",
        check_input: bool = True,
        trust_code: bool = False,
        check_layers: bool = True,
    ) -> nn.Module:
        """The network in eval mode with the bundle's weights, on `device`.

        With `check_input`, one dummy forward proves the card's input size is accepted and the
        output has one logit per class (a clear error now beats a cryptic one mid-run);
        `check_layers` checks the card's target layers likewise. A `package.module:factory` architecture needs `trust_code` or an allowed module
        (`inference/trust.py`); otherwise UntrustedCodeError, before anything is imported.
        """
        card = self.card
        kwargs = card.extra.get("model_kwargs", {})
        if not isinstance(kwargs, dict):
            raise BundleError(f"bundle {self.path}: [model_kwargs] must be a table")
        spec = card.forward
        try:
            if spec is None:
                model = build_architecture(
                    card.architecture,
                    card.n_outputs,
                    card.input_size,
                    kwargs,
                    trust_code=trust_code,
                    bundle_dir=self.path,
                )
            else:  # the network the weights belong to; the support set is bound below
                from fundus_review.inference.fewshot import build_inner

                model = build_inner(card, spec, kwargs, trust_code=trust_code, bundle_dir=self.path)
        except UntrustedCodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - any constructor failure is the bundle's problem
            raise BundleError(
                f"bundle {self.path}: cannot build architecture {card.architecture!r}: {exc}"
            ) from exc
        try:
            report = load_into(
                model,
                read_weights(self.weights_path),
                card.classes,
                strict=card.strict_weights,
                n_outputs=card.n_outputs,
            )
        except WeightsError as exc:
            raise BundleError(
                f"bundle {self.path} ({self.weights_path.name}): {exc}. Copy the bundle again if "
                "the file is damaged, or make the card describe the network the weights are from"
            ) from exc
        self.load_report = report
        if report.partial:
            # Never a silent partial load: the card allowed it, the user still hears which keys.
            warnings.warn(
                f"bundle {self.path} ({self.weights_path.name}) loaded partially "
                f"(strict_weights = false): {report.summary()}",
                PartialWeightsWarning,
                stacklevel=2,
            )
        attach(
            model,
            OutputAdapter(
                output_key=card.output_key, output_index=card.output_index, score=card.score
            ),
        )
        if spec is not None:
            from fundus_review.inference.fewshot import wrap_with_support

            try:
                model = wrap_with_support(model, card, spec, self.path, device)
            except (ValueError, TypeError, RuntimeError, FundusReviewError) as exc:
                raise BundleError(
                    f"bundle {self.path} ({CARD_FILE} [forward]): cannot bind the support set: {exc}"
                ) from exc
        # On the module the engine calls (a support-set wrapper does not pass attributes on).
        mark_probabilities(model, card.score)
        model.eval()
        model.to(device)
        if check_input:
            self._check_forward(model, device)
        if check_layers:
            problem = self.card_layer_problem(model)
            if problem:
                raise BundleError(problem)
        return model

    def card_layer_problem(self, model: nn.Module) -> str | None:
        """Why a `target_layers` entry of the card names no module of `model` (None: all do).

        Checked when the model is built, so a typo in the card is reported with the card's
        file name, not as an unexplained failure when the first CAM is computed.
        """
        from fundus_review.inference.layers import LayerError, resolve_layer

        for path in self.card.target_layers:
            try:
                resolve_layer(model, path)
            except LayerError as exc:
                return (
                    f"{self.path / CARD_FILE}: target_layers: {exc} Fix the card "
                    "(`fundus-review model inspect` lists candidate layers) or choose --layer"
                )
        return None

    def _check_forward(self, model: nn.Module, device: str | torch.device) -> None:
        h, w = self.card.input_size
        try:
            with torch.no_grad():
                out = model(torch.zeros(1, 3, h, w, device=device))
        except OutputError as exc:
            raise BundleError(f"bundle {self.path} ({CARD_FILE}): {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - report the size problem, not a traceback
            raise BundleError(
                f"bundle {self.path}: the model does not accept input_size {[h, w]}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            ) from exc
        n = len(self.card.classes)
        if not isinstance(out, torch.Tensor):
            raise BundleError(
                f"bundle {self.path}: the model returns {describe_output(out)}, not a logits "
                "tensor: name the logits entry in the card with `output_key` (a dict) or "
                "`output_index` (a tuple)"
            )
        if tuple(out.shape) != (1, n):
            raise BundleError(
                f"bundle {self.path}: the model outputs {list(out.shape)} for one image, "
                f"but the card lists {n} classes"
                + (
                    '; one logit for two classes is `score = "sigmoid"`'
                    if out.shape[-1] == 1
                    else ""
                )
            )

    def target_layer_paths(self, model: nn.Module) -> list[str]:
        """The card's target layers, or the family default when the card names none."""
        from fundus_review.inference.layers import default_target_layers

        return list(self.card.target_layers) or default_target_layers(
            model, self.card.architecture, self.card.input_size
        )


def load_bundle(path: str | os.PathLike) -> ModelBundle:
    """Read and check a bundle folder (or its model.toml). Raises BundleError."""
    folder, card = read_card(path)
    weights_path = folder / card.weights
    if not weights_path.is_file():
        present = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)
        raise BundleError(
            f"bundle {folder}: weights file {card.weights!r} not found"
            + (f" (weight files present: {', '.join(present)})" if present else "")
        )
    # Absolute: the stored model record keeps this path, and the app finds the bundle by it
    # whatever folder a command was started from.
    folder = folder.resolve()
    return ModelBundle(
        path=folder,
        card=card,
        weights_path=folder / card.weights,
        weights_sha256=file_sha256(weights_path),
    )


def _tensors_for_saving(
    state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise BundleError(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        # clone: safetensors refuses tensors that share storage (tied weights, views).
        out[key] = t.contiguous().clone()
    return out


def write_bundle(
    path: str | os.PathLike,
    card: ModelCard,
    state_dict: dict[str, torch.Tensor],
    dtype: torch.dtype | None = None,
) -> ModelBundle:
    """Write `model.toml` + `model.safetensors` into folder `path`; returns the loaded bundle.

    A new folder appears complete or not at all (built beside it, then renamed). In an existing
    folder the weights are replaced first and the card last, each atomically, so other files in
    it (training logs) survive. `dtype=torch.float16` halves the file; loading converts back.
    """
    from safetensors.torch import save

    folder = Path(path)
    card = replace(card, weights=WEIGHTS_FILE, extra=dict(card.extra))
    weights_bytes = save(_tensors_for_saving(state_dict, dtype), metadata={"format": "pt"})
    card_text = dump_toml(card.to_dict())
    if folder.is_dir():
        atomic_write_bytes(folder / WEIGHTS_FILE, weights_bytes)
        atomic_write_bytes(folder / CARD_FILE, card_text.encode("utf-8"))
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            (tmp / WEIGHTS_FILE).write_bytes(weights_bytes)
            (tmp / CARD_FILE).write_text(card_text, encoding="utf-8")
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return load_bundle(folder)


def _short(value: object, limit: int = 100) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_line(report: LoadReport | None) -> str:
    if report is None:
        return "not loaded"
    how = "strict" if report.strict else "not strict (strict_weights = false)"
    text = f"{how}, " + (f"PARTIAL: {report.summary(limit=20)}" if report.partial else "complete")
    if report.ignored:
        text += f"; {len(report.ignored)} training-wrapper keys ignored"
    return text


def describe_bundle(
    bundle: ModelBundle, device: str | torch.device = "cpu", trust_code: bool = False
) -> str:
    """What `fundus-review model inspect BUNDLE` prints."""
    from fundus_review.inference.architectures import count_parameters, find_head
    from fundus_review.inference.layers import candidate_layers, reshape_transform_for

    card = bundle.card
    # The card's layers are reported below, not refused: inspect is how a user finds good ones.
    model = bundle.build_model(device, trust_code=trust_code, check_layers=False)
    head = find_head(model)
    lines = [
        f"Bundle:        {bundle.path}",
        f"Name:          {card.name}",
        f"Architecture:  {card.architecture}",
        f"Classes ({len(card.classes)}):   {', '.join(card.classes)}",
        f"Input size:    {card.input_size[0]} x {card.input_size[1]} (h x w), "
        f"resize={card.resize}"
        + (f", crop_pct={card.crop_pct}" if card.resize == "center_crop" else ""),
        f"Mean / std:    {list(card.mean)} / {list(card.std)}",
        f"Weights:       {bundle.weights_path.name} (sha256 {bundle.weights_sha256})",
        f"Weights load:  {_load_line(bundle.load_report)}",
        f"Parameters:    {count_parameters(model):,}",
        "Head:          "
        + (
            "none: prototypes of the support set"
            if card.forward is not None and card.forward.builtin
            else (head[0] if head else "not found")
        ),
    ]
    if card.output_key or card.output_index is not None or card.score != "softmax":
        entry = (
            f"[{card.output_key!r}]"
            if card.output_key
            else (f"[{card.output_index}]" if card.output_index is not None else "")
        )
        how = {
            "sigmoid": f"one logit z, p({card.classes[-1]}) = sigmoid(z)",
            "multilabel": "multi-label: one logit per label, p(label) = sigmoid(z_label) "
            "(need not sum to 1; predicted labels: p >= 0.5; a CAM explains one label)",
        }.get(card.score, "softmax")
        lines.append(f"Output:        network output{entry}, {how}")
    if card.description:
        lines.append(f"Description:   {card.description}")
    if card.forward is not None:
        from fundus_review.inference.fewshot import support_summary

        lines.append(f"Forward:       {support_summary(card, bundle.path)}")
    layers = bundle.target_layer_paths(model)
    source = "card" if card.target_layers else "family default"
    lines.append(f"Target layers: {', '.join(layers)} ({source})")
    reshape = reshape_transform_for(model, card.architecture)
    if reshape is not None:
        name = getattr(reshape, "__name__", None) or repr(reshape)
        lines.append(f"Reshape:       {name} (token/channel-last activations -> maps; automatic)")
    problem = bundle.card_layer_problem(model)
    if problem:
        lines.append(f"Problem:       {problem}")
    for key, value in card.extra.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines.extend(f"  {k} = {_short(v)}" for k, v in value.items())
        else:
            lines.append(f"{key} = {_short(value)}")
    lines.append("Candidate target layers (module path, output shape per image):")
    for name, shape in candidate_layers(model, card.input_size):
        lines.append(f"  {name:<40} {tuple(shape)}")
    return "\n".join(lines)
