"""The CAM methods by name, and how the engine computes each of them.

Every method of pytorch-grad-cam 1.5.7 that explains a classifier's class score is offered. The
engine computes them in one of three ways (``CamMethod.route``):

- ``"torch"``: weights and maps are computed batched in torch from the activations and gradients of
  the engine's single pass (cam_fast.py); formulas are those of the library's ``get_cam_weights`` /
  ``get_cam_image`` and the unit tests prove equality with the library.
- ``"library_math"``: the engine's single pass supplies the activations (and gradients); the
  library's own ``get_cam_image`` turns them into the map. Used where the map involves an SVD,
  a kernel PCA or a threshold, whose sign or outcome depends on the exact numerical routine, so
  reimplementing them could flip a map where the library's own code cannot.
- ``"delegate"``: the library runs the method itself (it needs many forward passes, input
  gradients or second derivatives); the engine only manages hooks, targets and the model's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_grad_cam as pgc
import torch

from fundus_review.errors import FundusReviewError


class CamError(FundusReviewError):
    """A CAM cannot be computed for this model, layer, batch or target."""


class UnknownCamMethodError(CamError, ValueError):
    def __init__(self, name: object) -> None:
        self.name = name
        valid = ", ".join(CAM_METHODS)
        super().__init__(f"unknown CAM method {name!r}; valid methods are: {valid}")


@dataclass(frozen=True)
class CamMethod:
    name: str  # canonical lower-case name used everywhere (CLI, database, reports)
    display_name: str  # how the literature writes it
    library_class: type  # the pytorch_grad_cam class whose results this method reproduces
    route: str  # "torch" | "library_math" | "delegate"
    needs_gradients: bool  # whether the engine's single pass must run a backward pass
    description: str


def _m(name, display, cls, route, grads, description) -> CamMethod:
    return CamMethod(name, display, cls, route, grads, description)


_METHODS = [
    _m(
        "gradcam",
        "Grad-CAM",
        pgc.GradCAM,
        "torch",
        True,
        "channel weights = spatial mean of the gradient",
    ),
    _m(
        "hirescam",
        "HiResCAM",
        pgc.HiResCAM,
        "torch",
        True,
        "element-wise gradient x activation, summed over channels",
    ),
    _m(
        "gradcam++",
        "Grad-CAM++",
        pgc.GradCAMPlusPlus,
        "torch",
        True,
        "channel weights from positive gradients with second/third-order terms",
    ),
    _m(
        "xgradcam",
        "XGrad-CAM",
        pgc.XGradCAM,
        "torch",
        True,
        "channel weights = activation-normalised gradient x activation",
    ),
    _m(
        "layercam",
        "LayerCAM",
        pgc.LayerCAM,
        "torch",
        True,
        "element-wise positive gradient x activation",
    ),
    _m(
        "gradcamelementwise",
        "Grad-CAM element-wise",
        pgc.GradCAMElementWise,
        "torch",
        True,
        "element-wise ReLU(gradient x activation)",
    ),
    _m(
        "finercam",
        "Finer-CAM",
        pgc.FinerCAM,
        "torch",
        True,
        "Grad-CAM of the target class minus its most similar classes",
    ),
    _m(
        "refinecam",
        "RefineCAM",
        pgc.RefineCAM,
        "torch",
        True,
        "product of per-layer Grad-CAM++ maps (for several target layers)",
    ),
    _m(
        "eigencam",
        "Eigen-CAM",
        pgc.EigenCAM,
        "library_math",
        False,
        "first principal component of the activations (class-agnostic)",
    ),
    _m(
        "eigengradcam",
        "EigenGrad-CAM",
        pgc.EigenGradCAM,
        "library_math",
        True,
        "first principal component of gradient x activation",
    ),
    _m(
        "segeigencam",
        "Seg-Eigen-CAM",
        pgc.SegEigenCAM,
        "library_math",
        True,
        "first principal component of |gradient| x activation, sign-corrected",
    ),
    _m(
        "kpca_cam",
        "KPCA-CAM",
        pgc.KPCA_CAM,
        "library_math",
        False,
        "first kernel principal component of the activations (class-agnostic)",
    ),
    _m(
        "fem",
        "FEM",
        pgc.FEM,
        "library_math",
        False,
        "feature explanation method: channels weighted by their k-sigma outliers",
    ),
    _m(
        "randomcam",
        "Random CAM",
        pgc.RandomCAM,
        "library_math",
        False,
        "random channel weights: a baseline any real method should beat",
    ),
    _m(
        "scorecam",
        "Score-CAM",
        pgc.ScoreCAM,
        "delegate",
        False,
        "channel weights from the class score of the input masked by each channel (slow)",
    ),
    _m(
        "ablationcam",
        "Ablation-CAM",
        pgc.AblationCAM,
        "delegate",
        False,
        "channel weights from the score drop when each channel is zeroed (slow)",
    ),
    _m(
        "fullgrad",
        "FullGrad",
        pgc.FullGrad,
        "delegate",
        True,
        "input gradient plus bias gradients of every layer (ignores the target layers)",
    ),
    _m(
        "shapleycam",
        "ShapleyCAM",
        pgc.ShapleyCAM,
        "delegate",
        True,
        "gradient corrected by a Hessian-vector product",
    ),
    _m(
        "sess",
        "SESS",
        pgc.SESS,
        "delegate",
        True,
        "Grad-CAM over multi-scale sliding patches, fused (very slow)",
    ),
]

CAM_METHODS: dict[str, CamMethod] = {m.name: m for m in _METHODS}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in " -_")


# Accept the library's class names and common spellings ("GradCAMPlusPlus", "Grad-CAM", "kpca-cam").
_ALIASES: dict[str, str] = {}
for _method in _METHODS:
    _ALIASES[_key(_method.name)] = _method.name
    _ALIASES[_key(_method.display_name)] = _method.name
    _ALIASES[_key(_method.library_class.__name__)] = _method.name
_ALIASES["gradcamplusplus"] = "gradcam++"
_ALIASES["gradcampp"] = "gradcam++"


def canonical_method(name: str) -> str:
    """The canonical name of a method given in any common spelling; raises UnknownCamMethodError."""
    if not isinstance(name, str) or _key(name) not in _ALIASES:
        raise UnknownCamMethodError(name)
    return _ALIASES[_key(name)]


def method_display_name(name: str) -> str:
    """How a method is written in figures and reports, e.g. "gradcam++" -> "Grad-CAM++"."""
    return CAM_METHODS[canonical_method(name)].display_name


def library_calculator(name: str, device: torch.device) -> object:
    """An instance of the library's class used only for its ``get_cam_image`` arithmetic.

    It is built on a one-parameter stand-in model with no target layers, so it registers no hook
    anywhere, while its method parameters (FEM's k, KPCA's kernel...) keep the library's defaults.
    """
    stand_in = torch.nn.Linear(1, 1).to(device)
    return CAM_METHODS[name].library_class(stand_in, [])
