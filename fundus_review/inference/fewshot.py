"""Support-set models wrapped as plain classifiers: the query image is the only input.

The card's `[forward]` table (inference/support.py) names the support set; `build_inner` makes
the network the weights belong to and `wrap_with_support` binds the support set to it, once per
run, on the run's device:

- `PrototypeNetwork` (`architecture = "fewshot:protonet"`): a timm/torchvision backbone without
  its head embeds the images; each class's prototype is the mean embedding of its support
  images, computed once without gradients; the logits of a query are minus its (squared)
  euclidean distances to the prototypes, or its cosine similarities, over a temperature
  (Snell et al., "Prototypical networks for few-shot learning", NeurIPS 2017). Gradients for
  the CAMs flow through the query branch only: the prototypes are constants.
- `SupportCallNetwork` (a trusted `module:factory` with `call = "support_labels_query"`): the
  user's network is called as `network(support_images, support_labels, query_images)` with the
  bound support set (support labels are class indices into the card's classes). Such a network
  runs its backbone on the support images too, so the CAM capture keeps only the query rows of
  a target layer (`query_rows`): a layer called on [support; query] concatenated, or called
  once on the support and once on the query images (the conventions of the reference ProtoNet
  and MetaOptNet code).

Module paths inside the wrapper are the inner network's under its attribute (`backbone.` /
`network.`): `backbone.layer4[-1]`. inference/layers.py finds default layers and the ViT/Swin
reshape on the inner network.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fundus_review.data.images import load_image
from fundus_review.inference.architectures import build_architecture, find_head
from fundus_review.inference.card import ModelCard
from fundus_review.inference.support import ForwardSpec, list_support

SUPPORT_BATCH = 16  # support images embedded per forward when the prototypes are computed


class SupportSetModel(nn.Module):
    """A network with its support set bound; forward(query) -> (B, classes) logits."""

    inner_name = "network"

    def __init__(self, inner_architecture: str) -> None:
        super().__init__()
        self.inner_architecture = inner_architecture
        # Non-persistent: the state_dict stays the inner network's (prefixed), the support set
        # lives in the bundle's support folder, and .to(device) moves it with the network.
        self.register_buffer("support_images", torch.zeros(0), persistent=False)
        self.register_buffer("support_labels", torch.zeros(0, dtype=torch.long), persistent=False)

    @property
    def inner(self) -> nn.Module:
        return getattr(self, self.inner_name)

    def bind_support(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Move the preprocessed support set to the network's device, then `refresh_support`."""
        param = next(self.parameters(), None)
        device = param.device if param is not None else images.device
        dtype = param.dtype if param is not None and param.is_floating_point() else images.dtype
        self.support_images = images.to(device=device, dtype=dtype)
        self.support_labels = labels.to(device=device, dtype=torch.long)
        self.refresh_support()

    def refresh_support(self) -> None:
        """Recompute what depends on the inner network's weights (after they changed)."""

    @property
    def n_support(self) -> int:
        return int(self.support_images.shape[0])


