"""CamEngine: maps equal pytorch-grad-cam's, one pass, and the model is left as found."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torchvision
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from fundus_review.errors import FundusReviewError
from fundus_review.inference import cam_fast
from fundus_review.inference.cam import (
    CAM_METHODS,
    CamEngine,
    CamError,
    CamMethod,
    UnknownCamMethodError,
    canonical_method,
    method_display_name,
)

TORCH_METHODS = ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "gradcamelementwise"]
# From the records, so that a method added to the registry is tested without editing this file.
SINGLE_PASS = [n for n, m in CAM_METHODS.items() if m.single_pass]
DELEGATES = [n for n, m in CAM_METHODS.items() if not m.single_pass]
ATOL = 1e-4


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=6).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


class TinyNet(nn.Module):
    """Few channels, so that the slow library methods (Score-CAM, Ablation-CAM) stay fast."""

    def __init__(self, inplace_relu: bool = False, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.relu = nn.ReLU(inplace=inplace_relu)
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.conv2(x))
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture()
def tiny() -> nn.Module:
    torch.manual_seed(3)
    net = TinyNet()
    with torch.no_grad():  # non-trivial running statistics, so eval vs train mode differs
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net.eval()


def library_maps(name, model, layers, x, targets=None, **kwargs) -> np.ndarray:
    cls = CAM_METHODS[name].library_class
    lib_targets = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
    if name == "refinecam":
        return cls(model, layers)(x, lib_targets)
    cam = cls(model, layers, **kwargs)
    try:
        return cam(x, lib_targets)
    finally:
        (getattr(cam, "base_cam", cam)).activations_and_grads.release()


def engine_run(model, layers, methods, x, targets=None, **kwargs):
    with CamEngine(model, layers, methods, **kwargs) as engine:
        return engine.run(x, targets)


# --- post-processing equals the library's numpy/cv2 code ---


@pytest.mark.parametrize(
    ("src", "dst"),
    [((2, 2), (64, 64)), ((7, 7), (224, 224)), ((7, 9), (50, 61)), ((13, 10), (6, 5))],
)
def test_scale_maps_equals_scale_cam_image(src, dst) -> None:
    maps = np.random.default_rng(0).normal(size=(4, *src)).astype(np.float32)
    expected = scale_cam_image(maps, (dst[1], dst[0]))  # cv2 takes (width, height)
    got = cam_fast.scale_maps(torch.from_numpy(maps), dst).numpy()
    assert got.shape == (4, *dst)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_scale_maps_of_a_constant_map_is_zero_like_the_library() -> None:
    maps = np.full((1, 3, 3), 5.0, np.float32)
    assert np.array_equal(
        cam_fast.scale_maps(torch.from_numpy(maps)).numpy(), scale_cam_image(maps)
    )
    assert np.all(cam_fast.scale_maps(torch.from_numpy(maps)).numpy() == 0)


def test_gradcam_of_a_linear_gap_model_is_the_hand_computed_cam() -> None:
    # Target layer = the input itself, then global average pooling and a linear head: for class 0
    # with weights (1, -1) the Grad-CAM is relu(x0 - x1) / 16 before the min-max scaling.
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[3].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
        model[3].bias.zero_()
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 1, 2] = 3.0
    x[0, 0, 3, 0] = 1.0
    x[0, 1, 3, 0] = 2.0
    result = engine_run(model, [model[0]], ["gradcam", "hirescam"], x, targets=[0])
    expected = np.zeros((4, 4), np.float32)
    expected[1, 2] = 1.0  # relu(3 - 0) scaled by its maximum; (3, 0) has 1 - 2 < 0
    for name in ("gradcam", "hirescam"):
        np.testing.assert_allclose(result.heatmaps[name][0], expected, atol=1e-6)


# --- equality with pytorch-grad-cam ---


@pytest.mark.parametrize("name", SINGLE_PASS)
def test_single_pass_methods_equal_the_library(resnet, images, name) -> None:
    layers = [resnet.layer4[-1]]
    np.random.seed(7)  # RandomCAM draws its weights from numpy's global generator
    got = engine_run(resnet, layers, [name], images)
    np.random.seed(7)
    expected = library_maps(name, resnet, layers, images)
    assert got.heatmaps[name].shape == (3, 64, 64) and got.heatmaps[name].dtype == np.float32
    np.testing.assert_allclose(got.heatmaps[name], expected, atol=ATOL)


@pytest.mark.parametrize("name", SINGLE_PASS)
def test_single_pass_equals_the_library_running_the_same_record(resnet, images, name) -> None:
    # The same record once computed from the engine's single pass and once handed to the
    # library-run path with its own library class: the two routes of the engine must agree.
    # Two layers, so that the record's layer fusion is part of what is compared.
    record = CAM_METHODS[name]
    library_run = dataclasses.replace(
        record, formula=None, score=None, build=record.library_class, needs_parameter_graph=True
    )
    layers = [resnet.layer3[-1], resnet.layer4[-1]]
    before = _snapshot(resnet)
    np.random.seed(7)  # RandomCAM draws its weights from numpy's global generator
    fast = engine_run(resnet, layers, [record], images)
    np.random.seed(7)
    slow = engine_run(resnet, layers, [library_run], images)
    assert list(fast.heatmaps) == list(slow.heatmaps) == [name]
    np.testing.assert_array_equal(fast.target_index, slow.target_index)
    np.testing.assert_allclose(fast.probs, slow.probs, atol=1e-6)
    np.testing.assert_allclose(fast.heatmaps[name], slow.heatmaps[name], atol=ATOL)
    assert _hook_count(resnet) == 0
    _assert_same(before, _snapshot(resnet))  # the library's backward left no trace either


@pytest.mark.parametrize("name", list(CAM_METHODS))
def test_every_method_has_a_complete_record(name) -> None:
    record = CAM_METHODS[name]
    assert record.name == name == canonical_method(name) == name.lower()
    assert record.display_name and record.description
    assert method_display_name(name) == record.display_name
    for spelling in (record.display_name, record.library_class.__name__, *record.aliases):
        assert canonical_method(spelling) == name
    assert getattr(pgc, record.library_class.__name__) is record.library_class
    assert callable(record.fuse_layers)
    if record.single_pass:
        assert callable(record.formula) and record.build is None
        assert (record.score is not None) == record.needs_gradients
        assert not record.needs_parameter_graph and not record.needs_known_targets
    else:
        assert callable(record.build) and record.formula is None and record.score is None


def test_a_record_that_cannot_be_computed_is_refused() -> None:
    base = CAM_METHODS["gradcam"]
    with pytest.raises(TypeError, match="either a formula or a builder"):
        dataclasses.replace(base, formula=None, score=None)
    with pytest.raises(TypeError, match="either a formula or a builder"):
        dataclasses.replace(base, build=pgc.GradCAM)
    with pytest.raises(TypeError, match="score"):
        dataclasses.replace(base, score=None)
    with pytest.raises(TypeError, match="score"):
        dataclasses.replace(CAM_METHODS["eigencam"], score=base.score)
    with pytest.raises(TypeError, match="library-run"):
        dataclasses.replace(base, needs_known_targets=True)
    with pytest.raises(TypeError, match="library-run method chooses its own score"):
        dataclasses.replace(CAM_METHODS["scorecam"], score=base.score)


def test_a_method_of_ones_own_is_computed_from_its_record(tiny) -> None:
    # Records the registry does not hold, run next to registered methods in the same pass: one
    # with HiResCAM's formula must give HiResCAM's maps, one with a negated formula other maps.
    hirescam = CAM_METHODS["hirescam"]

    def own(name: str, formula) -> CamMethod:
        return CamMethod(
            name,
            name,
            pgc.HiResCAM,
            "test",
            needs_gradients=True,
            formula=formula,
            score=hirescam.score,
        )

    mine = own("mine", hirescam.formula)
    negated = own("negated", lambda act, grad: -hirescam.formula(act, grad))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(12))
    result = engine_run(tiny, [tiny.conv2], [mine, "hirescam", negated], x)
    assert list(result.heatmaps) == ["mine", "hirescam", "negated"]
    np.testing.assert_allclose(result.heatmaps["mine"], result.heatmaps["hirescam"], atol=1e-7)
    assert result.heatmaps["negated"].shape == (2, 16, 16)
    assert not np.allclose(result.heatmaps["negated"], result.heatmaps["hirescam"], atol=1e-2)


def test_all_fast_methods_from_one_pass_equal_each_run_alone(resnet, images) -> None:
    names = TORCH_METHODS + ["finercam", "eigencam", "eigengradcam"]
    together = engine_run(resnet, [resnet.layer4[-1]], names, images).heatmaps
    assert list(together) == names
    for name in names:
        alone = engine_run(resnet, [resnet.layer4[-1]], [name], images).heatmaps[name]
        np.testing.assert_allclose(together[name], alone, atol=1e-6)


def test_explicit_targets_equal_the_library(resnet, images) -> None:
    layers = [resnet.layer4[-1]]
    targets = [5, 0, 2]
    got = engine_run(resnet, layers, TORCH_METHODS, images, targets=targets)
    assert got.target_index.tolist() == targets
    for name in TORCH_METHODS:
        expected = library_maps(name, resnet, layers, images, targets)
        np.testing.assert_allclose(got.heatmaps[name], expected, atol=ATOL, err_msg=name)
    predicted = engine_run(resnet, layers, ["gradcam"], images).heatmaps["gradcam"]
    assert not np.allclose(predicted, got.heatmaps["gradcam"], atol=1e-2)


def test_finercam_explicit_targets_equal_the_library_target_idx(resnet, images) -> None:
    layers = [resnet.layer4[-1]]
    targets = [3, 1, 4]
    got = engine_run(resnet, layers, ["finercam"], images, targets=targets).heatmaps["finercam"]
    finer = pgc.FinerCAM(resnet, layers)
    for i, target in enumerate(targets):
        expected = finer(images[i : i + 1], target_idx=target)
        np.testing.assert_allclose(got[i], expected[0], atol=ATOL)
    finer.base_cam.activations_and_grads.release()


@pytest.mark.slow
def test_two_target_layers_equal_the_library(resnet, images) -> None:
    layers = [resnet.layer3[-1], resnet.layer4[-1]]
    names = TORCH_METHODS + ["refinecam", "eigengradcam"]
    got = engine_run(resnet, layers, names, images, targets=[1, 2, 3])
    for name in names:
        expected = library_maps(name, resnet, layers, images, [1, 2, 3])
        np.testing.assert_allclose(got.heatmaps[name], expected, atol=ATOL, err_msg=name)


def test_each_image_of_a_batch_gets_its_own_gradient(resnet, images) -> None:
    batch = engine_run(resnet, [resnet.layer4[-1]], ["gradcam++", "layercam"], images)
    for i in range(len(images)):
        single = engine_run(
            resnet, [resnet.layer4[-1]], ["gradcam++", "layercam"], images[i : i + 1]
        )
        for name in ("gradcam++", "layercam"):
            np.testing.assert_allclose(batch.heatmaps[name][i], single.heatmaps[name][0], atol=1e-5)
        np.testing.assert_allclose(batch.probs[i], single.probs[0], atol=1e-6)


@pytest.mark.slow
def test_timm_efficientnet_equals_the_library() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    layers = [model.blocks[-1]]
    got = engine_run(model, layers, ["gradcam", "gradcam++", "layercam"], x)
    for name in ("gradcam", "gradcam++", "layercam"):
        np.testing.assert_allclose(
            got.heatmaps[name], library_maps(name, model, layers, x), atol=ATOL
        )


def test_vit_with_reshape_transform_equals_the_library() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=3
    ).eval()

    def tokens_to_map(tensor: torch.Tensor) -> torch.Tensor:
        grid = tensor[:, 1:, :].reshape(tensor.size(0), 4, 4, tensor.size(2))
        return grid.permute(0, 3, 1, 2)

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    layers = [model.blocks[-1].norm1]
    names = ["gradcam", "hirescam", "layercam"]
    got = engine_run(model, layers, names, x, reshape_transform=tokens_to_map)
    for name in names:
        expected = library_maps(name, model, layers, x, reshape_transform=tokens_to_map)
        np.testing.assert_allclose(got.heatmaps[name], expected, atol=ATOL, err_msg=name)


def test_inplace_op_after_the_target_layer(tiny) -> None:
    # ReLU(inplace=True) right after the target conv must neither fail on the captured leaf nor
    # change the captured activation: the reference is the library on an out-of-place copy.
    inplace = TinyNet(inplace_relu=True)
    inplace.load_state_dict(tiny.state_dict())
    inplace.eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    got = engine_run(inplace, [inplace.conv2], ["gradcam", "hirescam"], x)
    for name in ("gradcam", "hirescam"):
        expected = library_maps(name, tiny, [tiny.conv2], x)
        np.testing.assert_allclose(got.heatmaps[name], expected, atol=ATOL)


# --- predictions come from the same pass ---


@pytest.mark.parametrize("methods", [["gradcam", "hirescam"], ["eigencam"], ["fullgrad"], ["sess"]])
def test_probs_are_the_softmax_of_the_model_output(tiny, methods) -> None:
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    result = engine_run(tiny, [tiny.conv2], methods, x)
    with torch.no_grad():
        expected = torch.softmax(tiny(x), dim=1).numpy()
    assert result.probs.shape == (3, 4) and result.probs.dtype == np.float32
    np.testing.assert_allclose(result.probs, expected, atol=1e-6)
    np.testing.assert_array_equal(result.target_index, result.probs.argmax(axis=1))


def test_fast_pass_runs_the_model_once(tiny) -> None:
    calls = []
    handle = tiny.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        engine_run(
            tiny, [tiny.conv2], TORCH_METHODS + ["finercam", "eigencam"], torch.randn(2, 3, 16, 16)
        )
    finally:
        handle.remove()
    assert len(calls) == 1


def test_fast_pass_computes_no_parameter_gradient_and_no_graph_below_the_layer(tiny) -> None:
    seen = {}

    def record(name):
        return lambda module, args, output: seen.__setitem__(name, output.requires_grad)

    handles = [
        tiny.bn1.register_forward_hook(record("below")),
        tiny.head.register_forward_hook(record("above")),
    ]
    try:
        engine_run(tiny, [tiny.conv2], ["gradcam"], torch.randn(2, 3, 16, 16))
    finally:
        for handle in handles:
            handle.remove()
    assert seen == {"below": False, "above": True}
    assert all(p.grad is None for p in tiny.parameters())


# --- library-run methods ---


@pytest.mark.parametrize("name", DELEGATES)
def test_delegated_methods_return_the_library_maps(tiny, name) -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    result = engine_run(tiny, [tiny.conv2], [name], x)
    maps = result.heatmaps[name]
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0 and maps.max() > 0.5
    targets = result.target_index.tolist()
    kwargs = {"ablation_layer": pgc.AblationLayer()} if name == "ablationcam" else {}
    expected = library_maps(
        name, tiny, [] if name == "fullgrad" else [tiny.conv2], x, targets, **kwargs
    )
    np.testing.assert_allclose(maps, expected, atol=ATOL)


def test_mixed_fast_and_delegated_methods_share_targets(tiny) -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(10))
    result = engine_run(tiny, [tiny.conv2], ["gradcam", "scorecam", "fullgrad"], x, targets=[3, 1])
    assert list(result.heatmaps) == ["gradcam", "scorecam", "fullgrad"]
    assert result.target_index.tolist() == [3, 1]
    expected = library_maps("scorecam", tiny, [tiny.conv2], x, [3, 1])
    np.testing.assert_allclose(result.heatmaps["scorecam"], expected, atol=ATOL)


# --- the model is left exactly as found ---


def _hook_count(model: nn.Module) -> int:
    total = 0
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            total += len(getattr(m, attr))
    return total


def _snapshot(model: nn.Module):
    return (
        [
            (n, p.requires_grad, None if p.grad is None else p.grad.clone())
            for n, p in model.named_parameters()
        ],
        [(n, m.training) for n, m in model.named_modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        [(n, id(m)) for n, m in model.named_modules()],
    )


def _assert_same(before, after) -> None:
    params_b, modes_b, state_b, tree_b = before
    params_a, modes_a, state_a, tree_a = after
    assert [(n, r) for n, r, _ in params_b] == [(n, r) for n, r, _ in params_a]
    for (_, _, gb), (_, _, ga) in zip(params_b, params_a, strict=False):
        assert (gb is None and ga is None) or torch.equal(gb, ga)
    assert modes_b == modes_a
    assert tree_b == tree_a
    assert state_b.keys() == state_a.keys()
    assert all(torch.equal(state_b[k], state_a[k]) for k in state_b)


@pytest.mark.parametrize("methods", [["gradcam", "gradcam++", "eigencam", "finercam"], DELEGATES])
def test_model_is_left_exactly_as_found(tiny, methods) -> None:
    tiny.train()  # maps are computed in eval mode anyway; the mode is restored after
    tiny.bn1.eval()
    tiny.conv1.weight.requires_grad_(False)
    tiny.head.weight.grad = torch.ones_like(tiny.head.weight)
    before = _snapshot(tiny)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(11))
    result = engine_run(tiny, [tiny.conv2], methods, x)
    _assert_same(before, _snapshot(tiny))
    assert _hook_count(tiny) == 0
    tiny.eval()
    in_eval = engine_run(tiny, [tiny.conv2], methods[:1], x)
    np.testing.assert_allclose(result.heatmaps[methods[0]], in_eval.heatmaps[methods[0]], atol=1e-6)


def test_model_is_restored_when_a_library_method_fails(tiny, monkeypatch) -> None:
    before = _snapshot(tiny)

    def boom(*args, **kwargs):
        raise RuntimeError("failure while the ablation layer is swapped in")

    monkeypatch.setattr(pgc.AblationLayer, "set_next_batch", boom)
    with pytest.raises(RuntimeError, match="ablation layer is swapped in"):
        engine_run(tiny, [tiny.conv2], ["ablationcam"], torch.randn(1, 3, 16, 16))
    _assert_same(before, _snapshot(tiny))
    assert isinstance(tiny.conv2, nn.Conv2d) and _hook_count(tiny) == 0


@pytest.mark.slow
def test_memory_and_hooks_stay_flat_over_many_runs(tiny) -> None:
    x = torch.randn(2, 3, 16, 16)
    with CamEngine(tiny, [tiny.conv2], ["gradcam", "hirescam", "eigencam"]) as engine:
        for _ in range(20):
            engine.run(x)
        gc.collect()
        tracemalloc.start()
        start = tracemalloc.take_snapshot()
        tensors_before = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
        for _ in range(300):
            engine.run(x)
        gc.collect()
        growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(start, "filename"))
        tracemalloc.stop()
        tensors_after = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
    assert _hook_count(tiny) == 0
    assert tensors_after <= tensors_before
    assert growth < 200_000, f"{growth} bytes of Python memory kept after 300 runs"


# --- errors ---


def test_unknown_method_lists_the_valid_ones(tiny) -> None:
    with pytest.raises(UnknownCamMethodError) as info:
        CamEngine(tiny, [tiny.conv2], ["gradcam", "gradkam"])
    message = str(info.value)
    assert "gradkam" in message and "gradcam++" in message and "scorecam" in message
    assert isinstance(info.value, FundusReviewError)


def test_method_names_and_display_names() -> None:
    assert canonical_method("GradCAMPlusPlus") == "gradcam++"
    assert canonical_method("Grad-CAM") == "gradcam"
    assert canonical_method("KPCA-CAM") == "kpca_cam"
    assert method_display_name("gradcam++") == "Grad-CAM++"
    assert method_display_name("hirescam") == "HiResCAM"
    assert all(name == name.lower() for name in CAM_METHODS)
    with pytest.raises(UnknownCamMethodError):
        method_display_name("nope")
    library_classes = {m.library_class for m in CAM_METHODS.values()}
    for cls in (pgc.GradCAM, pgc.ScoreCAM, pgc.FullGrad, pgc.EigenGradCAM, pgc.GradCAMElementWise):
        assert cls in library_classes


def test_bad_inputs_give_clear_errors(tiny, resnet) -> None:
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(CamError, match="not a module of the model"):
        CamEngine(tiny, [resnet.layer4], ["gradcam"])
    with pytest.raises(CamError, match="no target layer"):
        CamEngine(tiny, [], ["gradcam"])
    with CamEngine(tiny, [tiny.conv2], ["gradcam"]) as engine:
        with pytest.raises(CamError, match="batch, channels, height, width"):
            engine.run(x[0])
        with pytest.raises(CamError, match="2 integer target classes"):
            engine.run(x, targets=[1])
        with pytest.raises(CamError, match="does not exist: the model has 4 classes"):
            engine.run(x, targets=[1, 4])
    assert _hook_count(tiny) == 0
    # BasicBlock calls its one ReLU module twice: its "output" is ambiguous.
    with pytest.raises(CamError, match="ran 2 times"):
        engine_run(resnet, [resnet.layer4[-1].relu], ["gradcam"], torch.randn(1, 3, 32, 32))
    assert _hook_count(resnet) == 0
