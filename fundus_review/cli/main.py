"""The command line: `fundus-review <command>`; every command is a thin layer over a library call.

Heavy modules (torch, Qt) are imported inside the command that needs them so `--help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fundus_review import __version__
from fundus_review.cli.args import add_db_option, add_trust_code, csv_list, db_of, trust_bundle_code
from fundus_review.errors import FundusReviewError


def _add_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--labels", type=Path, help="CSV of labels (default: <dataset>/labels.csv or sub-folders)"
    )
    p.add_argument("--filename-column", help="CSV column with the image file name (auto-detected)")
    p.add_argument("--label-column", help="CSV column with the class label (auto-detected)")


# --------------------------------------------------------------------------------------- analyze
def cmd_analyze(args: argparse.Namespace) -> int:
    from fundus_review.app.analyze import AnalysisRequest
    from fundus_review.cli.progress import run_with_progress

    trust_bundle_code(args, args.model)
    req = AnalysisRequest(
        dataset=args.dataset,
        bundle=args.model,
        methods=csv_list(args.method),
        db=db_of(args),
        layers=csv_list(args.layer) if args.layer else None,
        target=args.target,
        labels_csv=args.labels,
        filename_column=args.filename_column,
        label_column=args.label_column,
        import_masks=True,  # <dataset>/masks or --masks, as --reviewer (stated in the help)
        masks_dir=args.masks,
        reviewer=args.reviewer,
        device=args.device,
        batch_size=args.batch_size,
        force=args.force,
        engine=args.engine,
        ray_address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
    )
    finished = run_with_progress(req, quiet=args.quiet)
    return 0 if finished is not None and not finished.cancelled else 130


def _analyze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="run a model bundle and CAM methods over a dataset, storing predictions and heatmaps",
    )
    p.add_argument("dataset", type=Path, help="folder of fundus photographs (searched recursively)")
    p.add_argument(
        "--model", required=True, type=Path, help="model bundle folder (model.toml + weights)"
    )
    p.add_argument(
        "--method", default="gradcam", help="CAM methods, comma-separated (e.g. gradcam,hirescam)"
    )
    p.add_argument(
        "--layer",
        help="target layer path(s), comma-separated (default: the card's / family default)",
    )
    p.add_argument("--target", default="predicted", help="'predicted' or a class name of the model")
    _add_labels(p)
    p.add_argument(
        "--masks",
        type=Path,
        help="expert masks folder masks/<structure>/<stem>.png (default: <dataset>/masks)",
    )
    p.add_argument("--reviewer", default="reference", help="reviewer name for imported masks")
    add_db_option(p)
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--force", action="store_true", help="recompute results already stored")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    scale = p.add_argument_group(
        "scale-out", 'batches on Ray actors (pip install -e ".[scale]"); see docs/SCALE.md'
    )
    scale.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="where batches are computed"
    )
    scale.add_argument(
        "--address", default=None, help="Ray cluster address ('auto': the running cluster)"
    )
    scale.add_argument(
        "--workers", type=int, default=None, help="Ray actors (default: one per GPU, else 2)"
    )
    scale.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (0: CPU)"
    )
    scale.add_argument(
        "--cpus-per-worker",
        type=int,
        default=1,
        help="CPUs per Ray actor: its decoding threads (and torch's, on CPU)",
    )
    add_trust_code(p)
    p.set_defaults(func=cmd_analyze)


# ---------------------------------------------------------------------------------- import-masks
def cmd_import_masks(args: argparse.Namespace) -> int:
    from fundus_review.app.importing import import_masks, register_dataset
    from fundus_review.store.db import open_database

    db = open_database(db_of(args))
    try:
        registered = register_dataset(
            db, args.dataset, args.labels, args.filename_column, args.label_column
        )
        summary = import_masks(db, registered, args.masks_dir, args.reviewer)
    finally:
        db.close()
    per = ", ".join(f"{k}: {v}" for k, v in sorted(summary.structures.items())) or "none"
    print(
        f"Imported {summary.imported} masks for {summary.images_with_masks} images "
        f"as reviewer {args.reviewer!r} ({per}) into {db_of(args)}"
    )
    for stem in summary.unmatched:
        print(f"  no image for mask stem {stem!r}", file=sys.stderr)
    for path, reason in registered.problems + summary.problems:
        # Mask errors already start with their path; name it once.
        print(f"  skipped {path}: {reason.removeprefix(f'{path}: ')}", file=sys.stderr)
    return 0


def _import_masks_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-masks", help="import expert masks (masks/<structure>/<stem>.png)")
    p.add_argument("dataset", type=Path)
    p.add_argument("masks_dir", type=Path)
    p.add_argument("--reviewer", default="reference")
    _add_labels(p)
    add_db_option(p)
    p.set_defaults(func=cmd_import_masks)


# ----------------------------------------------------------------------------------------- model
def cmd_model_inspect(args: argparse.Namespace) -> int:
    from fundus_review.inference.bundle import describe_bundle, load_bundle

    print(describe_bundle(load_bundle(args.bundle), trust_code=args.trust_code))
    return 0


def _model_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="model bundle tools")
    msub = p.add_subparsers(dest="model_command", required=True)
    q = msub.add_parser(
        "inspect", help="print the card, parameter count and candidate target layers"
    )
    q.add_argument("bundle", type=Path)
    add_trust_code(q)
    q.set_defaults(func=cmd_model_inspect)


# ------------------------------------------------------------------------------------- demo-data
def cmd_demo_data(args: argparse.Namespace) -> int:
    from fundus_review.data.synthetic import write_demo_dataset

    out = write_demo_dataset(
        args.out,
        n=args.n,
        seed=args.seed,
        size=(args.size, args.size),
        confounder=args.confounder,
        confounder_strength=args.confounder_strength,
    )
    print(f"Wrote {args.n} synthetic fundus images with labels.csv and masks/ to {out}")
    return 0


def _demo_data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-data", help="write a synthetic fundus dataset with exact masks")
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=512, help="image side in pixels")
    p.add_argument("--confounder", action="store_true", help="add a label-correlated corner marker")
    p.add_argument(
        "--confounder-strength",
        type=float,
        default=1.0,
        help="probability that the marker agrees with the label",
    )
    p.set_defaults(func=cmd_demo_data)


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fundus-review",
        description="Check whether a fundus-image classifier looks where it should.",
    )
    parser.add_argument("--version", action="version", version=f"fundus-review {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _analyze_parser(sub)
    _import_masks_parser(sub)
    _model_parser(sub)
    _demo_data_parser(sub)
    for extra in _extra_parsers():
        extra(sub)
    return parser


def _extra_parsers() -> list:
    # Commands defined in their own modules; their heavy imports happen only when they run.
    from fundus_review.cli.demo import add_demo_parser
    from fundus_review.cli.exchange import add_exchange_parsers
    from fundus_review.cli.gui import add_gui_parser
    from fundus_review.cli.report import add_report_parser, add_score_parser
    from fundus_review.cli.segment import add_segment_parsers
    from fundus_review.cli.train import add_train_parser
    from fundus_review.cli.trust import add_trust_parser

    return [
        add_train_parser,
        add_segment_parsers,
        add_score_parser,
        add_report_parser,
        add_trust_parser,
        add_exchange_parsers,
        add_demo_parser,
        add_gui_parser,
    ]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FundusReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
