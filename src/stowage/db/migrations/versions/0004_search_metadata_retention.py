"""search key, starred, custom metadata, upload time; pinned versions; maintenance runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import stowage.db.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NEW_NODE_COLUMNS = ("search_name", "starred", "properties", "uploaded_at")
TRIGRAM_INDEX = "ix_nodes_search_name_trgm"
BACKFILL_BATCH = 1000


def upgrade() -> None:
    op.add_column(
        "nodes", sa.Column("search_name", sa.String(length=1024), server_default=sa.text("''"), nullable=False)
    )
    op.add_column("nodes", sa.Column("starred", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("nodes", sa.Column("properties", sa.JSON(), nullable=True))
    op.add_column("nodes", sa.Column("uploaded_at", stowage.db.base.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_nodes_owner_id_uploaded_at", "nodes", ["owner_id", "uploaded_at"], unique=False)
    op.create_index(
        "ix_nodes_owner_id_starred",
        "nodes",
        ["owner_id"],
        unique=False,
        sqlite_where=sa.text("starred"),
        postgresql_where=sa.text("starred"),
    )
    op.add_column("versions", sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "maintenance_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("started_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", stowage.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_runs")),
    )
    op.create_index("ix_maintenance_runs_kind_id", "maintenance_runs", ["kind", "id"], unique=False)
    _backfill()
    if op.get_bind().dialect.name == "postgresql":
        _create_trigram_index()


def _backfill() -> None:
    """Fold existing names and date existing content (the current version's time, else creation)."""
    bind = op.get_bind()
    nodes = sa.table(
        "nodes",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("search_name", sa.String),
        sa.column("kind", sa.String),
        sa.column("created_at", stowage.db.base.UTCDateTime(timezone=True)),
        sa.column("uploaded_at", stowage.db.base.UTCDateTime(timezone=True)),
        sa.column("current_version_id", sa.String),
    )
    versions = sa.table(
        "versions",
        sa.column("id", sa.String),
        sa.column("created_at", stowage.db.base.UTCDateTime(timezone=True)),
    )
    after = ""
    while True:
        rows = bind.execute(
            sa.select(nodes.c.id, nodes.c.name).where(nodes.c.id > after).order_by(nodes.c.id).limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            nodes.update().where(nodes.c.id == sa.bindparam("node_id")).values(search_name=sa.bindparam("folded")),
            [{"node_id": row.id, "folded": stowage.db.base.search_key(row.name)} for row in rows],
        )
        after = rows[-1].id
    content_time = sa.select(versions.c.created_at).where(versions.c.id == nodes.c.current_version_id).scalar_subquery()
    bind.execute(
        nodes.update()
        .where(nodes.c.kind == "file")
        .values(uploaded_at=sa.func.coalesce(content_time, nodes.c.created_at))
    )


def _create_trigram_index() -> None:
    """A trigram index makes ``search_name LIKE '%text%'`` an index scan on PostgreSQL.

    ``pg_trgm`` ships with PostgreSQL but creating it needs a privileged role; without it search still
    works (the owner index narrows the scan) and the migration says so instead of failing.
    """
    bind = op.get_bind()
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).scalar()
    if available is None:
        return
    installed = bind.execute(
        sa.text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()
    if installed is None:
        try:
            with bind.begin_nested():
                bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"))
        except sa.exc.DBAPIError:
            return
        installed = "public"
    op.execute(f"CREATE INDEX {TRIGRAM_INDEX} ON nodes USING gin (search_name {_quote(installed)}.gin_trgm_ops)")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")
    op.drop_index("ix_maintenance_runs_kind_id", table_name="maintenance_runs")
    op.drop_table("maintenance_runs")
    op.execute("ALTER TABLE versions DROP COLUMN pinned")
    op.drop_index("ix_nodes_owner_id_starred", table_name="nodes")
    op.drop_index("ix_nodes_owner_id_uploaded_at", table_name="nodes")
    for column in NEW_NODE_COLUMNS:
        op.execute(f"ALTER TABLE nodes DROP COLUMN {column}")
