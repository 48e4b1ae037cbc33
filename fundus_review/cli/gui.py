"""`fundus-review gui [DATASET] [--db FILE] [--model BUNDLE]`: open the review application.

Qt is imported only when the command runs, so the rest of the CLI stays headless and instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fundus_review.cli.args import add_db_option


def launch_gui(
    dataset: str | Path | None = None, db: str | Path | None = None, model: str | Path | None = None
) -> int:
    from fundus_review.gui.app import run_app

    return run_app(dataset=dataset, db=db, model=model)


def cmd_gui(args: argparse.Namespace) -> int:
    return launch_gui(dataset=args.dataset, db=args.db, model=args.model)


def add_gui_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the review application (browse, run CAMs, compare)")
    p.add_argument(
        "dataset", nargs="?", type=Path, help="dataset folder to open (default: the last one)"
    )
    add_db_option(p, default="the last one, else the user's default database")
    p.add_argument("--model", type=Path, default=None, help="model bundle folder to select")
    p.set_defaults(func=cmd_gui)
