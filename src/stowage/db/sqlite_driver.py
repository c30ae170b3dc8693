"""SQLite for asyncio without a thread hop per statement: the ``sqlite+stowage`` SQLAlchemy dialect.

aiosqlite runs every statement in a helper thread: a queue hand-off there and a ``call_soon_threadsafe``
back, for a statement that SQLite answers in a few microseconds from the page cache. Measured here,
those hops were most of the cost of a request. This dialect runs statements in the event loop's own
thread and moves only what can wait on the disk or on another process off it:

* **statements** run in place. SQLite in WAL mode never makes a reader wait for a writer, and the
  write lock is taken up front (``BEGIN IMMEDIATE``), so a statement is CPU work on cached pages;
* **COMMIT** (the ``fsync`` of ``synchronous=FULL``) runs in a worker thread, so other requests go on
  while the disk confirms a write;
* **a busy database** (another process holds the write lock, or a checkpoint is running) never blocks
  the loop: connections have no busy handler (``busy_timeout=0``), and a statement that finds the
  database locked is retried after an ``asyncio.sleep`` with backoff, up to the busy timeout.

Statements that may take long (a search over a big tree, a consistency check) should still go to a
thread: ``Database.session(offload=True)`` gives them the aiosqlite engine.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import AdaptedConnection
from sqlalchemy.engine.url import URL
from sqlalchemy.util.concurrency import await_, in_greenlet

# Pauses between tries while another process holds the write lock (or a checkpoint runs). The first are
# short (a writer usually finishes in well under a millisecond), and none is long: the waiter sees the
# lock free only when it looks, and the holder takes it again at once while it has more to write, so
# long pauses starved the other worker (W4 with two workers: p99 330 ms with pauses growing to 50 ms,
# about 60 ms with pauses of at most 5 ms, at the same throughput).
BUSY_PAUSES = (0.0005, 0.001, 0.002, 0.005)


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY: another connection holds a lock this statement needs (not an error of the SQL)."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "database is locked" in str(exc)


def retry_while_busy(run: Callable[[], Any], busy_timeout: float) -> Any:
    """``run()``, retried after an asynchronous pause while the database is busy, for up to ``busy_timeout``
    seconds; then the last ``database is locked`` error surfaces (the engine maps it to a 503)."""
    deadline: float | None = None
    attempt = 0
    while True:
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or not in_greenlet():
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + busy_timeout
            if now >= deadline:
                raise
            pause = BUSY_PAUSES[min(attempt, len(BUSY_PAUSES) - 1)]
            attempt += 1
            await_(asyncio.sleep(min(pause, max(deadline - now, 0.0))))


class _Ready:
    """An awaitable that is done at once. SQLAlchemy's ``AsyncConnection`` checks that a statement
    awaited something (to catch a sync driver used by mistake); a statement here has nothing to wait
    for, so it awaits this — two greenlet switches, no trip through the event loop."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


_READY = _Ready()


def _show_an_await() -> None:
    if in_greenlet():
        await_(_READY)


class InLoopCursor:
    """A sqlite3 cursor whose statements wait for a busy database without blocking the event loop.

    Like aiosqlite's adapter, it reads a statement's rows when the statement runs, so they can be
    fetched later (SQLAlchemy's async results do) without touching the connection again."""

    __slots__ = ("_busy_timeout", "_cursor", "_description", "_position", "_rows")

    def __init__(self, cursor: sqlite3.Cursor, busy_timeout: float) -> None:
        self._cursor = cursor
        self._busy_timeout = busy_timeout
        self._rows: list[Any] = []
        self._position = 0
        self._description: Any = None

    def execute(self, operation: str, parameters: Any = ()) -> InLoopCursor:
        cursor = self._cursor

        def run() -> None:
            cursor.execute(operation, parameters)
            self._description = cursor.description
            self._rows = cursor.fetchall() if cursor.description is not None else []
            self._position = 0

        retry_while_busy(run, self._busy_timeout)
        _show_an_await()
        return self

    def executemany(self, operation: str, seq_of_parameters: Iterable[Any]) -> InLoopCursor:
        cursor = self._cursor
        rows = list(seq_of_parameters)  # a retry must bind the same rows again

        def run() -> None:
            cursor.executemany(operation, rows)
            self._description = cursor.description
            self._rows, self._position = [], 0

        retry_while_busy(run, self._busy_timeout)
        _show_an_await()
        return self

    def fetchone(self) -> Any:
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[Any]:
        count = size if size is not None else self._cursor.arraysize
        rows = self._rows[self._position : self._position + count]
        self._position += len(rows)
        return rows

    def fetchall(self) -> list[Any]:
        rows = self._rows[self._position :]
        self._position = len(self._rows)
        return rows

    def close(self) -> None:
        self._cursor.close()

    async def _async_soft_close(self) -> None:
        """SQLAlchemy's async results call this; the rows are already read, so there is nothing to do."""

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    def __iter__(self) -> Any:
        while (row := self.fetchone()) is not None:
            yield row


