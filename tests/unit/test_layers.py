"""Target layers: path syntax, per-family defaults, candidate listing, token reshapes."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from fundus_review.inference.layers import (
    LayerError,
    TokenReshape,
    candidate_layers,
    default_target_layers,
    layer_name,
    reshape_transform_for,
    resolve_layer,
)

SIZE = (64, 64)


def _timm(name: str, **kw) -> nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=2, **kw).eval()


def _tv(name: str, **kw) -> nn.Module:
    return torchvision.models.get_model(name, weights=None, num_classes=2, **kw).eval()


def _meta(build, name: str, **kw) -> nn.Module:
    # Structure only (no memory, no init time): enough for choosing default layers.
    with torch.device("meta"):
        return build(name, **kw)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return _timm("resnet18")


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    return _timm("vit_tiny_patch16_224", img_size=SIZE)


def _activation(model: nn.Module, module: nn.Module) -> torch.Tensor:
    seen = {}

    def hook(_module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        seen["out"] = out

    handle = module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(0)))
    handle.remove()
    return seen["out"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("layer4[-1]", lambda m: m.layer4[1]),
        ("layer4.1", lambda m: m.layer4[1]),
        ("layer4.-1", lambda m: m.layer4[1]),
        ("model.layer4[-1]", lambda m: m.layer4[1]),
        ("layer4[0].conv1", lambda m: m.layer4[0].conv1),
        ("layer3[-2]", lambda m: m.layer3[0]),
        ("fc", lambda m: m.fc),
    ],
)
def test_resolve_layer_syntaxes(resnet: nn.Module, path: str, expected) -> None:
    assert resolve_layer(resnet, path) is expected(resnet)


def test_numeric_index_works_on_named_children() -> None:
    densenet = _meta(_tv, "densenet121")
    assert resolve_layer(densenet, "features[-1]") is densenet.features.norm5
    assert resolve_layer(densenet, "features.norm5") is densenet.features.norm5
    mobilenet = _meta(_tv, "mobilenet_v3_small")
    assert resolve_layer(mobilenet, "features.7") is mobilenet.features[7]
    assert resolve_layer(mobilenet, "features[7]") is mobilenet.features[7]


def test_resolve_errors_list_valid_names(resnet: nn.Module) -> None:
    with pytest.raises(LayerError) as info:
        resolve_layer(resnet, "layer5[-1]")
    msg = str(info.value)
    assert "has no 'layer5'" in msg and "layer4" in msg and "fc" in msg
    with pytest.raises(LayerError, match=r"layer4 has no '5'; its children are: 0, 1"):
        resolve_layer(resnet, "layer4[5]")
    with pytest.raises(LayerError, match=r"Did you mean: .*layer4\.1\.conv1"):
        resolve_layer(resnet, "layer4.1.conv")
    with pytest.raises(LayerError, match="malformed"):
        resolve_layer(resnet, "layer4[-1")
    with pytest.raises(LayerError, match="malformed"):
        resolve_layer(resnet, "")


def test_layer_name_is_canonical(resnet: nn.Module) -> None:
    assert layer_name(resnet, "layer4[-1]") == "layer4.1"
    assert layer_name(resnet, "model.layer4.-1") == "layer4.1"
    assert layer_name(resnet, resnet.layer3[0].bn1) == "layer3.0.bn1"


# (architecture, builder, expected default, canonical name of the module it resolves to)
FAMILIES = [
    ("timm:resnet18", lambda: _meta(_timm, "resnet18"), "layer4[-1]", "layer4.1"),
    ("torchvision:resnet50", lambda: _meta(_tv, "resnet50"), "layer4[-1]", "layer4.2"),
    ("torchvision:densenet121", lambda: _meta(_tv, "densenet121"), "features[-1]", "features.norm5"),
    ("timm:densenet121", lambda: _meta(_timm, "densenet121"), "features[-1]", "features.norm5"),
    ("timm:efficientnet_b0", lambda: _meta(_timm, "efficientnet_b0"), "conv_head", "conv_head"),
    ("timm:mobilenetv3_small_050", lambda: _meta(_timm, "mobilenetv3_small_050"), "blocks[-1]", "blocks.5"),
    ("torchvision:efficientnet_b0", lambda: _meta(_tv, "efficientnet_b0"), "features[-1]", "features.8"),
    ("torchvision:mobilenet_v3_small", lambda: _meta(_tv, "mobilenet_v3_small"), "features[-1]", "features.12"),
    # vgg11: conv 18 is the last conv, 19 its ReLU.
    ("torchvision:vgg11", lambda: _meta(_tv, "vgg11"), "features.19", "features.19"),
    ("timm:vgg11", lambda: _meta(_timm, "vgg11"), "features.19", "features.19"),
    ("timm:convnext_atto", lambda: _meta(_timm, "convnext_atto"), "stages[-1]", "stages.3"),
    ("torchvision:convnext_tiny", lambda: _meta(_tv, "convnext_tiny"), "features[-1]", "features.7"),
    ("timm:vit_tiny_patch16_224", lambda: _meta(_timm, "vit_tiny_patch16_224"), "blocks[-1].norm1", "blocks.11.norm1"),
    ("torchvision:vit_b_16", lambda: _meta(_tv, "vit_b_16"), "encoder.layers[-1].ln_1", "encoder.layers.encoder_layer_11.ln_1"),
    ("timm:swin_tiny_patch4_window7_224", lambda: _meta(_timm, "swin_tiny_patch4_window7_224"), "layers[-1].blocks[-1].norm1", "layers.3.blocks.1.norm1"),
    ("torchvision:swin_t", lambda: _meta(_tv, "swin_t"), "features[-1][-1].norm1", "features.7.1.norm1"),
    ("timm:regnety_002", lambda: _meta(_timm, "regnety_002"), "s4", "s4"),  # via timm feature_info
]  # fmt: skip


@pytest.mark.parametrize(
    ("arch", "build", "path", "canonical"), FAMILIES, ids=[f[0] for f in FAMILIES]
)
def test_family_defaults(arch: str, build, path: str, canonical: str) -> None:
    model = build()
    assert default_target_layers(model, arch) == [path]
    assert layer_name(model, path) == canonical


def test_vgg_default_is_the_relu_after_the_last_conv() -> None:
    vgg = _meta(_tv, "vgg11")
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, nn.Conv2d)]
    assert convs[-1] == 18 and isinstance(vgg.features[19], nn.ReLU)


def test_unknown_family_falls_back_to_last_feature_map() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    )  # fmt: skip
    assert default_target_layers(net, "mypkg.nets:tiny", SIZE) == ["3"]
    assert reshape_transform_for(net, "mypkg.nets:tiny") is None


def test_candidate_layers_one_forward_block_level(resnet: nn.Module) -> None:
    calls = []
    handle = resnet.register_forward_pre_hook(lambda *_: calls.append(1))
    found = candidate_layers(resnet, SIZE)
    handle.remove()
    assert len(calls) == 1
    names = [n for n, _ in found]
    shapes = dict(found)
    assert shapes["layer4.1"] == (512, 2, 2) and shapes["layer3"] == (256, 4, 4)
    assert names.index("layer3") < names.index("layer4.0") < names.index("layer4.1")
    assert "layer4.1.conv1" not in names and "layer4.0.downsample.0" not in names
    assert "fc" not in names and "global_pool" not in names  # no spatial output
    assert len(found) <= 16
    assert not resnet.training
    # No hook is left behind.
    assert all(not m._forward_hooks for m in resnet.modules())


def test_candidate_layers_for_vit_lists_tokens_and_the_default(vit: nn.Module) -> None:
    shapes = dict(candidate_layers(vit, SIZE))
    assert shapes["blocks.11"] == (17, 192)  # 4x4 patches + the class token
    assert shapes["blocks.11.norm1"] == (17, 192)  # the default, though inside a block


def test_vit_reshape_drops_class_token(vit: nn.Module) -> None:
    reshape = reshape_transform_for(vit, "timm:vit_tiny_patch16_224")
    tokens = _activation(vit, resolve_layer(vit, "blocks[-1].norm1"))
    maps = reshape(tokens)
    assert maps.shape == (1, 192, 4, 4)
    # Patch token k (after the class token) is grid cell (k // 4, k % 4).
    torch.testing.assert_close(maps[0, :, 2, 3], tokens[0, 1 + 2 * 4 + 3])
    torch.testing.assert_close(maps[0, :, 0, 0], tokens[0, 1])


def test_token_reshape_with_distillation_token_and_bad_counts() -> None:
    tokens = torch.randn(1, 2 + 6, 5)
    maps = TokenReshape((2, 3), prefix_tokens=2)(tokens)
    assert maps.shape == (1, 5, 2, 3)
    torch.testing.assert_close(maps[0, :, 1, 2], tokens[0, 2 + 1 * 3 + 2])
    # Patch-only sequences (e.g. patch_embed output) are accepted as they are.
    torch.testing.assert_close(TokenReshape((2, 3), 2)(tokens[:, 2:]), maps)
    with pytest.raises(LayerError, match="cannot reshape 7 tokens"):
        TokenReshape((2, 3), 2)(tokens[:, 1:])
    deit = _meta(_timm, "deit_tiny_distilled_patch16_224")
    reshape = reshape_transform_for(deit, "timm:deit_tiny_distilled_patch16_224")
    assert reshape.prefix_tokens == 2 and reshape.grid == (14, 14)


def test_swin_reshape_is_nhwc_to_nchw() -> None:
    swin = _timm("swin_tiny_patch4_window7_224", img_size=SIZE)
    act = _activation(swin, resolve_layer(swin, "layers[-1].blocks[-1].norm1"))
    assert act.shape == (1, 2, 2, 768)  # timm Swin keeps channels last
    maps = reshape_transform_for(swin, "timm:swin_tiny_patch4_window7_224")(act)
    assert maps.shape == (1, 768, 2, 2)
    torch.testing.assert_close(maps[0, :, 1, 0], act[0, 1, 0])


def test_torchvision_vit_reshape_grid() -> None:
    vit = _meta(_tv, "vit_b_16", image_size=64)
    reshape = reshape_transform_for(vit, "torchvision:vit_b_16")
    assert reshape.grid == (4, 4) and reshape.prefix_tokens == 1


def test_cnn_needs_no_reshape(resnet: nn.Module) -> None:
    assert reshape_transform_for(resnet, "timm:resnet18") is None


def test_candidate_layers_at_an_impossible_size_is_a_layer_error(vit: nn.Module) -> None:
    with pytest.raises(LayerError, match=r"does not run on a \(96, 96\) input"):
        candidate_layers(vit, (96, 96))
