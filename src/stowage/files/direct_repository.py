"""The file tree's hot-path SQL, hand-written on the raw driver (``db.direct``): what every download
reads and what every upload writes.

* **Reads** — a path resolves in **one** statement whatever its depth: the owner's root, then one
  self-join per component, each answered by the live-name index ``uq_nodes_parent_id_name_live`` (the
  joins repeat its ``trashed_at IS NULL`` predicate so both engines use the partial index). The text
  for each depth is built once. A folder's listing is in ``listing_repository.py``.
* **Writes** — recording an upload (blob reference, node, version, usage, change log) and thinning a
  file's history, inside a ``DirectTransaction`` (which can also join an ORM unit of work). A new
  node is inserted with ``ON CONFLICT DO NOTHING``: a name taken meanwhile by a concurrent request
  shows as "no row inserted", and the caller applies its conflict policy; no savepoint is needed.

Every statement is assembled from constant table and column names; values are always bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

import msgspec

from stowage.db.base import search_key
from stowage.db.direct import DirectTransaction, Query, Row, optional_timestamp, timestamp
from stowage.files.schemas import SortKey

MAX_DEPTH = 64  # names.split_path allows no deeper path

_COLUMNS = (
    "id, owner_id, parent_id, kind, name, size, media_type, sha256, modified_at, trashed_at, "
    "created_at, starred, properties, current_version_id"
)


class Fetcher(Protocol):
    """A ``DirectReader`` (outside a transaction) or a ``DirectTransaction`` (inside one)."""

    def timestamp(self, moment: datetime) -> Any: ...

    async def fetch_one(self, query: Query, params: Sequence[Any] = ()) -> Row | None: ...
    async def fetch_all(self, query: Query, params: Sequence[Any] = ()) -> list[Row]: ...


class NodeRow(msgspec.Struct, frozen=True):
    """A node as the hot paths need it (authorisation, ``FileContent``, ``NodeOut``)."""

    id: str
    owner_id: str
    parent_id: str | None
    kind: str
    name: str
    size: int
    media_type: str | None
    sha256: str | None
    modified_at: datetime
    trashed_at: datetime | None
    created_at: datetime
    starred: bool
    properties: dict[str, str] | None
    current_version_id: str | None


class VersionRow(msgspec.Struct, frozen=True):
    id: str
    sha256: str
    size: int
    created_at: datetime
    pinned: bool


def properties_of(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    decoded: dict[str, str] = msgspec.json.decode(value) if isinstance(value, str | bytes) else dict(value)
    return decoded


def _node_row(row: Row) -> NodeRow:
    return NodeRow(
        id=row[0],
        owner_id=row[1],
        parent_id=row[2],
        kind=row[3],
        name=row[4],
        size=row[5],
        media_type=row[6],
        sha256=row[7],
        modified_at=timestamp(row[8]),
        trashed_at=optional_timestamp(row[9]),
        created_at=timestamp(row[10]),
        starred=bool(row[11]),
        properties=properties_of(row[12]),
        current_version_id=row[13],
    )


# --- reads --------------------------------------------------------------------------------------

_NODE_BY_ID = Query(f"SELECT {_COLUMNS} FROM nodes WHERE id = ?")  # noqa: S608
_LIVE_CHILD = Query(f"SELECT {_COLUMNS} FROM nodes WHERE parent_id = ? AND name = ? AND trashed_at IS NULL")  # noqa: S608
_LIVE_NAMES_LIKE = Query(
    "SELECT name FROM nodes WHERE parent_id = ? AND trashed_at IS NULL AND name LIKE ? ESCAPE '\\'"
)
_QUOTA = Query("SELECT used_bytes, quota_bytes FROM users WHERE id = ?")


class FileRow(msgspec.Struct, frozen=True):
    """What serving a file's content needs, and no more (the read path runs on every download)."""

    id: str
    owner_id: str
    kind: str
    name: str
    size: int
    media_type: str | None
    sha256: str | None
    modified_at: datetime


_FILE_COLUMNS = "id, owner_id, kind, name, size, media_type, sha256, modified_at"
_LIVE_FILE_BY_ID = Query(f"SELECT {_FILE_COLUMNS} FROM nodes WHERE id = ? AND trashed_at IS NULL")  # noqa: S608


def _file_row(row: Row) -> FileRow:
    return FileRow(
        id=row[0],
        owner_id=row[1],
        kind=row[2],
        name=row[3],
        size=row[4],
        media_type=row[5],
        sha256=row[6],
        modified_at=timestamp(row[7]),
    )


async def live_file_by_id(fetcher: Fetcher, node_id: str) -> FileRow | None:
    """A live node as the read path needs it; None when unknown or in the trash."""
    row = await fetcher.fetch_one(_LIVE_FILE_BY_ID, (node_id,))
    return _file_row(row) if row is not None else None


async def live_file_at(fetcher: Fetcher, owner_id: str, parts: Sequence[str]) -> FileRow | None:
    """``live_node_at`` with only the columns the read path needs."""
    if len(parts) > MAX_DEPTH:
        return None
    row = await fetcher.fetch_one(_path_query(len(parts), _FILE_COLUMNS), (*parts, owner_id))
    return _file_row(row) if row is not None else None


