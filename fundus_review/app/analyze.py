"""Run a model bundle and its CAM methods over a dataset, storing results as they are produced.

`run_analysis` is a generator of events: the CLI draws a progress bar from them, the GUI worker
forwards them as Qt signals. Its steps, each a function below: register the folder, import the
expert masks (only when the request says so), load the model, plan (which images still miss a
result), then per batch claim (``app.claims``: concurrent runs on one database share the
images), compute (one forward/backward for every method) and store. Each finished batch is
committed in its own transaction, so a cancel (event or Ctrl-C) keeps everything finished before
it. The compute step runs here (engine "local") or on Ray actors (engine "ray",
``app.analyze_ray``); both run ``compute_batch`` and hand its results to ``store_batch`` here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fundus_review.app.analyze_events import (
    AnalysisProgress,
    Clock,
    Event,
    Finished,
    ImageFailed,
    Started,
)
from fundus_review.app.claims import LEASE_S, ClaimedBatch, WorkShare
from fundus_review.app.importing import RegisteredDataset, import_masks, register_dataset
from fundus_review.data.images import load_image
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo, repo_analysis
from fundus_review.store.db import Database, open_database

__all__ = [  # the events are defined in app.analyze_events; callers import them from here
    "AnalysisProgress",
    "AnalysisRequest",
    "Event",
    "Finished",
    "ImageFailed",
    "Started",
    "run_analysis",
]

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


def target_policy(target: str, classes: list[str]) -> tuple[str, int | None]:
    """Validate a --target value; returns (policy string stored with the run, class index)."""
    if target in ("", "predicted"):
        return "predicted", None
    if target not in classes:
        raise FundusReviewError(
            f"target class {target!r} is not one of the model's classes: {', '.join(classes)}"
        )
    return f"class:{target}", classes.index(target)


def run_analysis(
    req: AnalysisRequest, cancel: threading.Event | None = None, db: Database | None = None
) -> Iterator[Event]:
    """Analyze every image of `req.dataset`; yields Started, then AnalysisProgress/ImageFailed,
    then Finished. `db`: an open Database to use (default: open `req.db` for this run)."""
    t0 = time.perf_counter()
    if req.engine not in ("local", "ray"):
        raise FundusReviewError(f"unknown engine {req.engine!r}: use 'local' or 'ray'")
    model = LoadedModel.of(req)  # a bad bundle, method or target fails before any database work
    own_db = db is None
    db = db or open_database(req.db)
    try:
        registered = register_dataset(
            db,
            req.dataset,
            req.labels_csv,
            req.filename_column,
            req.label_column,
            only=req.image_ids,
            cancel=None if cancel is None else cancel.is_set,
        )
        masks_imported = import_request_masks(db, registered, req) if req.import_masks else 0
        model.build(req)
        plan = plan_analysis(db, req, model, registered)
        share = WorkShare(
            db, plan.model_id, list(plan.run_ids.values()), plan.todo, req.force, req.claim_lease_s
        )
        try:
            yield from _compute_and_store(
                req, db, model, plan, share, cancel, registered, masks_imported, t0
            )
        finally:
            share.close()
    finally:
        if own_db:
            db.close()


def _compute_and_store(
    req: AnalysisRequest,
    db: Database,
    model: LoadedModel,
    plan: AnalysisPlan,
    share: WorkShare,
    cancel: threading.Event | None,
    registered: RegisteredDataset,
    masks_imported: int,
    t0: float,
) -> Iterator[Event]:
    """The claim / compute / store loop, whichever engine computes."""
    cancelled = (lambda: False) if cancel is None else cancel.is_set
    claimed = share.batches(req.batch_size, cancelled)
    if req.engine == "ray" and plan.todo:  # nothing to compute: no cluster to start
        from fundus_review.app.analyze_ray import RayEngine

        computer = RayEngine(req, model)
        steps = computer.compute(plan.root, claimed)
        device = computer.describe()
    else:
        steps = _compute_local(model, plan.root, claimed)
        device = str(model.device)
    yield Started(
        total=len(plan.todo),
        reused=plan.reused,
        device=device,
        methods=model.methods,
        layers=model.layer_names,
        problems=registered.problems,
        masks_imported=masks_imported,
        engine=req.engine,
    )
    progress = Clock(len(plan.todo))
    with closing(steps):
        while True:
            if cancelled():
                progress.cancelled = True
                break
            step = next(steps, None)
            if step is None:
                break
            for _image_id, failed in step.failed:
                progress.failed.append((failed.path, failed.reason))
                yield failed
            store_batch(db, plan, step.result, share, [i for i, _ in step.failed])
            progress.computed += len(step.result.image_ids) if step.result else 0
            progress.elsewhere += step.elsewhere
            yield progress.event()
    yield Finished(
        computed=progress.computed,
        reused=plan.reused,
        failed=progress.failed,
        cancelled=progress.cancelled,
        seconds=time.perf_counter() - t0,
        db=str(req.db),
        dataset_id=registered.dataset_id,
        model_id=plan.model_id,
        run_ids=plan.run_ids,
        elsewhere=progress.elsewhere,
    )


def import_request_masks(db: Database, registered: RegisteredDataset, req: AnalysisRequest) -> int:
    """The mask import step: `req.masks_dir`, else `<dataset>/masks` when it exists, imported as
    `req.reviewer` (idempotent); returns the number of masks imported, problems go to
    `registered.problems`."""
    masks_dir = req.masks_dir
    if masks_dir is None and (registered.root / "masks").is_dir():
        masks_dir = registered.root / "masks"
    if masks_dir is None:
        return 0
    summary = import_masks(db, registered, masks_dir, req.reviewer)
    registered.problems.extend(summary.problems)
    return summary.imported


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


@dataclass
class AnalysisPlan:
    """What a run computes: its model and CAM run rows, and the images still missing a result."""

    root: Path
    model_id: int
    run_ids: dict[str, int]  # method -> CAM run id
    todo: list[tuple[str, int]]  # (rel_path, image id), in path order
    reused: int  # images whose results are already stored for every method

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.todo) // batch_size)


def plan_analysis(
    db: Database, req: AnalysisRequest, model: LoadedModel, registered: RegisteredDataset
) -> AnalysisPlan:
    """Record the model and its CAM runs; which requested images lack a result of any of them
    (all of them with `req.force`)."""
    card, bundle = model.bundle.card, model.bundle
    with db.session() as s:
        model_rec = repo.get_or_create_model(
            s, card.name, card.architecture, card.to_dict(), bundle.weights_sha256, str(bundle.path)
        )
        runs = {
            m: repo.get_or_create_cam_run(s, model_rec, m, model.layer_names, model.policy, {})
            for m in model.methods
        }
        wanted = set(registered.image_ids.values())
        if req.image_ids is not None:
            wanted &= set(req.image_ids)
        todo_ids = set(wanted)
        if not req.force:
            done_for_all = None
            for run in runs.values():
                done = repo.find_done_images(s, sorted(wanted), run)
                done_for_all = done if done_for_all is None else done_for_all & done
            todo_ids -= done_for_all or set()
        todo = repo_analysis.image_paths(s, todo_ids)
        return AnalysisPlan(
            registered.root,
            model_rec.id,
            {m: r.id for m, r in runs.items()},
            todo,
            reused=len(wanted) - len(todo),
        )


def _load(path: Path) -> np.ndarray | ImageFailed:
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


def _compute_local(
    model: LoadedModel, root: Path, claimed: Iterator[ClaimedBatch]
) -> Iterator[ComputedStep]:
    """The local engine: decoding overlaps with the model (the next claimed batch loads while
    this one computes), then ``compute_batch`` on this machine's device."""
    with model.engine() as engine, ThreadPoolExecutor(max_workers=2) as pool:
        batch = next(claimed, None)
        pending = [pool.submit(_load, root / rel) for rel, _ in batch.items] if batch else []
        while batch is not None:
            loaded = [f.result() for f in pending]
            nxt = next(claimed, None)
            pending = [pool.submit(_load, root / rel) for rel, _ in nxt.items] if nxt else []
            step = ComputedStep(None, elsewhere=batch.elsewhere)
            good: list[tuple[int, np.ndarray]] = []
            for (_rel, image_id), img in zip(batch.items, loaded, strict=True):
                if isinstance(img, ImageFailed):
                    step.failed.append((image_id, img))
                else:
                    good.append((image_id, img))
            if good:
                step.result = compute_batch(engine, model, good)
            yield step
            batch = nxt


