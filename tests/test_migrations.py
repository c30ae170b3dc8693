"""Migrations and the database layer, on SQLite and PostgreSQL, through the real engines."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import make_settings
from stowage.config import Settings
from stowage.db import migrate
from stowage.db.engine import SQLITE_BUSY_TIMEOUT_MS, Database
from stowage.db.tables import Instance
from stowage.errors import ServiceUnavailable


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings)
    try:
        yield db
    finally:
        await db.dispose()


async def _tables(database: Database) -> set[str]:
    async with database.read_engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    return names - {"alembic_version"}


async def test_upgrade_from_empty_reaches_head(database: Database) -> None:
    assert await migrate.current_revision(database) is None

    await migrate.upgrade(database)

    assert await migrate.current_revision(database) == migrate.head_revision()
    assert "instance" in await _tables(database)


async def test_models_and_migrations_agree(database: Database) -> None:
    await migrate.upgrade(database)

    assert await migrate.pending_model_changes(database) == []


async def test_downgrade_to_base_and_up_again(database: Database) -> None:
    await migrate.upgrade(database)

    await migrate.downgrade(database, "base")

    assert await migrate.current_revision(database) is None
    assert await _tables(database) == set()

    await migrate.upgrade(database)

    assert await migrate.current_revision(database) == migrate.head_revision()
    assert await migrate.pending_model_changes(database) == []


async def test_upgrading_twice_changes_nothing(database: Database) -> None:
    await migrate.upgrade(database)
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with database.transaction() as session:
        session.add(Instance(id=1, instance_id="00000000-0000-4000-8000-000000000001", created_at=created))

    await migrate.upgrade(database)

    assert await migrate.current_revision(database) == migrate.head_revision()
    async with database.session() as session:
        row = await session.scalar(select(Instance))
    assert row is not None
    assert row.instance_id == "00000000-0000-4000-8000-000000000001"
    assert row.created_at == created  # and it comes back timezone-aware on both engines


async def test_transaction_commits_on_success_and_rolls_back_on_error(database: Database) -> None:
    await migrate.upgrade(database)

    async def add_then_fail() -> None:
        async with database.transaction() as session:
            session.add(Instance(id=1, instance_id="rolled-back", created_at=datetime.now(UTC)))
            await session.flush()
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError, match="abandon"):
        await add_then_fail()
    async with database.session() as session:
        assert await session.scalar(select(Instance)) is None

    async with database.transaction() as session:
        session.add(Instance(id=1, instance_id="kept", created_at=datetime.now(UTC)))
    async with database.session() as session:
        kept = await session.scalar(select(Instance))
    assert kept is not None
    assert kept.instance_id == "kept"


async def test_bugs_are_not_disguised_as_outages(database: Database) -> None:
    """Constraint violations and bad SQL must surface as what they are, not as 'database unavailable'."""
    await migrate.upgrade(database)
    async with database.transaction() as session:
        session.add(Instance(id=1, instance_id="first", created_at=datetime.now(UTC)))

    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            session.add(Instance(id=1, instance_id="duplicate", created_at=datetime.now(UTC)))
    with pytest.raises(IntegrityError):  # the singleton check constraint
        async with database.transaction() as session:
            session.add(Instance(id=2, instance_id="second", created_at=datetime.now(UTC)))
    with pytest.raises(DBAPIError, match="no_such_column"):  # not ServiceUnavailable
        async with database.session() as session:
            await session.execute(text("SELECT no_such_column FROM instance"))


# --- SQLite specifics -----------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_database(data_dir: Path) -> AsyncIterator[Database]:
    db = Database(make_settings({"STOWAGE_DATA_DIR": str(data_dir)}))
    try:
        yield db
    finally:
        await db.dispose()


async def _pragmas(session: AsyncSession) -> dict[str, object]:
    found: dict[str, object] = {}
    for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout"):
        found[name] = (await session.execute(text(f"PRAGMA {name}"))).scalar_one()
    return found


async def test_sqlite_connections_are_durable_and_patient(sqlite_database: Database) -> None:
    async with sqlite_database.session() as session:
        read_pragmas = await _pragmas(session)
    async with sqlite_database.transaction() as session:
        write_pragmas = await _pragmas(session)
    async with sqlite_database.session(offload=True) as session:
        offload_pragmas = await _pragmas(session)

    for pragmas in (read_pragmas, write_pragmas, offload_pragmas):
        assert pragmas["journal_mode"] == "wal"
        assert pragmas["foreign_keys"] == 1
        assert pragmas["synchronous"] == 2  # FULL
    # Connections used in the event loop have no busy handler (it would block the loop): a busy
    # database is waited for asynchronously (see the next test). Threaded ones may block in SQLite's.
    assert read_pragmas["busy_timeout"] == write_pragmas["busy_timeout"] == 0
    assert offload_pragmas["busy_timeout"] == SQLITE_BUSY_TIMEOUT_MS


async def test_a_locked_sqlite_database_is_waited_for_without_blocking_the_loop(sqlite_database: Database) -> None:
    await _make_counter(sqlite_database)
    other_process = sqlite3.connect(sqlite_database.url.split(":///", 1)[1], isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")  # holds the write lock, as another worker's transaction would
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def increment() -> None:
        async with sqlite_database.transaction() as session:
            await session.execute(text("UPDATE counter SET value = value + 1 WHERE id = 1"))

    ticking = asyncio.create_task(ticker())
    writer = asyncio.create_task(increment())
    try:
        await asyncio.sleep(0.3)
        assert not writer.done()  # still waiting for the lock…
        waited_ticks = ticks
        other_process.execute("COMMIT")
        async with asyncio.timeout(10):
            await writer
    finally:
        ticking.cancel()
        other_process.close()

    assert waited_ticks >= 10  # …while the loop went on serving (a blocking wait would freeze the ticker)
    assert await _counter(sqlite_database) == 1


async def _read_then_write(database: Database, started: asyncio.Event, others_started: asyncio.Event) -> None:
    async with database.transaction() as session:
        current = (await session.execute(text("SELECT value FROM counter WHERE id = 1"))).scalar_one()
        started.set()
        # Give the other writer every chance to interleave; with deferred BEGIN both would now hold a read
        # snapshot and one would fail with "database is locked" when it tries to write.
        await asyncio.wait({asyncio.ensure_future(others_started.wait())}, timeout=0.2)
        await session.execute(text("UPDATE counter SET value = :value WHERE id = 1"), {"value": current + 1})


async def _make_counter(database: Database) -> None:
    async with database.write_engine.begin() as connection:
        await connection.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)"))
        await connection.execute(text("INSERT INTO counter (id, value) VALUES (1, 0)"))


async def _counter(database: Database) -> int:
    async with database.session() as session:
        result: int = (await session.execute(text("SELECT value FROM counter WHERE id = 1"))).scalar_one()
    return result


async def test_sqlite_writers_in_one_process_queue_instead_of_failing(sqlite_database: Database) -> None:
    await _make_counter(sqlite_database)
    first, second = asyncio.Event(), asyncio.Event()

    async with asyncio.timeout(30):
        await asyncio.gather(
            _read_then_write(sqlite_database, first, second),
            _read_then_write(sqlite_database, second, first),
        )

    assert await _counter(sqlite_database) == 2  # no lost update


async def test_sqlite_writers_in_two_processes_take_turns(data_dir: Path) -> None:
    """Two engines on one file behave like two workers: BEGIN IMMEDIATE makes the second wait its turn."""
    settings = make_settings({"STOWAGE_DATA_DIR": str(data_dir)})
    one, two = Database(settings), Database(settings)
    try:
        await _make_counter(one)
        first, second = asyncio.Event(), asyncio.Event()

        async with asyncio.timeout(30):
            await asyncio.gather(_read_then_write(one, first, second), _read_then_write(two, second, first))

        assert await _counter(one) == 2
    finally:
        await one.dispose()
        await two.dispose()


# --- PostgreSQL that cannot be reached -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens here once the socket is closed


def _unreachable(tmp_path: Path, port: int) -> Settings:
    return make_settings(
        {"STOWAGE_DATA_DIR": str(tmp_path / "data")},
        database_url=f"postgresql://postgres@127.0.0.1:{port}/test",
        database_connect_timeout="1",
    )


async def test_refused_postgres_connection_is_service_unavailable(tmp_path: Path) -> None:
    port = _closed_port()
    database = Database(_unreachable(tmp_path, port))
    try:
        async with asyncio.timeout(10):
            with pytest.raises(ServiceUnavailable) as caught:
                async with database.session() as session:
                    await session.execute(text("SELECT 1"))
            with pytest.raises(ServiceUnavailable) as caught_writing:
                async with database.transaction() as session:
                    await session.execute(text("SELECT 1"))
            with pytest.raises(ServiceUnavailable) as caught_pinging:
                await database.ping(3)
    finally:
        await database.dispose()

    assert caught.value.retry_after > 0
    for error in (caught.value, caught_writing.value, caught_pinging.value):
        # The driver's own error is kept for the log: the refused connect to that port.
        assert isinstance(error.__cause__, ConnectionRefusedError), repr(error.__cause__)
        assert str(port) in str(error.__cause__)


async def test_silent_postgres_server_times_out_as_service_unavailable(tmp_path: Path) -> None:
    """A server that accepts TCP connections but never answers must not hang the caller."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nobody ever reads or replies
        database = Database(_unreachable(tmp_path, silent.getsockname()[1]))
        try:
            async with asyncio.timeout(10):
                with pytest.raises(ServiceUnavailable):
                    async with database.session() as session:
                        await session.execute(text("SELECT 1"))
        finally:
            await database.dispose()