@lru_cache(maxsize=2 * (MAX_DEPTH + 1))
def _path_query(depth: int, selected: str = _COLUMNS) -> Query:
    """The root of ``owner_id``, then ``depth`` live children by name, in one statement."""
    last = f"n{depth}"
    columns = ", ".join(f"{last}.{column.strip()}" for column in selected.split(","))
    joins = "".join(
        f" JOIN nodes n{level} ON n{level}.parent_id = n{level - 1}.id AND n{level}.name = ?"
        f" AND n{level}.trashed_at IS NULL"
        for level in range(1, depth + 1)
    )
    return Query(f"SELECT {columns} FROM nodes n0{joins} WHERE n0.owner_id = ? AND n0.parent_id IS NULL")  # noqa: S608


async def node_by_id(fetcher: Fetcher, node_id: str) -> NodeRow | None:
    row = await fetcher.fetch_one(_NODE_BY_ID, (node_id,))
    return _node_row(row) if row is not None else None


async def live_node_at(fetcher: Fetcher, owner_id: str, parts: Sequence[str]) -> NodeRow | None:
    """The live node at ``/parts…`` in the owner's tree (the root for no parts); None when any step is
    missing (or the owner has no root yet)."""
    if len(parts) > MAX_DEPTH:
        return None
    row = await fetcher.fetch_one(_path_query(len(parts)), (*parts, owner_id))
    return _node_row(row) if row is not None else None


async def live_child(fetcher: Fetcher, parent_id: str, name: str) -> NodeRow | None:
    row = await fetcher.fetch_one(_LIVE_CHILD, (parent_id, name))
    return _node_row(row) if row is not None else None


async def live_child_names(fetcher: Fetcher, parent_id: str, prefix: str) -> set[str]:
    """Names of live children starting with ``prefix`` (for picking a free ``name (n)``)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {row[0] for row in await fetcher.fetch_all(_LIVE_NAMES_LIKE, (parent_id, f"{escaped}%"))}


async def quota_room(fetcher: Fetcher, user_id: str, default_quota: int) -> tuple[int, int] | None:
    """(used bytes, quota) of a user; None when there is no such user."""
    row = await fetcher.fetch_one(_QUOTA, (user_id,))
    if row is None:
        return None
    return int(row[0]), int(row[1]) if row[1] is not None else default_quota


# --- listing and search cursors ------------------------------------------------------------------


class _Sortable(Protocol):
    """What a search cursor is made of: an ORM ``Node`` (listings make theirs from the row)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def media_type(self) -> str | None: ...
    @property
    def modified_at(self) -> datetime: ...
    @property
    def taken_at(self) -> datetime | None: ...


def sort_key_of(node: _Sortable, sort: SortKey) -> tuple[Any, ...]:
    """The search cursor of a row: (kind, key, name, id), JSON-friendly, as a listing's."""
    key: Any
    if sort == "size":
        key = node.size
    elif sort == "modified":
        key = node.modified_at.isoformat()
    elif sort == "taken_at":  # the capture time, else the modification time (``listing_repository``)
        key = (node.taken_at or node.modified_at).isoformat()
    elif sort == "type":
        key = node.media_type or ""
    else:
        key = node.name
    return (node.kind, key, node.name, node.id)


# --- writes ---------------------------------------------------------------------------------------

