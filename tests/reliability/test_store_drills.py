"""Drills on the database file: a corrupt or read-only SQLite file is one clear line naming it,
and the file is left exactly as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from fundus_review.cli.main import main
from fundus_review.errors import StoreError
from fundus_review.store import repo
from fundus_review.store.db import open_database
from tests.reliability import hostile_files as hf


@pytest.fixture
def masks_args(tmp_path: Path) -> list[str]:
    data = tmp_path / "data"
    data.mkdir()
    hf.save(data / "im0.png", hf.rgb())
    masks = tmp_path / "masks" / "optic_disc"
    masks.mkdir(parents=True)
    m = np.zeros((24, 32), np.uint8)
    m[5:15, 5:15] = 255
    hf.save(masks / "im0.png", m)
    return ["import-masks", str(data), str(tmp_path / "masks")]


def _damaged(path: Path, tmp_path: Path) -> None:
    """A real database cut in half (a copy interrupted, a disk that failed)."""
    with open_database(tmp_path / "full.db") as db, db.session() as s:
        for i in range(2000):
            repo.get_or_create_reviewer(s, f"reviewer {i:05d} " * 4)
    with sqlite3.connect(tmp_path / "full.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = (tmp_path / "full.db").read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind", ["not a database", "damaged"])
def test_a_corrupt_database_is_refused_and_left_as_it_was(
    kind: str, tmp_path: Path, masks_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "bad.db"
    if kind == "damaged":
        _damaged(db, tmp_path)
    else:
        db.write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 3000)
    before = db.read_bytes()
    assert main([*masks_args, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {db}: not a usable SQLite database") and err.count("\n") == 1
    assert "restore it from a backup" in err
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob("bad.db*")) == ["bad.db"]


def test_a_read_only_database_can_be_read_but_refuses_writes_with_nothing_lost(
    tmp_path: Path, masks_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "ro.db"
    assert main([*masks_args, "--db", str(db)]) == 0
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = conn.execute("SELECT count(*) FROM annotations").fetchone()[0]
    capsys.readouterr()
    with hf.read_only(db):
        with open_database(db) as opened:  # reading works: the window can still show it
            with opened.session(read_only=True) as s:
                assert len(repo.list_datasets(s)) == 1
            with pytest.raises(StoreError, match=r"read-only.*nothing was written"):
                with opened.session() as s:
                    repo.get_or_create_reviewer(s, "new reviewer")
        assert main([*masks_args, "--db", str(db), "--reviewer", "other"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {db}: the database is read-only") and err.count("\n") == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM annotations").fetchone()[0] == before
