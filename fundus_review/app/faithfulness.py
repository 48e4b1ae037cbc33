"""Faithfulness of the stored heatmaps of a model by ROAD, on the seeded image sample (issue 11).

Method: ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution
Methods", ICML 2022); the definitions of ``road_morf``, ``road_lerf`` and ``road_combined`` are in
``fundus_review.inference.faithfulness``. Here:

- **Which images.** For each stored CAM run of the model, the seeded sample
  (``core.sampling.seeded_sample``, keyed by image sha256, default 50) of the images that have the
  run's heatmap; so every trust check with the same seed uses the same images.
- **What is measured.** The image is loaded and prepared with the bundle's card exactly as for
  the analysis; the stored heatmap (model-input resolution) and its stored target class are used
  as they are. The softmax probability of that class is the score.
- **Reference values.** On the same image, model and class, the ROAD of two maps that know
  nothing about the image, built directly on the model-input grid: ``random``
  (``core.baselines.random_map(input shape, seed, image sha256)``, smooth seeded noise with the blob
  size of a 7 x 7 CAM) and ``centre`` (``core.baselines.centre_gaussian(input shape)``). They are
  stored under the run's heatmap with the metric prefixed by ``baseline_<kind>:`` (e.g.
  ``baseline_random:road_combined``), so a run and its baselines pair up image by image.
- **Storage.** ``store.repo_faithfulness``, keyed by the parameters of ``road_params`` (measure,
  version, fractions, seed, noise, baseline definitions): a second call with the same parameters
  recomputes nothing (unless ``force``); a heatmap replaced with new pixels loses its values.
- **Table.** Per run: n images; mean road_combined / road_morf / road_lerf with percentile
  bootstrap 95 % CIs (``core.stats.summarize``), the same for each baseline, and the paired
  difference run - baseline of road_combined over the same images (``core.stats.paired_difference``,
  bootstrap CI and sign-flip p-value).
- **Cost** (demo bundle, 224 x 224, one CPU thread): about 1.7 s per image and map, so the first
  method on an image costs about 5 s (its map and the two baselines, whose values later runs of
  the same image and class reuse) and each further method about 1.7 s: 50 images take about 4-5
  min for the first method and 1.5 min for each further one. See ``bench/road_cost.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fundus_review.app.selection import Ref, resolve_model_ids
from fundus_review.core import baselines as bl
from fundus_review.core import stats
from fundus_review.core.sampling import DEFAULT_SAMPLE, seeded_sample
from fundus_review.data.images import file_sha256, load_image
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store import repo_faithfulness as rf
from fundus_review.store.db import Database

if TYPE_CHECKING:
    from fundus_review.inference.bundle import ModelBundle

# Duplicated from inference.faithfulness (a torch module) so that reading the table, e.g. for a
# report, does not import torch; test_faithfulness_app checks that they agree.
ROAD_VERSION = 1
DEFAULT_REMOVED: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
DEFAULT_NOISE = 0.01
BASELINE_KINDS = ("random", "centre")
SUMMARY_METRICS = ("road_combined", "road_morf", "road_lerf")


def baseline_metric(kind: str, metric: str) -> str:
    """The stored name of a baseline's value: ``baseline_random:road_combined``."""
    return f"baseline_{kind}:{metric}"


def road_params(
    removed: Sequence[float] = DEFAULT_REMOVED, seed: int = 0, noise: float = DEFAULT_NOISE
) -> dict[str, Any]:
    """Everything that changes a stored value; part of the storage key."""
    return {
        "measure": "road",
        "version": ROAD_VERSION,
        "removed": [float(f) for f in removed],
        "seed": int(seed),
        "noise": float(noise),
        "score": "softmax",
        "baselines": {
            "random": {"cells": bl.RANDOM_CELLS, "seed": int(seed)},
            "centre": {"sigma_fraction": bl.SIGMA_FRACTION},
        },
    }


