"""Group commit on SQLite (``db.group_commit``): hand-written write units that are ready together share
one transaction and one COMMIT, each in a savepoint of its own.

What a client is promised does not change with batching, so that is what these tests check on a real
database file: a unit is left only once its change is durable and visible to any other connection;
a unit whose body fails takes only its own statements back; a COMMIT that fails fails every unit of
its batch (none of them was acknowledged); ORM write transactions and batches take turns on the one
writer connection without deadlock. The COMMITs are counted with a spy that calls the real method.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import make_settings, require_capability
from stowage.db import migrate
from stowage.db.direct import Query
from stowage.db.engine import Database
from stowage.db.group_commit import GroupCommitter
from stowage.errors import InsufficientStorage
from support.small_fs import CannotMount, fill, small_tmpfs

UNITS = 20

# Small tables of the test's own next to the real schema: the batching is what is under test, not a
# particular repository's statements.
_TABLES = (
    "CREATE TABLE gc_items (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
    "CREATE TABLE gc_parents (id INTEGER PRIMARY KEY)",
    "CREATE TABLE gc_children (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES gc_parents (id))",
)
INSERT_ITEM = Query("INSERT INTO gc_items (id, label) VALUES (?, ?)")
INSERT_CHILD = Query("INSERT INTO gc_children (id, parent_id) VALUES (?, ?)")


class Refused(Exception):
    """What a unit's body raises to give up half-way (a domain error would do the same)."""


async def _open_database(data_dir: Path) -> Database:
    db = Database(make_settings({"STOWAGE_DATA_DIR": str(data_dir)}))
    await migrate.upgrade(db)
    async with db.transaction() as session:
        for statement in _TABLES:
            await session.execute(text(statement))
    return db