class InLoopConnection(AdaptedConnection):
    """The DBAPI connection SQLAlchemy sees: statements in place, COMMIT in a worker thread."""

    __slots__ = ("_busy_timeout", "_sqlite")

    def __init__(self, connection: sqlite3.Connection, busy_timeout: float) -> None:
        self._sqlite = connection
        self._connection = connection  # type: ignore[assignment]  # SQLAlchemy's ``driver_connection``
        self._busy_timeout = busy_timeout

    def cursor(self, *_args: Any, **_kwargs: Any) -> InLoopCursor:
        return InLoopCursor(self._sqlite.cursor(), self._busy_timeout)

    def execute(self, operation: str, parameters: Any = ()) -> InLoopCursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    def commit(self) -> None:
        connection = self._sqlite
        if not connection.in_transaction:
            return
        if in_greenlet():
            await_(asyncio.to_thread(connection.commit))  # the fsync waits in a thread, not in the loop
        else:
            connection.commit()

    def rollback(self) -> None:
        self._sqlite.rollback()

    def close(self) -> None:
        self._sqlite.close()

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._sqlite.create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        level: str | None = self._sqlite.isolation_level
        return level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._sqlite.isolation_level = value  # type: ignore[assignment]  # None or a BEGIN mode, as the driver takes

    @property
    def in_transaction(self) -> bool:
        return bool(self._sqlite.in_transaction)


class _DBAPI:
    """The module-like object SQLAlchemy asks for errors, types and ``connect``."""

    paramstyle = "qmark"

    def __init__(self) -> None:
        for name in (
            "Binary",
            "DataError",
            "DatabaseError",
            "Error",
            "IntegrityError",
            "InterfaceError",
            "InternalError",
            "NotSupportedError",
            "OperationalError",
            "PARSE_COLNAMES",
            "PARSE_DECLTYPES",
            "ProgrammingError",
            "Warning",
            "sqlite_version",
            "sqlite_version_info",
        ):
            setattr(self, name, getattr(sqlite3, name))
        self.sqlite = sqlite3

    def connect(self, *args: Any, busy_timeout: float = 10.0, **kwargs: Any) -> InLoopConnection:
        kwargs["check_same_thread"] = False  # COMMIT runs in a worker thread
        kwargs["timeout"] = 0  # no busy handler: waiting happens in the loop, asynchronously
        return InLoopConnection(sqlite3.connect(*args, **kwargs), busy_timeout)


class SQLiteDialect_stowage(SQLiteDialect_pysqlite):  # noqa: N801 - SQLAlchemy's dialect naming
    driver = "stowage"
    is_async = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _DBAPI()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool

    def get_driver_connection(self, connection: Any) -> Any:
        """The plain ``sqlite3.Connection`` behind a pooled connection (for the hand-written hot paths)."""
        return connection._sqlite

    def retrieve_dbapi_version(self, dbapi: Any) -> Any:
        return super().retrieve_dbapi_version(sqlite3)  # type: ignore[arg-type]


dialect = SQLiteDialect_stowage