def expected_metrics(removed: Sequence[float]) -> list[str]:
    """Every metric name one image of a run gets (its own and the baselines')."""
    own = [*SUMMARY_METRICS, "road_prob"]
    for f in removed:
        own += [f"road_morf_prob@{float(f):g}", f"road_lerf_prob@{float(f):g}"]
    return own + [baseline_metric(k, m) for k in BASELINE_KINDS for m in own]


@dataclass
class FaithfulnessSummary:
    model_id: int = 0
    run_ids: dict[str, int] = field(default_factory=dict)  # method -> run id
    images: int = 0  # distinct images in the runs' samples
    computed: int = 0  # heatmaps whose values were computed now
    reused: int = 0  # heatmaps whose values were already stored
    problems: list[tuple[str, str]] = field(default_factory=list)  # (image path, reason)
    cancelled: bool = False
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Job:
    heatmap_id: int
    run_id: int
    image_id: int


def run_faithfulness(
    db: Database,
    model: ModelBundle | str | Path,
    methods: Sequence[str] | None = None,
    sample: int | None = DEFAULT_SAMPLE,
    seed: int = 0,
    removed: Sequence[float] = DEFAULT_REMOVED,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    force: bool = False,
    noise: float = DEFAULT_NOISE,
) -> FaithfulnessSummary:
    """ROAD of every stored run of ``model`` (a bundle or its folder) on the seeded sample, with
    the random and centre baselines; stored as it goes (a cancel keeps what is finished). Problems
    are reported per image and the run goes on. ``progress(done, total)`` counts images."""
    from fundus_review.inference.bundle import load_bundle
    from fundus_review.inference.cam import canonical_method
    from fundus_review.inference.device import pick_device
    from fundus_review.inference.faithfulness import check_fractions

    t0 = time.perf_counter()
    fractions = check_fractions(removed)
    params = road_params(fractions, seed, noise)
    summary = FaithfulnessSummary(params=params)
    bundle = model if hasattr(model, "build_model") else load_bundle(model)
    card = bundle.card
    wanted = {canonical_method(m) for m in methods} if methods else None
    with db.session() as s:
        rec = repo.get_or_create_model(
            s, card.name, card.architecture, card.to_dict(), bundle.weights_sha256, bundle.path
        )
        summary.model_id = rec.id
        roots = {d.id: Path(d.root) for d in repo.list_datasets(s)}
        rows = [r for r in repo.iter_results(s, model=rec.id) if r.sha256]
    by_run: dict[int, dict[str, Any]] = {}
    # Every heatmap of the model per image: their stored baseline values (which depend on the
    # model, image, target class and parameters only) serve the other runs of the same image.
    siblings: dict[str, list[tuple[int, int]]] = {}
    for r in rows:
        siblings.setdefault(r.sha256, []).append((r.heatmap_id, r.target_index))
        if wanted is None or r.method in wanted:
            by_run.setdefault(r.run_id, {}).setdefault(r.sha256, r)  # one heatmap per content
            summary.run_ids[r.method] = r.run_id
    jobs: dict[str, list[_Job]] = {}  # image sha256 -> heatmaps to compute
    paths: dict[str, Path] = {}
    with db.session(read_only=True) as s:
        for run_rows in by_run.values():
            chosen = [run_rows[k] for k in seeded_sample(run_rows, sample, seed)]
            done = (
                set()
                if force
                else rf.heatmaps_done(
                    s, [r.heatmap_id for r in chosen], params, expected_metrics(fractions)
                )
            )
            for r in chosen:
                paths.setdefault(r.sha256, roots[r.dataset_id] / r.rel_path)
                if r.heatmap_id in done:
                    summary.reused += 1
                else:
                    jobs.setdefault(r.sha256, []).append(_Job(r.heatmap_id, r.run_id, r.image_id))
    summary.images = len(paths)
    if jobs:
        net = bundle.build_model(pick_device(device))
        todo = sorted(jobs.items())
        for n, (sha, image_jobs) in enumerate(todo, start=1):
            if cancelled is not None and cancelled():
                summary.cancelled = True
                break
            try:
                reuse = [] if force else siblings.get(sha, [])
                summary.computed += _one_image(
                    db,
                    net,
                    card,
                    paths[sha],
                    sha,
                    image_jobs,
                    reuse,
                    fractions,
                    seed,
                    noise,
                    params,
                )
            except (FundusReviewError, OSError, ValueError, IndexError) as exc:
                reason = str(getattr(exc, "reason", exc))
                summary.problems.append((str(paths[sha]), f"faithfulness not computed: {reason}"))
            if progress is not None:
                progress(n, len(todo))
    summary.seconds = time.perf_counter() - t0
    return summary


