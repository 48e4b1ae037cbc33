"""What the first page needs from the report data: the real runs with their baselines, the
models' accuracy, readable baseline names (the sentences of ``report.headline`` use them)."""

from __future__ import annotations

from fundus_review.core.stats import proportion_ci
from fundus_review.report.aggregates import baseline_candidates
from fundus_review.report.data import ReportData
from fundus_review.report.headline import HeadlineRun, TrustFindings

BASELINE_NAMES = {
    "centre": "a Gaussian at the image centre",
    "fov-centre": "a Gaussian at the centre of the field of view",
    "uniform": "a constant map (every pixel is its maximum)",
    "random": "a random map",
}


def baseline_names(data: ReportData) -> dict[str, str]:
    out = {}
    for r in data.runs:
        if r.is_baseline:
            out[r.label] = (
                "the method's own mean map over the other images"
                if "of_run" in r.params
                else BASELINE_NAMES.get(r.method, r.method)
            )
    return out


def centre_runs(data: ReportData) -> list[str]:
    return [r.label for r in data.runs if r.is_baseline and r.method in ("centre", "fov-centre")]


def headline_runs(data: ReportData) -> list[HeadlineRun]:
    candidates = baseline_candidates(data.runs)
    return [
        HeadlineRun(r.label, r.model, r.method, tuple(candidates.get(r.label, ())))
        for r in data.runs
        if not r.is_baseline
    ]


def accuracy_sentences(data: ReportData) -> dict[str, str]:
    """Per model label: "Accuracy 85 % [78, 90] on 50 labelled images." (one prediction per
    image, whatever the number of CAM runs; images without a label are not counted)."""
    seen: dict[tuple[int, int], tuple[str, str | None]] = {}
    label_of = {r.model_id: r.model for r in data.runs if not r.is_baseline}
    for r in data.results:
        if r.model_kind != "model" or r.label is None:
            continue
        seen.setdefault((r.model_id, r.image_id), (r.label, r.predicted_class))
    counts: dict[int, list[int]] = {}
    for (model_id, _), (truth, predicted) in seen.items():
        c = counts.setdefault(model_id, [0, 0])
        c[0] += int(truth == predicted)
        c[1] += 1
    cards = {m["model"]: m.get("card") or {} for m in data.models}
    out = {}
    for model_id, (k, n) in counts.items():
        p, lo, hi = proportion_ci(k, n)
        label = label_of.get(model_id, str(model_id))
        text = f"Accuracy {100 * p:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}] on {n} labelled images"
        out[label] = text + _training_note(cards.get(label, {})) + "."
    return out


def _training_note(card: dict) -> str:
    """A model trained by `fundus-review train` records its held-out accuracy: say it, since the
    accuracy above counts the training images too when they are in the report's set."""
    t = card.get("training") or {}
    if not isinstance(t, dict) or t.get("val_accuracy") is None or not t.get("n_val"):
        return ""
    return (
        f" (it was trained on {t.get('n_train', '?')} images, which count here if they are in "
        f"this set; its held-out accuracy was {100 * float(t['val_accuracy']):.0f} % on "
        f"{t['n_val']} images)"
    )


def findings_of(data: ReportData) -> TrustFindings:
    return TrustFindings(accuracy=accuracy_sentences(data))