_CHARGE = Query("UPDATE users SET used_bytes = used_bytes + ? WHERE id = ? AND used_bytes + ? <= ?")
_RELEASE_USAGE = Query(
    "UPDATE users SET used_bytes = CASE WHEN used_bytes > ? THEN used_bytes - ? ELSE 0 END WHERE id = ?"
)
_REFERENCE_BLOB = Query(
    "INSERT INTO blobs (sha256, size, refcount, created_at) VALUES (?, ?, 1, ?) "
    "ON CONFLICT (sha256) DO UPDATE SET refcount = blobs.refcount + 1"
)
_INSERT_FILE = Query(
    "INSERT INTO nodes (id, owner_id, parent_id, kind, name, search_name, size, media_type, sha256, "
    "current_version_id, created_at, modified_at, uploaded_at, starred) "
    "VALUES (?, ?, ?, 'file', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
# New content has no capture time until its facts say so (``facts_repository``).
_SET_CONTENT = Query(
    "UPDATE nodes SET current_version_id = ?, size = ?, sha256 = ?, media_type = ?, modified_at = ?, "
    "uploaded_at = ?, taken_at = NULL WHERE id = ?"
)
_INSERT_VERSION = Query(
    "INSERT INTO versions (id, node_id, sha256, size, media_type, author_id, created_at, pinned) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_LOG_CHANGE = Query("INSERT INTO changes (user_id, node_id, action, at) VALUES (?, ?, ?, ?)")
_VERSIONS = Query(
    "SELECT id, sha256, size, created_at, pinned FROM versions WHERE node_id = ? ORDER BY created_at DESC, id"
)
_LOCK_OWNER = Query("SELECT id FROM users WHERE id = ? FOR NO KEY UPDATE")
_DELETE_UNPINNED_VERSION = Query("DELETE FROM versions WHERE id = ? AND pinned = ?")
_RELEASE_BLOB = Query("UPDATE blobs SET refcount = refcount - ? WHERE sha256 = ?")


@lru_cache(maxsize=64)
def _unreferenced_blobs(count: int, *, delete: bool) -> Query:
    marks = ", ".join("?" * count)
    verb = "DELETE" if delete else "SELECT sha256"
    return Query(f"{verb} FROM blobs WHERE sha256 IN ({marks}) AND refcount <= 0")


async def charge_usage(tx: DirectTransaction, user_id: str, delta: int, quota: int) -> bool:
    """Add ``delta`` bytes to the user's usage if it stays within ``quota``; atomic in one UPDATE, so two
    concurrent uploads cannot together exceed the quota."""
    return await tx.execute(_CHARGE, (delta, user_id, delta, quota)) == 1


async def release_usage(tx: DirectTransaction, user_id: str, delta: int) -> None:
    await tx.execute(_RELEASE_USAGE, (delta, delta, user_id))


async def reference_blob(tx: DirectTransaction, sha256: str, size: int, now: datetime) -> None:
    """Insert the blob row or add one reference, in one statement (safe under concurrency)."""
    await tx.execute(_REFERENCE_BLOB, (sha256, size, tx.timestamp(now)))


async def insert_file(
    tx: DirectTransaction,
    *,
    node_id: str,
    owner_id: str,
    parent_id: str,
    name: str,
    size: int,
    media_type: str,
    sha256: str,
    version_id: str,
    now: datetime,
    modified_at: datetime,
) -> bool:
    """Insert a new live file already pointing at its first version; False when the name was taken."""
    return (
        await tx.execute(
            _INSERT_FILE,
            (
                node_id,
                owner_id,
                parent_id,
                name,
                search_key(name),
                size,
                media_type,
                sha256,
                version_id,
                tx.timestamp(now),
                tx.timestamp(modified_at),
                tx.timestamp(now),
                False,
            ),
        )
        == 1
    )


async def set_content(
    tx: DirectTransaction,
    node_id: str,
    *,
    version_id: str,
    size: int,
    sha256: str,
    media_type: str,
    modified_at: datetime,
    now: datetime,
) -> None:
    """Point a file at a new current version."""
    params = (version_id, size, sha256, media_type, tx.timestamp(modified_at), tx.timestamp(now), node_id)
    await tx.execute(_SET_CONTENT, params)


async def insert_version(
    tx: DirectTransaction,
    *,
    version_id: str,
    node_id: str,
    sha256: str,
    size: int,
    media_type: str,
    author_id: str | None,
    now: datetime,
) -> None:
    await tx.execute(
        _INSERT_VERSION, (version_id, node_id, sha256, size, media_type, author_id, tx.timestamp(now), False)
    )


async def log_change(tx: DirectTransaction, user_id: str, node_id: str, action: str, now: datetime) -> None:
    await tx.execute(_LOG_CHANGE, (user_id, node_id, action, tx.timestamp(now)))


async def versions_of(tx: DirectTransaction, node_id: str) -> list[VersionRow]:
    """A file's versions, newest first."""
    return [
        VersionRow(id=r[0], sha256=r[1], size=int(r[2]), created_at=timestamp(r[3]), pinned=bool(r[4]))
        for r in await tx.fetch_all(_VERSIONS, (node_id,))
    ]


async def lock_owner_for_usage(tx: DirectTransaction, owner_id: str) -> None:
    """Take the owner row's lock the quota update takes (PostgreSQL ``FOR NO KEY UPDATE``), so version
    deletes and writes of one file lock in the same order. SQLite's write lock covers it already."""
    if not tx.is_sqlite:
        await tx.fetch_one(_LOCK_OWNER, (owner_id,))


async def delete_unpinned_version(tx: DirectTransaction, version_id: str) -> bool:
    """Delete one version unless it is pinned; False when this transaction did not delete it."""
    return await tx.execute(_DELETE_UNPINNED_VERSION, (version_id, False)) == 1


async def release_blobs(tx: DirectTransaction, hashes: Sequence[str]) -> list[str]:
    """Drop one reference per listed hash (repeats count), delete the rows no one references any more,
    and return their hashes (their files go to the garbage collector)."""
    counts: dict[str, int] = {}
    for sha in hashes:
        counts[sha] = counts.get(sha, 0) + 1
    if not counts:
        return []
    for sha, count in counts.items():
        await tx.execute(_RELEASE_BLOB, (count, sha))
    listed = list(counts)
    unreferenced = [row[0] for row in await tx.fetch_all(_unreferenced_blobs(len(listed), delete=False), listed)]
    if unreferenced:
        await tx.execute(_unreferenced_blobs(len(unreferenced), delete=True), unreferenced)
    return unreferenced
