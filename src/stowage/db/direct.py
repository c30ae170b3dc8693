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

Writes on the hot path (recording an upload) use ``DirectTransaction``: the same statements inside
one write transaction — on SQLite the process's writer connection (``BEGIN IMMEDIATE``, statements in
the loop, ``COMMIT`` with its fsync in a thread), on PostgreSQL an asyncpg transaction. The same
object can wrap an ORM session's connection, so a direct statement can join a unit of work that
SQLAlchemy began (``Database.direct(session)``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from stowage.db.sqlite_driver import BUSY_PAUSES, is_busy
from stowage.errors import ServiceUnavailable

Row = Sequence[Any]
T = TypeVar("T")


async def when_not_busy(run: Callable[[], T], busy_timeout: float) -> T:
    """``run()`` (a SQLite call), retried after an asynchronous pause while the database is busy; after
    ``busy_timeout`` seconds a 503 (the lock holder may be stuck)."""
    deadline: float | None = None
    attempt = 0
    while True:
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            now = time.monotonic()
            deadline = deadline or now + busy_timeout
            if now >= deadline:
                raise ServiceUnavailable("The metadata database stayed locked; retry shortly.", retry_after=1) from exc
            await asyncio.sleep(BUSY_PAUSES[min(attempt, len(BUSY_PAUSES) - 1)])
            attempt += 1


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
    # Parsed with its offset (five times cheaper than parsing and then ``replace(tzinfo=...)``).
    return datetime.fromisoformat(f"{value}+00:00")


def optional_timestamp(value: Any) -> datetime | None:
    return None if value is None else timestamp(value)


def sqlite_timestamp(moment: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite: UTC, no offset, microseconds always present
    (stored values compare as text, so every writer must use exactly this form)."""
    # isoformat pads the year to four digits, as SQLAlchemy does (strftime's %Y would write year 1 as "1").
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class DirectTransaction:
    """Statements inside one write transaction on the raw driver (see the module docstring)."""

    __slots__ = ("_postgres", "_sqlite", "is_sqlite")

    def __init__(self, *, sqlite: sqlite3.Connection | None = None, postgres: Any = None) -> None:
        self._sqlite = sqlite
        self._postgres = postgres
        self.is_sqlite = sqlite is not None

    def timestamp(self, moment: datetime) -> Any:
        """``moment`` as this engine's parameter for a timestamp column."""
        return sqlite_timestamp(moment) if self.is_sqlite else moment

    async def execute(self, query: Query, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it inserted, changed or deleted."""
        if self._sqlite is not None:
            return self._sqlite.execute(query.sqlite, params).rowcount
        status: str = await self._postgres.execute(query.postgres, *params)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def fetch_one(self, query: Query, params: Sequence[Any] = ()) -> Row | None:
        if self._sqlite is not None:
            row: Row | None = self._sqlite.execute(query.sqlite, params).fetchone()
            return row
        found: Row | None = await self._postgres.fetchrow(query.postgres, *params)
        return found

    async def fetch_all(self, query: Query, params: Sequence[Any] = ()) -> list[Row]:
        if self._sqlite is not None:
            return self._sqlite.execute(query.sqlite, params).fetchall()
        return list(await self._postgres.fetch(query.postgres, *params))


async def _keep_session(_connection: Any) -> None:
    """asyncpg's release hook: nothing to undo (see ``DirectReader._postgres_pool``)."""


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

    def timestamp(self, moment: datetime) -> Any:
        """``moment`` as this engine's parameter for a timestamp column."""
        return sqlite_timestamp(moment) if self._sqlite_path is not None else moment

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
        def run() -> Any:
            cursor = self._sqlite_connection().execute(query.sqlite, params)
            return cursor.fetchone() if one else cursor.fetchall()

        return await when_not_busy(run, self._busy_timeout)

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
                    # These connections never change session state (no SET, LISTEN or advisory lock), so
                    # a released one needs no reset query — asyncpg's default would add a round trip to
                    # every request. An open transaction is still rolled back.
                    reset=_keep_session,
                )
            return self._pool

    async def acquire(self) -> tuple[asyncpg.Pool, Any]:
        """A pooled asyncpg connection (return it with ``pool.release``), within the connect timeout."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                pool = await self._postgres_pool()
                return pool, await pool.acquire()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ServiceUnavailable("The metadata database is unreachable; retry shortly.", retry_after=5) from exc

    async def _postgres_rows(self, query: Query, params: Sequence[Any], *, one: bool) -> Any:
        pool, connection = await self.acquire()
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
