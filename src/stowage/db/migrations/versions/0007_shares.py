"""shares: share links and shares with other users

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import stowage.db.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LIVE_USER_SHARE = "kind = 'user' AND revoked_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("grantee_user_id", sa.String(length=36), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("permission", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("expires_at", stowage.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("max_downloads", sa.Integer(), nullable=True),
        sa.Column("download_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", stowage.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('link', 'user')", name=op.f("ck_shares_kind")),
        sa.CheckConstraint("permission IN ('read', 'read_write', 'drop')", name=op.f("ck_shares_permission")),
        sa.CheckConstraint(
            "(kind = 'link' AND token_hash IS NOT NULL AND grantee_user_id IS NULL AND permission <> 'read_write')"
            " OR (kind = 'user' AND token_hash IS NULL AND grantee_user_id IS NOT NULL AND permission <> 'drop'"
            " AND password_hash IS NULL AND max_downloads IS NULL)",
            name=op.f("ck_shares_kind_fields"),
        ),
        sa.CheckConstraint("download_count >= 0", name=op.f("ck_shares_download_count_non_negative")),
        sa.CheckConstraint("max_downloads IS NULL OR max_downloads > 0", name=op.f("ck_shares_max_downloads_positive")),
        sa.ForeignKeyConstraint(
            ["grantee_user_id"], ["users.id"], name=op.f("fk_shares_grantee_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_shares_node_id_nodes"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_shares_owner_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_shares_token_hash")),
    )
    with op.batch_alter_table("shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shares_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_shares_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_shares_grantee_user_id"), ["grantee_user_id"], unique=False)
        batch_op.create_index(
            "uq_shares_node_id_grantee_live",
            ["node_id", "grantee_user_id"],
            unique=True,
            sqlite_where=sa.text(LIVE_USER_SHARE),
            postgresql_where=sa.text(LIVE_USER_SHARE),
        )


def downgrade() -> None:
    with op.batch_alter_table("shares", schema=None) as batch_op:
        batch_op.drop_index("uq_shares_node_id_grantee_live")
        batch_op.drop_index(batch_op.f("ix_shares_grantee_user_id"))
        batch_op.drop_index(batch_op.f("ix_shares_owner_id"))
        batch_op.drop_index(batch_op.f("ix_shares_node_id"))
    op.drop_table("shares")
