"""Tiny models with a known Grad-CAM answer, importable as `tests.unit.cam_models:<factory>`."""

from __future__ import annotations

import torch
from torch import nn


class RedSpotNet(nn.Module):
    """Class 0 = "how red is the image": Grad-CAM for class 0 is the ReLU of the red channel.

    features: a 1x1 conv that copies the (normalised) red channel, so the feature map has the
    model-input resolution and the CAM's maximum sits exactly on the reddest input pixel.
    """

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 1, kernel_size=1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(1, num_classes)
        with torch.no_grad():
            signs = torch.tensor([1.0, -1.0] + [0.0] * (num_classes - 2))[:num_classes]
            self.head.weight.copy_(signs.view(num_classes, 1))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def red_spot_net(num_classes: int = 2, **_: object) -> nn.Module:
    return RedSpotNet(num_classes)


class DictOutputNet(RedSpotNet):
    """RedSpotNet returning a dict, as many research models do: the logits under "logits"."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        pooled = self.pool(self.features(x)).flatten(1)
        return {"embedding": pooled, "logits": self.head(pooled)}


class TupleOutputNet(RedSpotNet):
    """RedSpotNet returning (embedding, logits)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        pooled = self.pool(self.features(x)).flatten(1)
        return pooled, self.head(pooled)


class RedGreenLogitNet(nn.Module):
    """A sigmoid binary head: one logit z = mean(red) - mean(green) of the ReLU'd input.

    Grad-CAM of the positive class (target +z) is ReLU(red - green), maximal on the reddest
    pixel; of the negative class (target -z) ReLU(green - red), maximal on the greenest.
    """

    def __init__(self, num_classes: int = 1) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 2, kernel_size=1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).view(2, 3, 1, 1))
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2, num_classes)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([1.0, -1.0]).repeat(num_classes, 1))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def dict_output_net(num_classes: int = 2, **_: object) -> nn.Module:
    return DictOutputNet(num_classes)


def tuple_output_net(num_classes: int = 2, **_: object) -> nn.Module:
    return TupleOutputNet(num_classes)


def red_green_logit_net(num_classes: int = 1, **_: object) -> nn.Module:
    return RedGreenLogitNet(num_classes)


class SupportQueryNet(nn.Module):
    """A few-shot network as research code writes it: forward(support, labels, query).

    Its encoder copies the red and green channels (ReLU'd) and averages them; the logits are
    minus the squared distances of each query embedding to the class means of the support
    embeddings. `concat`: the encoder runs once on [support; query] (reference ProtoNet code),
    else once on the support and then on the query images (MetaOptNet code).
    """

    def __init__(self, num_classes: int = 2, concat: bool = True) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 2, kernel_size=1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).view(2, 3, 1, 1))
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_classes = num_classes
        self.concat = concat

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(
        self, support: torch.Tensor, labels: torch.Tensor, query: torch.Tensor
    ) -> torch.Tensor:
        if self.concat:
            z = self.embed(torch.cat([support, query]))
            zs, zq = z[: len(support)], z[len(support) :]
        else:
            zs, zq = self.embed(support), self.embed(query)
        protos = torch.stack([zs[labels == c].mean(0) for c in range(self.num_classes)])
        return -((zq[:, None, :] - protos[None]) ** 2).sum(-1)


def support_query_net(num_classes: int = 2, concat: bool = True, **_: object) -> nn.Module:
    return SupportQueryNet(num_classes, concat)


class MultiLabelSpotNet(nn.Module):
    """Three labels (red, green, blue), one logit each: z_k = 100 * mean(ReLU channel k) - 0.5.

    A label's sigmoid is >= 0.5 exactly when its channel's mean exceeds 0.005 (an 8x8 spot of
    value 1 in a 64x64 image has mean 0.0156); Grad-CAM of label k is the ReLU'd channel k.
    """

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 3, kernel_size=1)
        with torch.no_grad():
            conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, num_classes)
        with torch.no_grad():
            self.head.weight.copy_(100.0 * torch.eye(3)[:num_classes])
            self.head.bias.fill_(-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def multi_label_spot_net(num_classes: int = 3, **_: object) -> nn.Module:
    return MultiLabelSpotNet(num_classes)
