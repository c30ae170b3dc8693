"""Hand-written SQL on the raw driver (``db.direct``, ``files.direct_repository``), on both engines.

The hot paths skip SQLAlchemy, so what SQLAlchemy used to guarantee must now hold by hand: the same
statement text works on both engines (``?`` numbered for PostgreSQL), timestamps written by hand are
the very text the ORM writes (SQLite compares them as text), a path resolves to the owner's live node
and nothing else, and a hand-written statement joined to an ORM unit of work is part of its
transaction — it sees what the session flushed and goes when the session rolls back.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from files_helpers import download, new_account, node_path, put_raw
from stowage.blobs import LocalBlobStore
from stowage.config import Settings
from stowage.db import direct as direct_module
from stowage.db import migrate
from stowage.db.direct import Query, Row, sqlite_timestamp, timestamp, when_not_busy
from stowage.db.engine import Database
from stowage.db.tables import Node, User
from stowage.errors import ServiceUnavailable
from stowage.files import direct_repository
from stowage.files.services import FileDeps, FileServices
from stowage.policy import CredentialKind, Principal, Role, Scope

DEEP = ["one", "two", "three", "four", "five"]


class Boom(Exception):
    """Raised inside a unit of work to make it roll back."""


@dataclass
class Tree:
    db: Database
    files: FileServices
    alice: Principal
    bob: Principal


def _principal(user_id: str) -> Principal:
    return Principal(
        user_id=user_id,
        role=Role.USER,
        scopes=frozenset({Scope.READ, Scope.WRITE}),
        kind=CredentialKind.SESSION,
        credential_id="direct-sql-test",
    )


def _user(user_id: str, email: str, now: datetime | None = None) -> User:
    moment = now or datetime.now(UTC)
    return User(
        id=user_id,
        email=email,
        display_name=email.split("@", maxsplit=1)[0],
        password_hash="x",
        role="user",
        created_at=moment,
        updated_at=moment,
    )


@asynccontextmanager
async def _tree(settings: Settings) -> AsyncIterator[Tree]:
    """A migrated database with two users and the real file services (which build the trees)."""
    db = Database(settings)
    try:
        await migrate.upgrade(db)
        alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
        async with db.transaction() as session:
            session.add_all([_user(alice, "alice@example.com"), _user(bob, "bob@example.com")])
        files = FileServices.build(
            FileDeps(settings=settings, database=db, store=LocalBlobStore(settings.data_dir.resolve()))
        )
        yield Tree(db=db, files=files, alice=_principal(alice), bob=_principal(bob))
    finally:
        await db.dispose()


@pytest.fixture
async def tree(settings: Settings) -> AsyncIterator[Tree]:
    async with _tree(settings) as built:
        yield built


async def _mkdir_p(tree: Tree, principal: Principal, parts: Sequence[str]) -> list[str]:
    """Create ``/parts…`` for ``principal``; the ids of every folder on the way, outermost first."""
    ids = []
    for depth in range(1, len(parts) + 1):
        folder, _ = await tree.files.tree.create_folder_path(principal, "/" + "/".join(parts[:depth]))
        ids.append(folder.id)
    return ids


async def _orm_node(db: Database, node_id: str) -> Node:
    async with db.session() as session:
        node = await session.get(Node, node_id)
    assert node is not None
    return node


class CountingFetcher:
    """The real ``DirectReader``, with every statement it is asked to run recorded."""

    def __init__(self, db: Database) -> None:
        self.reader = db.direct
        self.statements: list[str] = []

    async def fetch_one(self, query: Query, params: Sequence[Any] = ()) -> Row | None:
        self.statements.append(query.sqlite)
        return await self.reader.fetch_one(query, params)

    async def fetch_all(self, query: Query, params: Sequence[Any] = ()) -> list[Row]:
        self.statements.append(query.sqlite)
        return await self.reader.fetch_all(query, params)


# --- Query ----------------------------------------------------------------------------------------------


def test_query_numbers_the_placeholders_for_postgresql_in_order() -> None:
    """One text for both engines: SQLite keeps ``?``, PostgreSQL gets ``$1…$n`` left to right, the rest
    of the text untouched."""
    query = Query("SELECT a FROM t WHERE b = ? AND c IN (?, ?) ORDER BY d LIMIT ?")

    assert query.sqlite == "SELECT a FROM t WHERE b = ? AND c IN (?, ?) ORDER BY d LIMIT ?"
    assert query.postgres == "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) ORDER BY d LIMIT $4"
    assert Query("SELECT 1").postgres == "SELECT 1"
    assert Query("?").postgres == "$1"


async def test_a_query_binds_its_parameters_in_order_on_both_engines(tree: Tree) -> None:
    """The numbering is right only if the engine binds the n-th value to the n-th placeholder: the
    same three values in the wrong order must find nothing."""
    query = Query("SELECT email FROM users WHERE id = ? AND display_name = ? AND role = ?")

    found = await tree.db.direct.fetch_one(query, (tree.alice.user_id, "alice", "user"))
    swapped = await tree.db.direct.fetch_one(query, (tree.alice.user_id, "user", "alice"))

    assert found is not None
    assert tuple(found) == ("alice@example.com",)
    assert swapped is None


# --- timestamps -------------------------------------------------------------------------------------------


MOMENTS = [
    pytest.param(datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC), id="microseconds"),
    pytest.param(datetime(2024, 1, 1, tzinfo=UTC), id="whole-second"),
    pytest.param(datetime(2024, 6, 1, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))), id="offset"),
    pytest.param(datetime(1, 1, 1, tzinfo=UTC), id="year-1-go-zero-time"),
    pytest.param(datetime(999, 12, 31, 23, 59, 59, 5, tzinfo=UTC), id="year-999"),
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("moment", MOMENTS)
async def test_sqlite_timestamp_is_the_text_sqlalchemy_stores(tree: Tree, settings: Settings, moment: datetime) -> None:
    """SQLite has no timestamp type: values are text and compare as text (ranges, ordering, retention).
    A hand-written write must therefore produce exactly what the ORM writes for the same moment, and
    the hot paths' reader must read it back as that moment."""
    user_id = str(uuid.uuid4())
    async with tree.db.transaction() as session:
        session.add(_user(user_id, "clock@example.com", now=moment))
    with closing(sqlite3.connect(settings.data_dir.resolve() / "stowage.db")) as raw:
        (orm_text,) = raw.execute("SELECT created_at FROM users WHERE id = ?", (user_id,)).fetchone()

    assert sqlite_timestamp(moment) == orm_text
    assert timestamp(sqlite_timestamp(moment)) == moment