@dataclass
class BatchResult:
    """One batch computed: per image its probabilities, input transform, target and heatmaps."""

    image_ids: list[int]
    probs: np.ndarray  # (B, classes)
    transforms: list[dict]
    target_index: np.ndarray  # (B,)
    heatmaps: dict[str, np.ndarray]  # method -> (B, h, w)


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


def store_batch(
    db: Database,
    plan: AnalysisPlan,
    batch: BatchResult | None,
    share: WorkShare | None = None,
    failed_ids: list[int] | tuple[int, ...] = (),
) -> None:
    """One transaction per batch: a cancel or a crash keeps every batch stored before it. The
    batch's claims (and those of its unreadable images) are marked finished in the same
    transaction, so no other run can see the claim gone and the results missing."""
    ids = list(batch.image_ids if batch is not None else []) + list(failed_ids)
    if not ids:
        return
    with db.session() as s:
        if share is not None:
            share.finish(s, ids)
        for k, image_id in enumerate(batch.image_ids if batch is not None else []):
            repo_analysis.save_analysed_image(
                s,
                image_id,
                plan.model_id,
                batch.probs[k].tolist(),
                batch.transforms[k],
                int(batch.target_index[k]),
                {plan.run_ids[m]: batch.heatmaps[m][k] for m in plan.run_ids},
            )
