"""How much the randomisation test changed each run's maps, and whether the method passes.

Sources: Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018 (model-parameter
randomisation test, maps compared by Spearman rank correlation and SSIM); Arun et al.,
"Assessing the trustworthiness of saliency maps for localizing abnormalities in medical
imaging", Radiology: AI 2021 (the test on medical classifiers, cascading from the logits down).

Definitions (``randomization_similarity``), per original run x stage, over the images of the
seeded sample that have both the original and the randomised map (``app.randomization``):

- Both maps are compared as stored, on the model-input grid (the same InputTransform, so pixel
  (i, j) of one is pixel (i, j) of the other).
- Spearman: ``core.similarity.heatmap_rank_correlation`` (rank correlation of all pixel
  values). When the randomised map is constant (a CAM that the ReLU zeroed everywhere), it keeps
  no ranking of the original at all and counts as rho = 0 (``n_constant`` says how often); an
  image whose ORIGINAL map is constant has no ranking to keep and is left out.
- SSIM: ``core.ssim.ssim`` (Wang et al. 2004, maps min-max normalised).
- Each is summarised as the mean over images with a 95 % percentile-bootstrap CI
  (``core.stats.summarize``, 2000 resamples, seed 0).
- For scale, ``between_images`` holds the same two measures between the ORIGINAL maps of
  different images (image k and k + 1 of the sample, in sample order, cyclic; the sample order
  is a hash order, so these are random pairs): Arun et al.'s "randomization baseline", which
  averages the SSIM of 50 random pairs of the trained model's maps.

Pass/fail rule (``randomization_verdicts``): a method PASSES the test when, at the "all" stage
(every weight re-initialised), the upper bound of the 95 % CI of the mean Spearman between
randomised and original maps is below ``SPEARMAN_PASS_BELOW`` = 0.5, i.e. the maps changed
substantially; it FAILS otherwise, and the result is "not run" when the "all" stage has no
pair. The threshold is this project's choice: Adebayo et al. read the decrease from plots and
Arun et al. compare the SSIM with their "randomization baseline" (above), neither fixes a number;
below 0.5, rho^2 < 0.25: the ranks of one map explain under a quarter of the variance of the
other's. ``passes_at_last_block`` applies the same rule at the "last-block" stage (head and
last block re-initialised): the stronger result that the maps already depend on the top layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fundus_review.app.randomization_records import (
    STAGES,
    find_derived_run,
    original_model,
    run_recipes,
    sampled_originals,
)
from fundus_review.app.selection import Ref
from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.sampling import DEFAULT_SAMPLE
from fundus_review.core.similarity import heatmap_rank_correlation, resample_heatmap
from fundus_review.core.ssim import ssim
from fundus_review.core.stats import Summary, summarize
from fundus_review.store import repo
from fundus_review.store.db import Database

SPEARMAN_PASS_BELOW = 0.5
PASS_STAGE = "all"
EARLY_STAGE = "last-block"


@dataclass(frozen=True)
class ImageSimilarity:
    image_id: int
    spearman: float | None  # None: the original map is constant
    ssim: float
    randomized_constant: bool


@dataclass(frozen=True)
class RandomizationRow:
    run_id: int
    method: str
    layers: list[str]
    target_policy: str
    stage: str
    randomized_run_id: int | None  # None: the stage was not computed
    spearman: Summary
    ssim: Summary
    n_constant: int
    between_images_spearman: Summary
    between_images_ssim: Summary
    per_image: list[ImageSimilarity] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (image id, why left out)


@dataclass(frozen=True)
class RandomizationVerdict:
    run_id: int
    method: str
    result: str  # "passed" | "failed" | "not run"
    passes_at_last_block: bool | None
    spearman_all: Summary | None
    text: str


def compare_maps(original, randomized, image_id: int = 0) -> ImageSimilarity | str:  # noqa: ANN001
    """Spearman and SSIM of one pair (see the module docstring); a reason string when the pair
    cannot be compared."""
    try:
        if randomized.shape != original.shape:
            randomized = resample_heatmap(randomized, original.shape)
        s_val = ssim(original, randomized)
        rho = heatmap_rank_correlation(original, randomized)
    except MetricInputError as exc:
        return str(exc)
    constant = float(randomized.max()) == float(randomized.min())
    if rho is None:
        original_constant = float(original.max()) == float(original.min())
        rho = None if original_constant else 0.0
    return ImageSimilarity(image_id, rho, s_val, constant)


def randomization_similarity(
    db: Database,
    model: Ref,
    methods: Sequence[str] | None = None,
    stages: Sequence[str] = STAGES,
    sample: int | None = DEFAULT_SAMPLE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[RandomizationRow]:
    """One row per stored original run of ``model`` x stage, in run then stage order."""
    wanted = None if methods is None else {m.strip().lower() for m in methods}
    rows: list[RandomizationRow] = []
    with db.session(read_only=True) as s:
        rec = original_model(s, model)
        originals = sampled_originals(s, rec.id, sample, seed)
        runs = [
            r
            for r in run_recipes(s, rec.id)
            if originals.get(r.id) and (wanted is None or _canonical(r.method) in wanted)
        ]
        derived = {
            (r.id, st): find_derived_run(s, rec.id, r, st, seed) for r in runs for st in stages
        }
    total, done = len(runs) * len(stages), 0
    for r in runs:
        sample_ids = [o.image_id for o in originals[r.id]]
        maps = _load_maps(db, r.id, sample_ids)
        between = _between_images([maps[i] for i in sample_ids if i in maps])
        for stage in stages:
            if cancelled is not None and cancelled():
                return rows
            drun = derived[(r.id, stage)]
            per_image: list[ImageSimilarity] = []
            problems: list[tuple[int, str]] = []
            if drun is not None:
                rand = _load_maps(db, drun.id, sample_ids)
                for image_id in sample_ids:
                    if image_id not in maps or image_id not in rand:
                        continue
                    got = compare_maps(maps[image_id], rand[image_id], image_id)
                    if isinstance(got, str):
                        problems.append((image_id, got))
                    else:
                        per_image.append(got)
            rows.append(
                RandomizationRow(
                    run_id=r.id,
                    method=r.method,
                    layers=r.layers,
                    target_policy=r.target_policy,
                    stage=stage,
                    randomized_run_id=None if drun is None else drun.id,
                    spearman=summarize([p.spearman for p in per_image]),
                    ssim=summarize([p.ssim for p in per_image]),
                    n_constant=sum(p.randomized_constant for p in per_image),
                    between_images_spearman=between[0],
                    between_images_ssim=between[1],
                    per_image=per_image,
                    problems=problems,
                )
            )
            done += 1
            if progress is not None:
                progress(done, total)
    return rows


def _canonical(method: str) -> str:
    return method.strip().lower()


def _load_maps(db: Database, run_id: int, image_ids: list[int]) -> dict:
    out = {}
    with db.session(read_only=True) as s:
        for image_id in image_ids:
            found = repo.load_heatmap(s, run_id, image_id)
            if found is not None:
                out[image_id] = found[0]
    return out


def _between_images(maps: list) -> tuple[Summary, Summary]:
    """Spearman and SSIM between the original maps of consecutive sample images (cyclic)."""
    rhos: list[float | None] = []
    ssims: list[float | None] = []
    if len(maps) >= 2:
        for k in range(len(maps)):
            a, b = maps[k], maps[(k + 1) % len(maps)]
            if len(maps) == 2 and k == 1:
                break  # one pair only: (0, 1) and (1, 0) are the same pair
            if a.shape != b.shape:
                b = resample_heatmap(b, a.shape)
            rhos.append(heatmap_rank_correlation(a, b))
            ssims.append(ssim(a, b))
    return summarize(rhos), summarize(ssims)


def stage_passes(spearman: Summary) -> bool | None:
    """The rule on one stage: upper CI bound of the mean Spearman below the threshold; None when
    no pair was compared."""
    if spearman.n == 0 or spearman.ci_high is None:
        return None
    return spearman.ci_high < SPEARMAN_PASS_BELOW


def randomization_verdicts(rows: Sequence[RandomizationRow]) -> list[RandomizationVerdict]:
    """The pass/fail verdict of every original run in ``rows`` (module docstring), run order."""
    by_run: dict[int, dict[str, RandomizationRow]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, {})[row.stage] = row
    out: list[RandomizationVerdict] = []
    for run_id, stages in by_run.items():
        any_row = next(iter(stages.values()))
        final = stages.get(PASS_STAGE)
        early = stages.get(EARLY_STAGE)
        verdict = None if final is None else stage_passes(final.spearman)
        early_ok = None if early is None else stage_passes(early.spearman)
        result = "not run" if verdict is None else "passed" if verdict else "failed"
        out.append(
            RandomizationVerdict(
                run_id=run_id,
                method=any_row.method,
                result=result,
                passes_at_last_block=early_ok,
                spearman_all=None if final is None else final.spearman,
                text=_verdict_text(any_row.method, result, final, early_ok),
            )
        )
    return out


def _verdict_text(
    method: str, result: str, final: RandomizationRow | None, early_ok: bool | None
) -> str:
    if result == "not run" or final is None:
        return f"{method}: randomisation test not run (no randomised maps of every layer)."
    sp = final.spearman
    where = f"{sp.mean:.2f} [{sp.ci_low:.2f}, {sp.ci_high:.2f}], n = {sp.n}"
    if result == "passed":
        early = " Already with only the head and last block randomised." if early_ok else ""
        return (
            f"{method} passes the randomisation test: with every weight re-initialised its maps "
            f"keep a rank correlation of {where} with the trained model's (passes below "
            f"{SPEARMAN_PASS_BELOW:g}).{early}"
        )
    return (
        f"{method} FAILS the randomisation test: with every weight re-initialised its maps still "
        f"correlate {where} with the trained model's (passes below {SPEARMAN_PASS_BELOW:g}); "
        "they do not depend on what the model learned."
    )
