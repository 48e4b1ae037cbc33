"""inference.randomize: the cascading randomisation schedule and the re-initialised copies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fundus_review.inference.randomize import (
    STAGES,
    parameterised_modules,
    randomization_stages,
    randomized_copy,
)


class Scaled(nn.Module):
    """A module with its own parameters and no reset_parameters (the fallback initialisation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels, 1, 1), 5.0))
        self.bias = nn.Parameter(torch.full((channels, 1, 1), 5.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1))
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
            nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), Scaled(8)),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(self.stem(x))).flatten(1))


def _tiny() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        for p in net.parameters():  # far from any initialisation: every re-init shows
            p.uniform_(3.0, 4.0)
        net.features[0][1].running_mean.fill_(3.0)
        net.features[0][1].running_var.fill_(9.0)
        net.features[0][1].num_batches_tracked.fill_(5)
    return net.eval()


def _assert_nested(stages: dict[str, list[str]], all_modules: list[str]) -> None:
    """Each stage non-empty and strictly larger than the one before (true for both models
    here; a net with very few modules could legitimately have two equal stages)."""
    assert list(stages) == list(STAGES)
    previous: set[str] = set()
    for stage in STAGES:
        names = stages[stage]
        assert names, f"stage {stage} is empty"
        assert previous < set(names), f"{stage} does not strictly contain the stage before it"
        assert names == [n for n in all_modules if n in names]  # registration order
        previous = set(names)
    assert stages["all"] == all_modules


def test_resnet18_schedule() -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, num_classes=2)
    params = parameterised_modules(model)
    # Every parameter belongs to exactly one listed module, so "all" randomises everything.
    owned = sum(p.numel() for n in params for p in model.get_submodule(n).parameters(recurse=False))
    assert owned == sum(p.numel() for p in model.parameters())
    stages = randomization_stages(model, ["layer4[-1]"])
    _assert_nested(stages, params)
    assert stages["head"] == ["fc"]
    block = ["layer4.1.conv1", "layer4.1.bn1", "layer4.1.conv2", "layer4.1.bn2"]
    assert stages["last-block"] == [*block, "fc"]  # layer4.1's last child is an activation
    assert stages["half"] == [*dict.fromkeys(params[len(params) // 2 :])]
    # A container target: its last child (the last block) is what "last-block" adds.
    assert randomization_stages(model, ["layer4"])["last-block"] == [*block, "fc"]


def test_tiny_net_schedule() -> None:
    net = _tiny()
    stages = randomization_stages(net, ["features"])
    _assert_nested(stages, parameterised_modules(net))
    assert stages["head"] == ["head"]
    assert stages["last-block"] == ["features.1.0", "features.1.1", "head"]
    assert stages["half"] == ["features.0.1", "features.1.0", "features.1.1", "head"]
    assert stages["all"][:2] == ["stem.0", "stem.1"]


def test_head_falls_back_to_the_last_parameterised_module() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Flatten())
    assert randomization_stages(net, ["0"])["head"] == ["2"]


def test_only_the_named_modules_change() -> None:
    net = _tiny()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    names = ["features.0.1", "features.1.1", "head"]
    copy = randomized_copy(net, names, seed=0)
    after = copy.state_dict()
    for key, value in before.items():
        module = key.rsplit(".", 1)[0]
        changed = not torch.equal(after[key], value)
        assert changed == (module in names), key
        assert torch.equal(net.state_dict()[key], value), f"the original's {key} changed"
    bn = copy.features[0][1]
    assert torch.equal(bn.running_mean, torch.zeros(4)) and torch.equal(
        bn.running_var, torch.ones(4)
    )
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))
    # Scaled has no reset_parameters: N(0, 0.02^2) weights, zero bias.
    scaled = copy.features[1][1]
    assert torch.equal(scaled.bias, torch.zeros_like(scaled.bias))
    assert 0 < float(scaled.weight.detach().abs().max()) < 0.1
    assert not copy.training  # the mode is kept


def test_same_seed_same_weights_and_stages_share_the_random_weights() -> None:
    net = _tiny()
    stages = randomization_stages(net, ["features"])
    state = torch.get_rng_state()
    a = randomized_copy(net, stages["head"], seed=7).state_dict()
    b = randomized_copy(net, stages["head"], seed=7).state_dict()
    c = randomized_copy(net, stages["head"], seed=8).state_dict()
    full = randomized_copy(net, stages["all"], seed=7).state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])
    # The head drawn at stage "all" is the head drawn at stage "head".
    assert torch.equal(full["head.weight"], a["head.weight"])


def test_randomising_changes_the_output() -> None:
    net = _tiny()
    x = torch.rand(2, 3, 16, 16)
    rand = randomized_copy(net, randomization_stages(net, ["features"])["all"], seed=0)
    with torch.no_grad():
        assert not torch.allclose(net(x), rand(x))


def test_unknown_module_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="no module"):
        randomized_copy(_tiny(), ["nope"], seed=0)
