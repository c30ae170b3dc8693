"""uploads: resumable (tus) upload sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import stowage.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=True),
        sa.Column("received_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("folder_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("on_conflict", sa.String(length=8), nullable=False),
        sa.Column("upload_metadata", sa.Text(), nullable=True),
        sa.Column("concat_parts", sa.Text(), nullable=True),
        sa.Column("created_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lock_token", sa.String(length=36), nullable=True),
        sa.Column("locked_until", stowage.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", stowage.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("node_id", sa.String(length=36), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.CheckConstraint("kind IN ('single', 'partial', 'final')", name=op.f("ck_uploads_kind")),
        sa.CheckConstraint("on_conflict IN ('fail', 'replace', 'rename')", name=op.f("ck_uploads_on_conflict")),
        sa.CheckConstraint("received_bytes >= 0", name=op.f("ck_uploads_received_non_negative")),
        sa.CheckConstraint(
            "length IS NULL OR received_bytes <= length", name=op.f("ck_uploads_received_within_length")
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_uploads_owner_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_uploads_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_uploads_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_uploads_expires_at"))
        batch_op.drop_index(batch_op.f("ix_uploads_owner_id"))
    op.drop_table("uploads")
