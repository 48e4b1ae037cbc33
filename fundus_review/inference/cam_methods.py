"""The CAM methods by name: one record per method holds everything the engine needs about it.

Every method of pytorch-grad-cam 1.5.7 that explains a classifier's class score is offered. As in
that library, where one base class runs every method and each method overrides only its own
arithmetic, the engine (cam.py) names no method: it reads each method's record. A record is
either

- a *single-pass* method (``formula`` set): the engine's one forward (and one short backward of
  the record's ``score``) supplies the activations and gradients, and the formula turns them into
  a map per layer, batched; the record's ``fuse_layers`` combines the layers. Formulas are torch
  versions of the library's ``get_cam_weights`` / ``get_cam_image`` (cam_formulas.py), or the
  library's own ``get_cam_image`` where the map involves an SVD, a kernel PCA or a threshold
  (``LibraryFormula``: reimplementing those could flip a map's sign or outcome);
- a *library-run* method (``build`` set): the library runs it itself (it needs many forward
  passes, input gradients or second derivatives); the engine only manages hooks, targets and the
  model's state (cam_delegate.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_grad_cam as pgc

from fundus_review.inference import cam_formulas as f
from fundus_review.inference.cam_delegate import (
    DelegateBuilder,
    ScoreCAMWithoutHooks,
    build_ablation_cam,
    build_fullgrad,
)
from fundus_review.inference.cam_errors import CamError
from fundus_review.inference.cam_fast import ScoreFunction
from fundus_review.inference.cam_formulas import LayerFormula, LayerFusion, LibraryFormula

__all__ = [
    "CAM_METHODS",
    "CamError",
    "CamMethod",
    "UnknownCamMethodError",
    "canonical_method",
    "method_display_name",
]


class UnknownCamMethodError(CamError, ValueError):
    def __init__(self, name: object) -> None:
        self.name = name
        valid = ", ".join(CAM_METHODS)
        super().__init__(f"unknown CAM method {name!r}; valid methods are: {valid}")


@dataclass(frozen=True)
class CamMethod:
    """One CAM method: its names, how the engine computes it, and what that needs."""

    name: str  # canonical lower-case name used everywhere (CLI, database, reports)
    display_name: str  # how the literature writes it
    library_class: type  # the pytorch_grad_cam class whose results this method reproduces
    description: str
    needs_gradients: bool  # whether computing it differentiates the class scores
    # Single pass: (activations, gradients of `score`) -> raw map of one layer; None: library-run.
    formula: LayerFormula | None = None
    score: ScoreFunction | None = None  # what the single pass differentiates for this method
    fuse_layers: LayerFusion = f.mean_of_layers  # the per-layer maps -> the final map
    # Library-run: (model, target layers, reshape_transform) -> the library's CAM object.
    build: DelegateBuilder | None = None
    needs_parameter_graph: bool = False  # the library differentiates through the parameters
    # It scores rescaled copies, never the input itself, so the class scores and targets must
    # come from another pass: it runs after every other method, with the targets fixed.
    needs_known_targets: bool = False
    aliases: tuple[str, ...] = ()  # spellings accepted besides name, display and class names

    def __post_init__(self) -> None:
        # A record that cannot be computed fails at import, not when a user first picks it.
        if (self.formula is None) == (self.build is None):
            raise TypeError(f"{self.name}: a CAM method has either a formula or a builder")
        if self.formula is not None:
            if (self.score is not None) != self.needs_gradients:
                raise TypeError(f"{self.name}: a score is what a gradient method differentiates")
            if self.needs_parameter_graph or self.needs_known_targets:
                raise TypeError(f"{self.name}: those flags are for library-run methods")
        elif self.score is not None:
            raise TypeError(f"{self.name}: a library-run method chooses its own score")

    @property
    def single_pass(self) -> bool:
        """Computed from the engine's one forward (and backward) pass, batched."""
        return self.formula is not None


_CLASS = f.class_score  # the target class's score, as ClassifierOutputTarget

