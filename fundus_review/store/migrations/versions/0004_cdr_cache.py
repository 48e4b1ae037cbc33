"""Cached cup-to-disc ratios per image and reviewer (the browser's CDR column, issue 15).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

A new table only: `cdr_cache` (image, reviewer, vertical / horizontal / area CDR), one row per
(image, reviewer) with both an optic disc and an optic cup, deleted with its image or reviewer.
Existing tables are not touched; the rows of regions drawn before this revision are computed by
the app when a dataset is opened (``app.cdr.refresh_cdr_cache``).

Frozen once released; later changes go into new revisions (see ../README).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cdr_cache",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("vertical", sa.Float(), nullable=True),
        sa.Column("horizontal", sa.Float(), nullable=True),
        sa.Column("area", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_cdr_cache_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["reviewers.id"],
            name=op.f("fk_cdr_cache_reviewer_id_reviewers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdr_cache")),
        sa.UniqueConstraint(
            "image_id", "reviewer_id", name=op.f("uq_cdr_cache_image_id_reviewer_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("cdr_cache")
