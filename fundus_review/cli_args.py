"""Options shared by several commands (one definition, so their help and defaults agree)."""

from __future__ import annotations

import argparse

from fundus_review.paths import default_db


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
