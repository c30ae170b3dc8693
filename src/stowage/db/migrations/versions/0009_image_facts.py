"""image facts: size, capture time and placeholder per image content; photos sorted by capture time

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import stowage.db.base

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

LIVE = "trashed_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "image_facts",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("taken_at", stowage.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("placeholder", sa.String(length=128), nullable=True),
        sa.Column("computed_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("failure", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "failure IS NOT NULL OR (width IS NOT NULL AND height IS NOT NULL)",
            name=op.f("ck_image_facts_size_or_failure"),
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["blobs.sha256"], name=op.f("fk_image_facts_sha256_blobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_image_facts")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("taken_at", stowage.db.base.UTCDateTime(timezone=True), nullable=True))
    # Expression indexes are created with plain SQL: the same text on both engines.
    op.execute(
        "CREATE INDEX ix_nodes_live_children_taken ON nodes "
        f"(parent_id, kind, coalesce(taken_at, modified_at), name, id) WHERE {LIVE}"
    )
    op.create_index("ix_nodes_sha256", "nodes", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_nodes_sha256", table_name="nodes")
    op.execute("DROP INDEX ix_nodes_live_children_taken")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("taken_at")
    op.drop_table("image_facts")
