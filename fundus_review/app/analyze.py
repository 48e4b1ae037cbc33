"""Run a model bundle and its CAM methods over a dataset, storing results as they are produced.

`run_analysis` is a generator of events: the CLI draws a progress bar from them, the GUI worker
forwards them as Qt signals. Each finished batch is committed in its own transaction, so a
cancel (event or Ctrl-C) keeps everything finished before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fundus_review.app.importing import RegisteredDataset, import_masks, register_dataset
from fundus_review.data.images import load_image
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store.db import Database, open_database
from fundus_review.store.schema import CamRun, Image, ModelRecord


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
    masks_dir: Path | None = None  # None: <dataset>/masks when it exists
    import_masks: bool = True  # False: the caller keeps the masks current (the GUI does)
    reviewer: str = "reference"
    device: str | None = None
    batch_size: int = 16
    force: bool = False
    image_ids: list[int] | None = None  # restrict to these images (GUI: current image/selection)


@dataclass
class Started:
    total: int  # images to compute
    reused: int  # images whose results were already stored
    device: str
    methods: list[str]
    layers: list[str]
    problems: list[tuple[str, str]]  # found while registering the dataset
    masks_imported: int = 0


@dataclass
class Progress:
    done: int
    total: int
    failed: int
    images_per_s: float
    eta_s: float | None


@dataclass
class ImageFailed:
    path: str
    reason: str


@dataclass
class Finished:
    computed: int
    reused: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    db: str = ""
    dataset_id: int = 0
    model_id: int = 0
    run_ids: dict[str, int] = field(default_factory=dict)


Event = Started | Progress | ImageFailed | Finished


def target_policy(target: str, classes: list[str]) -> tuple[str, int | None]:
    """Validate a --target value; returns (policy string stored with the run, class index)."""
    if target in ("", "predicted"):
        return "predicted", None
    if target not in classes:
        raise FundusReviewError(
            f"target class {target!r} is not one of the model's classes: {', '.join(classes)}"
        )
    return f"class:{target}", classes.index(target)


def _load(path: Path) -> np.ndarray | ImageFailed:
    try:
        return load_image(path)
    except FundusReviewError as exc:
        return ImageFailed(str(path), str(getattr(exc, "reason", exc)))
    except OSError as exc:
        return ImageFailed(str(path), f"cannot read file: {exc}")


def run_analysis(
    req: AnalysisRequest, cancel: threading.Event | None = None, db: Database | None = None
) -> Iterator[Event]:
    """Analyze every image of `req.dataset`; yields Started, then Progress/ImageFailed, then Finished."""
    # torch is imported here, not at module import, so that `fundus-review --help` stays instant.
    from fundus_review.inference.bundle import load_bundle
    from fundus_review.inference.cam import CamEngine, canonical_method
    from fundus_review.inference.device import pick_device
    from fundus_review.inference.layers import (
        default_target_layers,
        reshape_transform_for,
        resolve_layer,
    )
    from fundus_review.inference.preprocess import prepare_batch

    t0 = time.perf_counter()
    methods = [canonical_method(m) for m in req.methods]
    bundle = load_bundle(req.bundle)
    card = bundle.card
    policy, target_index = target_policy(req.target, card.classes)

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
        masks_imported = _maybe_import_masks(db, registered, req) if req.import_masks else 0

        device = pick_device(req.device)
        model = bundle.build_model(device)
        layer_names = (
            list(req.layers or [])
            or card.target_layers
            or default_target_layers(model, card.architecture)
        )
        layers = [resolve_layer(model, name) for name in layer_names]

        with db.session() as s:
            model_rec = repo.get_or_create_model(
                s,
                card.name,
                card.architecture,
                card.to_dict(),
                bundle.weights_sha256,
                str(bundle.path),
            )
            runs = {
                m: repo.get_or_create_cam_run(s, model_rec, m, layer_names, policy, {})
                for m in methods
            }
            model_id = model_rec.id
            run_ids = {m: r.id for m, r in runs.items()}
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
            todo = sorted((s.get(Image, i).rel_path, i) for i in todo_ids)
        reused = len(wanted) - len(todo)
        yield Started(
            total=len(todo),
            reused=reused,
            device=str(device),
            methods=methods,
            layers=layer_names,
            problems=registered.problems,
            masks_imported=masks_imported,
        )

        failed: list[tuple[str, str]] = []
        computed = 0
        cancelled = False
        batches = [todo[i : i + req.batch_size] for i in range(0, len(todo), req.batch_size)]
        root = registered.root
        engine = CamEngine(
            model,
            layers,
            methods,
            reshape_transform=reshape_transform_for(model, card.architecture),
        )
        # Decoding JPEGs overlaps with the model: the next batch loads while this one runs.
        with engine, ThreadPoolExecutor(max_workers=2) as pool:
            pending = [pool.submit(_load, root / rel) for rel, _ in batches[0]] if batches else []
            compute_start = time.perf_counter()
            for bi, batch in enumerate(batches):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                loaded = [f.result() for f in pending]
                if bi + 1 < len(batches):
                    pending = [pool.submit(_load, root / rel) for rel, _ in batches[bi + 1]]
                good: list[tuple[int, np.ndarray]] = []
                for (_rel, image_id), img in zip(batch, loaded, strict=True):
                    if isinstance(img, ImageFailed):
                        failed.append((img.path, img.reason))
                        yield img
                    else:
                        good.append((image_id, img))
                if good:
                    tensor, transforms = prepare_batch([img for _, img in good], card)
                    tensor = tensor.to(device)
                    targets = None if target_index is None else [target_index] * len(good)
                    result = engine.run(tensor, targets)
                    with db.session() as s:
                        model_rec = s.get(ModelRecord, model_id)
                        for k, (image_id, _) in enumerate(good):
                            image = s.get(Image, image_id)
                            repo.save_prediction(
                                s,
                                image,
                                model_rec,
                                result.probs[k].tolist(),
                                int(np.argmax(result.probs[k])),
                                transforms[k].to_dict(),
                            )
                            for m in methods:
                                run = s.get(CamRun, run_ids[m])
                                repo.save_heatmap(
                                    s,
                                    run,
                                    image,
                                    int(result.target_index[k]),
                                    result.heatmaps[m][k],
                                )
                    computed += len(good)
                elapsed = time.perf_counter() - compute_start
                done = computed + len(failed)
                rate = computed / elapsed if elapsed > 0 else 0.0
                eta = (len(todo) - done) / rate if rate > 0 else None
                yield Progress(done, len(todo), len(failed), rate, eta)
        yield Finished(
            computed=computed,
            reused=reused,
            failed=failed,
            cancelled=cancelled,
            seconds=time.perf_counter() - t0,
            db=str(req.db),
            dataset_id=registered.dataset_id,
            model_id=model_id,
            run_ids=run_ids,
        )
    finally:
        if own_db:
            db.close()


def _maybe_import_masks(db: Database, registered: RegisteredDataset, req: AnalysisRequest) -> int:
    masks_dir = req.masks_dir
    if masks_dir is None and (registered.root / "masks").is_dir():
        masks_dir = registered.root / "masks"
    if masks_dir is None:
        return 0
    summary = import_masks(db, registered, masks_dir, req.reviewer)
    registered.problems.extend(summary.problems)
    return summary.imported
