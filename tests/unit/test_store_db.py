"""Opening databases: SQLite settings, bad files, transactions, and concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from fundus_review.errors import StoreError
from fundus_review.store import open_database
from fundus_review.store.db import table_names
from fundus_review.store.repo import get_or_create_reviewer
from fundus_review.store.schema import Reviewer

EXPECTED_TABLES = {
    "alembic_version",
    "annotations",
    "cam_runs",
    "cdr_cache",
    "datasets",
    "faithfulness",
    "heatmaps",
    "image_reviews",
    "images",
    "labels",
    "models",
    "predictions",
    "reviewers",
    "scores",
    "verdicts",
    "work_claims",
}


def _count_reviewers(db) -> int:  # noqa: ANN001
    with db.session(read_only=True) as s:
        return s.scalar(select(func.count(Reviewer.id)))


def test_plain_path_creates_parent_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "review.db"
    with open_database(path) as db:
        assert path.is_file()
        assert set(table_names(db)) == EXPECTED_TABLES
        with db.session() as s:
            assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"


def test_sqlite_url_is_used_as_is(tmp_path: Path) -> None:
    path = tmp_path / "by_url.db"
    with open_database(f"sqlite:///{path}") as db:
        assert set(table_names(db)) == EXPECTED_TABLES
    assert path.is_file()


def test_sqlite_pragmas_are_on_for_every_connection(tmp_path: Path) -> None:
    with open_database(tmp_path / "p.db") as db:
        with db.session() as s:
            assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert s.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
            assert s.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        # A second pooled connection (opened while the first is busy) has them too.
        with db.engine.connect() as c1, db.engine.connect() as c2:
            assert c1.connection.dbapi_connection is not c2.connection.dbapi_connection
            assert c2.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_reopening_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "keep.db"
    with open_database(path) as db, db.session() as s:
        get_or_create_reviewer(s, "Dr. A")
    with open_database(path) as db:
        assert _count_reviewers(db) == 1


def test_non_database_file_gives_store_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 50)
    with pytest.raises(StoreError, match="notes.db"):
        open_database(path)
    assert path.read_bytes().startswith(b"these are my notes")  # untouched


def test_folder_path_gives_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="folder"):
        open_database(tmp_path)


def test_someone_elses_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a fundus-review one.*invoices"):
        open_database(path)
    con = sqlite3.connect(path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert tables == {"invoices"}  # nothing was added to it


def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    open_database(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0099'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"'0099'.*newer fundus-review"):
        open_database(path)


def test_bad_url_gives_store_error() -> None:
    with pytest.raises(StoreError, match="nosuchdriver"):
        open_database("nosuchdriver://host/db")


def test_a_missing_postgresql_driver_names_the_extra_to_install() -> None:
    # pg8000 is a PostgreSQL driver this project never installs, so its import always fails.
    with pytest.raises(
        StoreError, match=r"No module named 'pg8000'.*pip install -e \"\.\[postgres\]\""
    ):
        open_database("postgresql+pg8000://user@127.0.0.1:1/db")


def test_session_commits_on_success_and_rolls_back_on_error(tmp_path: Path) -> None:
    with open_database(tmp_path / "tx.db") as db:
        with db.session() as s:
            get_or_create_reviewer(s, "kept")
        with pytest.raises(RuntimeError, match="boom"):
            with db.session() as s:
                get_or_create_reviewer(s, "lost 1")
                s.flush()  # the rows really reached the database before the error
                get_or_create_reviewer(s, "lost 2")
                raise RuntimeError("boom")
        with db.session() as s:
            names = sorted(s.scalars(select(Reviewer.name)))
        assert names == ["kept"]


def test_database_errors_become_store_errors_and_roll_back(tmp_path: Path) -> None:
    with open_database(tmp_path / "err.db") as db:
        with pytest.raises(StoreError, match="err.db"):
            with db.session() as s:
                s.add(Reviewer(name="first"))
                s.flush()
                s.add(Reviewer(name="first"))  # unique violation
                s.flush()
        assert _count_reviewers(db) == 0


def test_two_databases_on_one_file_write_alternately(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    db1, db2 = open_database(path), open_database(path)
    try:
        # Each side reads what the other committed, then writes on its own pooled connection.
        for i in range(20):
            with db1.session() as s:
                get_or_create_reviewer(s, f"one-{i}")
            with db2.session() as s:
                assert s.scalar(select(func.count(Reviewer.id))) == 2 * i + 1
                get_or_create_reviewer(s, f"two-{i}")
        assert _count_reviewers(db1) == _count_reviewers(db2) == 40
    finally:
        db1.close()
        db2.close()


def test_two_threads_writing_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    db1, db2 = open_database(path), open_database(path)
    errors: list[BaseException] = []

    def writer(db, prefix: str) -> None:  # noqa: ANN001
        try:
            for i in range(40):
                with db.session() as s:
                    n = s.scalar(select(func.count(Reviewer.id)))  # read, then write
                    get_or_create_reviewer(s, f"{prefix}-{i}-{n}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(d, p)) for d, p in ((db1, "a"), (db2, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert errors == []
        assert _count_reviewers(db1) == 80
        with db1.session() as s:
            counts = sorted(int(n.rsplit("-", 1)[1]) for n in s.scalars(select(Reviewer.name)))
        # Each writer saw a consistent count before inserting: every count 0..79 exactly once.
        assert counts == list(range(80))
    finally:
        db1.close()
        db2.close()


def _process_writer(path: str, prefix: str, n: int) -> None:
    db = open_database(path)
    try:
        for i in range(n):
            with db.session() as s:
                get_or_create_reviewer(s, f"{prefix}-{i}")
    finally:
        db.close()


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "procs.db"
    open_database(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(path), p, 30)) for p in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with open_database(path) as db:
        assert _count_reviewers(db) == 60