def _one_image(
    db: Database,
    net: Any,
    card: Any,
    path: Path,
    sha: str,
    jobs: list[_Job],
    siblings: list[tuple[int, int]],
    fractions: tuple[float, ...],
    seed: int,
    noise: float,
    params: dict[str, Any],
) -> int:
    """ROAD of every job's heatmap of one image, plus the baselines per target class unless a
    sibling heatmap (id, target) of the same model and image has them stored already; stored in
    one transaction. Returns how many heatmaps were stored."""
    import torch

    from fundus_review.inference.faithfulness import road_scores
    from fundus_review.inference.preprocess import prepare_batch

    if not path.is_file():
        raise FundusReviewError("image file not found (moved or deleted?)")
    if file_sha256(path) != sha:
        raise FundusReviewError("the file changed since it was analysed (different content)")
    x, _ = prepare_batch([load_image(path)], card)
    h, w = x.shape[-2:]
    maps: list[np.ndarray] = []
    targets: list[int] = []
    base_names = [n for n in expected_metrics(fractions) if n.startswith("baseline_")]
    base: dict[int, dict[str, float | None]] = {}  # target class -> stored baseline values
    with db.session(read_only=True) as s:
        stored = rf.faithfulness_values(s, [hm for hm, _ in siblings], params)
        for hm, target in siblings:
            found = stored.get(hm, {})
            if target not in base and all(n in found for n in base_names):
                base[target] = {n: found[n] for n in base_names}
        for job in jobs:
            found = repo.load_heatmap(s, job.run_id, job.image_id)
            if found is None:
                raise FundusReviewError(f"heatmap {job.heatmap_id} is no longer stored")
            heat, _, target = found
            maps.append(heat)
            targets.append(int(target))
    n_classes = len(card.classes)
    if any(not 0 <= t < n_classes for t in targets):
        raise FundusReviewError(f"a stored target class is not one of the {n_classes} classes")
    kinds = {"random": bl.random_map((h, w), seed, sha), "centre": bl.centre_gaussian((h, w))}
    classes = sorted(set(targets) - set(base))
    cams = maps + [kinds[k] for k in BASELINE_KINDS for _ in classes]
    all_targets = targets + [t for _ in BASELINE_KINDS for t in classes]
    device = next(iter(net.parameters()), torch.zeros(0)).device
    # All maps of the image in one call: one forward per fraction for all of them.
    batch = x.to(device).expand(len(cams), -1, -1, -1).contiguous()
    results = road_scores(net, batch, cams, all_targets, fractions, seed=seed, noise=noise)
    own, rest = results[: len(jobs)], results[len(jobs) :]
    for j, t in enumerate(classes):
        base[t] = {
            baseline_metric(k, m): v
            for i, k in enumerate(BASELINE_KINDS)
            for m, v in rest[i * len(classes) + j].metrics().items()
        }
    with db.session() as s:
        for job, res, target in zip(jobs, own, targets, strict=True):
            rf.save_faithfulness(s, job.heatmap_id, {**res.metrics(), **base[target]}, params)
    return len(jobs)


