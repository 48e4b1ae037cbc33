"""The agreement report: HTML + PDF for people, CSV + JSON for checking and further analysis.

``write_report(db, ReportRequest(out_dir, ...))`` first scores whatever is not scored yet (cheap
when it is), then reads every per-image score of the selection, computes the aggregates with a
stated seed, and writes into ``out_dir``:

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

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fundus_review.app.scoring import ScoringSummary, default_fov_cache, score_database
from fundus_review.app.selection import ResultSelection
from fundus_review.core import geometry
from fundus_review.data.fov import FovCache
from fundus_review.errors import FundusReviewError
from fundus_review.report.request import ReportRequest
from fundus_review.store.db import Database, open_database

if TYPE_CHECKING:
    from fundus_review.report.data import ReportData
    from fundus_review.report.document import Document, Gallery
    from fundus_review.report.files import Findings
    from fundus_review.report.heatmaps import HeatmapPass

__all__ = [
    "ReportRequest",
    "ReportResult",
    "ResultSelection",
    "headline_paragraphs",
    "write_report",
]

Say = Callable[[str], None]


@dataclass
class ReportResult:
    out_dir: Path
    paths: dict[str, Path]  # html, pdf, csv, aggregates_csv, agreement_csv, json
    scoring: ScoringSummary
    rows: int  # per-image score rows
    aggregates: int
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Tools:
    """What the steps share besides the request: the FOV cache and the shape rasterizer."""

    fov_cache: FovCache
    rasterize: Any


def write_report(
    db: Database | str | Path,
    request: ReportRequest | str | Path,
    *,
    progress: Say | None = None,
    fov_cache: FovCache | None = None,
    rasterize: Any = None,
) -> ReportResult:
    """Score what is missing, then write the report files into ``request.out_dir``.

    ``db``: an open Database, a SQLite file or a SQLAlchemy URL. ``request``: a ReportRequest,
    or just the output folder (every other setting at its default). ``progress`` receives one
    line per step. Raises FundusReviewError for a bad request, unknown filters or an unusable
    database; see the module doc for the files.
    """
    from fundus_review.report.folder import check_target

    req = request if isinstance(request, ReportRequest) else ReportRequest(Path(request))
    req.check()
    check_target(req.out_dir)  # before minutes of work, not after
    say = progress or (lambda _msg: None)
    tools = _Tools(fov_cache or default_fov_cache(), rasterize or geometry.rasterize)
    database, own = _open(db)
    try:
        scoring = _score(database, req, tools, say)
        found, galleries = _analyse(database, req, scoring, tools, say)
    finally:
        if own:
            database.close()
    doc, pngs = _draw(req, found, galleries, say)
    paths = _write(req, found, doc, pngs, say)
    data = found.data
    return ReportResult(
        req.out_dir, paths, scoring, len(data.rows), len(found.aggregates), list(data.problems)
    )


def headline_paragraphs(
    db: Database, selection: ResultSelection, *, seed: int = 0, n_resamples: int = 1000
) -> list[str]:
    """The report's first-page sentences for the stored (already scored) results of
    ``selection``, without writing a report: what the app's Summary shows. Reads only."""
    from fundus_review.app.scoring import ScoringParams
    from fundus_review.report.aggregates import AggIndex, summary_aggregates
    from fundus_review.report.data import collect
    from fundus_review.report.document import Para
    from fundus_review.report.headline import headline_section
    from fundus_review.report.headline_data import baseline_names, centre_runs, headline_runs
    from fundus_review.report.trust_sections import collect_trust, findings

    data = collect(db, ScoringSummary(), selection, params=ScoringParams())
    if not data.rows:
        return []
    idx = AggIndex(summary_aggregates(data, seed=seed, n_resamples=n_resamples))
    trust = collect_trust(db, data, seed)
    section = headline_section(
        headline_runs(data),
        idx,
        data.structures,
        data.reviewers,
        findings(data, trust),
        baseline_names(data),
        centre_runs(data),
    )
    return [b.text for b in section.blocks if isinstance(b, Para)]


def _open(db: Database | str | Path) -> tuple[Database, bool]:
    if isinstance(db, Database):
        return db, False
    text = str(db)
    if "://" not in text and not Path(text).expanduser().is_file():
        raise FundusReviewError(f"{text}: no such database file; run `fundus-review analyze` first")
    return open_database(db), True


def _score(db: Database, req: ReportRequest, tools: _Tools, say: Say) -> ScoringSummary:
    if req.selection.baselines:
        from fundus_review.app.baselines import compute_baselines

        say("computing baseline maps not stored yet")
        done = compute_baselines(db, req.selection.dataset, fov_cache=tools.fov_cache)
        problems = done.problems
    else:
        problems = []
    say("scoring heatmaps not scored yet")
    summary = score_database(
        db, req.selection, params=req.params, fov_cache=tools.fov_cache, rasterize=tools.rasterize
    )
    summary.problems.extend(problems)
    return summary


