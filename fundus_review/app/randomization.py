"""The cascading model-parameter randomisation test, run on a model's stored CAM runs.

Source: Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018 (cascading randomisation
from the top layer down); Arun et al., "Assessing the trustworthiness of saliency maps for
localizing abnormalities in medical imaging", Radiology: AI 2021 (the same test on medical
classifiers, maps compared by SSIM). The schedule of re-initialised modules per stage is
defined in ``fundus_review.inference.randomize``.

``run_randomization`` takes a model already analysed (its stored runs: method, target layers,
target policy, parameters) and, for every stage, re-computes each run's maps with the SAME
recipe on a randomised copy of the network, on the seeded image sample of ``core.sampling``
(keyed by image sha256, the images every trust check uses; ``seed`` seeds both the sample and
the re-initialisation). The CAM target class is the class
of the stored original map of each image (not re-predicted), so only the parameters differ.

Storage: per stage a derived model record named "<model> [randomized: <stage>]", with the
original's architecture, weights sha256 and bundle path and the original card plus
``card["randomization"] = {"stage", "seed", "of_model" (original model id), "schedule_version",
"targets": "original", "n_modules", "modules_sha256"}`` (the re-initialised modules, see
``app.randomization_records.randomization_card``); under it one CAM run per original run with the same
method, layers, target policy and parameters, a prediction per image (the randomised network's
own probabilities, the original input transform) and the heatmap (target index = the
original's). ``score_database`` therefore scores the randomised maps against the expert masks
with the same code as any run, and a second call computes only what is missing (``force``
recomputes). Map-to-map similarity and the pass/fail rule: ``app.randomization_similarity``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fundus_review.app.randomization_records import (
    STAGES,
    OriginalMap,
    RunRecipe,
    derived_name,
    find_derived_run,
    original_model,
    randomization_card,
    run_recipes,
    sampled_originals,
)
from fundus_review.app.selection import Ref
from fundus_review.core.sampling import DEFAULT_SAMPLE
from fundus_review.data.images import load_image
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store.db import Database

BATCH_SIZE = 8

# (model, target layer modules, methods, batch, target per image, reshape transform)
#   -> (probabilities (B, C), {method: maps (B, h, w)}). Tests pass a double that ignores the
#   model (the "edge detector" of Adebayo et al.), which must fail the test.
MapFunction = Callable[[Any, list, list[str], Any, list[int], Any], tuple[np.ndarray, dict]]


@dataclass
class RandomizationSummary:
    model_id: int = 0
    stages: list[str] = field(default_factory=list)
    images: int = 0  # sampled images with an original map, over all runs
    computed: int = 0  # randomised maps computed now
    reused: int = 0  # randomised maps already stored
    derived_models: dict[str, list[int]] = field(default_factory=dict)  # stage -> model ids
    runs: dict[tuple[int, str], int] = field(default_factory=dict)  # (run id, stage) -> run id
    problems: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0


def run_randomization(
    db: Database,
    model: Ref,
    methods: Sequence[str] | None = None,
    stages: Sequence[str] = STAGES,
    sample: int | None = DEFAULT_SAMPLE,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    force: bool = False,
    *,
    map_fn: MapFunction | None = None,
    batch_size: int = BATCH_SIZE,
) -> RandomizationSummary:
    """Compute and store the randomised maps of every stored run of ``model`` (see the module
    docstring). Unreadable images and failed batches are reported in ``problems``; the run goes
    on. ``map_fn`` replaces the CAM computation (tests)."""
    # torch is imported here, not at module import, so that the CLI's --help stays instant.
    from fundus_review.inference.bundle import load_bundle
    from fundus_review.inference.cam import canonical_method
    from fundus_review.inference.device import pick_device
    from fundus_review.inference.layers import reshape_transform_for, resolve_layer
    from fundus_review.inference.randomize import randomization_stages, randomized_copy

    t0 = time.perf_counter()
    unknown = [st for st in stages if st not in STAGES]
    if unknown:
        raise FundusReviewError(f"unknown randomisation stage(s) {unknown}; expected {STAGES}")
    summary = RandomizationSummary(stages=list(stages))
    wanted = None if methods is None else {_method_name(m, canonical_method) for m in methods}
    with db.session(read_only=True) as s:
        rec = original_model(s, model)
        info = (rec.id, rec.name, rec.architecture, dict(rec.card), rec.weights_sha256)
        bundle_path = rec.bundle_path
        runs = [r for r in run_recipes(s, rec.id) if wanted is None or r.method in wanted]
        originals = sampled_originals(s, rec.id, sample, seed)
        runs = [r for r in runs if originals.get(r.id)]
    model_id, name, _, card, weights_sha = info
    summary.model_id = model_id
    summary.images = len({o.sha256 for r in runs for o in originals[r.id]})
    if not runs:
        summary.seconds = time.perf_counter() - t0
        return summary

    if not force and _all_stored(db, model_id, runs, stages, seed, originals, summary):
        summary.seconds = time.perf_counter() - t0
        return summary  # nothing to compute: the bundle is not even loaded

    bundle = load_bundle(bundle_path)
    if bundle.weights_sha256 != weights_sha:
        raise FundusReviewError(
            f"the bundle at {bundle_path} holds other weights than model {name!r} "
            f"(sha256 {bundle.weights_sha256[:12]} instead of {weights_sha[:12]})"
        )
    _check_same_preprocessing(bundle.card.to_dict(), card, bundle_path)
    torch_device = pick_device(device)
    net = bundle.build_model(torch_device)
    reshape = reshape_transform_for(net, bundle.card.architecture)
    compute = map_fn or _cam_maps

    # Runs with the same layers, target policy and parameters share one forward pass per batch.
    groups: dict[tuple[str, str, str], list] = {}
    for r in runs:
        groups.setdefault((r.layers_json, r.target_policy, r.params_json), []).append(r)
    plans = []
    for stage in stages:
        for group in groups.values():
            schedule = randomization_stages(net, group[0].layers)[stage]
            derived_id, run_of, todo = _prepare_stage(
                db,
                info,
                bundle_path,
                stage,
                seed,
                schedule,
                group,
                originals,
                force,
                summary,
            )
            plans.append((stage, schedule, derived_id, group, run_of, _work_items(group, todo)))

    total = sum(len(items) for *_, work in plans for items in work.values())
    finished = 0
    for _stage, schedule, derived_id, group, run_of, work in plans:
        if not work:
            continue
        rand = randomized_copy(net, schedule, seed)
        layer_modules = [resolve_layer(rand, p) for p in group[0].layers]
        for methods_, items in work.items():
            for start in range(0, len(items), batch_size):
                if cancelled is not None and cancelled():
                    summary.cancelled = True
                    summary.seconds = time.perf_counter() - t0
                    return summary
                batch = items[start : start + batch_size]
                job = _Batch(bundle.card, rand, layer_modules, reshape, compute, torch_device)
                _run_batch(db, job, methods_, batch, derived_id, run_of, summary)
                finished += len(batch)
                if progress is not None:
                    progress(finished, total)
    summary.seconds = time.perf_counter() - t0
    return summary


# What decides the model input and the meaning of a target index: if the bundle's card changed
# these since the analysis, the randomised maps would not be comparable with the stored ones.
_INPUT_FIELDS = ("classes", "input_size", "resize", "crop_pct", "mean", "std")


def _check_same_preprocessing(bundle_card: dict, stored_card: dict, path: str) -> None:
    changed = [
        f for f in _INPUT_FIELDS if json.dumps(bundle_card.get(f)) != json.dumps(stored_card.get(f))
    ]
    if changed:
        raise FundusReviewError(
            f"the bundle at {path} changed {', '.join(changed)} since its maps were computed; "
            "analyse the images again with this bundle first"
        )


def _method_name(method: str, canonical: Callable[[str], str]) -> str:
    try:
        return canonical(method)
    except FundusReviewError:  # a stored run of a method this version does not know
        return method.strip().lower()


def _all_stored(
    db: Database,
    model_id: int,
    runs: list[RunRecipe],
    stages: Sequence[str],
    seed: int,
    originals: dict[int, list[OriginalMap]],
    summary: RandomizationSummary,
) -> bool:
    """True (and the summary filled in) when every randomised map is stored already."""
    found: dict[tuple[int, str], RunRecipe] = {}
    # A write session: find_done_images may copy a map stored under a same-content image.
    with db.session() as s:
        for r in runs:
            ids = [o.image_id for o in originals[r.id]]
            for stage in stages:
                d = find_derived_run(s, model_id, r, stage, seed)
                if d is None or repo.find_done_images(s, ids, d.id) != set(ids):
                    return False
                found[(r.id, stage)] = d
    for (run_id, stage), d in found.items():
        summary.runs[(run_id, stage)] = d.id
        ids = summary.derived_models.setdefault(stage, [])
        if d.model_id not in ids:
            ids.append(d.model_id)
    summary.reused = sum(len(originals[r.id]) for r in runs) * len(stages)
    return True


def _prepare_stage(
    db: Database,
    info: tuple,
    bundle_path: str,
    stage: str,
    seed: int,
    schedule: list[str],
    group: list,
    originals: dict[int, list[OriginalMap]],
    force: bool,
    summary: RandomizationSummary,
) -> tuple[int, dict[str, int], dict[int, list[OriginalMap]]]:
    """Create the stage's derived model and runs; (model id, {method: run id}, what to compute)."""
    model_id, name, architecture, card, weights_sha = info
    with db.session() as s:
        derived = repo.get_or_create_model(
            s,
            derived_name(name, stage),
            architecture,
            randomization_card(card, stage, seed, model_id, schedule),
            weights_sha,
            bundle_path,
        )
        ids = summary.derived_models.setdefault(stage, [])
        if derived.id not in ids:
            ids.append(derived.id)
        run_of: dict[str, int] = {}
        todo: dict[int, list[OriginalMap]] = {}
        for r in group:
            drun = repo.get_or_create_cam_run(
                s, derived, r.method, r.layers, r.target_policy, r.params
            )
            summary.runs[(r.id, stage)] = run_of[r.method] = drun.id
            ids = [o.image_id for o in originals[r.id]]
            done = set() if force else repo.find_done_images(s, ids, drun)
            todo[r.id] = [o for o in originals[r.id] if o.image_id not in done]
            summary.reused += len(ids) - len(todo[r.id])
    return derived.id, run_of, todo


