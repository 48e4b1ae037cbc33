"""Annotating through review.editor/review.commands on PostgreSQL: create, edit, soft delete,
undo/redo, read-only regions of others, and stale undo across two app instances."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fundus_review.store import open_database, repo
from tests.postgres.reuse import reused
from tests.unit import test_annotating
from tests.unit.test_annotating import H, W

globals().update(reused(test_annotating, replaced={"db_path"}))


@pytest.fixture
def db_path(pg_url: str, tmp_path: Path) -> str:
    """Like the SQLite version: one dataset with one image, but the 'path' is the server URL."""
    with open_database(pg_url) as db, db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "data")
        repo.upsert_image(s, ds, "a/IDRiD_01.png", W, H, hashlib.sha256(b"a").hexdigest())
    return pg_url
