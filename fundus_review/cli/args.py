"""Options shared by several commands (one definition, so their help and defaults agree)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from fundus_review.paths import default_db

if TYPE_CHECKING:
    from fundus_review.app.selection import ResultSelection


def csv_list(text: str | None) -> list[str]:
    """ "a, b,,c" -> ["a", "b", "c"]: the comma-separated lists every command accepts."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def add_result_filters(p: argparse.ArgumentParser) -> None:
    """The selection of stored results shared by `report` and `score` (each repeatable, and
    comma-separated lists work too)."""
    p.add_argument("--dataset", action="append", help="dataset name, folder or id (repeatable)")
    p.add_argument("--model", action="append", help="model name or weights sha256 (repeatable)")
    p.add_argument("--method", action="append", help="CAM method(s), e.g. gradcam,hirescam")
    p.add_argument("--structure", action="append", help="structure(s), e.g. optic_disc")
    p.add_argument("--reviewer", action="append", help="reviewer(s) whose regions are used")


def _repeatable(values: list[str] | None) -> list[str] | None:
    """`--model a --model b` and `--model a,b` alike."""
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out += csv_list(v)
    return out or None


def selection_of(args: argparse.Namespace) -> ResultSelection:
    """The selection `add_result_filters` parsed: the one scoring and the report both use."""
    # Imported here: the selection pulls in the store (SQLAlchemy); `--help` must not.
    from fundus_review.app.selection import ResultSelection

    return ResultSelection(
        dataset=_repeatable(args.dataset),
        models=_repeatable(args.model),
        methods=_repeatable(args.method),
        structures=_repeatable(args.structure),
        reviewers=_repeatable(args.reviewer),
    )


def add_db_option(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """`--db FILE|URL`; `default` describes what an omitted --db means (the user's database)."""
    p.add_argument(
        "--db",
        default=None,
        help=f"SQLite file or SQLAlchemy URL (default: {default or default_db()})",
    )


def db_of(args: argparse.Namespace) -> str:
    """The database a command uses: --db, else the user's default database."""
    return args.db or str(default_db())


def add_trust_code(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-code",
        action="store_true",
        help="allow a bundle whose architecture is 'package.module:factory' to import and run "
        "that installed module (refused by default: only for code you trust)",
    )


def trust_bundle_code(args: argparse.Namespace, bundle: Path) -> None:
    """With --trust-code, allow the one module this bundle's card names, for this command."""
    if not args.trust_code:
        return
    from fundus_review.inference.card import read_card
    from fundus_review.inference.trust import code_module, grant

    module = code_module(read_card(bundle)[1].architecture)
    if module is not None:
        grant(module)
