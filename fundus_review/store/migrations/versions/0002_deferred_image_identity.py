"""Images can be listed before their size and content hash are read; record the file stamp.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Opening a folder of 10,000 photographs must show them at once, so `images` rows are inserted
from the directory listing and `width`, `height` and `sha256` are filled in by a background pass.
`file_stamp` (size:mtime_ns:ctime_ns:inode when the file was read) replaces the per-user JSON
cache that used to decide whether a file must be hashed again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("file_stamp", sa.String(length=96), nullable=True))
        batch_op.alter_column("width", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("height", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("sha256", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    # Rows never read have no size to keep; they come back on the next registration.
    op.execute("DELETE FROM images WHERE sha256 IS NULL OR width IS NULL OR height IS NULL")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.alter_column("sha256", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("height", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("width", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("file_stamp")
