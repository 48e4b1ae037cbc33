"""Opening the database: engine set-up, SQLite tuning, migrations on open, sessions.

SQLite is the default (one file next to the user's data); any SQLAlchemy URL works so a team can
point at a shared PostgreSQL server. Several processes (two GUI instances, a CLI batch job) may
use one SQLite file at once: WAL lets readers run beside a writer, every session begins with
``BEGIN IMMEDIATE`` so writers queue on the busy timeout instead of failing with "database is
locked" when a read transaction tries to upgrade to a write, and short transactions keep the
queue short.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from fundus_review.errors import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30.0
_BEGIN_OPTION = "fundus_review_sqlite_begin"


class Database:
    """An open database: ``with db.session() as s: ...`` is one transaction."""

    def __init__(self, engine: Engine, display_name: str) -> None:
        self.engine = engine
        self.display_name = display_name
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        # Read-only sessions use a plain (deferred) BEGIN so they never wait for or block writers.
        self._read_sessions = sessionmaker(
            bind=engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"}), expire_on_commit=False
        )

    @property
    def url(self) -> URL:
        return self.engine.url

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """One unit of work: commits when the block ends normally, rolls back on any exception.

        Objects stay usable after the block (``expire_on_commit=False``); repo functions take
        them, or their ids, in later sessions. Keep blocks short (no model inference inside a
        write session): on SQLite a write session holds the file's write lock until it ends.
        """
        session = (self._read_sessions if read_only else self._sessions)()
        try:
            yield session
            if read_only:
                session.rollback()
            else:
                session.commit()
        except DBAPIError as exc:
            session.rollback()
            raise StoreError(f"{self.display_name}: {_explain(exc.orig)}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.display_name!r})"


def _explain(orig: BaseException | None) -> str:
    """A database error in words a user can act on (the transaction was rolled back)."""
    text = str(orig)
    if "readonly" in text or "read-only" in text:
        return (
            f"the database is read-only ({text}); nothing was written: make the file and its "
            "folder writable, or open a copy"
        )
    if "foreign key" in text.lower():  # SQLite and PostgreSQL word it differently
        return f"other rows still refer to this one (FOREIGN KEY constraint): {text}"
    if "malformed" in text or "not a database" in text:
        return f"the database file is damaged ({text}); restore it from a backup"
    return f"database error: {text}"


def _to_url(url_or_path: str | Path) -> tuple[URL, str]:
    text = str(url_or_path)
    if isinstance(url_or_path, str) and "://" in text:
        try:
            url = make_url(text)
        except ArgumentError as exc:
            raise StoreError(f"{text}: not a valid database URL ({exc})") from None
        return url, url.render_as_string(hide_password=True)
    path = Path(url_or_path).expanduser().resolve()
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a database file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create its folder ({exc.strerror})") from None
    return URL.create("sqlite", database=str(path)), str(path)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below): the sqlite3 module's implicit BEGIN is
        # deferred, which turns a read-then-write transaction into an instant "database is locked".
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _set_wal(cur)
        cur.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a crash loses no commit
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _set_wal(cur: sqlite3.Cursor) -> None:
    # Switching a brand-new file to WAL needs an exclusive lock, and SQLite does not run the busy
    # handler for it: two processes opening a new database at once would otherwise fail at once.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def open_database(url_or_path: str | Path, *, migrations_dir: Path | None = None) -> Database:
    """Open (creating if needed) a database and migrate it to the newest schema.

    A plain path is a SQLite file (its folder is created); a string with ``://`` is a
    SQLAlchemy URL used as is. ``migrations_dir`` is for tests of the migration machinery.
    Raises StoreError for a file that is not a fundus-review database, a database written by a
    newer fundus-review, or a server that cannot be reached.
    """
    from fundus_review.store.migrate import migrate_to_head  # alembic is only needed here

    url, display = _to_url(url_or_path)
    is_sqlite = url.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {}
    if is_sqlite:
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        hint = ""
        if isinstance(exc, ImportError) and url.get_backend_name() == "postgresql":
            hint = '; for PostgreSQL install the driver: pip install -e ".[postgres]"'
        raise StoreError(f"{display}: cannot use this database URL ({exc}){hint}") from None
    if is_sqlite:
        _configure_sqlite(engine)
    try:
        migrate_to_head(engine, display, migrations_dir or MIGRATIONS_DIR)
    except StoreError:
        engine.dispose()
        raise
    except DBAPIError as exc:
        engine.dispose()
        if is_sqlite and isinstance(exc.orig, sqlite3.DatabaseError):
            raise StoreError(
                f"{display}: not a usable SQLite database ({exc.orig}); the file was not changed: "
                "restore it from a backup or choose another database file"
            ) from None
        raise StoreError(f"{display}: cannot open the database ({exc.orig})") from None
    return Database(engine, display)


def table_names(db: Database) -> list[str]:
    """The tables present in the database (diagnostics and tests)."""
    return sorted(inspect(db.engine).get_table_names())