_METHODS = [
    # --- single pass, torch formulas ---
    CamMethod(
        "gradcam",
        "Grad-CAM",
        pgc.GradCAM,
        "channel weights = spatial mean of the gradient",
        needs_gradients=True,
        formula=f.gradcam,
        score=_CLASS,
    ),
    CamMethod(
        "hirescam",
        "HiResCAM",
        pgc.HiResCAM,
        "element-wise gradient x activation, summed over channels",
        needs_gradients=True,
        formula=f.hirescam,
        score=_CLASS,
    ),
    CamMethod(
        "gradcam++",
        "Grad-CAM++",
        pgc.GradCAMPlusPlus,
        "channel weights from positive gradients with second/third-order terms",
        needs_gradients=True,
        formula=f.gradcam_plusplus,
        score=_CLASS,
        aliases=("gradcamplusplus", "gradcampp"),
    ),
    CamMethod(
        "xgradcam",
        "XGrad-CAM",
        pgc.XGradCAM,
        "channel weights = activation-normalised gradient x activation",
        needs_gradients=True,
        formula=f.xgradcam,
        score=_CLASS,
    ),
    CamMethod(
        "layercam",
        "LayerCAM",
        pgc.LayerCAM,
        "element-wise positive gradient x activation",
        needs_gradients=True,
        formula=f.layercam,
        score=_CLASS,
    ),
    CamMethod(
        "gradcamelementwise",
        "Grad-CAM element-wise",
        pgc.GradCAMElementWise,
        "element-wise ReLU(gradient x activation)",
        needs_gradients=True,
        formula=f.gradcam_elementwise,
        score=_CLASS,
    ),
    CamMethod(
        "finercam",
        "Finer-CAM",
        pgc.FinerCAM,
        "Grad-CAM of the target class minus its most similar classes",
        needs_gradients=True,
        formula=f.gradcam,
        score=f.finer_score,
    ),
    CamMethod(
        "refinecam",
        "RefineCAM",
        pgc.RefineCAM,
        "product of per-layer Grad-CAM++ maps (for several target layers)",
        needs_gradients=True,
        formula=f.gradcam_plusplus,
        score=_CLASS,
        fuse_layers=f.product_of_layers,
    ),
    # --- single pass, the library's own get_cam_image ---
    CamMethod(
        "eigencam",
        "Eigen-CAM",
        pgc.EigenCAM,
        "first principal component of the activations (class-agnostic)",
        needs_gradients=False,
        formula=LibraryFormula(pgc.EigenCAM),
    ),
    CamMethod(
        "eigengradcam",
        "EigenGrad-CAM",
        pgc.EigenGradCAM,
        "first principal component of gradient x activation",
        needs_gradients=True,
        formula=LibraryFormula(pgc.EigenGradCAM),
        score=_CLASS,
    ),
    CamMethod(
        "segeigencam",
        "Seg-Eigen-CAM",
        pgc.SegEigenCAM,
        "first principal component of |gradient| x activation, sign-corrected",
        needs_gradients=True,
        formula=LibraryFormula(pgc.SegEigenCAM),
        score=_CLASS,
    ),
    CamMethod(
        "kpca_cam",
        "KPCA-CAM",
        pgc.KPCA_CAM,
        "first kernel principal component of the activations (class-agnostic)",
        needs_gradients=False,
        formula=LibraryFormula(pgc.KPCA_CAM),
    ),
    CamMethod(
        "fem",
        "FEM",
        pgc.FEM,
        "feature explanation method: channels weighted by their k-sigma outliers",
        needs_gradients=False,
        formula=LibraryFormula(pgc.FEM),
    ),
    CamMethod(
        "randomcam",
        "Random CAM",
        pgc.RandomCAM,
        "random channel weights: a baseline any real method should beat",
        needs_gradients=False,
        formula=LibraryFormula(pgc.RandomCAM),
    ),
    # --- run by the library ---
    CamMethod(
        "scorecam",
        "Score-CAM",
        pgc.ScoreCAM,
        "channel weights from the class score of the input masked by each channel (slow)",
        needs_gradients=False,
        build=ScoreCAMWithoutHooks,
    ),
    CamMethod(
        "ablationcam",
        "Ablation-CAM",
        pgc.AblationCAM,
        "channel weights from the score drop when each channel is zeroed (slow)",
        needs_gradients=False,
        build=build_ablation_cam,
    ),
    CamMethod(
        "fullgrad",
        "FullGrad",
        pgc.FullGrad,
        "input gradient plus bias gradients of every layer (ignores the target layers)",
        needs_gradients=True,
        build=build_fullgrad,
    ),
    CamMethod(
        "shapleycam",
        "ShapleyCAM",
        pgc.ShapleyCAM,
        "gradient corrected by a Hessian-vector product",
        needs_gradients=True,
        build=pgc.ShapleyCAM,
        needs_parameter_graph=True,
    ),
    CamMethod(
        "sess",
        "SESS",
        pgc.SESS,
        "Grad-CAM over multi-scale sliding patches, fused (very slow)",
        needs_gradients=True,
        build=pgc.SESS,
        needs_parameter_graph=True,
        needs_known_targets=True,
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
    for _alias in _method.aliases:
        _ALIASES[_key(_alias)] = _method.name


def canonical_method(name: str) -> str:
    """The canonical name of a method given in any common spelling; raises UnknownCamMethodError."""
    if not isinstance(name, str) or _key(name) not in _ALIASES:
        raise UnknownCamMethodError(name)
    return _ALIASES[_key(name)]


def method_display_name(name: str) -> str:
    """How a method is written in figures and reports, e.g. "gradcam++" -> "Grad-CAM++"."""
    return CAM_METHODS[canonical_method(name)].display_name
