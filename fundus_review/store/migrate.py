"""Alembic, driven programmatically: the migration scripts ship inside the package.

Nothing here needs an ``alembic.ini`` in the user's working directory; ``store/alembic.ini`` is
only for developers who write a new revision (see ``migrations/README``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect

from fundus_review.errors import StoreError

_DEFERRED = {"fundus_review_sqlite_begin": "DEFERRED"}
_PG_MIGRATION_LOCK = 0x66756E64  # any constant of this application ("fund")


def alembic_config(migrations_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    return cfg


def current_revisions(conn: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(conn).get_current_heads())


def migrate_to_head(
    engine: Engine, display: str, migrations_dir: Path, target: str = "head"
) -> None:
    """Upgrade the database to ``target`` (default: newest), refusing databases it cannot own."""
    cfg = alembic_config(migrations_dir)
    script = ScriptDirectory.from_config(cfg)
    wanted = set(script.get_heads()) if target == "head" else {target}

    # Fast path without the write lock: an up-to-date database is the normal case.
    with engine.execution_options(**_DEFERRED).connect() as conn:
        if set(current_revisions(conn)) == wanted:
            return

    is_sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        if is_sqlite:
            # A batch migration on SQLite copies and drops tables; with foreign keys on, dropping a
            # parent table would run its ON DELETE CASCADE and silently empty the children. The
            # pragma only works outside a transaction, hence the raw connection before BEGIN.
            raw.execute("PRAGMA foreign_keys = OFF")
        try:
            with conn.begin():  # BEGIN IMMEDIATE on SQLite: concurrent openers migrate one by one
                if engine.dialect.name == "postgresql":
                    # The same on PostgreSQL: two first openers of an empty database would both
                    # create the tables (and alembic's module-level context is not thread-safe).
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                current = current_revisions(conn)
                _check_owned(conn, script, current, display)
                if set(current) == wanted:
                    return
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
                if is_sqlite:
                    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise StoreError(
                            f"{display}: migration left broken references in {bad[0][0]!r}; "
                            "the database was not changed"
                        )
        except CommandError as exc:
            raise StoreError(f"{display}: cannot migrate the database schema ({exc})") from None
        finally:
            if is_sqlite:
                raw.execute("PRAGMA foreign_keys = ON")


def _check_owned(
    conn: Connection, script: ScriptDirectory, current: tuple[str, ...], display: str
) -> None:
    for rev in current:
        try:
            known = script.get_revision(rev) is not None
        except CommandError:
            known = False
        if not known:
            raise StoreError(
                f"{display}: the database has schema revision {rev!r}, which this version of "
                "fundus-review does not know; it was written by a newer fundus-review. "
                "Upgrade fundus-review to open it."
            )
    if not current:
        foreign = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        if foreign:
            shown = ", ".join(sorted(foreign)[:5])
            raise StoreError(
                f"{display}: is a database, but not a fundus-review one (it has tables {shown}); "
                "choose a new file"
            )