async def test_an_upload_dated_year_one_stays_readable(client: httpx.AsyncClient) -> None:
    """``X-Modified-At: 0001-01-01T00:00:00Z`` is what a client sends for "no date" in Go (the zero
    time). The upload is accepted, so the file must stay readable afterwards: its metadata, its
    content, and replacing it."""
    alice = await new_account(client, "alice@example.com")
    zero_time = {"X-Modified-At": "0001-01-01T00:00:00Z"}

    created = await put_raw(client, alice, alice.root_id, "undated.txt", b"no date", headers=zero_time)

    assert created.status_code == 201, created.text
    node_id = created.json()["id"]
    described = await client.get(node_path(node_id), headers=alice.headers)
    assert described.status_code == 200, described.text
    assert described.json()["modified_at"].startswith("0001-01-01T00:00:00")
    fetched = await download(client, alice, node_id)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == b"no date"
    replaced = await put_raw(
        client, alice, alice.root_id, "undated.txt", b"still no date", headers=zero_time, on_conflict="replace"
    )
    assert replaced.status_code == 200, replaced.text


# --- paths and ids --------------------------------------------------------------------------------------


async def test_a_path_resolves_to_the_live_node_in_one_statement_at_any_depth(tree: Tree) -> None:
    """Root, one level and five levels: each a single statement, each the node the ORM has there."""
    root_id = (await tree.files.tree.root(tree.alice)).id
    (top,) = await _mkdir_p(tree, tree.alice, ["top"])
    deep = await _mkdir_p(tree, tree.alice, DEEP)

    for parts, expected_id in (([], root_id), (["top"], top), (DEEP, deep[-1]), (DEEP[:3], deep[2])):
        fetcher = CountingFetcher(tree.db)

        found = await direct_repository.live_node_at(fetcher, tree.alice.user_id, parts)

        assert found is not None, parts
        assert len(fetcher.statements) == 1, fetcher.statements
        orm = await _orm_node(tree.db, expected_id)
        assert (found.id, found.owner_id, found.parent_id, found.kind, found.name) == (
            orm.id,
            orm.owner_id,
            orm.parent_id,
            orm.kind,
            orm.name,
        )
        assert (found.created_at, found.modified_at, found.trashed_at) == (orm.created_at, orm.modified_at, None)


