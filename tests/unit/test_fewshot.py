"""Support-set models (card `[forward]`): the built-in prototypical network over a timm backbone
and a trusted `forward(support, labels, query)` network, wrapped so the query image is the only
input: logits, classes from the support set, CAMs through the query branch, target layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fundus_review.errors import BundleError
from fundus_review.inference.bundle import describe_bundle, load_bundle
from fundus_review.inference.cam import CamEngine, CamError
from fundus_review.inference.fewshot import PrototypeNetwork, SupportCallNetwork
from fundus_review.inference.layers import (
    TokenReshape,
    candidate_layers,
    layer_name,
    nhwc_to_nchw,
    reshape_transform_for,
    resolve_layer,
)
from fundus_review.inference.preprocess import prepare_batch

pytestmark = pytest.mark.torch
SIZE = 64


def _spot_image(color: int, row: int, col: int, side: int = 8) -> np.ndarray:
    """Black 64x64 image with a square of pure red (color 0) or green (1) at (row, col)."""
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[row : row + side, col : col + side, color] = 255
    return img


def _write_support(folder: Path, per_class: int = 3) -> dict[str, list[np.ndarray]]:
    images = {"red": [], "green": []}
    for k in range(per_class):
        for color, name in ((0, "red"), (1, "green")):
            img = _spot_image(color, 8 + 12 * k, 10 + 10 * k, side=12)
            (folder / "support" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / "support" / name / f"{name}{k}.png")
            images[name].append(img)
    return images


def _card(folder: Path, body: str) -> None:
    (folder / "model.toml").write_text(body, encoding="utf-8")


def _protonet(
    folder: Path,
    backbone: str = "timm:test_resnet",
    extra: str = "",
    forward: str = 'support_dir = "support"',
    model_kwargs: str = "",
) -> dict:
    import timm
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    images = _write_support(folder)
    torch.manual_seed(0)
    name = backbone.split(":", 1)[1]
    kwargs = {}
    if model_kwargs:
        import tomllib

        kwargs = tomllib.loads(model_kwargs)["model_kwargs"]
    try:
        net = timm.create_model(name, pretrained=False, num_classes=0, img_size=SIZE, **kwargs)
    except TypeError:
        net = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    # Saved as research code saves a prototypical network: under its `encoder.` attribute.
    save_file({f"encoder.{k}": v.contiguous() for k, v in net.state_dict().items()},
              str(folder / "model.safetensors"))  # fmt: skip
    _card(
        folder,
        f"""name = "proto"
