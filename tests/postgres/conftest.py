"""PostgreSQL for the tests in tests/postgres/ (marker ``postgres``): a fresh database per test.

``FUNDUS_REVIEW_TEST_PG`` is a SQLAlchemy URL of a server the tests may create and drop
databases on (``.ci/run`` starts a throw-away cluster on 127.0.0.1 and sets it). Without it
every test here skips with that reason; with it set but the server unreachable they fail, so a
broken CI server is never mistaken for "no server".
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

ENV = "FUNDUS_REVIEW_TEST_PG"
NO_SERVER = f"no PostgreSQL server: set {ENV} or run .ci/run"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a new, empty database on the test server; dropped after the test."""
    server = os.environ.get(ENV, "").strip()
    if not server:
        pytest.skip(NO_SERVER)
    base = make_url(server)
    name = f"fr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(f"{ENV}={server}: cannot create a test database ({exc.orig})")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # FORCE: a connection a failed test left open must not keep the database alive.
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
