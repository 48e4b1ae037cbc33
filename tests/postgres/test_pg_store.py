"""The store's repository tests (datasets, images, labels, models, runs, predictions, heatmaps,
scores, cascades, the report's joins) and the expert-region tests, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fundus_review.store import Database, open_database
from fundus_review.store.db import table_names
from tests.postgres.reuse import reused
from tests.unit import test_store_annotations, test_store_repo

globals().update(reused(test_store_repo, replaced={"db"}))
globals().update(reused(test_store_annotations, replaced={"db"}))


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = open_database(pg_url)
    yield database
    database.close()


def test_the_schema_and_its_migrations_apply_on_postgresql(pg_url: str) -> None:
    with open_database(pg_url) as db:
        assert db.engine.dialect.name == "postgresql"
        assert {"datasets", "images", "annotations", "heatmaps", "scores"} <= set(table_names(db))
        with db.engine.connect() as conn:
            (rev,) = conn.exec_driver_sql("SELECT version_num FROM alembic_version").one()
    with open_database(pg_url) as again:  # reopening an up-to-date database migrates nothing
        with again.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [(rev,)]
