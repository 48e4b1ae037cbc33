"""The report's files: what each holds and the order they are written in.

``write_files`` writes every file into one folder (the staging folder of ``report.folder``) and
returns the file name of each; nothing here knows where the report finally lives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fundus_review.core.metrics import describe_metric
from fundus_review.report.data import ROW_FIELDS, ReportData
from fundus_review.report.document import Document, Para
from fundus_review.report.heatmaps import HeatmapPass
from fundus_review.report.request import ReportRequest

# Keys of ReportResult.paths -> file names, in the order the CLI lists them.
REPORT_FILES = {
    "html": "report.html",
    "pdf": "report.pdf",
    "csv": "scores.csv",
    "aggregates_csv": "aggregates.csv",
    "agreement_csv": "reviewer_agreement.csv",
    "json": "report.json",
}
AGREEMENT_FIELDS = ["structure", "reviewer", "image_id", "image", "iou", "dice"]


@dataclass
class Findings:
    """Everything computed from the database for one report (the database is closed by now)."""

    data: ReportData
    heat: HeatmapPass
    aggregates: list[dict[str, Any]]
    agreements: list[dict[str, Any]]
    gallery_index: list[dict[str, Any]]
    trust: Any = None  # report.trust_sections.TrustResults: the stored trust checks
    cdr: Any = None  # report.sections_cdr.CdrFindings; None when no image has a disc and a cup
    mean_maps: Any = None  # report.sections_mean_maps.MeanMapFindings (registered mean maps)


def report_json(
    request: ReportRequest, found: Findings, doc: Document | None = None
) -> dict[str, Any]:
    """report.json: every table plus what was run; no clock time, so it is reproducible."""
    from fundus_review.report.sections_cdr import cdr_json
    from fundus_review.report.sections_mean_maps import mean_maps_json
    from fundus_review.report.trust_sections import trust_json

    data, r = found.data, request
    headline = next((s for s in doc.sections if s.anchor == "headline"), None) if doc else None
    return {
        "format": "fundus-review agreement report",
        "version": 1,
        "seed": r.seed,
        "n_resamples": r.n_resamples,
        "ci": 0.95,
        "ci_methods": {"pointing_hit": "wilson", "other metrics": "percentile bootstrap"},
        "confidence_thresholds": list(data.thresholds),
        "gallery": {"cap": r.gallery_cap, "metric": r.gallery_metric, "by": list(r.gallery_by)},
        "database": data.db_name,
        "selection": data.selection,
        "scoring_parameters": r.params.to_dict(),
        "datasets": data.datasets,
        "models": data.models,
        "runs": [asdict(run) for run in data.runs],
        "structures": data.structures,
        "reviewers": data.reviewers,
        "software": data.software,
        "metrics": {
            m: {
                "description": describe_metric(m).description,
                "higher_is_better": describe_metric(m).higher_is_better,
            }
            for m in data.metrics
        },
        "problems": [list(p) for p in data.problems],
        "scores": data.rows,
        "aggregates": found.aggregates,
        "reviewer_agreement": found.agreements,
        "heatmap_similarity": found.heat.similarity,
        "verdicts": data.verdicts,
        "region_provenance": data.region_provenance,
        "galleries": found.gallery_index,
        # The first page's sentences, as a clinician reads them.
        "headline": [b.text for b in headline.blocks if isinstance(b, Para)] if headline else [],
        "trust": trust_json(data, found.trust) if found.trust is not None else None,
        # Cup-to-disc ratios per image x reviewer and their comparisons (None: no disc + cup).
        "cdr": cdr_json(found.cdr),
        # Registered dataset-mean heatmaps: settings and every group's n and shares with CIs.
        "mean_maps": mean_maps_json(found.mean_maps),
    }


def write_files(
    folder: Path,
    request: ReportRequest,
    found: Findings,
    doc: Document,
    pngs: dict[int, bytes],
    say: Callable[[str], None],
) -> dict[str, str]:
    """Write every report file into ``folder``; returns {key: file name} (see REPORT_FILES)."""
    # Imported here: the writers pull in matplotlib (see write_report).
    from fundus_review.report.html import render_html
    from fundus_review.report.pdf import render_pdf
    from fundus_review.report.tables import write_aggregates_csv, write_csv, write_json

    name = REPORT_FILES
    data = found.data
    write_csv(folder / name["csv"], data.rows, [*ROW_FIELDS, *data.metrics])
    write_aggregates_csv(folder / name["aggregates_csv"], found.aggregates)
    write_csv(folder / name["agreement_csv"], found.agreements, AGREEMENT_FIELDS)
    write_json(folder / name["json"], report_json(request, found, doc))
    render_html(doc, folder / name["html"], pngs)
    say("writing the PDF")
    render_pdf(doc, folder / name["pdf"], pngs)
    return dict(name)