def _work_items(group: list, todo: dict[int, list[OriginalMap]]) -> dict[tuple[str, ...], list]:
    """{methods: [OriginalMap]}: an image goes with every method that needs it for the same
    target class (the usual case: all of them); a method whose stored map explained another
    class of that image gets its own pass. Same-group runs have distinct methods (a run is
    unique per model, method, layers, target policy and parameters)."""
    per_image: dict[int, dict[int, tuple[OriginalMap, list[str]]]] = {}
    for r in group:
        for o in todo[r.id]:
            entry = per_image.setdefault(o.image_id, {}).setdefault(o.target_index, (o, []))
            entry[1].append(r.method)
    items: dict[tuple[str, ...], list] = {}
    for by_target in per_image.values():
        for o, methods in by_target.values():
            items.setdefault(tuple(methods), []).append(o)
    return items


@dataclass(frozen=True)
class _Batch:
    """What every batch of one stage and run group shares."""

    card: Any  # the bundle's ModelCard (preprocessing)
    model: Any  # the randomised copy
    layers: list  # its target layer modules
    reshape: Any
    compute: MapFunction
    device: Any


def _run_batch(
    db: Database,
    job: _Batch,
    methods: tuple[str, ...],
    batch: list[OriginalMap],
    derived_id: int,
    run_of: dict[str, int],
    summary: RandomizationSummary,
) -> None:
    """Compute and store one batch; every problem is recorded per image."""
    import torch

    from fundus_review.inference.preprocess import prepare_image

    kept: list[OriginalMap] = []
    arrays: list[np.ndarray] = []
    transforms: list[dict] = []
    for o in batch:
        try:
            arr, tf = prepare_image(load_image(o.path), job.card)
        except (FundusReviewError, OSError, ValueError) as exc:
            summary.problems.append((str(o.path), f"randomisation skipped: {exc}"))
            continue
        if tf.to_dict() != o.transform:
            summary.problems.append(
                (
                    str(o.path),
                    "randomisation skipped: the image's geometry differs from the one its "
                    "original map was computed on (file replaced?)",
                )
            )
            continue
        kept.append(o)
        arrays.append(arr)
        transforms.append(tf.to_dict())
    if not kept:
        return
    tensor = torch.from_numpy(np.stack(arrays)).to(job.device)
    try:
        probs, maps = job.compute(
            job.model,
            job.layers,
            list(methods),
            tensor,
            [o.target_index for o in kept],
            job.reshape,
        )
    except (FundusReviewError, RuntimeError, ValueError) as exc:
        for o in kept:
            summary.problems.append((str(o.path), f"randomised CAM failed: {exc}"))
        return
    with db.session() as s:
        for k, o in enumerate(kept):
            p = np.asarray(probs[k], dtype=np.float64)
            repo.save_prediction(s, o.image_id, derived_id, p, int(np.argmax(p)), transforms[k])
            for m in methods:
                repo.save_heatmap(s, run_of[m], o.image_id, o.target_index, maps[m][k])
                summary.computed += 1


def _cam_maps(
    model: Any, layers: list, methods: list[str], batch: Any, targets: list[int], reshape: Any
) -> tuple[np.ndarray, dict]:
    from fundus_review.inference.cam import CamEngine

    with CamEngine(model, layers, methods, reshape_transform=reshape) as engine:
        result = engine.run(batch, targets)
    return result.probs, result.heatmaps