architecture = "fewshot:protonet"
input_size = [{SIZE}, {SIZE}]
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
{extra}
[forward]
kind = "support_set"
backbone = "{backbone}"
{forward}
{model_kwargs}
""",
    )
    return {"net": net.eval(), "images": images}


def test_protonet_logits_are_minus_squared_distances_to_the_support_means(tmp_path: Path) -> None:
    made = _protonet(tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    assert bundle.card.classes == ["green", "red"]  # sorted support labels; the card has none
    model = bundle.build_model()
    assert isinstance(model, PrototypeNetwork)
    assert bundle.load_report is not None and not bundle.load_report.partial
    net = made["net"]
    # By hand: embeddings of the preprocessed support images, class means, squared distances.
    with torch.no_grad():
        means = [
            net(prepare_batch(made["images"][c], bundle.card)[0]).mean(0) for c in ("green", "red")
        ]
        query = prepare_batch([_spot_image(0, 30, 30), _spot_image(1, 5, 40)], bundle.card)[0]
        zq = net(query)
        want = -torch.stack([((zq - m) ** 2).sum(1) for m in means], dim=1)
        got = model(query)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert got.shape == (2, 2)
    assert not model.prototypes.requires_grad and model.prototypes.grad_fn is None
    assert set(model.state_dict()) == {f"backbone.{k}" for k in net.state_dict()}


def test_protonet_cam_flows_through_the_query_branch_only(tmp_path: Path) -> None:
    _protonet(tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    model = bundle.build_model()
    layer_path = bundle.target_layer_paths(model)[0]
    assert layer_path == "backbone.layer4[-1]"  # the backbone's family default, under backbone.
    layer = resolve_layer(model, layer_path)
    query = prepare_batch([_spot_image(0, 30, 30), _spot_image(1, 5, 40)], bundle.card)[0]
    with CamEngine(model, [layer], ["gradcam"]) as engine:
        got = engine.run(query, targets=[1, 0])
    # Grad-CAM by hand, the prototypes as constants: weights = spatial mean of d logit / d A.
    acts = {}
    handle = layer.register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    logits = model(query)
    handle.remove()
    a = acts["a"]
    score = logits[0, 1] + logits[1, 0]
    (grad,) = torch.autograd.grad(score, a)
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(1)).detach()
    lo = cam.flatten(1).min(1).values[:, None, None]
    hi = cam.flatten(1).max(1).values[:, None, None]
    cam = (cam - lo) / (1e-7 + hi - lo)
    cam = torch.nn.functional.interpolate(cam[:, None], size=(SIZE, SIZE), mode="bilinear")[:, 0]
    lo = cam.flatten(1).min(1).values[:, None, None]
    hi = cam.flatten(1).max(1).values[:, None, None]
    cam = ((cam - lo) / (1e-7 + hi - lo)).numpy()
    np.testing.assert_allclose(got.heatmaps["gradcam"], cam, atol=2e-4)
    np.testing.assert_allclose(got.probs.sum(1), 1.0, atol=1e-5)
    assert got.target_index.tolist() == [1, 0]


def test_support_csv_equals_support_dir_and_the_support_is_part_of_the_identity(
    tmp_path: Path,
) -> None:
    _protonet(tmp_path / "d")
    rows = ["path,label"] + [
        f"support/{c}/{c}{k}.png,{c}" for c in ("red", "green") for k in range(3)
    ]
    _protonet(tmp_path / "c", forward='support = "support/labels.csv"')
    (tmp_path / "c" / "support" / "labels.csv").write_text("\n".join(rows) + "\n")
    a, b = load_bundle(tmp_path / "d"), load_bundle(tmp_path / "c")
    query = prepare_batch([_spot_image(0, 30, 30)], a.card)[0]
    with torch.no_grad():
        torch.testing.assert_close(a.build_model()(query), b.build_model()(query))
    digest = a.card.to_dict()["forward"]["support_sha256"]
    assert digest == b.card.to_dict()["forward"]["support_sha256"]
    # Another support image: another model for the store (same weights file, other card).
    Image.fromarray(_spot_image(0, 40, 40)).save(tmp_path / "d" / "support" / "red" / "red0.png")
    assert load_bundle(tmp_path / "d").card.to_dict()["forward"]["support_sha256"] != digest


def test_card_classes_must_be_the_support_labels(tmp_path: Path) -> None:
    _protonet(tmp_path / "b", extra='classes = ["red", "green"]')
    assert load_bundle(tmp_path / "b").card.classes == ["red", "green"]  # the card's order
    _protonet(tmp_path / "x", extra='classes = ["red", "blue"]')
    with pytest.raises(BundleError, match=r"no support image for \['blue'\].*not in `classes`"):
        load_bundle(tmp_path / "x")


@pytest.mark.parametrize(
    ("forward", "message"),
    [
        ('support_dir = "nowhere"', "support_dir 'nowhere': no such folder"),
        ('support_dir = "../elsewhere"', "must lie inside the bundle"),
        ('support_dir = "support"\nsupport = "s.csv"', "exactly one of `support`"),
        ('support_dir = "support"\ndistance = "manhattan"', "distance is 'manhattan'"),
        ('support = "support/none.csv"', "support 'support/none.csv': no such file"),
    ],
)
def test_bad_forward_tables_are_explained(tmp_path: Path, forward: str, message: str) -> None:
    _protonet(tmp_path / "b", forward=forward)
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "b")


def test_protonet_without_forward_table_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    _protonet(folder)
    text = (folder / "model.toml").read_text().split("[forward]")[0]
    _card(folder, text + 'classes = ["a", "b"]\n')
    with pytest.raises(BundleError, match=r"needs a \[forward\] table"):
        load_bundle(folder)


def test_cosine_distance(tmp_path: Path) -> None:
    made = _protonet(tmp_path / "b", forward='support_dir = "support"\ndistance = "cosine"')
    bundle = load_bundle(tmp_path / "b")
    model = bundle.build_model()
    query = prepare_batch([_spot_image(0, 30, 30)], bundle.card)[0]
    with torch.no_grad():
        zq = torch.nn.functional.normalize(made["net"](query), dim=1)
        protos = torch.nn.functional.normalize(model.prototypes, dim=1)
        torch.testing.assert_close(model(query), (zq @ protos.T) / 0.1)


# --- a network of one's own: forward(support_images, support_labels, query_images) ---


def _factory_bundle(folder: Path, concat: bool) -> None:
    from safetensors.torch import save_file

    from tests.unit.cam_models import SupportQueryNet

    folder.mkdir(parents=True, exist_ok=True)
    _write_support(folder, per_class=2)
    save_file(SupportQueryNet().state_dict(), str(folder / "model.safetensors"))
    _card(
        folder,
        f"""name = "metaopt"
