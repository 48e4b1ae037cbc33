"""Migrations: ORM == migrated schema, old databases upgrade without losing rows."""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from fundus_review.errors import StoreError
from fundus_review.store import open_database, repo
from fundus_review.store.db import MIGRATIONS_DIR, table_names
from fundus_review.store.migrate import alembic_config, migrate_to_head
from fundus_review.store.schema import Annotation, Base, Image, Label

# A realistic second revision: a change to `images` that SQLite can only make by copying the
# table and dropping the old one (what any ALTER COLUMN needs; forced here with
# recreate="always") -- and `images` is the parent of labels/annotations/heatmaps with ON DELETE
# CASCADE. Written the way the migrations README says (about five lines of real code).
# The newest shipped revision, and the id of the hypothetical next one the tests add.
HEAD = "0005"
NEXT = "0006"

REVISION_NEXT = f"""
import sqlalchemy as sa
from alembic import op

revision = "{NEXT}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("images", recreate="always") as batch_op:
        batch_op.add_column(sa.Column("quality", sa.Float(), nullable=True))


def downgrade():
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("quality")
"""


def test_orm_metadata_matches_the_migrated_schema(tmp_path: Path) -> None:
    with open_database(tmp_path / "cmp.db") as db, db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_every_orm_table_exists_after_migration(tmp_path: Path) -> None:
    with open_database(tmp_path / "t.db") as db:
        assert set(Base.metadata.tables) | {"alembic_version"} == set(table_names(db))


def _migrations_with_next(tmp_path: Path) -> Path:
    mdir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mdir, ignore=shutil.ignore_patterns("__pycache__"))
    (mdir / "versions" / f"{NEXT}_image_quality.py").write_text(REVISION_NEXT, encoding="utf-8")
    return mdir


def test_old_revision_database_upgrades_keeping_every_row(tmp_path: Path) -> None:
    mdir = _migrations_with_next(tmp_path)
    path = tmp_path / "old.db"
    # A database as the released 0001 version left it, with an image and its child rows.
    db = open_database(path)
    with db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "data")
        img = repo.upsert_image(s, ds, "a.png", 4, 3, hashlib.sha256(b"a").hexdigest())
        repo.set_label(s, img, "glaucoma", "folders")
        rev = repo.get_or_create_reviewer(s, "ref")
        repo.add_annotation(s, img, rev, "optic_disc", "mask", mask=np.eye(3, 4, dtype=bool))
    db.close()

    with open_database(path, migrations_dir=mdir) as db:
        with db.session() as s:
            assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == NEXT
            cols = {c["name"] for c in inspect(s.connection()).get_columns("images")}
            assert "quality" in cols
            # The table copy did not cascade-delete the children of `images`.
            assert s.scalar(select(Label.value)) == "glaucoma"
            ann = s.scalar(select(Annotation))
            np.testing.assert_array_equal(repo.annotation_mask(ann), np.eye(3, 4, dtype=bool))
            assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1  # back on afterwards
            assert s.execute(text("PRAGMA foreign_key_check")).fetchall() == []

    # This version of fundus-review (which knows only up to HEAD) now refuses the upgraded file.
    with pytest.raises(StoreError, match=f"'{NEXT}'.*newer"):
        open_database(path)


def test_upgrade_from_an_explicit_older_target(tmp_path: Path) -> None:
    mdir = _migrations_with_next(tmp_path)
    db = open_database(tmp_path / "step.db", migrations_dir=MIGRATIONS_DIR)
    try:
        migrate_to_head(db.engine, "step.db", mdir, target=HEAD)  # already there: no-op
        with db.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == HEAD
        migrate_to_head(db.engine, "step.db", mdir)
        with db.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == NEXT
    finally:
        db.close()


def test_downgrade_to_base_removes_every_table(tmp_path: Path) -> None:
    with open_database(tmp_path / "down.db") as db:
        with db.engine.begin() as conn:
            cfg = alembic_config(MIGRATIONS_DIR)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert table_names(db) == ["alembic_version"]
    with open_database(tmp_path / "down.db") as db:  # and it comes back on the next open
        assert set(Base.metadata.tables) < set(table_names(db))


def test_concurrent_first_opens_of_a_new_file_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_database(path).close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with open_database(path) as db, db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD


def test_a_0001_database_upgrades_to_deferred_image_identity_keeping_its_rows(
    tmp_path: Path,
) -> None:
    """The first real schema change (0002: width/height/sha256 nullable, file_stamp added)
    rebuilds `images`, the parent of labels, annotations and heatmaps."""
    from sqlalchemy import create_engine

    path = tmp_path / "v1.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate_to_head(engine, "v1.db", MIGRATIONS_DIR, target="0001")
    sha = hashlib.sha256(b"a").hexdigest()
    with engine.begin() as conn:
        conn.execute(text("PRAGMA foreign_keys = ON"))
        conn.execute(
            text("INSERT INTO datasets (id, name, root, created_at) VALUES (1, 'd', '/d', :t)"),
            {"t": "2026-01-01 00:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO images (id, dataset_id, rel_path, width, height, sha256, created_at,"
                " updated_at) VALUES (1, 1, 'a.png', 4, 3, :sha, :t, :t)"
            ),
            {"sha": sha, "t": "2026-01-01 00:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO labels (id, image_id, value, source, created_at, updated_at)"
                " VALUES (1, 1, 'glaucoma', 'folders', :t, :t)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
    engine.dispose()

    with open_database(path) as db, db.session() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        row = s.execute(text("SELECT width, height, sha256, file_stamp FROM images")).one()
        assert tuple(row) == (4, 3, sha, None)
        assert s.scalar(select(Label.value)) == "glaucoma"
        # A listed-but-unread image is now a valid row.
        ds = repo.get_or_create_dataset(s, "/d")
        s.add(Image(dataset_id=ds.id, rel_path="b.png"))
        s.flush()
        assert s.execute(text("PRAGMA foreign_key_check")).fetchall() == []


def test_migrations_render_for_postgresql() -> None:
    """The schema is not SQLite-only: the migration compiles to PostgreSQL DDL (offline mode)."""
    buf = io.StringIO()
    cfg = Config(output_buffer=buf)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", "postgresql://user@server/fundus")
    command.upgrade(cfg, "head", sql=True)
    ddl = buf.getvalue()
    for table in Base.metadata.tables:
        assert f"CREATE TABLE {table} (" in ddl
    assert "data BYTEA NOT NULL" in ddl and "TIMESTAMP WITH TIME ZONE" in ddl


def test_constraint_names_fit_postgresql_identifiers() -> None:
    names = []
    for table in Base.metadata.tables.values():
        names += [c.name for c in table.constraints] + [i.name for i in table.indexes]
    assert all(isinstance(n, str) for n in names)
    assert max(len(n) for n in names) <= 63
