"""The compute step of ``analyze``, shared by its engines: the request, the model as a request
wants it (``LoadedModel``), decoding a file and ``compute_batch`` (one forward/backward for every
CAM method, no database access). ``app.analyze`` runs them locally, ``app.analyze_ray`` on Ray
actors; both store through ``app.analyze.store_batch``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fundus_review.app.analyze_events import ImageFailed
from fundus_review.app.claims import LEASE_S
from fundus_review.data.images import load_image
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo

if TYPE_CHECKING:  # torch-heavy: imported by the steps that use them
    from fundus_review.inference.bundle import ModelBundle
    from fundus_review.inference.cam import CamEngine


@dataclass
class AnalysisRequest:
    dataset: Path
    bundle: Path
    methods: list[str]
    db: str | Path
    layers: list[str] | None = None  # None: the card's target layers, else the family default
    target: str = "predicted"  # "predicted" or a class name of the bundle
    labels_csv: Path | None = None
    filename_column: str | None = None
    label_column: str | None = None
    # The mask import step: masks_dir (None: <dataset>/masks when it exists) as `reviewer`.
    # False: the caller keeps the masks current itself (the GUI imports them when a folder opens).
    import_masks: bool = True
    masks_dir: Path | None = None
    reviewer: str = "reference"
    device: str | None = None
    batch_size: int = 16
    force: bool = False
    image_ids: list[int] | None = None  # restrict to these images (GUI: current image/selection)
    claim_lease_s: float = LEASE_S  # claims of a run that stopped renewing them expire after this
    engine: str = "local"  # "local" or "ray" (app.analyze_ray, the optional extra .[scale])
    ray_address: str | None = None  # None: a local Ray instance; "auto": the running cluster
    workers: int | None = None  # Ray actors (None: 1 per GPU with gpus_per_worker, else 2)
    gpus_per_worker: float = 0.0
    cpus_per_worker: int = 1  # each Ray actor decodes its batch on this many threads


def target_policy(target: str, classes: list[str]) -> tuple[str, int | None]:
    """Validate a --target value; returns (policy string stored with the run, class index)."""
    if target in ("", "predicted"):
        return "predicted", None
    if target not in classes:
        raise FundusReviewError(
            f"target class {target!r} is not one of the model's classes: {', '.join(classes)}"
        )
    return f"class:{target}", classes.index(target)


@dataclass
class LoadedModel:
    """The bundle and what the request asks of it; `build` puts the network on its device."""

    bundle: ModelBundle
    methods: list[str]
    policy: str  # stored with each CAM run: "predicted" or "class:<name>"
    target_index: int | None
    device: Any = None
    network: Any = None
    layer_names: list[str] = field(default_factory=list)
    layers: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, req: AnalysisRequest) -> LoadedModel:
        # torch is imported here, not at module import, so that `fundus-review --help` stays instant.
        from fundus_review.inference.bundle import load_bundle
        from fundus_review.inference.cam import canonical_method

        methods = [canonical_method(m) for m in req.methods]
        bundle = load_bundle(req.bundle)
        policy, target_index = target_policy(req.target, bundle.card.classes)
        return cls(bundle, methods, policy, target_index)

    def build(self, req: AnalysisRequest) -> None:
        from fundus_review.inference.device import pick_device
        from fundus_review.inference.layers import default_target_layers, resolve_layer

        card = self.bundle.card
        self.device = pick_device(req.device)
        self.network = self.bundle.build_model(self.device)
        self.layer_names = (
            list(req.layers or [])
            or card.target_layers
            or default_target_layers(self.network, card.architecture)
        )
        self.layers = [resolve_layer(self.network, name) for name in self.layer_names]

    def engine(self) -> CamEngine:
        from fundus_review.inference.cam import CamEngine
        from fundus_review.inference.layers import reshape_transform_for

        arch = self.bundle.card.architecture
        return CamEngine(
            self.network,
            self.layers,
            self.methods,
            reshape_transform=reshape_transform_for(self.network, arch),
        )


def load_file(path: Path) -> np.ndarray | ImageFailed:
    try:
        return load_image(path)
    except FundusReviewError as exc:
        return ImageFailed(str(path), str(getattr(exc, "reason", exc)))
    except OSError as exc:
        return ImageFailed(str(path), f"cannot read file: {exc}")


@dataclass
class ComputedStep:
    """One claimed batch computed: its results (None: no readable image), its unreadable images,
    and how many planned images other runs stored meanwhile (``ClaimedBatch.elsewhere``)."""

    result: BatchResult | None
    failed: list[tuple[int, ImageFailed]] = field(default_factory=list)
    elsewhere: int = 0


@dataclass
class BatchResult:
    """One batch computed: per image its probabilities, input transform, target and heatmaps."""

    image_ids: list[int]
    probs: np.ndarray  # (B, classes)
    transforms: list[dict]
    target_index: np.ndarray  # (B,)
    # method -> (B, h, w) array, or per image its stored form (Ray workers: ``encode_heatmaps``)
    heatmaps: dict[str, Any]

    def encode_heatmaps(self, mapper: Callable = map) -> None:
        """Replace the float32 maps by their stored form (``repo.encode_for_store``): what a
        remote worker sends back is then a fifth of the bytes, and the writer only stores.
        ``mapper``: e.g. a thread pool's ``map`` (zlib releases the GIL)."""
        self.heatmaps = {
            m: list(mapper(repo.encode_for_store, list(maps))) for m, maps in self.heatmaps.items()
        }


def compute_batch(
    engine: CamEngine, model: LoadedModel, good: list[tuple[int, np.ndarray]]
) -> BatchResult:
    """Preprocess the images and run every CAM method in one pass (no database access)."""
    from fundus_review.inference.preprocess import prepare_batch

    tensor, transforms = prepare_batch([img for _, img in good], model.bundle.card)
    tensor = tensor.to(model.device)
    targets = None if model.target_index is None else [model.target_index] * len(good)
    result = engine.run(tensor, targets)
    return BatchResult(
        [image_id for image_id, _ in good],
        result.probs,
        [tf.to_dict() for tf in transforms],
        result.target_index,
        result.heatmaps,
    )