async def test_a_missing_or_trashed_component_resolves_to_nothing(tree: Tree) -> None:
    """Any step that is not a live child ends the walk: a name that does not exist, or a folder in the
    trash (its subtree is gone from the tree too) — while a new live folder of the trashed one's name
    is found."""
    await _mkdir_p(tree, tree.alice, DEEP)
    ids = await _mkdir_p(tree, tree.alice, ["bin", "old", "leaf"])
    await tree.files.trash.trash(tree.alice, ids[1])  # /bin/old, with /bin/old/leaf inside
    alice = tree.alice.user_id

    assert await direct_repository.live_node_at(tree.db.direct, alice, ["one", "nope", "three"]) is None
    assert await direct_repository.live_node_at(tree.db.direct, alice, ["nope"]) is None
    assert await direct_repository.live_node_at(tree.db.direct, alice, [*DEEP, "six"]) is None
    assert await direct_repository.live_node_at(tree.db.direct, alice, ["bin", "old"]) is None
    assert await direct_repository.live_node_at(tree.db.direct, alice, ["bin", "old", "leaf"]) is None
    live_bin = await direct_repository.live_node_at(tree.db.direct, alice, ["bin"])
    assert live_bin is not None
    assert live_bin.id == ids[0]

    reborn = await _mkdir_p(tree, tree.alice, ["bin", "old"])
    found = await direct_repository.live_node_at(tree.db.direct, alice, ["bin", "old"])
    assert found is not None
    assert found.id == reborn[-1] != ids[1]
    assert found.trashed_at is None


async def test_a_path_never_resolves_to_another_owners_node(tree: Tree) -> None:
    """Two users with the same folders: each path finds the caller's own node; a path only the other
    user has finds nothing, and a user without a root finds not even a root."""
    alice_ids = await _mkdir_p(tree, tree.alice, DEEP)
    bob_ids = await _mkdir_p(tree, tree.bob, DEEP)
    await _mkdir_p(tree, tree.bob, ["bobs-only"])
    alice_root = (await tree.files.tree.root(tree.alice)).id
    bob_root = (await tree.files.tree.root(tree.bob)).id

    for depth in range(len(DEEP) + 1):
        for principal, ids, root in ((tree.alice, alice_ids, alice_root), (tree.bob, bob_ids, bob_root)):
            found = await direct_repository.live_node_at(tree.db.direct, principal.user_id, DEEP[:depth])
            assert found is not None
            assert found.owner_id == principal.user_id
            assert found.id == (ids[depth - 1] if depth else root)

    assert await direct_repository.live_node_at(tree.db.direct, tree.alice.user_id, ["bobs-only"]) is None
    assert await direct_repository.live_node_at(tree.db.direct, str(uuid.uuid4()), []) is None


async def test_node_by_id_returns_trashed_nodes_with_their_trash_time(tree: Tree) -> None:
    """Look-ups by id see the trash too (restoring and purging need it); the caller decides, by
    ``trashed_at``, whether a trashed node counts."""
    folder, _ = await tree.files.tree.create_folder_path(tree.alice, "/going")
    live = await direct_repository.node_by_id(tree.db.direct, folder.id)
    assert live is not None
    assert live.trashed_at is None

    await tree.files.trash.trash(tree.alice, folder.id)

    trashed = await direct_repository.node_by_id(tree.db.direct, folder.id)
    orm = await _orm_node(tree.db, folder.id)
    assert trashed is not None
    assert orm.trashed_at is not None
    assert trashed.trashed_at == orm.trashed_at
    assert (trashed.id, trashed.owner_id, trashed.name) == (folder.id, tree.alice.user_id, "going")
    assert await direct_repository.node_by_id(tree.db.direct, str(uuid.uuid4())) is None


