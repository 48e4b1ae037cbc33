"""`fundus-review train-segmenter` and `fundus-review propose` (proposed optic disc and cup)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fundus_review.cli.args import add_db_option, db_of


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    from fundus_review.training.segmenter import SegTrainConfig, train_segmenter

    cfg = SegTrainConfig(
        data=list(args.data),
        out=args.out,
        name=args.name or args.out.name,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        folds=args.folds,
        seed=args.seed,
        threads=args.threads,
        init=args.init,
        cv=not args.no_cv,
        limit=args.limit,
    )
    train_segmenter(cfg)
    return 0


def cmd_propose(args: argparse.Namespace) -> int:
    from fundus_review.app.importing import register_dataset
    from fundus_review.app.proposals import dataset_image_ids, get_segmenter
    from fundus_review.review.proposals import propose_regions
    from fundus_review.store.db import open_database

    db = open_database(db_of(args))
    try:
        seg = get_segmenter(args.segmenter)
        if args.dataset is not None and Path(args.dataset).is_dir():
            registered = register_dataset(db, args.dataset)
            ids = sorted(registered.image_ids.values())
        else:
            ids = dataset_image_ids(db, args.dataset)
        counts = {"optic_disc": 0, "optic_cup": 0}
        kept = 0
        seconds = 0.0
        for n, image_id in enumerate(ids, 1):
            try:
                result = propose_regions(db, image_id, args.reviewer, seg, args.shape)
            except Exception as exc:  # one unreadable image must not stop the batch
                print(f"  image {image_id}: {exc}", file=sys.stderr)
                continue
            for st in result.proposed:
                counts[st] = counts.get(st, 0) + 1
            kept += len(result.kept)
            seconds += result.seconds
            if not args.quiet:
                print(f"\r{n}/{len(ids)} images", end="", file=sys.stderr, flush=True)
        if not args.quiet and ids:
            print(file=sys.stderr)
    finally:
        db.close()
    per = ", ".join(f"{k}: {v}" for k, v in counts.items())
    print(
        f"Proposed regions on {len(ids)} images for reviewer {args.reviewer!r} with {seg.name} "
        f"({per}; {kept} structures kept as the reviewer already had them; "
        f"{seconds / max(len(ids), 1):.2f} s per image). They count as expert regions only once "
        "accepted or edited in the Annotate tab."
    )
    return 0


def add_segment_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-segmenter",
        help="train the optic disc / cup segmenter that proposes regions (cross-validated)",
        description="Train on every image of the given folders (masks/optic_disc, and "
        "masks/optic_cup where present; images without a cup mask add no cup loss), write the "
        "segmenter, then cross-validate the same recipe (folds dealt within each folder) and "
        "record the held-out Dice in its card.",
    )
    p.add_argument("data", nargs="+", type=Path, help="dataset folders with masks/optic_disc")
    p.add_argument("--out", required=True, type=Path, help="segmenter folder to write")
    p.add_argument("--name", help="segmenter name (default: the folder name)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--init", choices=("imagenet", "none"), default="imagenet")
    p.add_argument("--no-cv", action="store_true", help="train the shipped model only")
    p.add_argument("--limit", type=int, help="at most N images per folder (smoke tests)")
    p.set_defaults(func=cmd_train_segmenter)

    q = sub.add_parser(
        "propose",
        help="store proposed optic disc and cup regions (unreviewed until accepted in the app)",
        description="Run the segmenter over a dataset's images and store its disc and cup as "
        "the reviewer's *proposed* regions: shown and editable in the Annotate tab, left out of "
        "scores, reports, CDR and exports until accepted (A) or edited.",
    )
    q.add_argument("--dataset", help="dataset folder (registered if new) or stored dataset name")
    q.add_argument("--reviewer", required=True, help="whose proposals they are")
    q.add_argument("--segmenter", type=Path, help="segmenter folder (default: the shipped one)")
    q.add_argument("--shape", choices=("polygon", "ellipse"), default="polygon")
    q.add_argument("--quiet", action="store_true")
    add_db_option(q)
    q.set_defaults(func=cmd_propose)
