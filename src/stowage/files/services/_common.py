"""What every file service shares: the dependencies, conversions to API shapes, listing cursors,
the user's root, free names, the quota, and the purge of trash entries and of a whole account.

Purging deletes blob *rows*; blob *files* without a row are removed later by the garbage collector
after a grace period (``maintenance.fsck``, run by housekeeping and ``stowage gc``) — deleting them
inline could race with an upload that is reusing the same content (an orphan is harmless; a missing
blob is not).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.blobs import BlobStore
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.direct import DirectTransaction
from stowage.db.engine import Database
from stowage.db.tables import Node
from stowage.errors import Conflict, FieldError, InvalidInput, NotFound, QuotaExceeded, StowageError
from stowage.files import direct_repository, grant_repository, repository
from stowage.files.direct_repository import Fetcher
from stowage.files.names import with_suffix_number
from stowage.files.schemas import NodeOut, SortKey
from stowage.policy import Owned, Principal

MAX_PAGE = 1000
MAX_RENAME_ATTEMPTS = 1000


@dataclass(slots=True)
class FileDeps:
    settings: Settings
    database: Database
    store: BlobStore


class _NodeLike(Protocol):
    """A node as the ORM (``Node``) or a hot-path query (``direct_repository.NodeRow``) gives it."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def size(self) -> int: ...
    @property
    def media_type(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def modified_at(self) -> datetime: ...
    @property
    def trashed_at(self) -> datetime | None: ...
    @property
    def starred(self) -> bool: ...
    @property
    def properties(self) -> dict[str, str] | None: ...


def node_out(node: _NodeLike) -> NodeOut:
    return NodeOut(
        id=node.id,
        name=node.name,
        kind="file" if node.kind == "file" else "folder",
        parent_id=node.parent_id,
        size=node.size,
        media_type=node.media_type,
        etag=f'"{node.sha256}"' if node.sha256 else None,  # etag_of's form; stored digests are already checked
        created_at=node.created_at,
        modified_at=node.modified_at,
        trashed_at=node.trashed_at,
        starred=node.starred,
        metadata=dict(node.properties or {}),
    )


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str | None, length: int) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        raw = base64.b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii"), altchars=b"-_", validate=True)
        values = msgspec.json.decode(raw)
    except (binascii.Error, UnicodeError, ValueError, msgspec.DecodeError) as exc:
        raise bad_cursor() from exc
    if not isinstance(values, list) or len(values) != length:
        raise bad_cursor()
    return values


def cursor_timestamp(value: Any) -> datetime:
    """A timestamp taken from a decoded cursor; a tampered one is a 400, not a server error."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise bad_cursor() from None
    if moment.tzinfo is None:  # the server issues UTC times; a naive one would fail at the UTC column
        raise bad_cursor()
    return moment


def listing_key(values: list[Any] | None, sort: SortKey) -> tuple[Any, ...] | None:
    """The decoded (kind, key, name, id) of a listing cursor, type-checked: a tampered value must not
    reach SQL, where a wrong type fails (500) or compares silently wrong on SQLite."""
    if values is None:
        return None
    kind, key, name, node_id = values
    key_ok = isinstance(key, int) and not isinstance(key, bool) if sort == "size" else isinstance(key, str)
    if kind not in ("file", "folder") or not key_ok or not isinstance(name, str) or not isinstance(node_id, str):
        raise bad_cursor()
    if sort in ("modified", "taken_at"):
        return (kind, cursor_timestamp(key), name, node_id)
    return (kind, key, name, node_id)


def bad_cursor() -> InvalidInput:
    return InvalidInput(
        "The cursor is not one this server issued.", errors=[FieldError(field="query.cursor", message="malformed")]
    )


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One item of a batch operation: the node it became, or the domain error it met. Each front end
    maps the error as it would for a request about that item alone (REST: a status per item)."""

    id: str
    node: NodeOut | None = None
    error: StowageError | None = None


async def run_item(node_id: str, call: Awaitable[NodeOut]) -> ItemOutcome:
    """Run one item of a batch in its own unit of work; a domain error is its outcome, not the batch's."""
    try:
        return ItemOutcome(id=node_id, node=await call)
    except StowageError as exc:
        return ItemOutcome(id=node_id, error=exc)


# --- access ------------------------------------------------------------------------------------


async def node_access(
    reader: Fetcher, principal: Principal | None, owner_id: str, node_id: str, *, detaches: bool = False
) -> Owned:
    """What the policy needs to decide about a node for this caller: its owner and, when the caller is
    someone else, the caller's live grants covering it (read now, never cached: ``files.grant_repository``).
    The owner and administrators cost no query."""
    if principal is None or principal.is_admin or (principal.user_id == owner_id and principal.share_id is None):
        return Owned(owner_id=owner_id, node_id=node_id, detaches=detaches)
    grants = await grant_repository.grants_covering(
        reader,
        node_id,
        user_id=principal.user_id if principal.share_id is None else None,
        share_id=principal.share_id,
        now=utcnow(),
    )
    return Owned(owner_id=owner_id, node_id=node_id, grants=grants, detaches=detaches)


