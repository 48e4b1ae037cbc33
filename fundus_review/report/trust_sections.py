"""The trust checks in the report: randomisation test, faithfulness (ROAD), repeatability.

Nothing is computed with a model here: the randomised maps and ROAD values are what
``fundus-review trust`` stored (seeded sample, resumable); this module reads them, summarises
them with CIs and says per run, in words, whether the check passed. A check that was not run is
said to be "not run", never silently left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fundus_review.app.faithfulness import FaithfulnessRow, faithfulness_table
from fundus_review.app.randomization_similarity import (
    RandomizationRow,
    randomization_similarity,
    randomization_verdicts,
)
from fundus_review.app.repeatability import RepeatabilityRow, compare_runs, repeatability_pairs
from fundus_review.core.sampling import DEFAULT_SAMPLE
from fundus_review.core.stats import Summary
from fundus_review.report.data import ReportData
from fundus_review.report.document import Para, Section, Table, interval, num
from fundus_review.report.headline import TrustFindings, lead_first
from fundus_review.report.headline_data import accuracy_sentences
from fundus_review.store import repo
from fundus_review.store.db import Database

FAITHFUL_BASELINES = ("random", "centre")


@dataclass
class TrustResults:
    randomization: list[RandomizationRow] = field(default_factory=list)
    verdicts: dict[int, Any] = field(default_factory=dict)  # run id -> RandomizationVerdict
    faithfulness: list[FaithfulnessRow] = field(default_factory=list)
    repeatability: list[RepeatabilityRow] = field(default_factory=list)
    # The agreement of the randomised maps: (run id, stage) -> ((mean, n) trained, randomised)
    # pointing-game hit rate on ``region`` over the same sampled images.
    region: str | None = None
    hit_rates: dict[tuple[int, str], tuple] = field(default_factory=dict)


def collect_trust(db: Database, data: ReportData, seed: int = 0) -> TrustResults:
    """Read every stored trust result of the report's real runs."""
    out = TrustResults()
    run_ids = {r.run_id for r in data.runs if not r.is_baseline}
    model_ids = sorted({r.model_id for r in data.runs if not r.is_baseline})
    for model_id in model_ids:
        rows = [
            r
            for r in randomization_similarity(db, model_id, sample=DEFAULT_SAMPLE, seed=seed)
            if r.run_id in run_ids
        ]
        out.randomization += rows
        out.verdicts.update({v.run_id: v for v in randomization_verdicts(rows)})
    out.region = lead_first(data.structures)[0] if data.structures else None
    if out.region is not None and out.randomization:
        with db.session(read_only=True) as s:
            for r in out.randomization:
                if r.randomized_run_id is None:
                    continue
                images = [p.image_id for p in r.per_image]
                out.hit_rates[(r.run_id, r.stage)] = (
                    repo.mean_score(s, r.run_id, images, out.region, "pointing_hit"),
                    repo.mean_score(s, r.randomized_run_id, images, out.region, "pointing_hit"),
                )
    if model_ids:
        out.faithfulness = [
            r for r in faithfulness_table(db, models=model_ids, seed=seed) if r.run_id in run_ids
        ]
    for pair in repeatability_pairs(db):
        if pair.run_a in run_ids and pair.run_b in run_ids:
            out.repeatability.append(
                compare_runs(db, pair.run_a, pair.run_b, sample=DEFAULT_SAMPLE, seed=seed)
            )
    return out


def faithfulness_verdict(row: FaithfulnessRow) -> str:
    """ "passed" when removing the run's most relevant pixels hurts the prediction more than the
    random and the centre maps' do (paired difference of ROAD combined, CI above 0)."""
    for kind in FAITHFUL_BASELINES:
        d = row.vs_baseline.get(kind)
        if d is None or d.ci_low is None or not d.ci_low > 0:
            return "failed"
    return "passed"


def findings(data: ReportData, trust: TrustResults) -> TrustFindings:
    label = {r.run_id: r.label for r in data.runs}
    out = TrustFindings(accuracy=accuracy_sentences(data))
    for run_id, v in trust.verdicts.items():
        if run_id in label:
            out.randomization[label[run_id]] = (v.result, _randomization_text(v))
    for row in trust.faithfulness:
        if row.run_id in label:
            out.faithfulness[label[row.run_id]] = (faithfulness_verdict(row), _road_text(row))
    return out


def _randomization_text(v: Any) -> str:
    """The headline's short form of a randomisation verdict (the details are in the section)."""
    if v.result == "not run" or v.spearman_all is None:
        return "Randomisation test: not run."
    sp = v.spearman_all
    return (
        f"Randomisation test: {v.result} (rank correlation with the trained model's maps "
        f"{_ci(sp)} once every layer is re-initialised; n = {sp.n})."
    )


def _road_text(row: FaithfulnessRow) -> str:
    word = faithfulness_verdict(row)
    rnd = row.baselines.get("random", {}).get("road_combined")
    ctr = row.baselines.get("centre", {}).get("road_combined")
    return (
        f"Faithfulness (ROAD): {word}, {_ci(row.summaries.get('road_combined'))} against "
        f"{_ci(rnd)} for a random map and {_ci(ctr)} for the centre map (n = {row.n})."
    )


