"""The agreement report: HTML + PDF for people, CSV + JSON for checking and further analysis.

``write_report(db, out_dir)`` first scores whatever is not scored yet (cheap when it is), then
reads every per-image score of the selection, computes the aggregates with a stated seed, and
writes into ``out_dir``:

- ``report.html``: self-contained (inline CSS, every image and plot embedded as base64 PNG);
- ``report.pdf``: the same sections;
- ``scores.csv``: one row per heatmap x structure x reviewer, every metric;
- ``aggregates.csv``: every aggregate (summary, groupings, comparisons, correlations, ...);
- ``reviewer_agreement.csv``: reviewer-vs-reviewer IoU/Dice per image;
- ``report.json``: all of the above plus what was run (models, hashes, runs, settings, versions).

The CSV and JSON depend on the database, the selection and the seed only (no clock time), so the
same database gives byte-identical tables; the HTML/PDF also state when they were written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fundus_review.app.scoring import (
    ScoringParams,
    ScoringSummary,
    default_fov_cache,
    score_database,
)
from fundus_review.core import geometry
from fundus_review.core.metrics import describe_metric
from fundus_review.data.fov import FovCache
from fundus_review.errors import FundusReviewError
from fundus_review.store.db import Database, open_database

__all__ = ["ReportResult", "write_report"]

MIN_RESAMPLES = 1000


@dataclass
class ReportResult:
    out_dir: Path
    paths: dict[str, Path]  # html, pdf, csv, aggregates_csv, agreement_csv, json
    scoring: ScoringSummary
    rows: int  # per-image score rows
    aggregates: int
    problems: list[tuple[str, str]] = field(default_factory=list)


def _open(db: Database | str | Path) -> tuple[Database, bool]:
    if isinstance(db, Database):
        return db, False
    text = str(db)
    if "://" not in text and not Path(text).expanduser().is_file():
        raise FundusReviewError(f"{text}: no such database file; run `fundus-review analyze` first")
    return open_database(db), True


def _check(
    n_resamples: int,
    gallery_cap: int,
    gallery_metric: str,
    metrics: Sequence[str],
    gallery_by: Sequence[str],
) -> None:
    if n_resamples < MIN_RESAMPLES:
        raise FundusReviewError(
            f"n_resamples must be at least {MIN_RESAMPLES} for stable 95 % intervals, "
            f"got {n_resamples}"
        )
    if gallery_cap < 0:
        raise FundusReviewError(f"gallery cap must be >= 0, got {gallery_cap}")
    if gallery_metric not in metrics:
        raise FundusReviewError(
            f"unknown gallery metric {gallery_metric!r}; choose one of {', '.join(metrics)}"
        )
    from fundus_review.report.gallery import GALLERY_GROUPINGS

    unknown = [g for g in gallery_by if g not in GALLERY_GROUPINGS]
    if unknown or len(set(gallery_by)) != len(gallery_by):
        raise FundusReviewError(
            f"gallery grouping {', '.join(gallery_by) or '(none)'} is not valid; use any of "
            f"{', '.join(GALLERY_GROUPINGS)}, each at most once"
        )


def write_report(
    db: Database | str | Path,
    out_dir: str | Path,
    *,
    dataset: Any = None,
    models: Any = None,
    methods: Sequence[str] | None = None,
    structures: Sequence[str] | None = None,
    reviewers: Sequence[str] | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
    gallery_cap: int = 24,
    thresholds: Sequence[float] = (0.5, 0.8),
    gallery_metric: str = "energy_in_mask",
    gallery_by: Sequence[str] = ("outcome", "class"),
    params: ScoringParams | None = None,
    fov_cache: FovCache | None = None,
    rasterize: Any = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Score what is missing, then write the report files into ``out_dir``; see the module doc.

    ``db``: an open Database, a SQLite file or a SQLAlchemy URL. ``dataset``/``models``: ids or
    names (several allowed); ``methods``/``structures``/``reviewers`` restrict the selection.
    ``thresholds`` split the confidence bands; ``gallery_cap`` bounds each gallery (tables are
    never sampled); ``gallery_by`` groups the galleries within each structure (any of "outcome",
    "class", "confidence"). Raises FundusReviewError for unknown filters or an unusable database.
    """
    # Heavy plotting imports only when a report is written: `fundus-review --help` stays fast.
    from fundus_review.report.aggregates import AggIndex, agreement_rows, build_aggregates
    from fundus_review.report.assemble import build_document, structure_plots
    from fundus_review.report.data import ROW_FIELDS, collect
    from fundus_review.report.figures import mean_heatmap_plot
    from fundus_review.report.gallery import build_galleries
    from fundus_review.report.heatmaps import heatmap_pass
    from fundus_review.report.html import figure_png, render_html
    from fundus_review.report.pdf import render_pdf
    from fundus_review.report.tables import write_aggregates_csv, write_csv, write_json

    say = progress or (lambda _msg: None)
    params = params or ScoringParams()
    gallery_by = tuple(gallery_by)
    _check(n_resamples, gallery_cap, gallery_metric, params.metric_names(), gallery_by)
    fov_cache = fov_cache or default_fov_cache()
    rasterize = rasterize or geometry.rasterize
    out = Path(out_dir).expanduser()
    database, own = _open(db)
    try:
        say("scoring heatmaps not scored yet")
        scoring = score_database(
            database,
            dataset,
            models,
            methods,
            structures,
            reviewers,
            params=params,
            fov_cache=fov_cache,
            rasterize=rasterize,
        )
        say("reading scores")
        data = collect(
            database,
            scoring,
            dataset=dataset,
            models=models,
            methods=methods,
            structures=structures,
            reviewers=reviewers,
            params=params,
            thresholds=thresholds,
        )
        if not data.results:
            raise FundusReviewError(
                f"{database.display_name}: no stored heatmaps match this selection; "
                "run `fundus-review analyze` first"
            )
        say("comparing heatmaps")
        run_label = {r.run_id: r.label for r in data.runs}
        heat = heatmap_pass(
            database,
            data.results,
            run_label,
            use_true_class=data.has_labels(),
            top_percent=params.top_percent,
            seed=seed,
            fov_cache=fov_cache,
        )
        data.problems.extend(heat.problems)
        say("computing statistics")
        aggs = build_aggregates(data, heat, seed=seed, n_resamples=n_resamples)
        idx = AggIndex(aggs)
        say("drawing galleries")
        galleries, gallery_index = build_galleries(
            database,
            data,
            cap=gallery_cap,
            seed=seed,
            metric=gallery_metric,
            fov_cache=fov_cache,
            rasterize=rasterize,
            group_by=gallery_by,
        )
    finally:
        if own:
            database.close()

    say("drawing plots")
    dist_plots, conf_plots = structure_plots(data, idx)
    mean_plot = mean_heatmap_plot(heat, [r.label for r in data.runs])
    settings = {
        "seed": seed,
        "n_resamples": n_resamples,
        "gallery_cap": gallery_cap,
        "gallery_metric": gallery_metric,
        "gallery_by": ", ".join(gallery_by) or "structure only",
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    doc = build_document(
        data,
        idx,
        galleries=galleries,
        mean_plot=mean_plot,
        dist_plots=dist_plots,
        conf_plots=conf_plots,
        settings=settings,
    )
    plots = [*dist_plots, *conf_plots, *([mean_plot] if mean_plot else [])]
    pngs = {id(p): figure_png(p) for p in plots}

    say("writing files")
    out.mkdir(parents=True, exist_ok=True)
    agreements = agreement_rows(data)
    paths = {
        "csv": write_csv(out / "scores.csv", data.rows, [*ROW_FIELDS, *data.metrics]),
        "aggregates_csv": write_aggregates_csv(out / "aggregates.csv", aggs),
        "agreement_csv": write_csv(
            out / "reviewer_agreement.csv",
            agreements,
            ["structure", "reviewer", "image_id", "image", "iou", "dice"],
        ),
    }
    paths["json"] = write_json(
        out / "report.json",
        {
            "format": "fundus-review agreement report",
            "version": 1,
            "seed": seed,
            "n_resamples": n_resamples,
            "ci": 0.95,
            "ci_methods": {"pointing_hit": "wilson", "other metrics": "percentile bootstrap"},
            "confidence_thresholds": list(data.thresholds),
            "gallery": {"cap": gallery_cap, "metric": gallery_metric, "by": list(gallery_by)},
            "database": data.db_name,
            "selection": data.selection,
            "scoring_parameters": params.to_dict(),
            "datasets": data.datasets,
            "models": data.models,
            "runs": [asdict(r) for r in data.runs],
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
            "aggregates": aggs,
            "reviewer_agreement": agreements,
            "heatmap_similarity": heat.similarity,
            "verdicts": data.verdicts,
            "galleries": gallery_index,
        },
    )
    paths["html"] = render_html(doc, out / "report.html", pngs)
    say("writing the PDF")
    paths["pdf"] = render_pdf(doc, out / "report.pdf", pngs)
    return ReportResult(out, paths, scoring, len(data.rows), len(aggs), list(data.problems))
