"""Alembic environment: always run with a connection handed in by ``stowage.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from stowage.db import tables  # noqa: F401  (registers every table on the metadata)
from stowage.db.base import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `stowage migrate`, which supplies the database connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    compare_server_default=True,
)
with context.begin_transaction():
    context.run_migrations()