def _hits(pair: tuple[tuple[float | None, int], tuple[float | None, int]] | None) -> str:
    if pair is None:
        return "-"
    (a, _), (b, n) = pair
    return f"{num(a, 2)} → {num(b, 2)} (n = {n})"


def _ci(s: Summary | None) -> str:
    return "-" if s is None else interval(s.mean, s.ci_low, s.ci_high, 2)


def trust_section(data: ReportData, trust: TrustResults) -> Section:
    label = {r.run_id: r.label for r in data.runs}
    blocks: list[Any] = [
        Para(
            "Randomisation test (Adebayo et al. 2018; cascading as Arun et al. 2021): the "
            "classifier's layers are re-initialised from the head downwards and the maps "
            "recomputed on a seeded sample of images. A method whose maps barely change "
            "(rank correlation with the trained model's maps staying high) does not depend on "
            "what the model learned and fails. Faithfulness (ROAD, Rong et al. 2022): the share "
            "of pixels the map ranks highest (or lowest) is removed and filled in from the "
            "neighbours; 'ROAD combined' is half the drop of the class probability when the most "
            "relevant pixels go minus when the least relevant go (higher = more faithful), beside "
            "the random and the centre maps. Repeatability: two models of the same task, the "
            "same method, map against map. Run `fundus-review trust` to compute them."
        )
    ]
    if trust.randomization:
        region = trust.region or "-"
        blocks.append(
            Table(
                "Randomisation test",
                [
                    "run",
                    "layers re-initialised",
                    "n",
                    "Spearman",
                    "SSIM",
                    "between images",
                    f"hit rate on {region}: trained → randomised",
                ],
                [
                    [
                        label.get(r.run_id, str(r.run_id)),
                        r.stage,
                        str(r.spearman.n),
                        _ci(r.spearman),
                        _ci(r.ssim),
                        _ci(r.between_images_spearman),
                        _hits(trust.hit_rates.get((r.run_id, r.stage))),
                    ]
                    for r in trust.randomization
                ],
                note="Spearman and SSIM of each randomised map with the trained model's map; "
                "'between images': the trained maps of different images, for reference; the hit "
                "rates are on the same sampled images (every reviewer's regions).",
            )
        )
        blocks += [Para(v.text) for v in trust.verdicts.values() if v.run_id in label]
    else:
        blocks.append(Para("Randomisation test: not run."))
    if trust.faithfulness:
        blocks.append(
            Table(
                "Faithfulness (ROAD)",
                ["run", "n", "ROAD combined", "random map", "centre map", "verdict"],
                [
                    [
                        label.get(r.run_id, str(r.run_id)),
                        str(r.n),
                        _ci(r.summaries.get("road_combined")),
                        _ci(r.baselines.get("random", {}).get("road_combined")),
                        _ci(r.baselines.get("centre", {}).get("road_combined")),
                        faithfulness_verdict(r),
                    ]
                    for r in trust.faithfulness
                ],
            )
        )
    else:
        blocks.append(Para("Faithfulness: not run."))
    if trust.repeatability:
        blocks.append(
            Table(
                "Repeatability between models of the same task",
                ["run A", "run B", "n", "Spearman", "SSIM"],
                [
                    [
                        label.get(r.run_a, str(r.run_a)),
                        label.get(r.run_b, str(r.run_b)),
                        str(r.spearman.n),
                        _ci(r.spearman),
                        _ci(r.ssim),
                    ]
                    for r in trust.repeatability
                ],
            )
        )
    return Section("Trust checks", "trust", blocks)


def trust_json(data: ReportData, trust: TrustResults) -> dict[str, Any]:
    """The trust results for report.json (summaries only; per-image values stay in the DB)."""
    label = {r.run_id: r.label for r in data.runs}

    def summ(s: Summary | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {"n": s.n, "mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high}

    return {
        "randomization": [
            {
                "run": label.get(r.run_id),
                "stage": r.stage,
                "spearman": summ(r.spearman),
                "ssim": summ(r.ssim),
                "between_images_spearman": summ(r.between_images_spearman),
            }
            for r in trust.randomization
        ],
        "randomization_verdicts": [
            {"run": label.get(v.run_id), "result": v.result, "text": v.text}
            for v in trust.verdicts.values()
        ],
        "faithfulness": [
            {
                "run": label.get(r.run_id),
                "n": r.n,
                "road_combined": summ(r.summaries.get("road_combined")),
                "baselines": {k: summ(v.get("road_combined")) for k, v in r.baselines.items()},
                "verdict": faithfulness_verdict(r),
            }
            for r in trust.faithfulness
        ],
        "repeatability": [
            {
                "run_a": label.get(r.run_a),
                "run_b": label.get(r.run_b),
                "spearman": summ(r.spearman),
                "ssim": summ(r.ssim),
            }
            for r in trust.repeatability
        ],
    }
