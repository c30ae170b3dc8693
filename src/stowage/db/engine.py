"""Engines and sessions for SQLite and PostgreSQL, with the engine-specific settings in one place.

SQLite: WAL journal (readers never block the writer), foreign keys on, a busy timeout, and
``synchronous=FULL`` so a committed transaction survives power loss. Write transactions start with
``BEGIN IMMEDIATE`` on a separate one-connection engine: the write lock is taken up front, so two
writers can never deadlock by both upgrading a read lock, and writers inside one process queue on the
pool instead of spinning on the busy timeout. Reads use a second engine with a normal pool.

PostgreSQL: one asyncpg engine with pre-ping (a connection broken while idle is replaced, not
handed out). Every wait is bounded, so a database that vanishes — or keeps its TCP connections open
and stops answering — yields ``ServiceUnavailable`` instead of a hung request: taking a connection
(waiting for a free one, connecting, the pre-ping) by ``database_connect_timeout``, each statement by
``database_statement_timeout`` (on the server, and in asyncpg on the client, which a silent server
cannot stretch). A connection that timed out is dropped at once rather than closed politely, since a
polite close would wait for the same silent server.

A full disk is not an outage: SQLite's "database or disk is full", an OS error saying so (ENOSPC,
EDQUOT, EFBIG) and PostgreSQL's ``disk_full`` become ``InsufficientStorage``, so the operator is sent
to the disk rather than to the network.

Transactions are committed in exactly one place: ``Database.transaction()`` at the request boundary.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, inspect, text
from sqlalchemy.dialects import registry
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as SyncSession
from sqlalchemy.pool import ConnectionPoolEntry

from stowage.config import Settings
from stowage.db.direct import DirectReader, DirectTransaction, when_not_busy
from stowage.db.group_commit import GroupCommitter
from stowage.db.sqlite_driver import is_busy
from stowage.errors import InsufficientStorage, ServiceUnavailable, is_disk_full

SQLITE_BUSY_TIMEOUT_MS = 10_000
_NOT_TRANSIENT = ("no such table", "no such column", "syntax error", "has no column")
_POSTGRES_DISK_FULL = "53100"
_ASYNCPG_UNAVAILABLE = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
)  # SQLSTATE disk_full: the database server could not extend a file


registry.register("sqlite.stowage", "stowage.db.sqlite_driver", "SQLiteDialect_stowage")
_SQLITE_THREADED = "sqlite+aiosqlite://"  # the settings' spelling; statements in a helper thread
_SQLITE_IN_LOOP = "sqlite+stowage://"  # statements in the event loop (see ``sqlite_driver``)


def _normalise_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url


def is_unavailable_error(exc: BaseException) -> bool:
    """True when ``exc`` means "the database cannot be reached right now" rather than a bug.

    Connection refused/reset, timeouts and invalidated connections are transient; constraint
    violations and SQL errors are not and must surface as what they are.
    """
    if isinstance(exc, PoolTimeoutError | TimeoutError | asyncio.TimeoutError | ConnectionError | socket.gaierror):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, DBAPIError):
        return True
    # Errors of hand-written statements (``db.direct``), which SQLAlchemy does not wrap.
    if isinstance(exc, _ASYNCPG_UNAVAILABLE):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return is_busy(exc)
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, InterfaceError):
            return True
        if isinstance(exc, OperationalError):
            # Operational errors are the driver's "could not do it right now" (locked database after
            # the busy timeout, server shutting down, cancelled statement) — except a few that are
            # programming errors in disguise and must surface as bugs.
            message = str(exc.orig).lower()
            return not any(marker in message for marker in _NOT_TRANSIENT)
        orig = exc.orig
        cause = getattr(orig, "__cause__", None)
        return isinstance(cause, OSError | ConnectionError | asyncio.TimeoutError)
    return False


def is_disk_full_error(exc: BaseException) -> bool:
    """True when ``exc`` means a write found no room: on this machine's disk, or the database server's."""
    driver_error = exc.orig if isinstance(exc, DBAPIError) else exc
    return is_local_disk_full_error(exc) or getattr(driver_error, "sqlstate", None) == _POSTGRES_DISK_FULL


def is_local_disk_full_error(exc: BaseException) -> bool:
    """True when ``exc`` says this machine's disk is full: an OS error so saying, or SQLite's SQLITE_FULL."""
    if is_disk_full(exc):
        return True
    if isinstance(exc, sqlite3.Error):  # a hand-written statement's error, not wrapped by SQLAlchemy
        return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        if isinstance(orig, sqlite3.Error) and orig.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
            return True
        cause = getattr(orig, "__cause__", None)
        return isinstance(cause, OSError) and is_disk_full(cause)
    return False


async def _begin_immediate(raw: sqlite3.Connection) -> None:
    """Take SQLite's write lock, waiting asynchronously while another process holds it."""
    await when_not_busy(lambda: raw.execute("BEGIN IMMEDIATE"), SQLITE_BUSY_TIMEOUT_MS / 1000)


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class Database:
    """Owns the engines; hands out read sessions and write transactions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # what the database was built from (maintenance reads its lease settings)
        self.url = _normalise_url(settings.effective_database_url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.schema = settings.database_schema
        self.data_dir = settings.data_dir.resolve()
        self.connect_timeout = settings.database_connect_timeout
        if self.is_sqlite:
            in_loop = _SQLITE_IN_LOOP + self.url.removeprefix(_SQLITE_THREADED)
            self.read_engine = self._sqlite_engine(in_loop, pool_size=max(2, settings.database_pool_size), writer=False)
            self.write_engine = self._sqlite_engine(in_loop, pool_size=1, writer=True)
            # Reads that may take long (a search over a whole tree, a consistency check) run each statement
            # in a helper thread, so they never hold up the event loop.
            self.offload_engine = self._sqlite_engine(self.url, pool_size=2, writer=False)
        else:
            engine = self._postgres_engine(settings)
            self.read_engine = engine
            self.write_engine = engine
            self.offload_engine = engine
        # Group commit of the hot paths' hand-written write transactions (SQLite only).
        self._group_commit = GroupCommitter(self._writer_connection, _begin_immediate) if self.is_sqlite else None
        # The hot paths' hand-written reads (``db.direct``), on the same database.
        self.direct = DirectReader(
            sqlite_path=Path(self.url.split(":///", 1)[1]) if self.is_sqlite else None,
            postgres_dsn=None if self.is_sqlite else self.url.replace("postgresql+asyncpg://", "postgresql://", 1),
            schema=self.schema,
            pool_size=settings.database_pool_size,
            connect_timeout=settings.database_connect_timeout,
            statement_timeout=settings.database_statement_timeout,
            busy_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        )
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)
        # A session class of this database's own, so ``watch`` listens to its write transactions only.
        self._write_session_class: type[SyncSession] = type("WriteSession", (SyncSession,), {})
        self._write_sessions = async_sessionmaker(
            self.write_engine, expire_on_commit=False, autoflush=False, sync_session_class=self._write_session_class
        )
        self._offload_sessions = async_sessionmaker(self.offload_engine, expire_on_commit=False, autoflush=False)

    # --- engine construction --------------------------------------------------------------------

    def _sqlite_engine(self, url: str, *, pool_size: int, writer: bool) -> AsyncEngine:
        in_loop = url.startswith(_SQLITE_IN_LOOP)
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            connect_args={"busy_timeout": SQLITE_BUSY_TIMEOUT_MS / 1000} if in_loop else {},
        )
        # In the loop a busy database is waited for asynchronously (``sqlite_driver``); a helper thread
        # may simply block in SQLite's own busy handler.
        busy_timeout_ms = 0 if in_loop else SQLITE_BUSY_TIMEOUT_MS

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            # Take transaction control away from the driver so BEGIN is ours to emit.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA foreign_keys=ON",
                f"PRAGMA busy_timeout={busy_timeout_ms}",
                "PRAGMA synchronous=FULL",
            ):
                cursor.execute(pragma)
            cursor.close()
            # SQLite's own lower() folds ASCII only; searches must fold "É" like PostgreSQL does.
            dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)

        begin_statement = "BEGIN IMMEDIATE" if writer else "BEGIN"

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin_statement)

        return engine

    def _postgres_engine(self, settings: Settings) -> AsyncEngine:
        server_settings = {
            "application_name": "stowage",
            "statement_timeout": str(int(settings.database_statement_timeout * 1000)),
        }
        if settings.database_schema:
            server_settings["search_path"] = settings.database_schema
        engine = create_async_engine(
            self.url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_pool_size,
            pool_pre_ping=True,
            pool_timeout=settings.database_connect_timeout,
            pool_recycle=1800,
            connect_args={
                "timeout": settings.database_connect_timeout,
                # asyncpg's own bound on every round trip (statements, BEGIN/COMMIT/ROLLBACK, the
                # pre-ping): enforced on the client, so it holds when the server says nothing at all.
                "command_timeout": settings.database_statement_timeout,
                "server_settings": server_settings,
            },
        )

        @event.listens_for(engine.sync_engine, "invalidate")
        def _drop_at_once(dbapi_connection: Any, _record: ConnectionPoolEntry, _exc: BaseException | None) -> None:
            # SQLAlchemy closes an invalidated connection politely first (sending Terminate and waiting
            # up to 2 s for the server); a server that stopped answering would add that wait to the
            # request. The connection is being thrown away anyway: abort its socket now.
            driver = getattr(dbapi_connection, "driver_connection", None)
            if driver is not None and not driver.is_closed():
                driver.terminate()

        return engine

    # --- change notification --------------------------------------------------------------------

    def watch(
        self,
        columns: Mapping[str, frozenset[str]],
        after_commit: Callable[[], None],
        *,
        bulk_updates: frozenset[str] = frozenset(),
    ) -> None:
        """Call ``after_commit()`` once a write transaction that made a change of interest has committed.

        Of interest: an ORM change to one of ``columns[table]``, the deletion of a row of one of those
        tables, and a bulk ``UPDATE`` of a table in ``bulk_updates`` or bulk ``DELETE`` of one in
        ``columns``; inserts are not. A rolled-back transaction calls nothing. The credential cache
        uses it to learn of every revocation, whichever service made it."""
        key = f"stowage.watch.{id(after_commit)}"

        def touched(session: SyncSession) -> None:
            session.info[key] = True

        def changed(instance: Any) -> bool:
            watched = columns.get(getattr(instance, "__tablename__", ""))
            if not watched:
                return False
            state = inspect(instance)
            return any(state.attrs[name].history.has_changes() for name in watched)

        @event.listens_for(self._write_session_class, "before_flush")
        def _flushing(session: SyncSession, _context: Any, _instances: Any) -> None:
            # Before the flush: afterwards the attributes' history is reset.
            if any(getattr(i, "__tablename__", None) in columns for i in session.deleted) or any(
                changed(i) for i in session.dirty
            ):
                touched(session)

        @event.listens_for(self._write_session_class, "do_orm_execute")
        def _executed(state: ORMExecuteState) -> None:
            if not (state.is_update or state.is_delete):
                return
            table = getattr(getattr(state.statement, "table", None), "name", None)
            if (state.is_update and table in bulk_updates) or (state.is_delete and table in columns):
                touched(state.session)

        @event.listens_for(self._write_session_class, "after_commit")
        def _committed(session: SyncSession) -> None:
            if session.info.pop(key, False):
                after_commit()

        @event.listens_for(self._write_session_class, "after_transaction_end")
        def _ended(session: SyncSession, transaction: Any) -> None:
            if transaction.parent is None:  # the whole unit of work ended (a savepoint's end changes nothing)
                session.info.pop(key, None)

    # --- sessions -------------------------------------------------------------------------------

    @asynccontextmanager
    async def session(self, *, offload: bool = False) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work. Closing it at the end returns the connection with its transaction
        rolled back, while objects already loaded stay readable (a rollback would expire them).

        ``offload`` is for reads that may take long (a whole-tree search, a consistency check): on SQLite
        their statements run in a helper thread instead of the event loop."""
        sessions = self._offload_sessions if offload else self._read_sessions
        async with self._guard(), sessions() as session:
            await self._check_out(session)
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write unit of work: committed when the block ends normally, rolled back otherwise."""
        async with self._guard(), self._write_sessions() as session:
            await self._check_out(session)
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    async def _check_out(self, session: AsyncSession) -> None:
        """Take the session's PostgreSQL connection now, within ``database_connect_timeout``.

        Checkout covers waiting for a free connection, opening a new one and the pre-ping; each has a
        timeout of its own, but one after the other (a ping that times out, then a reconnect) they
        could add up, so the whole checkout gets one deadline here. SQLite checks out lazily as before:
        its writer queues on the pool by design, bounded by the busy timeout.
        """
        if self.is_sqlite:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                await session.connection()
        except TimeoutError as exc:
            raise ServiceUnavailable(
                f"The metadata database did not answer within {self.connect_timeout:g}s; retry shortly.",
                retry_after=5,
            ) from exc

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Turn driver errors into domain errors: a full disk into InsufficientStorage, "database
        unreachable" into ServiceUnavailable."""
        try:
            yield
        except (ServiceUnavailable, InsufficientStorage):
            raise
        except Exception as exc:
            if is_disk_full_error(exc):
                raise self._disk_full(exc) from exc
            if is_unavailable_error(exc):
                raise ServiceUnavailable("The metadata database is unreachable; retry shortly.", retry_after=5) from exc
            raise

    def _disk_full(self, exc: BaseException) -> InsufficientStorage:
        """The error for a write that found no room. On this machine ``path`` (for the log) is the data
        folder, where the SQLite database and its log live; a PostgreSQL server's disk is not ours to name."""
        if is_local_disk_full_error(exc):
            return InsufficientStorage(
                "The server's disk is full: the change cannot be recorded; nothing was stored. "
                "Retry once an administrator has freed space.",
                path=str(self.data_dir),
            )
        return InsufficientStorage(
            "The database server's disk is full: it cannot record the change; nothing was stored. "
            "Retry once an administrator has freed space on the database server."
        )

    # --- hand-written SQL on the hot paths (``db.direct``) -----------------------------------------

    @asynccontextmanager
    async def direct_transaction(self) -> AsyncIterator[DirectTransaction]:
        """A write unit of work in hand-written SQL: committed when the block ends normally, rolled back
        otherwise. On SQLite, units that are ready together share one transaction and one COMMIT
        (``db.group_commit``); the block is left only once that commit is durable."""
        async with self._guard():
            if self._group_commit is not None:
                async with self._group_commit.unit() as tx:
                    yield tx
                return
            pool, connection = await self.direct.acquire()
            try:
                async with connection.transaction():
                    yield DirectTransaction(postgres=connection)
            finally:
                await pool.release(connection)

    @asynccontextmanager
    async def volatile_transaction(self) -> AsyncIterator[DirectTransaction]:
        """A write unit of work in hand-written SQL whose commit does not wait for the disk: for state
        that no client is ever told is stored (a lease taken), where losing the last such commits to a
        power cut is harmless. Atomic and consistent all the same, and ordered: a later durable commit
        makes it durable too (SQLite: ``synchronous=NORMAL`` for this one transaction, safe in WAL mode;
        PostgreSQL: ``synchronous_commit = off`` for it)."""
        async with self._guard():
            if self.is_sqlite:
                async with self._writer_connection() as raw:
                    raw.execute("PRAGMA synchronous=NORMAL")
                    try:
                        await _begin_immediate(raw)
                        try:
                            yield DirectTransaction(sqlite=raw)
                        except BaseException:
                            raw.rollback()
                            raise
                        # No fsync of the WAL; in a thread all the same, for the automatic checkpoint
                        # a commit sometimes runs (that one syncs the database file).
                        await asyncio.to_thread(raw.commit)
                    finally:
                        raw.execute("PRAGMA synchronous=FULL")
                return
            pool, connection = await self.direct.acquire()
            try:
                async with connection.transaction():
                    await connection.execute("SET LOCAL synchronous_commit TO OFF")
                    yield DirectTransaction(postgres=connection)
            finally:
                await pool.release(connection)

    @asynccontextmanager
    async def _writer_connection(self) -> AsyncIterator[sqlite3.Connection]:
        """The SQLite writer connection, borrowed from the write engine's pool (so ORM transactions
        and group commits take turns on it)."""
        async with self.write_engine.connect() as connection:
            raw: sqlite3.Connection = (await connection.get_raw_connection()).driver_connection  # type: ignore[assignment]
            yield raw

    async def direct_in(self, session: AsyncSession) -> DirectTransaction:
        """Hand-written statements inside the ORM unit of work ``session`` (its connection, its transaction)."""
        connection = await session.connection()
        if not self.is_sqlite:
            # SQLAlchemy's asyncpg adapter opens the database transaction at its own first statement;
            # without one, hand-written statements would run (and commit) outside the unit of work.
            await connection.exec_driver_sql("SELECT 1")
        raw = (await connection.get_raw_connection()).driver_connection
        return DirectTransaction(sqlite=raw) if self.is_sqlite else DirectTransaction(postgres=raw)

    async def ping(self, deadline_seconds: float) -> None:
        """Run a trivial query; raise ServiceUnavailable if it does not answer in time."""
        try:
            async with asyncio.timeout(deadline_seconds), self.session() as session:
                await session.execute(text("SELECT 1"))
        except TimeoutError as exc:
            raise ServiceUnavailable(f"The metadata database did not answer within {deadline_seconds:g}s.") from exc

    async def dispose(self) -> None:
        await self.direct.close()
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()
        if self.offload_engine is not self.read_engine:
            await self.offload_engine.dispose()
