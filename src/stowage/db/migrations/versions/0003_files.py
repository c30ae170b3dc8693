"""files: blobs, nodes, versions, change log, user usage

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:03:18.826480
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import stowage.db.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("refcount", sa.Integer(), nullable=False),
        sa.Column("created_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("refcount >= 0", name=op.f("ck_blobs_refcount_non_negative")),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_changes_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_changes_user_id"), ["user_id"], unique=False)

    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("parent_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("current_version_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("trashed_at", stowage.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("trash_root_id", sa.String(length=36), nullable=True),
        sa.Column("trashed_from_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint("kind IN ('file', 'folder')", name=op.f("ck_nodes_kind")),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_nodes_owner_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_id"], ["nodes.id"], name=op.f("fk_nodes_parent_id_nodes"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nodes_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index("ix_nodes_owner_id_trashed_at", ["owner_id", "trashed_at"], unique=False)
        batch_op.create_index("ix_nodes_parent_id_kind_name", ["parent_id", "kind", "name"], unique=False)
        batch_op.create_index(batch_op.f("ix_nodes_trash_root_id"), ["trash_root_id"], unique=False)
        batch_op.create_index(
            "uq_nodes_owner_id_root",
            ["owner_id"],
            unique=True,
            sqlite_where=sa.text("parent_id IS NULL"),
            postgresql_where=sa.text("parent_id IS NULL"),
        )
        batch_op.create_index(
            "uq_nodes_parent_id_name_live",
            ["parent_id", "name"],
            unique=True,
            sqlite_where=sa.text("trashed_at IS NULL"),
            postgresql_where=sa.text("trashed_at IS NULL"),
        )

    op.create_table(
        "versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("author_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_versions_node_id_nodes"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name=op.f("fk_versions_sha256_blobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_versions")),
    )
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_versions_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_versions_sha256"), ["sha256"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("used_bytes", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_check_constraint(op.f("ck_users_used_bytes_non_negative"), "used_bytes >= 0")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_users_used_bytes_non_negative"), type_="check")
        batch_op.drop_column("used_bytes")

    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_versions_sha256"))
        batch_op.drop_index(batch_op.f("ix_versions_node_id"))

    op.drop_table("versions")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_nodes_parent_id_name_live",
            sqlite_where=sa.text("trashed_at IS NULL"),
            postgresql_where=sa.text("trashed_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_nodes_trash_root_id"))
        batch_op.drop_index(
            "uq_nodes_owner_id_root",
            sqlite_where=sa.text("parent_id IS NULL"),
            postgresql_where=sa.text("parent_id IS NULL"),
        )
        batch_op.drop_index("ix_nodes_parent_id_kind_name")
        batch_op.drop_index("ix_nodes_owner_id_trashed_at")
        batch_op.drop_index(batch_op.f("ix_nodes_owner_id"))

    op.drop_table("nodes")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_changes_user_id"))

    op.drop_table("changes")
    op.drop_table("blobs")