@pytest.fixture
async def db(data_dir: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database in the test's data folder, with the test tables."""
    database = await _open_database(data_dir)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per batch COMMIT attempted (a spy around the real ``GroupCommitter._commit``)."""
    seen: list[int] = []
    real = GroupCommitter._commit

    async def counted(self: GroupCommitter, batch: Any) -> None:
        seen.append(id(batch))
        await real(self, batch)

    monkeypatch.setattr(GroupCommitter, "_commit", counted)
    return seen


def database_file(data_dir: Path) -> Path:
    return data_dir.resolve() / "stowage.db"


def stored_items(data_dir: Path) -> dict[int, str]:
    """What any other connection (another worker, a restarted server) sees in ``gc_items``."""
    with closing(sqlite3.connect(database_file(data_dir))) as fresh:
        return dict(fresh.execute("SELECT id, label FROM gc_items").fetchall())


def stored_children(data_dir: Path) -> list[int]:
    with closing(sqlite3.connect(database_file(data_dir))) as fresh:
        return [row[0] for row in fresh.execute("SELECT id FROM gc_children")]


async def insert_item(db: Database, item_id: int, label: str = "direct") -> None:
    async with db.direct_transaction() as tx:
        await tx.execute(INSERT_ITEM, (item_id, label))


# --- batching ---------------------------------------------------------------------------------------


async def test_concurrent_units_are_all_committed_with_fewer_commits_than_units(
    db: Database, data_dir: Path, commits: list[int]
) -> None:
    """The point of group commit: twenty units ready together do not pay for twenty fsyncs — and
    every one of them is still stored."""
    await asyncio.gather(*(insert_item(db, n) for n in range(UNITS)))

    assert stored_items(data_dir) == dict.fromkeys(range(UNITS), "direct")
    assert 1 <= len(commits) < UNITS, f"{len(commits)} COMMITs for {UNITS} units: nothing was batched"


async def test_a_unit_is_left_only_once_its_batch_is_committed(db: Database, data_dir: Path) -> None:
    """A client is answered when its unit ends, so by then another connection — another worker, or the
    server after a crash — must already see the change; batching must not acknowledge early."""

    async def insert_then_look(item_id: int) -> tuple[Any, ...] | None:
        await insert_item(db, item_id)
        with closing(sqlite3.connect(database_file(data_dir))) as fresh:
            row: tuple[Any, ...] | None = fresh.execute(
                "SELECT label FROM gc_items WHERE id = ?", (item_id,)
            ).fetchone()
            return row

    seen = await asyncio.gather(*(insert_then_look(n) for n in range(UNITS)))

    assert seen == [("direct",)] * UNITS


# --- failures -----------------------------------------------------------------------------------------


async def test_a_unit_that_raises_mid_batch_loses_only_its_own_rows(
    db: Database, data_dir: Path, commits: list[int]
) -> None:
    """A refused upload (quota, conflict) must not take the other uploads of its batch down with it,
    and nobody but its own caller hears about the refusal."""
    doomed = UNITS // 2

    async def insert_then_refuse() -> None:
        async with db.direct_transaction() as tx:
            await tx.execute(INSERT_ITEM, (doomed, "doomed"))
            await tx.execute(Query("UPDATE gc_items SET label = 'touched by the doomed unit'"))
            raise Refused("changed my mind")

    units = [insert_then_refuse() if n == doomed else insert_item(db, n) for n in range(UNITS)]

    outcomes = await asyncio.gather(*units, return_exceptions=True)

    assert len(commits) == 1, "the units did not share one batch, so this proves nothing about batches"
    assert isinstance(outcomes[doomed], Refused)
    assert [o for n, o in enumerate(outcomes) if n != doomed] == [None] * (UNITS - 1)
    assert stored_items(data_dir) == {n: "direct" for n in range(UNITS) if n != doomed}


async def test_a_commit_that_fails_fails_every_unit_of_its_batch_and_stores_none(
    db: Database, data_dir: Path, commits: list[int]
) -> None:
    """SQLite checks deferred foreign keys at COMMIT and refuses it: that is a COMMIT failing for the
    whole batch. No unit of it may be acknowledged, none of their rows may stay, and the writer
    connection must come back clean for the next batch."""

    async def violate_a_deferred_key() -> None:
        async with db.direct_transaction() as tx:
            await tx.execute(Query("PRAGMA defer_foreign_keys = ON"))
            await tx.execute(INSERT_CHILD, (1, 404))  # no parent 404: accepted now, refused at COMMIT

    units = [violate_a_deferred_key() if n == 3 else insert_item(db, n) for n in range(8)]

    outcomes = await asyncio.gather(*units, return_exceptions=True)

    assert len(commits) == 1, "the units did not share one batch, so this proves nothing about batches"
    for outcome in outcomes:
        assert isinstance(outcome, sqlite3.IntegrityError), outcomes
        assert "FOREIGN KEY" in str(outcome)
    assert stored_items(data_dir) == {}
    assert stored_children(data_dir) == []

    # The next batch works, and the deferral did not outlive the failed transaction: a violation is
    # refused at once again, by its own unit only.
    async def violate_an_immediate_key() -> None:
        async with db.direct_transaction() as tx:
            await tx.execute(INSERT_CHILD, (2, 404))

    after = await asyncio.gather(
        insert_item(db, 100), violate_an_immediate_key(), insert_item(db, 101), return_exceptions=True
    )

    assert after[0] is None
    assert after[2] is None
    assert isinstance(after[1], sqlite3.IntegrityError)
    assert stored_items(data_dir) == {100: "direct", 101: "direct"}
    assert stored_children(data_dir) == []


async def test_a_unit_whose_error_ends_the_whole_transaction_does_not_leave_acknowledged_rows_lost(
    db: Database, data_dir: Path
) -> None:
    """Some SQLite errors roll back the *whole* transaction rather than one statement (the docs list a
    full disk, I/O errors and ``ON CONFLICT ROLLBACK``). In a batch, that also undoes the units that
    ran before and already released their savepoints. Whatever the batch then does, a unit whose
    block ended normally has been acknowledged to its client, so its row must be stored.

    ``INSERT OR ROLLBACK`` is the deterministic way to get such an error; see the next test for a real
    full disk."""
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO gc_items (id, label) VALUES (0, 'existing')"))

    async def roll_everything_back() -> None:
        async with db.direct_transaction() as tx:
            await tx.execute(Query("INSERT OR ROLLBACK INTO gc_items (id, label) VALUES (?, ?)"), (0, "duplicate"))

    outcomes = await asyncio.gather(
        insert_item(db, 1), insert_item(db, 2), roll_everything_back(), insert_item(db, 3), return_exceptions=True
    )

    acknowledged = {n for n, outcome in zip((1, 2, None, 3), outcomes, strict=True) if n and outcome is None}
    stored = stored_items(data_dir)
    lost = sorted(acknowledged - set(stored))
    assert not lost, f"units {lost} were told their change was committed, but it is not stored: {outcomes}"
    assert isinstance(outcomes[2], sqlite3.IntegrityError), outcomes  # its own error, not a savepoint's


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Iterator[Path]:
    try:
        with small_tmpfs(tmp_path / "small-data", 16 * 1024 * 1024) as mounted:
            yield mounted
    except CannotMount as exc:
        require_capability("a small tmpfs filesystem for the full-disk test", str(exc))


async def test_a_full_disk_in_mid_batch_does_not_leave_acknowledged_rows_lost(small_data_dir: Path) -> None:
    """The realistic form of the previous test: a unit writes more than SQLite's page cache holds, the
    cache spills into the WAL mid-transaction, the disk is full, and SQLite rolls back the whole
    transaction — the batch's earlier units included. Units told "committed" must be stored, and the
    unit that hit the full disk must hear "disk full" (507), not an unrelated savepoint error."""
    db = await _open_database(small_data_dir)
    try:
        with closing(sqlite3.connect(database_file(small_data_dir))) as outside:
            outside.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL starts empty: no room to reuse
        ballast = fill(small_data_dir, leave=1024 * 1024)

        async def too_big() -> None:
            async with db.direct_transaction() as tx:
                await tx.execute(INSERT_ITEM, (100, "x" * 6_000_000))  # more than the cache and the disk

        outcomes = await asyncio.gather(
            insert_item(db, 1), insert_item(db, 2), too_big(), insert_item(db, 3), return_exceptions=True
        )
        ballast.unlink()

        acknowledged = {n for n, outcome in zip((1, 2, None, 3), outcomes, strict=True) if n and outcome is None}
        lost = sorted(acknowledged - set(stored_items(small_data_dir)))
        assert not lost, f"units {lost} were told their change was committed, but it is not stored: {outcomes}"
        assert isinstance(outcomes[2], InsufficientStorage), outcomes
    finally:
        await db.dispose()


# --- taking turns with the ORM and with other processes ----------------------------------------------


async def test_orm_transactions_and_direct_units_interleave_without_deadlock(db: Database, data_dir: Path) -> None:
    """ORM write transactions and batches share the one writer connection; mixed concurrently (the ORM
    side pausing while it holds the connection) both kinds must get through and commit."""

    async def orm_write(item_id: int) -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO gc_items (id, label) VALUES (:id, 'orm')"), {"id": item_id})
            await asyncio.sleep(0.001)  # hold the writer across a turn of the loop, as a slow request does
            await session.execute(text("UPDATE gc_items SET label = 'orm' WHERE id = :id"), {"id": item_id})

    work = [orm_write(n) if n % 3 == 0 else insert_item(db, n) for n in range(30)]

    async with asyncio.timeout(30):
        await asyncio.gather(*work)

    assert stored_items(data_dir) == {n: "orm" if n % 3 == 0 else "direct" for n in range(30)}


async def test_a_unit_cancelled_while_waiting_for_the_writer_does_not_cancel_the_others(
    db: Database, data_dir: Path
) -> None:
    """A client that goes away (or a request deadline) cancels its own request. While the writer
    connection is busy with an ORM transaction, the first unit waits to open the next batch and the
    ones after it wait for that opening; cancelling the first must leave the others to go through."""
    release = asyncio.Event()
    holding = asyncio.Event()

    async def hold_the_writer() -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO gc_items (id, label) VALUES (0, 'orm')"))
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_writer())
    await holding.wait()
    opener = asyncio.create_task(insert_item(db, 1))
    await asyncio.sleep(0.02)  # let it start waiting for the writer connection
    joiners = [asyncio.create_task(insert_item(db, n)) for n in (2, 3)]
    await asyncio.sleep(0.02)  # and these wait for the batch it opens

    opener.cancel()
    await asyncio.sleep(0.01)
    release.set()

    async with asyncio.timeout(30):
        outcomes = await asyncio.gather(opener, *joiners, holder, return_exceptions=True)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1:] == [None, None, None], outcomes
    assert stored_items(data_dir) == {0: "orm", 2: "direct", 3: "direct"}


async def test_a_unit_waits_for_another_process_write_lock_without_blocking_the_loop(
    db: Database, data_dir: Path
) -> None:
    """Another process (a CLI run, another worker) holding SQLite's write lock makes a unit wait — it
    neither fails at once nor freezes the event loop, and it goes through once the lock is released."""
    with closing(sqlite3.connect(database_file(data_dir), isolation_level=None)) as other_process:
        other_process.execute("BEGIN IMMEDIATE")
        unit = asyncio.create_task(insert_item(db, 7))
        # Other work goes on meanwhile (a unit blocking the loop would keep these sleeps from returning
        # until SQLite's own busy timeout made it fail).
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert not unit.done(), unit
        other_process.execute("ROLLBACK")

    async with asyncio.timeout(10):
        await unit
    assert stored_items(data_dir) == {7: "direct"}


# --- volatile transactions (a lease taken: no fsync at its commit) ---------------------------------


async def _synchronous_level(db: Database) -> int:
    async with db._writer_connection() as raw:
        level: int = raw.execute("PRAGMA synchronous").fetchone()[0]
    return level


async def test_a_volatile_transaction_commits_and_the_writer_stays_durable(db: Database, data_dir: Path) -> None:
    async with db.volatile_transaction() as tx:
        await tx.execute(INSERT_ITEM, (1, "lease"))
    await insert_item(db, 2)  # a durable unit after it, on the same writer connection

    assert stored_items(data_dir) == {1: "lease", 2: "direct"}
    assert await _synchronous_level(db) == 2  # FULL again for every other transaction


async def test_a_volatile_transaction_that_raises_stores_nothing(db: Database, data_dir: Path) -> None:
    async def give_up_half_way() -> None:
        async with db.volatile_transaction() as tx:
            await tx.execute(INSERT_ITEM, (1, "lease"))
            raise Refused

    with pytest.raises(Refused):
        await give_up_half_way()

    assert stored_items(data_dir) == {}
    assert await _synchronous_level(db) == 2
