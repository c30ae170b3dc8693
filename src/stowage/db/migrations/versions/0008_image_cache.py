"""image_derivatives: the cache of image derivatives (thumbnails, transforms)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import stowage.db.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_derivatives",
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("params", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size >= 0", name=op.f("ck_image_derivatives_size_non_negative")),
        sa.PrimaryKeyConstraint("source_sha256", "params", name=op.f("pk_image_derivatives")),
    )
    with op.batch_alter_table("image_derivatives", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_derivatives_sha256"), ["sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_image_derivatives_last_used_at"), ["last_used_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_derivatives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_derivatives_last_used_at"))
        batch_op.drop_index(batch_op.f("ix_image_derivatives_sha256"))
    op.drop_table("image_derivatives")
