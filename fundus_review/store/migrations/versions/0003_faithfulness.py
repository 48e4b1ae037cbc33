"""Faithfulness values per heatmap (ROAD of issue 11), with the baseline reference values.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

A new table only: `faithfulness` (heatmap, metric name, value, canonical-JSON parameters), one row
per (heatmap, metric, parameters), deleted with its heatmap. Existing tables are not touched, so
older databases upgrade without copying any table.

Frozen once released; later changes go into new revisions (see ../README).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "faithfulness",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("heatmap_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["heatmap_id"],
            ["heatmaps.id"],
            name=op.f("fk_faithfulness_heatmap_id_heatmaps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faithfulness")),
        sa.UniqueConstraint(
            "heatmap_id",
            "metric",
            "params_json",
            name=op.f("uq_faithfulness_heatmap_id_metric_params_json"),
        ),
    )


def downgrade() -> None:
    op.drop_table("faithfulness")
