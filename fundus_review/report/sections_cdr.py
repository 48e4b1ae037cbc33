"""The report's "Cup-to-disc ratio" section and its report.json part.

Present only when some image has a reviewer's optic disc and optic cup. It states the vertical
CDR each reviewer's regions give (``app.cdr``), how far reviewers are from one another and from
the dataset's own expert CDR (mean absolute difference, bootstrap CI), and per model how its
output relates to the image's vertical CDR (Spearman with bootstrap CI): the predicted class's
probability (the report's "confidence") and, when the model has a class named "glaucoma", that
class's probability (a glaucoma classifier that reasons like a clinician should rise with CDR).
An image's vertical CDR here is the mean over the reviewers who measured it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fundus_review.app.cdr import CdrAgreement, CdrRow, against_dataset, between_reviewers, cdr_rows
from fundus_review.core.stats import DEFAULT_RESAMPLES, Correlation, Summary, spearman
from fundus_review.report.data import ReportData
from fundus_review.report.document import Para, Section, Table, interval
from fundus_review.store.db import Database

__all__ = ["CdrFindings", "cdr_json", "cdr_section", "collect_cdr"]

GLAUCOMA_CLASS = "glaucoma"
# Clinical rule of thumb quoted in the section: a vertical CDR above ~0.5-0.6 suggests glaucoma.
SUSPICIOUS_VCDR = 0.6


@dataclass(frozen=True)
class CdrConfidence:
    """Spearman of one model output (``quantity``) with the images' vertical CDR."""

    model: str
    quantity: str  # "confidence" or "p(glaucoma)"
    correlation: Correlation


@dataclass
class CdrFindings:
    rows: list[CdrRow]
    between: list[CdrAgreement] = field(default_factory=list)
    against: list[CdrAgreement] = field(default_factory=list)
    confidence: list[CdrConfidence] = field(default_factory=list)


def image_vertical_cdr(rows: list[CdrRow]) -> dict[int, float]:
    """{image id: mean vertical CDR over the reviewers who measured it}."""
    acc: dict[int, list[float]] = {}
    for r in rows:
        if r.vertical is not None:
            acc.setdefault(r.image_id, []).append(r.vertical)
    return {i: sum(v) / len(v) for i, v in acc.items()}


def _model_outputs(data: ReportData) -> dict[tuple[str, str], dict[int, float]]:
    """{(model label, quantity): {image id: value}} of the real models' predictions."""
    model_of = {run.run_id: run.model for run in data.runs}
    out: dict[tuple[str, str], dict[int, float]] = {}
    for r in data.results:
        if r.model_kind != "model":
            continue  # baselines and randomised copies do not diagnose
        model = model_of.get(r.run_id, r.model_name)
        out.setdefault((model, "confidence"), {})[r.image_id] = float(r.confidence)
        names = [c.casefold() for c in r.classes]
        if GLAUCOMA_CLASS in names:
            p = float(r.probs[names.index(GLAUCOMA_CLASS)])
            out.setdefault((model, f"p({GLAUCOMA_CLASS})"), {})[r.image_id] = p
    return out


def collect_cdr(
    db: Database, data: ReportData, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES
) -> CdrFindings | None:
    """The CDR rows of the report's datasets and reviewers with their comparisons; None when
    no image has both a disc and a cup."""
    sel = data.selection
    rows = cdr_rows(db, sel.get("dataset"), sel.get("reviewers"))
    if not rows:
        return None
    found = CdrFindings(rows, between_reviewers(rows, seed), against_dataset(rows, seed))
    vcdr = image_vertical_cdr(rows)
    for (model, quantity), values in sorted(_model_outputs(data).items()):
        common = sorted(values.keys() & vcdr.keys())
        if common:
            corr = spearman(
                [values[i] for i in common], [vcdr[i] for i in common], n_resamples, seed=seed
            )
            found.confidence.append(CdrConfidence(model, quantity, corr))
    return found


def _mad(s: Summary) -> str:
    return interval(s.mean, s.ci_low, s.ci_high, 3)


def _rho(c: Correlation) -> str:
    return interval(c.rho, c.ci_low, c.ci_high, 2)


def cdr_section(found: CdrFindings | None) -> Section | None:
    """The section, or None when there is nothing to measure."""
    if found is None or not found.rows:
        return None
    vcdr = image_vertical_cdr(found.rows)
    high = sum(v > SUSPICIOUS_VCDR for v in vcdr.values())
    blocks: list[Any] = [
        Para(
            f"{len(found.rows)} disc + cup outlines on {len({r.image_id for r in found.rows})} "
            f"images. Vertical CDR = the cup's height / the disc's height (rows spanned by each "
            f"reviewer's regions); area CDR = cup area / disc area. A vertical CDR above "
            f"0.5-0.6 suggests glaucoma: {high} of {len(vcdr)} images are above "
            f"{SUSPICIOUS_VCDR} (mean over reviewers). Per-image values: "
            f'`fundus-review export cdr OUT.csv`, and report.json under "cdr".'
        )
    ]
    comparisons = [*found.between, *found.against]
    if comparisons:
        blocks.append(
            Table(
                "Agreement on vertical CDR",
                ["reviewer", "compared with", "n images", "mean absolute difference [95 % CI]"],
                [
                    [
                        c.a,
                        "the dataset's expert CDR" if c.b == "dataset" else c.b,
                        str(c.mad.n),
                        _mad(c.mad),
                    ]
                    for c in comparisons
                ],
                note="The dataset's expert CDR is its labels.csv column (DRISHTI-GS1: "
                "cdr_expert_mean, the mean of its experts' own estimates).",
            )
        )
    else:
        blocks.append(Para("One reviewer and no expert CDR column: nothing to compare with."))
    if found.confidence:
        blocks.append(
            Table(
                "Model output vs vertical CDR",
                ["model", "output", "n images", "Spearman ρ [95 % CI]"],
                [
                    [c.model, c.quantity, str(c.correlation.n), _rho(c.correlation)]
                    for c in found.confidence
                ],
                note="confidence = the predicted class's probability; p(glaucoma) = the "
                "glaucoma class's probability, which should rise with the CDR if the model "
                "reads the optic nerve head as a clinician does.",
            )
        )
    else:
        blocks.append(Para("No model prediction on these images: no relation to the CDR."))
    return Section("Cup-to-disc ratio", "cdr", blocks)


def cdr_json(found: CdrFindings | None) -> dict[str, Any] | None:
    """report.json "cdr": rows (one per image x reviewer), comparisons, model relations."""
    if found is None:
        return None
    return {
        "definitions": {
            "vertical": "rows spanned by the cup / rows spanned by the disc",
            "horizontal": "columns spanned by the cup / columns spanned by the disc",
            "area": "cup pixels / disc pixels",
        },
        "rows": [r.to_dict() for r in found.rows],
        "between_reviewers": [c.to_dict() for c in found.between],
        "against_dataset": [c.to_dict() for c in found.against],
        "model_vs_vertical_cdr": [
            {"model": c.model, "quantity": c.quantity, **c.correlation.to_dict()}
            for c in found.confidence
        ],
    }
