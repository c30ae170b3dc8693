"""leases: cluster-wide leases (one housekeeping pass at a time), the node of each maintenance run, and
the fingerprint of the nodes' shared secret

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import stowage.db.base

revision = "0010"
# Written on a branch where 0007 is the newest revision; on main it follows 0009 (images).
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("maintenance_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=200), nullable=True))
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_check", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_column("secret_check")
    with op.batch_alter_table("maintenance_runs", schema=None) as batch_op:
        batch_op.drop_column("node")
    op.drop_table("leases")
