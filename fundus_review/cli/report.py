"""`fundus-review report` (score what is not scored yet, write the agreement report) and
`fundus-review score` (only the scoring, e.g. `--force` after changing the FOV algorithm).

Register with ``add_report_parser(sub)`` and ``add_score_parser(sub)`` in ``cli.build_parser``;
``python -m fundus_review.cli.report --db FILE --out DIR`` runs the report on its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fundus_review.cli.args import (
    add_db_option,
    add_result_filters,
    csv_list,
    db_of,
    selection_of,
)
from fundus_review.errors import FundusReviewError


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if any(not 0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"confidence thresholds must lie in [0, 1], got {text!r}")
    return values


def cmd_report(args: argparse.Namespace) -> int:
    from fundus_review.report import ReportRequest, write_report

    request = ReportRequest(
        args.out,
        selection_of(args),
        seed=args.seed,
        n_resamples=args.resamples,
        gallery_cap=args.gallery_cap,
        gallery_metric=args.gallery_metric,
        gallery_by=args.gallery_by or [],
        thresholds=args.confidence_thresholds,
    )
    say = (lambda _m: None) if args.quiet else (lambda m: print(f"  {m} ...", file=sys.stderr))
    result = write_report(db_of(args), request, progress=say)
    s = result.scoring
    print(
        f"Scored {s.scored} heatmap x mask pairs now, {s.reused} already stored; "
        f"{result.rows} per-image score rows, {result.aggregates} aggregates."
    )
    for path, reason in result.problems:
        print(f"  problem: {path}: {reason}", file=sys.stderr)
    for key in ("html", "pdf", "csv", "aggregates_csv", "agreement_csv", "json"):
        print(f"{key:>15}: {result.paths[key]}")
    return 0


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the agreement report (HTML, PDF, CSV, JSON) of the stored heatmaps",
        description="Score every stored heatmap against the expert regions (only what is not "
        "scored yet) and write report.html, report.pdf, scores.csv, aggregates.csv, "
        "reviewer_agreement.csv and report.json into --out.",
    )
    add_db_option(p)
    p.add_argument("--out", required=True, type=Path, help="folder to write the report into")
    add_result_filters(p)
    p.add_argument("--seed", type=int, default=0, help="seed of every bootstrap and sample")
    p.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples (>= 1000, default 1000)"
    )
    p.add_argument(
        "--gallery-cap", type=int, default=24, help="most tiles per gallery (tables stay complete)"
    )
    p.add_argument(
        "--gallery-metric",
        default="energy_in_mask",
        help="score that orders the galleries, worst first (default energy_in_mask)",
    )
    p.add_argument(
        "--gallery-by",
        type=csv_list,
        default=["outcome", "class"],
        help="how galleries are grouped within each structure: any of outcome, class, "
        "confidence, comma-separated (default outcome,class; e.g. outcome,confidence)",
    )
    p.add_argument(
        "--confidence-thresholds",
        type=_floats,
        default=(0.5, 0.8),
        help="confidence band limits, comma-separated (default 0.5,0.8)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_report)


def cmd_score(args: argparse.Namespace) -> int:
    from fundus_review.app.scoring import score_database
    from fundus_review.store.db import open_database

    db_arg = db_of(args)
    if "://" not in db_arg and not Path(db_arg).expanduser().is_file():
        raise FundusReviewError(f"{db_arg}: no such database file")

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\r  scored {done}/{total} images", end="", file=sys.stderr, flush=True)

    with open_database(db_arg) as db:
        s = score_database(db, selection_of(args), force=args.force, progress=progress)
    if not args.quiet:
        print(file=sys.stderr)
    print(
        f"{s.images} images, {s.heatmaps} heatmaps: {s.scored} heatmap x mask pairs scored, "
        f"{s.reused} already stored, {len(s.agreements)} reviewer-vs-reviewer pairs, "
        f"{len(s.problems)} problems, in {s.seconds:.1f} s"
    )
    for path, reason in s.problems:
        print(f"  problem: {path}: {reason}", file=sys.stderr)
    return 0


def add_score_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score stored heatmaps against the expert regions (the report does this too)",
    )
    add_db_option(p)
    add_result_filters(p)
    p.add_argument("--force", action="store_true", help="recompute scores already stored")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_score)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fundus-review")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except FundusReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
