"""Put the sections of the report together (shared by the HTML and the PDF)."""

from __future__ import annotations

from typing import Any

from fundus_review.report.aggregates import AggIndex
from fundus_review.report.data import ReportData
from fundus_review.report.document import Document, Gallery, Para, Plot, Section
from fundus_review.report.figures import confidence_plot, distribution_plot
from fundus_review.report.headline import TrustFindings, baseline_section, headline_section
from fundus_review.report.headline_data import (
    baseline_names,
    centre_runs,
    findings_of,
    headline_runs,
)
from fundus_review.report.sections_results import (
    appendix_table,
    correlation_section,
    groups_section,
    human_section,
    paired_section,
    similarity_section,
    summary_section,
    verdict_section,
)
from fundus_review.report.sections_run import glossary_table, run_section

CONFIDENCE_METRIC = "energy_in_mask"


def structure_plots(data: ReportData, idx: AggIndex) -> tuple[list[Plot], list[Plot]]:
    """(score distributions, confidence-vs-score) plots, one of each per structure."""
    summary = idx.summary_map()
    corr = idx.keyed("spearman_confidence")
    dists, confs = [], []
    for structure in data.structures:
        rows = [r for r in data.rows if r["structure"] == structure]
        dists.append(distribution_plot(structure, rows, summary))
        real = [r for r in rows if r.get("run_kind") != "baseline"]  # baselines have no confidence
        confs.append(confidence_plot(structure, real, corr, CONFIDENCE_METRIC))
    return dists, confs


def build_document(
    data: ReportData,
    idx: AggIndex,
    *,
    galleries: list[Gallery],
    dist_plots: list[Plot],
    conf_plots: list[Plot],
    settings: dict[str, Any],
    findings: TrustFindings | None = None,
    trust: Section | None = None,
    cdr: Section | None = None,
    mean_maps: Section | None = None,
) -> Document:
    n_images = len({r.image_id for r in data.results})
    subtitle = [
        f"{n_images} images, {len(data.runs)} CAM runs of {len(data.models)} model(s), "
        f"structures: {', '.join(data.structures) or 'none'}; reviewers: "
        f"{', '.join(data.reviewers) or 'none'}.",
        f"Seed {settings['seed']}, {settings['n_resamples']} bootstrap resamples, 95 % CIs. "
        f"Written {settings['generated']} from {data.db_name}.",
    ]
    sections = [
        headline_section(
            headline_runs(data),
            idx,
            data.structures,
            data.reviewers,
            findings if findings is not None else findings_of(data),
            baseline_names(data),
            centre_runs(data),
        ),
        baseline_section(
            headline_runs(data), idx, data.structures, data.reviewers, baseline_names(data)
        ),
        *([trust] if trust is not None else []),
        *([cdr] if cdr is not None else []),  # after the trust checks: the clinician's measure
        run_section(data, **settings),
    ]
    if not data.rows:
        sections.append(
            Section(
                "No scores",
                "no-scores",
                [
                    Para(
                        "No heatmap of this selection has an expert region on its image, so there is "
                        "nothing to score. Import masks (fundus-review import-masks) or draw regions in "
                        "the app, then write the report again."
                    )
                ],
            )
        )
    sections += [
        summary_section(data, idx),
        human_section(data, idx),
        paired_section(data, idx),
        groups_section(data, idx),
        correlation_section(data, idx, conf_plots),
        similarity_section(idx),
        *([mean_maps] if mean_maps is not None else []),
        verdict_section(data, idx),
        Section("Score distributions", "distributions", list(dist_plots)),
        Section(
            "Galleries",
            "galleries",
            [
                Para(
                    "Each tile: the original image, the heatmap, and their overlay with the expert "
                    "contour (green) and the heatmap maximum (white cross); below, the true and "
                    "predicted class, the confidence and the scores. Correct predictions come "
                    "first and, within each group, the worst-localized images first: a correct "
                    "diagnosis made while looking elsewhere is the case a clinician must see."
                )
            ]
            + list(galleries),
        ),
        Section("Appendix", "appendix", [appendix_table(data, idx), glossary_table(data.metrics)]),
    ]
    return Document("Localization agreement report", subtitle, sections)