architecture = "tests.unit.cam_models:support_query_net"
input_size = [{SIZE}, {SIZE}]
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
target_layers = ["network.features"]
[model_kwargs]
concat = {"true" if concat else "false"}
[forward]
kind = "support_set"
call = "support_labels_query"
support_dir = "support"
""",
    )


@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("n_query", [3, 4])  # 4 = the support set's size: padded internally
def test_support_call_network_predicts_and_its_cam_sees_the_query_rows(
    tmp_path: Path, concat: bool, n_query: int
) -> None:
    _factory_bundle(tmp_path / "f", concat)
    bundle = load_bundle(tmp_path / "f")
    with pytest.raises(BundleError, match="--trust-code"):
        bundle.build_model()
    model = bundle.build_model(trust_code=True)
    assert isinstance(model, SupportCallNetwork) and model.n_support == 4
    assert bundle.card.classes == ["green", "red"]
    spots = [(0, 40, 44), (1, 6, 20), (0, 14, 50), (1, 44, 8)][:n_query]
    query = prepare_batch([_spot_image(c, r, q, side=6) for c, r, q in spots], bundle.card)[0]
    layer = resolve_layer(model, "network.features")
    with CamEngine(model, [layer], ["gradcam", "hirescam"]) as engine:
        got = engine.run(query)
    # Known answer: a red spot is nearer the red prototype, and the map peaks on the spot.
    assert got.target_index.tolist() == [1 if c == 0 else 0 for c, _, _ in spots]
    for i, (_c, r, q) in enumerate(spots):
        peak = np.unravel_index(np.argmax(got.heatmaps["gradcam"][i]), (SIZE, SIZE))
        assert r <= peak[0] < r + 6 and q <= peak[1] < q + 6
    with (
        CamEngine(model, [layer], ["scorecam"]) as engine,
        pytest.raises(CamError, match="gradient"),
    ):
        engine.run(query)


def test_a_multilabel_support_call_network_reports_sigmoid_scores(tmp_path: Path) -> None:
    """The probability rule is set on the module the engine calls, the wrapper, not only on
    the network inside it (attributes are not passed on)."""
    import torch

    from fundus_review.inference.outputs import probabilities

    _factory_bundle(tmp_path / "f", concat=True)
    card = (tmp_path / "f" / "model.toml").read_text()
    (tmp_path / "f" / "model.toml").write_text(
        card.replace("[model_kwargs]", 'score = "multilabel"\n[model_kwargs]')
    )
    model = load_bundle(tmp_path / "f").build_model(trust_code=True)
    assert isinstance(model, SupportCallNetwork)
    got = probabilities(model, torch.tensor([[2.0, 2.0]]))
    np.testing.assert_allclose(got.numpy(), [[0.880797, 0.880797]], atol=1e-6)  # not 0.5, 0.5


def test_support_call_network_default_layer_is_found_through_the_wrapper(tmp_path: Path) -> None:
    _factory_bundle(tmp_path / "f", concat=True)
    text = (
        (tmp_path / "f" / "model.toml")
        .read_text()
        .replace('target_layers = ["network.features"]\n', "")
    )
    _card(tmp_path / "f", text)
    bundle = load_bundle(tmp_path / "f")
    model = bundle.build_model(trust_code=True)
    assert layer_name(model, bundle.target_layer_paths(model)[0]) == "network.features"


# --- target layers of the backbone inside the wrapper (`model inspect`) ---


def test_inspect_lists_the_backbone_layers_inside_the_wrapper(tmp_path: Path) -> None:
    _protonet(tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    model = bundle.build_model()
    names = dict(candidate_layers(model, (SIZE, SIZE)))
    assert "backbone.layer4" in names and "backbone.layer4.0" in names
    assert all(n.startswith("backbone.") for n in names)
    assert len(names["backbone.layer4"]) == 3  # (C, H, W)
    text = describe_bundle(bundle)
    assert "Forward:       support set support: 6 images (green 3, red 3)" in text
    assert "Head:          none: prototypes of the support set" in text
    assert "backbone.layer4[-1] (family default)" in text
    assert "Reshape:" not in text  # a CNN needs none


def test_vit_backbone_reshape_is_found_automatically(tmp_path: Path) -> None:
    _protonet(tmp_path / "v", backbone="timm:test_vit")
    bundle = load_bundle(tmp_path / "v")
    model = bundle.build_model()
    reshape = reshape_transform_for(model, bundle.card.architecture)
    inner = model.backbone
    assert isinstance(reshape, TokenReshape)
    assert reshape.grid == tuple(inner.patch_embed.grid_size)
    assert reshape.prefix_tokens == inner.num_prefix_tokens
    paths = bundle.target_layer_paths(model)
    assert paths == ["backbone.blocks[-1].norm1"]
    layer = resolve_layer(model, paths[0])
    query = prepare_batch([_spot_image(0, 30, 30)], bundle.card)[0]
    with CamEngine(model, [layer], ["gradcam"], reshape_transform=reshape) as engine:
        got = engine.run(query)
    assert got.heatmaps["gradcam"].shape == (1, SIZE, SIZE)
    text = describe_bundle(bundle)
    assert "Reshape:       TokenReshape(grid=" in text
    assert "backbone.blocks.0" in text  # the blocks are candidates, as token sequences (N, C)


def test_swin_backbone_reshape_is_found_automatically(tmp_path: Path) -> None:
    tiny = (
        "[model_kwargs]\nembed_dim = 24\ndepths = [1, 1, 1, 1]\nnum_heads = [1, 1, 1, 1]\n"
        "window_size = 2\n"
    )
    _protonet(tmp_path / "s", backbone="timm:swin_tiny_patch4_window7_224", model_kwargs=tiny)
    bundle = load_bundle(tmp_path / "s")
    model = bundle.build_model()
    assert reshape_transform_for(model, bundle.card.architecture) is nhwc_to_nchw
    assert bundle.target_layer_paths(model) == ["backbone.layers[-1].blocks[-1].norm1"]
    assert "Reshape:       nhwc_to_nchw" in describe_bundle(bundle)


def test_randomized_copy_recomputes_the_prototypes(tmp_path: Path) -> None:
    from fundus_review.inference.fewshot import class_means
    from fundus_review.inference.randomize import randomized_copy

    _protonet(tmp_path / "b")
    model = load_bundle(tmp_path / "b").build_model()
    clone = randomized_copy(model, ["backbone.conv1.0"], seed=0)
    with torch.no_grad():
        want = class_means(clone.embed(clone.support_images), clone.support_labels, 2)
    torch.testing.assert_close(clone.prototypes, want)
    assert not torch.allclose(clone.prototypes, model.prototypes)


def test_support_images_outside_the_bundle_or_unreadable_are_refused(tmp_path: Path) -> None:
    Image.fromarray(_spot_image(0, 5, 5)).save(tmp_path / "outside.png")
    _protonet(tmp_path / "c", forward='support = "support/labels.csv"')
    rows = "path,label\nsupport/red/red0.png,red\n../outside.png,green\n"
    (tmp_path / "c" / "support" / "labels.csv").write_text(rows)
    with pytest.raises(BundleError, match="outside.png lies outside the bundle"):
        load_bundle(tmp_path / "c")
    # A link inside support/ to a file elsewhere counts as outside too.
    _protonet(tmp_path / "l")
    (tmp_path / "l" / "support" / "green" / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(BundleError, match="lies outside the bundle"):
        load_bundle(tmp_path / "l")
    # A damaged support image: the bundle reads, building the model says which file.
    _protonet(tmp_path / "d")
    (tmp_path / "d" / "support" / "red" / "red1.png").write_bytes(b"not a png")
    bundle = load_bundle(tmp_path / "d")
    with pytest.raises(BundleError, match=r"cannot bind the support set.*red1.png"):
        bundle.build_model()


def test_research_checkpoint_with_nested_prefixed_state_dict(tmp_path: Path) -> None:
    """The README's worked example: torch.save({"model_state_dict": ...}) of a DataParallel
    ProtoNet (`module.encoder.` keys), a support folder, and only a model.toml."""
    made = _protonet(tmp_path / "b")
    folder = tmp_path / "b"
    (folder / "model.safetensors").unlink()
    state = {f"module.encoder.{k}": v for k, v in made["net"].state_dict().items()}
    torch.save({"model_state_dict": state, "epoch": 40}, folder / "protonet_best.pth")
    text = (folder / "model.toml").read_text()
    (folder / "model.toml").write_text(
        text.replace('name = "proto"', 'name = "proto"\nweights = "protonet_best.pth"')
    )
    bundle = load_bundle(folder)
    model = bundle.build_model()
    assert not bundle.load_report.partial
    query = prepare_batch([_spot_image(0, 30, 30)], bundle.card)[0]
    with torch.no_grad():
        z = made["net"](query)
        torch.testing.assert_close(model.embed(query), z)