# --- hand-written statements inside an ORM unit of work -----------------------------------------------------


EMAIL_OF = Query("SELECT email FROM users WHERE id = ?")
RENAME = Query("UPDATE users SET display_name = ? WHERE id = ?")
INSERT_USER = Query(
    "INSERT INTO users (id, email, display_name, password_hash, role, used_bytes, created_at, updated_at) "
    "VALUES (?, ?, 'direct', 'x', 'user', 0, ?, ?)"
)


async def _display_name(db: Database, user_id: str) -> str | None:
    async with db.session() as session:
        name: str | None = await session.scalar(select(User.display_name).where(User.id == user_id))
        return name


async def test_direct_statements_join_the_sessions_transaction_and_roll_back_with_it(tree: Tree) -> None:
    """``db.direct_in(session)`` is the session's own transaction: it reads what the session flushed but
    did not commit (nobody else can), the session reads what it wrote, and a rollback takes both."""
    carol = str(uuid.uuid4())
    dave = str(uuid.uuid4())

    async def unit_of_work() -> None:
        async with tree.db.transaction() as session:
            session.add(_user(carol, "carol@example.com"))
            await session.flush()
            tx = await tree.db.direct_in(session)

            seen = await tx.fetch_one(EMAIL_OF, (carol,))
            assert seen is not None
            assert tuple(seen) == ("carol@example.com",)
            assert await tree.db.direct.fetch_one(EMAIL_OF, (carol,)) is None  # not committed: others see nothing

            now = tx.timestamp(datetime.now(UTC))
            assert await tx.execute(INSERT_USER, (dave, "dave@example.com", now, now)) == 1
            assert await tx.execute(RENAME, ("renamed by hand", tree.alice.user_id)) == 1
            assert await session.scalar(select(User.email).where(User.id == dave)) == "dave@example.com"
            raise Boom

    with pytest.raises(Boom):
        await unit_of_work()

    assert await tree.db.direct.fetch_one(EMAIL_OF, (carol,)) is None
    assert await tree.db.direct.fetch_one(EMAIL_OF, (dave,)) is None
    assert await _display_name(tree.db, tree.alice.user_id) == "alice"


async def test_direct_statements_made_before_any_orm_statement_roll_back_with_the_session(tree: Tree) -> None:
    """The same promise when the hand-written statement comes first in the unit of work (a helper that
    checks a quota before anything else is read): it is still inside the session's transaction."""

    async def unit_of_work() -> None:
        async with tree.db.transaction() as session:
            tx = await tree.db.direct_in(session)
            assert await tx.execute(RENAME, ("renamed by hand", tree.alice.user_id)) == 1
            await session.execute(select(User.id).where(User.id == tree.bob.user_id))
            raise Boom

    with pytest.raises(Boom):
        await unit_of_work()

    assert await _display_name(tree.db, tree.alice.user_id) == "alice"


async def test_a_busy_sqlite_database_is_tried_again_after_short_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """While another process holds the write lock, the waiter tries again after pauses of at most 5 ms: it
    sees the lock free only when it looks, and the holder takes it again at once while it has more to
    write, so long pauses starve the other worker (330 ms tails at W4 with pauses up to 50 ms). The ORM's
    statements share the pauses (``sqlite_driver.BUSY_PAUSES``)."""
    pauses: list[float] = []

    async def no_sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(direct_module.asyncio, "sleep", no_sleep)
    tries = 0

    def busy_twenty_times() -> str:
        nonlocal tries
        tries += 1
        if tries <= 20:
            raise sqlite3.OperationalError("database is locked")
        return "written"

    assert await when_not_busy(busy_twenty_times, busy_timeout=60) == "written"
    assert len(pauses) == 20
    assert pauses[0] < 0.001
    assert max(pauses) == 0.005
    assert pauses == sorted(pauses)


async def test_a_database_locked_past_the_busy_timeout_is_a_503() -> None:
    def always_busy() -> str:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(ServiceUnavailable, match="stayed locked"):
        await when_not_busy(always_busy, busy_timeout=0.02)
