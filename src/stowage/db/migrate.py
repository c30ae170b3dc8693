"""Apply, inspect and check Alembic migrations against the configured database.

Migrations run from the ``stowage`` command (``migrate``, and ``serve`` before any worker starts),
never from inside a worker, so several workers cannot race to migrate. On PostgreSQL an advisory
lock additionally serialises concurrent ``migrate`` runs from several machines.
"""

from __future__ import annotations

import warnings
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from stowage.db import tables  # noqa: F401  (registers every table on the metadata)
from stowage.db.base import Base
from stowage.db.engine import Database

_MIGRATION_LOCK_KEY = 0x53544F57  # "STOW"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "stowage.db:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(database: Database) -> str | None:
    async with database.read_engine.connect() as connection:
        return await connection.run_sync(_current)


async def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest)."""

    def _run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            if database.schema:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
        command.upgrade(alembic_config(connection), revision)

    async with database.write_engine.begin() as connection:
        await connection.run_sync(_run)


async def downgrade(database: Database, revision: str) -> None:
    def _run(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    async with database.write_engine.begin() as connection:
        await connection.run_sync(_run)


# Indexes on expressions, which SQLite's reflection skips (with a warning): their migrations create
# them with the same SQL on both engines, so the comparison leaves them out.
EXPRESSION_INDEXES = frozenset({"ix_nodes_live_children_taken"})


def _compared(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Leave out the optional PostgreSQL trigram index (created by migration 0004 when pg_trgm exists)
    and the expression indexes."""
    return not (type_ == "index" and name is not None and (name.endswith("_trgm") or name in EXPRESSION_INDEXES))


async def pending_model_changes(database: Database) -> list[Any]:
    """Differences between the tables in code and the migrated schema (empty when in step).

    The same comparison as ``alembic check``: run after ``upgrade`` in CI so a model change without
    a migration fails the build.
    """

    def _compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "target_metadata": Base.metadata,
                "include_object": _compared,
            },
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
            return list(compare_metadata(context, Base.metadata))

    async with database.read_engine.connect() as connection:
        return await connection.run_sync(_compare)