@dataclass(frozen=True)
class FaithfulnessRow:
    """ROAD of one CAM run over the images it was measured on, with its baselines."""

    model_id: int
    model_name: str
    run_id: int
    method: str
    layers: list[str]
    target_policy: str
    n: int
    summaries: dict[str, stats.Summary]  # road_combined / road_morf / road_lerf
    baselines: dict[str, dict[str, stats.Summary]]  # kind -> metric -> summary
    vs_baseline: dict[str, stats.PairedDifference]  # kind -> road_combined run - baseline

    def sentence(self) -> str:
        """E.g. "gradcam: ROAD combined 0.21 [0.15, 0.27] vs random map 0.02 [-0.01, 0.05]
        (difference 0.19 [0.13, 0.25]), n = 50"."""

        def fmt(lo: float | None, mid: float | None, hi: float | None) -> str:
            if mid is None:
                return "n/a"
            band = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
            return f"{mid:.2f}{band}"

        own = self.summaries["road_combined"]
        rnd = self.baselines["random"]["road_combined"]
        diff = self.vs_baseline["random"]
        return (
            f"{self.method}: ROAD combined {fmt(own.ci_low, own.mean, own.ci_high)} vs random "
            f"map {fmt(rnd.ci_low, rnd.mean, rnd.ci_high)} (difference "
            f"{fmt(diff.ci_low, diff.estimate, diff.ci_high)}), n = {self.n}"
        )


def faithfulness_table(
    db: Database,
    models: Ref | Sequence[Ref] | None = None,
    methods: Sequence[str] | None = None,
    seed: int = 0,
    removed: Sequence[float] = DEFAULT_REMOVED,
    noise: float = DEFAULT_NOISE,
    ci: float = stats.DEFAULT_CI,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
) -> list[FaithfulnessRow]:
    """One row per CAM run that has values stored under these parameters (ordered by model
    name, method and run id). Reads the database only; torch is not imported."""
    params = road_params(removed, seed, noise)
    wanted = {m.strip().lower() for m in methods} if methods else None
    with db.session(read_only=True) as s:
        model_ids = resolve_model_ids(s, models)
        runs: dict[int, tuple[Any, list[int]]] = {}
        for r in repo.iter_results(s):
            if (model_ids is None or r.model_id in model_ids) and (
                wanted is None or r.method in wanted
            ):
                runs.setdefault(r.run_id, (r, []))[1].append(r.heatmap_id)
        values = {
            run_id: rf.faithfulness_values(s, hm_ids, params)
            for run_id, (_, hm_ids) in runs.items()
        }
    out: list[FaithfulnessRow] = []
    for run_id, (first, _) in runs.items():
        per_hm = [v for _, v in sorted(values[run_id].items())]
        if not per_hm:
            continue

        def column(name: str, rows: list[dict[str, float | None]] = per_hm) -> list[float | None]:
            return [v.get(name) for v in rows]

        def summary(name: str) -> stats.Summary:
            return stats.summarize(column(name), n_resamples=n_resamples, ci=ci, seed=seed)

        own = {m: summary(m) for m in SUMMARY_METRICS}
        base = {
            k: {m: summary(baseline_metric(k, m)) for m in SUMMARY_METRICS} for k in BASELINE_KINDS
        }
        diffs = {
            k: stats.paired_difference(
                column("road_combined"),
                column(baseline_metric(k, "road_combined")),
                n_resamples=n_resamples,
                ci=ci,
                seed=seed,
            )
            for k in BASELINE_KINDS
        }
        out.append(
            FaithfulnessRow(
                model_id=first.model_id,
                model_name=first.model_name,
                run_id=run_id,
                method=first.method,
                layers=list(first.layers),
                target_policy=first.target_policy,
                n=own["road_combined"].n,
                summaries=own,
                baselines=base,
                vs_baseline=diffs,
            )
        )
    out.sort(key=lambda row: (row.model_name, row.method, row.run_id))
    return out
