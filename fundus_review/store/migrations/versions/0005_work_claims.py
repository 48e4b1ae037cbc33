"""Work claims: concurrent analyze runs on one database share the images (issue 13).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A new table only: `work_claims` (model, recipe = the CAM run ids computed together, image,
owner, claimed / expires / finished times), unique per (model, recipe, image), deleted with its
model or image. Existing tables are not touched.

Frozen once released; later changes go into new revisions (see ../README).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("recipe", sa.String(length=255), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_work_claims_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_work_claims_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_claims")),
        sa.UniqueConstraint(
            "model_id", "recipe", "image_id", name=op.f("uq_work_claims_model_id_recipe_image_id")
        ),
    )
    op.create_index(op.f("ix_work_claims_image_id"), "work_claims", ["image_id"], unique=False)
    # renew / release / finish filter on the owner's unfinished claims, in every heartbeat
    op.create_index("ix_work_claims_owner_finished", "work_claims", ["owner", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_work_claims_owner_finished", table_name="work_claims")
    op.drop_index(op.f("ix_work_claims_image_id"), table_name="work_claims")
    op.drop_table("work_claims")