def _analyse(
    db: Database, req: ReportRequest, scoring: ScoringSummary, tools: _Tools, say: Say
) -> tuple[Findings, list[Gallery]]:
    """Everything read from the database: scores, heatmap comparisons, statistics, galleries."""
    # Heavy imports only when a report is written: `fundus-review --help` stays fast.
    from fundus_review.report.aggregates import agreement_rows, build_aggregates
    from fundus_review.report.files import Findings
    from fundus_review.report.gallery import build_galleries
    from fundus_review.report.sections_cdr import collect_cdr
    from fundus_review.report.sections_mean_maps import collect_mean_maps
    from fundus_review.report.trust_sections import collect_trust

    data = _collect(db, req, scoring, say)
    heat = _compare_heatmaps(db, req, data, tools, say)
    say("computing statistics")
    aggs = build_aggregates(data, heat, seed=req.seed, n_resamples=req.n_resamples)
    say("drawing galleries")
    galleries, gallery_index = build_galleries(
        db,
        data,
        cap=req.gallery_cap,
        seed=req.seed,
        metric=req.gallery_metric,
        fov_cache=tools.fov_cache,
        rasterize=tools.rasterize,
        group_by=req.gallery_by,
    )
    say("reading the trust checks")
    trust = collect_trust(db, data, req.seed)
    say("measuring cup-to-disc ratios")
    cdr = collect_cdr(db, data, req.seed, req.n_resamples)
    say("averaging heatmaps on the field-of-view and optic-disc frames")
    means = collect_mean_maps(
        db, req.selection, data, tools.fov_cache, seed=req.seed, n_resamples=req.n_resamples
    )
    found = Findings(data, heat, aggs, agreement_rows(data), gallery_index, trust, cdr, means)
    return found, galleries


def _collect(db: Database, req: ReportRequest, scoring: ScoringSummary, say: Say) -> ReportData:
    from fundus_review.report.data import collect

    say("reading scores")
    data = collect(db, scoring, req.selection, params=req.params, thresholds=req.thresholds)
    if not data.results:
        raise FundusReviewError(
            f"{db.display_name}: no stored heatmaps match this selection; "
            "run `fundus-review analyze` first"
        )
    return data


def _compare_heatmaps(
    db: Database, req: ReportRequest, data: ReportData, tools: _Tools, say: Say
) -> HeatmapPass:
    from fundus_review.report.heatmaps import heatmap_pass

    say("comparing heatmaps")
    heat = heatmap_pass(
        db,
        [r for r in data.results if r.model_kind != "baseline"],
        {r.run_id: r.label for r in data.runs},
        top_percent=req.params.top_percent,
        seed=req.seed,
        fov_cache=tools.fov_cache,
    )
    data.problems.extend(heat.problems)
    return heat


def _draw(
    req: ReportRequest, found: Findings, galleries: list[Gallery], say: Say
) -> tuple[Document, dict[int, bytes]]:
    """The document shared by the HTML and the PDF, and the PNG of each of its plots."""
    from fundus_review.report.aggregates import AggIndex
    from fundus_review.report.assemble import build_document, structure_plots
    from fundus_review.report.document import Plot
    from fundus_review.report.html import figure_png
    from fundus_review.report.sections_cdr import cdr_section
    from fundus_review.report.sections_mean_maps import mean_maps_section
    from fundus_review.report.trust_sections import findings, trust_section

    say("drawing plots")
    data, idx = found.data, AggIndex(found.aggregates)
    dist_plots, conf_plots = structure_plots(data, idx)
    doc = build_document(
        data,
        idx,
        galleries=galleries,
        dist_plots=dist_plots,
        conf_plots=conf_plots,
        settings=req.settings(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        findings=findings(data, found.trust),
        trust=trust_section(data, found.trust),
        cdr=cdr_section(found.cdr),
        mean_maps=mean_maps_section(found.mean_maps),
    )
    # Every plot of the document, the headline's included, rendered once for both formats.
    plots = [b for sec in doc.sections for b in sec.blocks if isinstance(b, Plot)]
    return doc, {id(p): figure_png(p) for p in plots}


def _write(
    req: ReportRequest, found: Findings, doc: Document, pngs: dict[int, bytes], say: Say
) -> dict[str, Path]:
    """Every file into a staging folder, then the folder into place as one unit."""
    from fundus_review.report.files import write_files
    from fundus_review.report.folder import staged_folder

    say("writing files")
    with staged_folder(req.out_dir) as stage:
        names = write_files(stage, req, found, doc, pngs, say)
    return {key: req.out_dir / name for key, name in names.items()}
