"""Hand-written SQL on the raw driver, for the few reads every request makes (the hot paths).

An ORM query costs a session, a connection checkout, statement compilation and object loading: on
SQLite about 0.5 ms of CPU for a lookup that SQLite itself answers in ten microseconds. The reads on
every request — which node a path names, the file behind an id — go through ``DirectReader``
instead: one prepared statement, rows as tuples, converted to msgspec structs by the repository
that owns the query. Everything else keeps using SQLAlchemy.

* **SQLite**: one read-only connection per worker process, used from the event loop (a statement on
  an indexed key is CPU work on cached pages, and WAL readers never wait for writers). A busy
  database (WAL recovery, a checkpoint) is waited for with ``asyncio.sleep``, never by blocking.
* **PostgreSQL**: an asyncpg pool of its own, with the same timeouts and schema as the main engine;
  asyncpg prepares and caches each statement per connection.

Queries are written once with ``?`` placeholders (``Query``); the PostgreSQL form numbers them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from stowage.db.sqlite_driver import is_busy
from stowage.errors import ServiceUnavailable

_BACKOFF_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)

Row = Sequence[Any]


class Query:
    """One statement in both dialects: ``?`` placeholders for SQLite, ``$1…$n`` for PostgreSQL."""

    __slots__ = ("postgres", "sqlite")

    def __init__(self, sql: str) -> None:
        self.sqlite = sql
        parts = sql.split("?")
        self.postgres = parts[0] + "".join(f"${index}{part}" for index, part in enumerate(parts[1:], start=1))


def timestamp(value: Any) -> datetime:
    """A UTC timestamp as either engine returns it (SQLite: SQLAlchemy's text form, no offset)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def optional_timestamp(value: Any) -> datetime | None:
    return None if value is None else timestamp(value)


class DirectReader:
    """Single-statement reads for the hot paths, on either engine (see the module docstring)."""

    def __init__(
        self,
        *,
        sqlite_path: Path | None = None,
        postgres_dsn: str | None = None,
        schema: str | None = None,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        busy_timeout: float = 10.0,
    ) -> None:
        self._sqlite_path = sqlite_path
        self._postgres_dsn = postgres_dsn
        self._schema = schema
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._busy_timeout = busy_timeout
        self._sqlite: sqlite3.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    # --- SQLite -----------------------------------------------------------------------------------

    def _sqlite_connection(self) -> sqlite3.Connection:
        connection = self._sqlite
        if connection is None:
            assert self._sqlite_path is not None
            connection = sqlite3.connect(self._sqlite_path, isolation_level=None, check_same_thread=False, timeout=0)
            connection.execute("PRAGMA query_only=ON")  # this connection only ever reads
            self._sqlite = connection
        return connection

    async def _sqlite_rows(self, query: Query, params: Sequence[Any], *, one: bool) -> Any:
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                cursor = self._sqlite_connection().execute(query.sqlite, params)
                return cursor.fetchone() if one else cursor.fetchall()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                now = time.monotonic()
                deadline = deadline or now + self._busy_timeout
                if now >= deadline:
                    raise ServiceUnavailable(
                        "The metadata database stayed locked; retry shortly.", retry_after=1
                    ) from exc
                await asyncio.sleep(_BACKOFF_SECONDS[min(attempt, len(_BACKOFF_SECONDS) - 1)])
                attempt += 1

    # --- PostgreSQL -------------------------------------------------------------------------------

    async def _postgres_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                server_settings = {
                    "application_name": "stowage",
                    "statement_timeout": str(int(self._statement_timeout * 1000)),
                }
                if self._schema:
                    server_settings["search_path"] = self._schema
                self._pool = await asyncpg.create_pool(
                    self._postgres_dsn,
                    min_size=0,
                    max_size=self._pool_size,
                    timeout=self._connect_timeout,
                    command_timeout=self._statement_timeout,
                    server_settings=server_settings,
                )
            return self._pool

    async def _postgres_rows(self, query: Query, params: Sequence[Any], *, one: bool) -> Any:
        try:
            async with asyncio.timeout(self._connect_timeout):
                pool = await self._postgres_pool()
                connection = await pool.acquire()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ServiceUnavailable("The metadata database is unreachable; retry shortly.", retry_after=5) from exc
        try:
            if one:
                return await connection.fetchrow(query.postgres, *params)
            return await connection.fetch(query.postgres, *params)
        except (
            TimeoutError,
            OSError,
            asyncpg.InterfaceError,
            asyncpg.PostgresConnectionError,
            asyncpg.QueryCanceledError,
            asyncpg.CannotConnectNowError,
        ) as exc:
            connection.terminate()  # in an unknown state: never hand it out again
            raise ServiceUnavailable("The metadata database is unreachable; retry shortly.", retry_after=5) from exc
        finally:
            await pool.release(connection)

    # --- both ---------------------------------------------------------------------------------------

    async def fetch_one(self, query: Query, params: Sequence[Any] = ()) -> Row | None:
        if self._sqlite_path is not None:
            row: Row | None = await self._sqlite_rows(query, params, one=True)
            return row
        found: Row | None = await self._postgres_rows(query, params, one=True)
        return found

    async def fetch_all(self, query: Query, params: Sequence[Any] = ()) -> list[Row]:
        if self._sqlite_path is not None:
            rows: list[Row] = await self._sqlite_rows(query, params, one=False)
            return rows
        return list(await self._postgres_rows(query, params, one=False))

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()
