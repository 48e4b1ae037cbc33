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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fundus_review.app.analyze_events import (
    AnalysisProgress,
    Clock,
    Event,
    Finished,
    ImageFailed,
    Started,
)
from fundus_review.app.analyze_steps import (
    AnalysisRequest,
    BatchResult,
    ComputedStep,
    LoadedModel,
    compute_batch,
    load_file,
    target_policy,
)
from fundus_review.app.claims import ClaimedBatch, WorkShare
from fundus_review.app.importing import RegisteredDataset, import_masks, register_dataset
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo, repo_analysis
from fundus_review.store.db import Database, open_database

__all__ = [  # defined in app.analyze_events and app.analyze_steps; callers import them from here
    "AnalysisProgress",
    "AnalysisRequest",
    "BatchResult",
    "ComputedStep",
    "Event",
    "Finished",
    "ImageFailed",
    "LoadedModel",
    "Started",
    "compute_batch",
    "run_analysis",
    "target_policy",
]


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
    computer = None
    if req.engine == "ray" and plan.todo:  # nothing to compute: no cluster to start
        from fundus_review.app.analyze_ray import RayEngine

        computer = RayEngine(req, model)
        steps = computer.compute(plan.root, claimed)
        device = computer.describe()
    else:
        steps = _compute_local(model, plan.root, claimed)
        device = str(model.device)
    progress = Clock(len(plan.todo))
    # The engine is closed here, not only by its generator: a run cancelled (or closed) before
    # the first step never enters that generator, and its finally would never run.
    try:
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
    finally:
        if computer is not None:
            computer.close()
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
class AnalysisPlan:
    """What a run computes: its model and CAM run rows, and the images still missing a result."""

    root: Path
    model_id: int
    run_ids: dict[str, int]  # method -> CAM run id
    todo: list[tuple[str, int]]  # (rel_path, image id), in path order
    reused: int  # images whose results are already stored for every method


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


def _compute_local(
    model: LoadedModel, root: Path, claimed: Iterator[ClaimedBatch]
) -> Iterator[ComputedStep]:
    """The local engine: decoding overlaps with the model (the next claimed batch loads while
    this one computes), then ``compute_batch`` on this machine's device."""
    with model.engine() as engine, ThreadPoolExecutor(max_workers=2) as pool:
        batch = next(claimed, None)
        pending = [pool.submit(load_file, root / rel) for rel, _ in batch.items] if batch else []
        while batch is not None:
            loaded = [f.result() for f in pending]
            nxt = next(claimed, None)
            pending = [pool.submit(load_file, root / rel) for rel, _ in nxt.items] if nxt else []
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