# --- the tree's building blocks ---------------------------------------------------------------


async def ensure_root(db: AsyncSession, owner_id: str) -> Node:
    root = await repository.get_root(db, owner_id)
    if root is not None:
        return root
    now = utcnow()
    root = Node(
        id=str(uuid.uuid4()),
        owner_id=owner_id,
        parent_id=None,
        kind="folder",
        name="",
        size=0,
        created_at=now,
        modified_at=now,
    )
    if await repository.insert_node(db, root):
        return root
    existing = await repository.get_root(db, owner_id)  # a concurrent first request made it
    if existing is None:
        raise Conflict("The root folder could not be created; retry.")
    return existing


async def trash_node(db: AsyncSession, node: Node) -> None:
    """Move ``node`` (with its subtree) to the trash as one entry, remembering where it was."""
    now = utcnow()
    node.trashed_from_id = node.parent_id
    await db.flush()
    await repository.trash_subtree(db, node.id, now)
    await db.refresh(node)
    await repository.log_change(db, node.owner_id, node.id, "trash", now)


async def path_of(db: AsyncSession, node: Node) -> str:
    parts: list[str] = []
    cursor: Node | None = node
    while cursor is not None and cursor.parent_id is not None:
        parts.append(cursor.name)
        cursor = await repository.get_node(db, cursor.parent_id)
    return "/" + "/".join(reversed(parts))


async def unique_name(tx: Fetcher, parent_id: str, name: str) -> str:
    """The first free ``name (n)`` in the folder, for the "rename" conflict policy."""
    taken = await direct_repository.live_child_names(tx, parent_id, name.rpartition(".")[0] or name)
    for number in range(2, MAX_RENAME_ATTEMPTS):
        candidate = with_suffix_number(name, number)
        if candidate not in taken:
            return candidate
    raise Conflict(f"Too many items named like {name!r} in this folder.")


async def charge_or_fail(tx: DirectTransaction, settings: Settings, owner_id: str, delta: int) -> None:
    """Charge ``delta`` bytes to the owner, or refuse with the quota problem (nothing charged)."""
    room = await direct_repository.quota_room(tx, owner_id, settings.default_quota_bytes)
    if room is None:
        raise NotFound("No such user.")
    quota = room[1]
    if delta > 0 and not await direct_repository.charge_usage(tx, owner_id, delta, quota):
        latest = await direct_repository.quota_room(tx, owner_id, settings.default_quota_bytes)
        raise quota_exceeded(needed=delta, used=(latest or room)[0], limit=quota)


def quota_exceeded(*, needed: int, used: int, limit: int) -> StowageError:
    """The one shape of a quota refusal: which quota, what is used, the limit, what was needed."""
    free = max(limit - used, 0)
    return QuotaExceeded(
        f"Storage quota exceeded: this needs {needed} bytes but only {free} of your {limit} bytes are free; "
        "nothing was stored.",
        extra={
            "quota": "storage",
            "used_bytes": used,
            "limit_bytes": limit,
            "free_bytes": free,
            "needed_bytes": needed,
        },
    )


async def purge_trash_set(db: AsyncSession, root: Node) -> list[str]:
    """Delete one trash entry — the item and everything deleted along with it — with its versions;
    release usage and blob references.

    Items inside it that were deleted before it have trash entries of their own and are not part of
    it: they stay in the trash (still charged, still restorable with a ``parent_id``, since their
    original folder is gone), moved under the purged item's parent so the ``parent_id`` cascade
    cannot take them. Returns the blob hashes no longer referenced, to delete after the commit."""
    await db.refresh(root)  # an earlier purge in this unit of work may have moved it (see above)
    assert root.parent_id is not None, "the root folder is never in the trash"
    await repository.detach_trash_entries_below(db, root.id, root.parent_id)
    nodes = await repository.purge_set_nodes(db, root.id)
    node_ids = [n.id for n in nodes]
    versions = await repository.versions_of_nodes(db, node_ids)
    freed = sum(v.size for v in versions)
    await repository.delete_nodes(db, node_ids)
    unreferenced = await repository.release_blobs(db, [v.sha256 for v in versions])
    await repository.delete_blob_rows(db, unreferenced)
    await repository.release_usage(db, root.owner_id, freed)
    await repository.log_change(db, root.owner_id, root.id, "purge", utcnow())
    return unreferenced


async def release_user_content(db: AsyncSession, user_id: str) -> list[str]:
    """Before an account is deleted: delete its whole tree (trash included) with the versions, and drop
    the blob references those versions held.

    Content shared with other users' files keeps its blob row (and file). Returns the hashes no longer
    referenced by anyone: their rows go here, their files to the garbage collector after the commit."""
    versions = await repository.versions_of_user(db, user_id)
    await repository.delete_tree_of(db, user_id)
    unreferenced = await repository.release_blobs(db, [v.sha256 for v in versions])
    await repository.delete_blob_rows(db, unreferenced)
    return unreferenced