class PrototypeNetwork(SupportSetModel):
    inner_name = "backbone"

    def __init__(
        self,
        backbone: nn.Module,
        n_classes: int,
        distance: str = "euclidean",
        temperature: float = 1.0,
        inner_architecture: str = "",
    ) -> None:
        super().__init__(inner_architecture)
        self.backbone = backbone
        self.n_classes = int(n_classes)
        self.distance = distance
        self.temperature = float(temperature)
        self.register_buffer("prototypes", torch.zeros(0), persistent=False)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        z = self.backbone(images)
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"the backbone returned a {type(z).__name__}, not an embedding tensor")
        if z.ndim == 4:  # a backbone without its pooling: average the feature map
            z = z.mean(dim=(2, 3))
        return z.flatten(1)

    def refresh_support(self) -> None:
        """Prototypes = mean embedding of each class's support images, without gradients."""
        if self.n_support == 0:
            return
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                parts = [
                    self.embed(self.support_images[i : i + SUPPORT_BATCH])
                    for i in range(0, self.n_support, SUPPORT_BATCH)
                ]
        finally:
            self.train(was_training)
        self.prototypes = class_means(torch.cat(parts), self.support_labels, self.n_classes)

    def logits_from_embeddings(self, z: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        if self.distance == "cosine":
            sim = nn.functional.normalize(z, dim=1) @ nn.functional.normalize(prototypes, dim=1).T
            return sim / self.temperature
        # Squared euclidean distance, as in the prototypical-networks paper.
        d = (z[:, None, :] - prototypes[None, :, :]).pow(2).sum(dim=-1)
        return -d / self.temperature

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        if self.prototypes.numel() == 0:
            raise RuntimeError("PrototypeNetwork: no support set bound (bind_support)")
        return self.logits_from_embeddings(self.embed(query), self.prototypes)


def class_means(z: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, D): the mean of the rows of `z` per label; every class needs a row."""
    counts = torch.bincount(labels, minlength=n_classes)
    if int(counts.min()) == 0:
        raise ValueError(f"class(es) {torch.nonzero(counts == 0).flatten().tolist()} have no row")
    sums = torch.zeros(n_classes, z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, labels, z)
    return sums / counts[:, None].to(z.dtype)


class SupportCallNetwork(SupportSetModel):
    """`network(support_images, support_labels, query_images)` with the support set bound."""

    inner_name = "network"

    def __init__(self, network: nn.Module, inner_architecture: str = "") -> None:
        super().__init__(inner_architecture)
        self.network = network
        self._rows: tuple[int, int, int] | None = None  # (support, query padded, query) in forward

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        q = int(query.shape[0])
        padded = query
        if q == self.n_support:
            # One blank extra query keeps "a support pass" and "a query pass" apart by size.
            padded = torch.cat([query, torch.zeros_like(query[:1])])
        self._rows = (self.n_support, int(padded.shape[0]), q)
        try:
            out = self.network(self.support_images, self.support_labels, padded)
        finally:
            self._rows = None
        if isinstance(out, torch.Tensor) and out.shape[0] == padded.shape[0]:
            out = out[:q]
        return out

    def query_rows(self, n_rows: int) -> slice | None:
        """Which rows of a layer output computed during forward belong to the query images:
        a slice, or None for a pass over the support images alone (not a CAM activation)."""
        if self._rows is None:
            return slice(0, n_rows)
        s, qp, q = self._rows
        if n_rows == s + qp:
            return slice(s, s + q)  # [support; query] in one batch
        if n_rows == qp:
            return slice(0, q)
        if n_rows == s:
            return None
        raise ValueError(
            f"a target layer saw {n_rows} images in one forward pass with {s} support and {qp} "
            "query images; choose a layer the network runs on [support; query] or on each set"
        )


def build_inner(
    card: ModelCard,
    spec: ForwardSpec,
    kwargs: dict,
    trust_code: bool = False,
    bundle_dir: Path | None = None,
) -> nn.Module:
    """The network the weights file holds: protonet's backbone (no head) or the factory's."""
    if spec.builtin:
        backbone = build_architecture(
            spec.backbone, 0, card.input_size, kwargs, trust_code=trust_code, bundle_dir=bundle_dir
        )
        if spec.backbone.startswith("torchvision:"):
            _drop_head(backbone)
        return backbone
    return build_architecture(
        card.architecture,
        len(card.classes),
        card.input_size,
        kwargs,
        trust_code=trust_code,
        bundle_dir=bundle_dir,
    )


def _drop_head(model: nn.Module) -> None:
    head = find_head(model)
    if head is None:
        return
    path = head[0].split(".")
    parent = model
    for part in path[:-1]:
        parent = getattr(parent, part)
    setattr(parent, path[-1], nn.Identity())


def load_support(
    bundle_dir: Path, card: ModelCard, spec: ForwardSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The support set preprocessed as the card says: ((S, 3, h, w) float32, (S,) class index)."""
    from fundus_review.inference.preprocess import prepare_batch

    items = list_support(bundle_dir, spec)
    unknown = sorted({label for _, label in items} - set(card.classes))
    if unknown:
        raise ValueError(f"support labels {unknown} are not among the classes {card.classes}")
    images = [load_image(path) for path, _ in items]
    tensor, _ = prepare_batch(images, card)
    labels = torch.tensor([card.classes.index(label) for _, label in items], dtype=torch.long)
    return tensor, labels


def wrap_with_support(
    inner: nn.Module,
    card: ModelCard,
    spec: ForwardSpec,
    bundle_dir: Path,
    device: str | torch.device = "cpu",
) -> SupportSetModel:
    """The wrapper in eval mode on `device`, its support set bound (prototypes computed)."""
    images, labels = load_support(bundle_dir, card, spec)
    if spec.builtin:
        model: SupportSetModel = PrototypeNetwork(
            inner, len(card.classes), spec.distance, spec.temperature, spec.backbone
        )
    else:
        model = SupportCallNetwork(inner, card.architecture)
    model.eval()
    model.to(device)
    model.bind_support(images, labels)
    return model


def support_summary(card: ModelCard, bundle_dir: Path) -> str:
    """One line for `model inspect`: the support set's size per class and how it is used."""
    spec = card.forward
    if spec is None:
        return ""
    items = list_support(bundle_dir, spec)
    counts = {c: sum(1 for _, label in items if label == c) for c in card.classes}
    where = spec.support_dir or spec.support_csv
    per_class = ", ".join(f"{c} {n}" for c, n in counts.items())
    if spec.builtin:
        how = f"prototypes of {spec.backbone}, {spec.distance} distance, temperature {spec.temperature:g}"
    else:
        how = "network(support_images, support_labels, query_images)"
    return f"support set {where}: {len(items)} images ({per_class}); {how}"
