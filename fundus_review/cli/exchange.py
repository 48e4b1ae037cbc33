"""`fundus-review export masks|coco|verdicts|cdr|mean-maps ...` and `fundus-review import-labelme ...`.

Register with ``add_exchange_parsers(sub)`` in ``cli.build_parser``. Qt-free; heavy imports
happen when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fundus_review.cli.args import add_db_option, csv_list, db_of
from fundus_review.errors import FundusReviewError


def _filters(p: argparse.ArgumentParser, structures: bool = True) -> None:
    p.add_argument("--dataset", action="append", help="dataset id, name or folder (repeatable)")
    p.add_argument("--reviewer", action="append", help="only this reviewer's work (repeatable)")
    if structures:
        p.add_argument("--structure", type=csv_list, help="only these structures, comma-separated")


def _open(args: argparse.Namespace):  # noqa: ANN202 - a store.Database
    from fundus_review.store.db import open_database

    return open_database(db_of(args))


def _selection(args: argparse.Namespace):  # noqa: ANN202 - an exchange.selection.Selection
    from fundus_review.exchange.region_filter import Selection

    datasets = [int(d) if d.isdigit() else d for d in args.dataset] if args.dataset else None
    return Selection(datasets, args.reviewer, getattr(args, "structure", None))


def _report_problems(problems: list[tuple[str, str]]) -> None:
    for where, reason in problems:
        print(f"  skipped {where}: {reason}", file=sys.stderr)


def cmd_export_masks(args: argparse.Namespace) -> int:
    from fundus_review.exchange.masks import export_masks

    with _open(args) as db:
        summary = export_masks(db, args.out, _selection(args), layout=args.layout)
    per = ", ".join(f"{k}: {v}" for k, v in sorted(summary.structures.items())) or "none"
    print(f"Wrote {summary.files} mask PNGs ({per}) to {summary.out_dir} [{summary.layout} layout]")
    for folder, name in sorted(summary.reviewers.items()):
        if folder:
            print(f"  {folder}/ = reviewer {name!r}")
    if summary.stale:
        print(f"  warning: {len(summary.stale)} older file(s) in the output were not written by "
              f"this export (e.g. {summary.stale[0]}); remove them before re-importing",
              file=sys.stderr)  # fmt: skip
    _report_problems(summary.problems)
    return 1 if summary.problems else 0


def cmd_export_coco(args: argparse.Namespace) -> int:
    from fundus_review.exchange.coco import export_coco

    with _open(args) as db:
        summary = export_coco(db, args.out, _selection(args), segmentation=args.segmentation)
    print(f"Wrote {summary.annotations} regions of {summary.images} images in "
          f"{summary.categories} categories to {summary.path}")  # fmt: skip
    _report_problems(summary.problems)
    return 1 if summary.problems else 0


def cmd_export_verdicts(args: argparse.Namespace) -> int:
    from fundus_review.exchange.verdicts import export_verdicts

    sel = _selection(args)
    with _open(args) as db:
        n = export_verdicts(db, args.out, sel.dataset, sel.reviewers)
    print(f"Wrote {n} verdicts to {args.out}")
    return 0


def cmd_export_cdr(args: argparse.Namespace) -> int:
    from fundus_review.exchange.cdr import export_cdr

    sel = _selection(args)
    with _open(args) as db:
        n = export_cdr(db, args.out, sel.dataset, sel.reviewers)
    print(f"Wrote {n} cup-to-disc ratios (image x reviewer with a disc and a cup) to {args.out}")
    return 0


def cmd_export_mean_maps(args: argparse.Namespace) -> int:
    from fundus_review.app.scoring import default_fov_cache
    from fundus_review.app.selection import ResultSelection
    from fundus_review.exchange.mean_maps import export_mean_maps

    if args.size < 8 or args.size > 1024:
        raise FundusReviewError(f"--size must be between 8 and 1024 cells, got {args.size}")
    datasets = [int(d) if d.isdigit() else d for d in args.dataset] if args.dataset else None
    sel = ResultSelection(datasets, args.model, csv_list(",".join(args.method or [])) or None)
    with _open(args) as db:
        done = export_mean_maps(db, args.out, sel, fov_cache=default_fov_cache(), size=args.size,
                                mirror=not args.no_mirror)  # fmt: skip
    print(f"Wrote {done.panels} mean maps ({done.images} images; .npz + .png each, "
          f"mean_maps.csv, mean_maps.json) to {done.out_dir}")  # fmt: skip
    _report_problems(done.problems)
    return 0


def _label_map(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        label, sep, structure = item.partition("=")
        if not sep or not label.strip() or not structure.strip():
            raise FundusReviewError(f"--map {item!r}: expected LABEL=STRUCTURE, e.g. OD=optic_disc")
        out[label.strip()] = structure.strip()
    return out


def cmd_import_labelme(args: argparse.Namespace) -> int:
    from fundus_review.app.importing import register_dataset
    from fundus_review.exchange.labelme import import_labelme

    label_map = _label_map(args.map)
    with _open(args) as db:
        registered = register_dataset(db, args.dataset, args.labels, args.filename_column,
                                      args.label_column)  # fmt: skip
        summary = import_labelme(db, registered, args.sources, args.reviewer, label_map)
    per = ", ".join(f"{k}: {v}" for k, v in sorted(summary.structures.items())) or "none"
    print(f"Imported {summary.files} labelme files as reviewer {args.reviewer!r}: "
          f"{summary.added} added, {summary.updated} updated, {summary.unchanged} unchanged, "
          f"{summary.removed} removed ({per})")  # fmt: skip
    for path in summary.unmatched:
        print(f"  no image for {path}", file=sys.stderr)
    _report_problems(registered.problems + summary.problems)
    return 0


def add_exchange_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export expert regions (masks, COCO), verdicts, cup-to-disc ratios (CSV) or "
        "dataset-mean heatmaps",
    )
    esub = p.add_subparsers(dest="export_command", required=True)

    q = esub.add_parser("masks", help="mask PNGs in the masks/<structure>/<stem>.png layout")
    q.add_argument("out", type=Path, help="output folder (created)")
    q.add_argument("--layout", choices=("auto", "flat", "by-reviewer"), default="auto",
                   help="flat: <out>/<structure>/<stem>.png (one reviewer); by-reviewer: "
                        "<out>/<reviewer>/<structure>/<stem>.png; auto: flat for one reviewer")  # fmt: skip
    _filters(q)
    add_db_option(q)
    q.set_defaults(func=cmd_export_masks)

    q = esub.add_parser("coco", help="COCO instance-segmentation JSON (polygons and RLE)")
    q.add_argument("out", type=Path, help="output .json file")
    q.add_argument("--segmentation", choices=("auto", "rle", "polygon"), default="auto",
                   help="auto: drawn polygons/ellipses as polygons, other regions as exact RLE; "
                        "rle: everything as exact RLE; polygon: everything as polygons")  # fmt: skip
    _filters(q)
    add_db_option(q)
    q.set_defaults(func=cmd_export_coco)

    q = esub.add_parser("verdicts", help="CSV of the reviewers' verdicts on heatmaps")
    q.add_argument("out", type=Path, help="output .csv file")
    _filters(q, structures=False)
    add_db_option(q)
    q.set_defaults(func=cmd_export_verdicts)

    q = esub.add_parser("cdr", help="CSV of cup-to-disc ratios, one row per image x reviewer")
    q.add_argument("out", type=Path, help="output .csv file")
    _filters(q, structures=False)
    add_db_option(q)
    q.set_defaults(func=cmd_export_cdr)

    q = esub.add_parser(
        "mean-maps",
        help="dataset-mean heatmaps per run and class/outcome, registered to the field of view "
        "and the optic disc (.npz + .png per panel, CSV of the corner numbers)",
    )
    q.add_argument("out", type=Path, help="output folder (created)")
    q.add_argument("--dataset", action="append", help="dataset id, name or folder (repeatable)")
    q.add_argument("--model", action="append", help="model name or weights sha256 (repeatable)")
    q.add_argument("--method", action="append", help="CAM method(s), e.g. gradcam,hirescam")
    q.add_argument("--size", type=int, default=128, help="cells per side of the frame grid")
    q.add_argument("--no-mirror", action="store_true",
                   help="do not mirror left eyes in the optic-disc frame")  # fmt: skip
    add_db_option(q)
    q.set_defaults(func=cmd_export_mean_maps)

    p = sub.add_parser("import-labelme", help="import labelme JSON annotations as expert regions")
    p.add_argument("dataset", type=Path, help="the dataset folder the annotations belong to")
    p.add_argument("sources", nargs="+", type=Path, help="labelme .json files or folders of them")
    p.add_argument("--reviewer", default="reference", help="reviewer the regions belong to")
    p.add_argument("--map", action="append", metavar="LABEL=STRUCTURE",
                   help="map a labelme label to a structure (repeatable), e.g. OD=optic_disc")  # fmt: skip
    p.add_argument("--labels", type=Path, help="CSV of image labels (as for analyze)")
    p.add_argument("--filename-column")
    p.add_argument("--label-column")
    add_db_option(p)
    p.set_defaults(func=cmd_import_labelme)
