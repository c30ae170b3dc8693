"""The user's tree: look-ups by id and path, folders, listings, rename/move/copy, trash.

Every method asks the policy first (another user's node answers 404). Mutations run in one unit of
work and append to the change log. Purging deletes blob *rows*; blob *files* without a row are
removed later by the garbage collector after a grace period (``maintenance.fsck``, run by
housekeeping and ``stowage gc``) — deleting them inline could race with an upload that is reusing
the same content (an orphan is harmless; a missing blob is not).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.blobs import BlobStore
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.engine import Database
from stowage.db.tables import Node, User, Version
from stowage.errors import Conflict, FieldError, InvalidInput, NotFound, QuotaExceeded, StowageError
from stowage.files import repository
from stowage.files.metadata import apply_patch as apply_metadata_patch
from stowage.files.names import normalise_name, split_path, with_suffix_number
from stowage.files.schemas import (
    BatchItemResult,
    BatchResult,
    ConflictPolicy,
    FolderOut,
    NodeOut,
    NodePage,
)
from stowage.files.zipstream import ZipEntry
from stowage.http.semantics import make_etag
from stowage.http.serving import ensure_servable
from stowage.observability.logging import get_logger
from stowage.policy import Action, Owned, Principal, authorize

log = get_logger("stowage.files")
MAX_PAGE = 1000
MAX_RENAME_ATTEMPTS = 1000


@dataclass(slots=True)
class FileDeps:
    settings: Settings
    database: Database
    store: BlobStore


def node_out(node: Node) -> NodeOut:
    return NodeOut(
        id=node.id,
        name=node.name,
        kind="file" if node.kind == "file" else "folder",
        parent_id=node.parent_id,
        size=node.size,
        media_type=node.media_type,
        etag=make_etag(node.sha256) if node.sha256 else None,
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


def listing_key(values: list[Any] | None, sort: repository.SortKey) -> tuple[Any, ...] | None:
    """The decoded (kind, key, name, id) of a listing cursor, type-checked: a tampered value must not
    reach SQL, where a wrong type fails (500) or compares silently wrong on SQLite."""
    if values is None:
        return None
    kind, key, name, node_id = values
    key_ok = isinstance(key, int) and not isinstance(key, bool) if sort == "size" else isinstance(key, str)
    if kind not in ("file", "folder") or not key_ok or not isinstance(name, str) or not isinstance(node_id, str):
        raise bad_cursor()
    if sort == "modified":
        return (kind, cursor_timestamp(key), name, node_id)
    return (kind, key, name, node_id)


def bad_cursor() -> InvalidInput:
    return InvalidInput(
        "The cursor is not one this server issued.", errors=[FieldError(field="query.cursor", message="malformed")]
    )


class FileService:
    def __init__(self, deps: FileDeps) -> None:
        self.deps = deps
        self.db = deps.database

    # --- look-ups -------------------------------------------------------------------------------

    async def root(self, principal: Principal | None) -> NodeOut:
        caller = authorize(principal, Action.FILE_READ)
        async with self.db.transaction() as db:
            return node_out(await ensure_root(db, caller.user_id))

    async def load(
        self, db: AsyncSession, principal: Principal | None, node_id: str, action: Action, *, trashed: bool = False
    ) -> Node:
        """The node, if the caller may act on it; 404 for unknown, foreign or (unless asked) trashed ones."""
        authorize(principal, action)
        node = await repository.get_node(db, node_id)
        if node is None or (node.trashed_at is not None) != trashed:
            raise NotFound("No such file or folder." if not trashed else "No such item in the trash.")
        authorize(principal, action, Owned(owner_id=node.owner_id))
        return node

    async def load_for_read(self, principal: Principal | None, node_id: str) -> Node:
        async with self.db.session() as db:
            return await self.load(db, principal, node_id, Action.FILE_READ)

    async def load_path_for_read(self, principal: Principal | None, path: str) -> Node:
        await self.ensure_user_root(principal, Action.FILE_READ)
        async with self.db.session() as db:
            return await self.resolve(db, principal, path, Action.FILE_READ)

    async def ensure_user_root(self, principal: Principal | None, action: Action) -> None:
        """Make sure the caller's root exists: a cheap read, and a write transaction only the first time."""
        caller = authorize(principal, action)
        async with self.db.session() as db:
            if await repository.get_root(db, caller.user_id) is not None:
                return
        async with self.db.transaction() as db:
            await ensure_root(db, caller.user_id)

    async def get(self, principal: Principal | None, node_id: str) -> NodeOut | FolderOut:
        async with self.db.session() as db:
            node = await self.load(db, principal, node_id, Action.FILE_READ)
            if node.kind == "folder":
                return await self._folder_out(db, node)
            return node_out(node)

    async def _folder_out(self, db: AsyncSession, node: Node) -> FolderOut:
        files, folders, total = await repository.folder_stats(db, node.id)
        return FolderOut(node=node_out(node), path=await path_of(db, node), files=files, folders=folders, bytes=total)

    async def resolve(self, db: AsyncSession, principal: Principal | None, path: str, action: Action) -> Node:
        """Walk ``/a/b/c`` from the caller's root (see ``ensure_user_root``); 404 naming the first missing part."""
        caller = authorize(principal, action)
        root = await repository.get_root(db, caller.user_id)
        if root is None:
            root = await ensure_root(db, caller.user_id)
        node = root
        walked: list[str] = []
        for part in split_path(path):
            if node.kind != "folder":
                raise NotFound(f"/{'/'.join(walked)} is a file, so it has no {part!r} inside.")
            child = await repository.get_live_child(db, node.id, part)
            walked.append(part)
            if child is None:
                raise NotFound(f"Nothing at /{'/'.join(walked)}.")
            node = child
        return node

    async def get_by_path(self, principal: Principal | None, path: str) -> NodeOut | FolderOut:
        await self.ensure_user_root(principal, Action.FILE_READ)
        async with self.db.session() as db:
            node = await self.resolve(db, principal, path, Action.FILE_READ)
            if node.kind == "folder":
                return await self._folder_out(db, node)
            return node_out(node)

    # --- folders and listings ----------------------------------------------------------------

    async def create_folder(
        self, principal: Principal | None, parent_id: str, name: str, on_conflict: str = "fail"
    ) -> tuple[NodeOut, bool]:
        """Create ``name`` in a folder. Returns (folder, created); ``reuse`` returns an existing one."""
        clean = normalise_name(name)
        async with self.db.transaction() as db:
            parent = await self.load(db, principal, parent_id, Action.FILE_WRITE)
            folder, created = await self._make_folder(db, parent, clean, on_conflict)
            return node_out(folder), created

    async def create_folder_path(self, principal: Principal | None, path: str) -> tuple[NodeOut, bool]:
        """``mkdir -p``: create every missing folder of the path; existing folders are reused."""
        parts = split_path(path, field="body.path")
        if not parts:
            raise InvalidInput("The path names no folder.", errors=[FieldError(field="body.path", message="empty")])
        caller = authorize(principal, Action.FILE_WRITE)
        async with self.db.transaction() as db:
            node = await ensure_root(db, caller.user_id)
            created = False
            for part in parts:
                node, created = await self._make_folder(db, node, part, "reuse")
            return node_out(node), created

    async def _make_folder(self, db: AsyncSession, parent: Node, name: str, on_conflict: str) -> tuple[Node, bool]:
        if parent.kind != "folder":
            raise Conflict(f"{parent.name!r} is a file; folders can only be created inside folders.")
        existing = await repository.get_live_child(db, parent.id, name)
        if existing is not None:
            if on_conflict == "reuse" and existing.kind == "folder":
                return existing, False
            if on_conflict != "rename":
                raise Conflict(f"{name!r} already exists in this folder.", extra={"conflicting_id": existing.id})
            name = await unique_name(db, parent.id, name)
        now = utcnow()
        folder = Node(
            id=str(uuid.uuid4()),
            owner_id=parent.owner_id,
            parent_id=parent.id,
            kind="folder",
            name=name,
            size=0,
            created_at=now,
            modified_at=now,
        )
        try:
            async with db.begin_nested():
                db.add(folder)
                await db.flush()
        except IntegrityError:
            # Another request created the name between our check and our insert.
            if folder in db:
                db.expunge(folder)
            winner = await repository.get_live_child(db, parent.id, name)
            if winner is not None and on_conflict == "reuse" and winner.kind == "folder":
                return winner, False
            raise Conflict(
                f"{name!r} was created by someone else at the same moment.",
                extra={"conflicting_id": winner.id if winner else None},
            ) from None
        await repository.log_change(db, parent.owner_id, folder.id, "create", now)
        return folder, True

    async def list_children(
        self,
        principal: Principal | None,
        folder_id: str,
        *,
        sort: repository.SortKey = "name",
        descending: bool = False,
        kind: str | None = None,
        media_type: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> NodePage:
        limit = max(1, min(limit, MAX_PAGE))
        key = listing_key(decode_cursor(cursor, 4), sort)
        async with self.db.session() as db:
            folder = await self.load(db, principal, folder_id, Action.FILE_READ)
            if folder.kind != "folder":
                raise Conflict(f"{folder.name!r} is a file; only folders have children.")
            rows = await repository.list_children(
                db,
                folder.id,
                sort=sort,
                descending=descending,
                after=key,
                limit=limit + 1,
                kind=kind,
                media_type_prefix=media_type,
            )
        items = [node_out(n) for n in rows[:limit]]
        next_cursor = encode_cursor(repository.sort_key_of(rows[limit - 1], sort)) if len(rows) > limit else None
        return NodePage(items=items, next_cursor=next_cursor)

    # --- rename, move, copy -------------------------------------------------------------------

    async def update(
        self,
        principal: Principal | None,
        node_id: str,
        *,
        name: str | None,
        parent_id: str | None,
        on_conflict: ConflictPolicy,
        starred: bool | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> NodeOut:
        """Rename/move, star and patch metadata in one unit of work: all of it applies, or none."""
        async with self.db.transaction() as db:
            node = await self.load(db, principal, node_id, Action.FILE_WRITE)
            annotated = starred is not None or metadata is not None
            if metadata is not None:
                node.properties = apply_metadata_patch(node.properties, metadata) or None
            if starred is not None:
                node.starred = starred
            place = (node.parent_id, node.name)
            if name is not None or parent_id is not None:
                node = await self._move(db, principal, node, name=name, parent_id=parent_id, on_conflict=on_conflict)
            if annotated and (node.parent_id, node.name) == place:  # a move logs itself; this logs the rest
                await db.flush()
                await repository.log_change(db, node.owner_id, node.id, "update", utcnow())
            return node_out(node)

    async def _move(
        self,
        db: AsyncSession,
        principal: Principal | None,
        node: Node,
        *,
        name: str | None,
        parent_id: str | None,
        on_conflict: ConflictPolicy,
    ) -> Node:
        if node.parent_id is None:
            raise Conflict("The root folder cannot be renamed or moved.")
        target_name = normalise_name(name) if name is not None else node.name
        target_parent = node.parent_id
        if parent_id is not None and parent_id != node.parent_id:
            parent = await self.load(db, principal, parent_id, Action.FILE_WRITE)
            if parent.kind != "folder":
                raise Conflict(f"{parent.name!r} is a file; items can only be moved into folders.")
            if node.kind == "folder" and (
                parent.id == node.id or await repository.is_descendant(db, node.id, parent.id)
            ):
                raise Conflict("A folder cannot be moved into itself or one of its subfolders.")
            target_parent = parent.id
        if target_parent == node.parent_id and target_name == node.name:
            return node
        target_name = await self._resolve_conflict(db, target_parent, target_name, on_conflict, moving=node)
        now = utcnow()
        node.parent_id = target_parent
        node.name = target_name
        node.modified_at = now
        await db.flush()
        await repository.log_change(db, node.owner_id, node.id, "move", now)
        return node

    async def _resolve_conflict(
        self, db: AsyncSession, parent_id: str, name: str, on_conflict: ConflictPolicy, *, moving: Node | None
    ) -> str:
        existing = await repository.get_live_child(db, parent_id, name)
        if existing is None or (moving is not None and existing.id == moving.id):
            return name
        if on_conflict == "rename":
            return await unique_name(db, parent_id, name)
        if on_conflict == "replace":
            if existing.kind == "folder" or (moving is not None and moving.kind == "folder"):
                raise Conflict(
                    f"{name!r} exists; only a file can replace a file.", extra={"conflicting_id": existing.id}
                )
            await self._trash(db, existing)
            return name
        raise Conflict(f"{name!r} already exists in the target folder.", extra={"conflicting_id": existing.id})

    async def copy(
        self,
        principal: Principal | None,
        node_id: str,
        *,
        parent_id: str,
        name: str | None,
        on_conflict: ConflictPolicy,
    ) -> NodeOut:
        """Copy a file or a whole folder. Metadata only: versions share blobs (refcounts go up)."""
        async with self.db.transaction() as db:
            node = await self.load(db, principal, node_id, Action.FILE_READ)
            parent = await self.load(db, principal, parent_id, Action.FILE_WRITE)
            if parent.kind != "folder":
                raise Conflict(f"{parent.name!r} is a file; items can only be copied into folders.")
            if node.kind == "folder" and (
                parent.id == node.id or await repository.is_descendant(db, node.id, parent.id)
            ):
                raise Conflict("A folder cannot be copied into itself or one of its subfolders.")
            target_name = normalise_name(name) if name is not None else node.name
            target_name = await self._resolve_conflict(db, parent.id, target_name, on_conflict, moving=None)
            subtree = await repository.live_subtree_nodes(db, node.id) if node.kind == "folder" else [node]
            added = sum(n.size for n in subtree if n.kind == "file")
            await charge_or_fail(db, self.deps.settings, node.owner_id, added)
            copies = await self._copy_tree(db, subtree, node, parent.id, target_name)
            return node_out(copies[node.id])

    async def _copy_tree(
        self, db: AsyncSession, subtree: Sequence[Node], top: Node, parent_id: str, top_name: str
    ) -> dict[str, Node]:
        now = utcnow()
        new_ids = {n.id: str(uuid.uuid4()) for n in subtree}
        by_id = {n.id: n for n in subtree}
        copies: dict[str, Node] = {}
        current_versions = {n.current_version_id for n in subtree if n.current_version_id}
        versions = {
            v.id: v for v in await repository.versions_of_nodes(db, [n.id for n in subtree if n.kind == "file"])
        }

        def depth(n: Node) -> int:
            d = 0
            while n.id != top.id and n.parent_id in by_id:
                n = by_id[n.parent_id]
                d += 1
            return d

        for original in sorted(subtree, key=depth):
            copy = Node(
                id=new_ids[original.id],
                owner_id=original.owner_id,
                parent_id=parent_id if original.id == top.id else new_ids[original.parent_id or ""],
                kind=original.kind,
                name=top_name if original.id == top.id else original.name,
                size=original.size,
                media_type=original.media_type,
                sha256=original.sha256,
                created_at=now,
                modified_at=original.modified_at,
                properties=original.properties,
                uploaded_at=now if original.kind == "file" else None,
            )
            if original.current_version_id and original.current_version_id in current_versions:
                source = versions.get(original.current_version_id)
                if source is not None:
                    version = Version(
                        id=str(uuid.uuid4()),
                        node_id=copy.id,
                        sha256=source.sha256,
                        size=source.size,
                        media_type=source.media_type,
                        author_id=source.author_id,
                        created_at=now,
                    )
                    copy.current_version_id = version.id
                    db.add(copy)
                    await db.flush()
                    db.add(version)
                    await repository.reference_blob(db, source.sha256, source.size, now)
                    copies[original.id] = copy
                    continue
            db.add(copy)
            await db.flush()
            copies[original.id] = copy
        await db.flush()
        await repository.log_change(db, top.owner_id, copies[top.id].id, "create", now)
        return copies

    # --- trash --------------------------------------------------------------------------------

    async def trash(self, principal: Principal | None, node_id: str) -> NodeOut:
        async with self.db.transaction() as db:
            node = await self.load(db, principal, node_id, Action.FILE_WRITE)
            if node.parent_id is None:
                raise Conflict("The root folder cannot be deleted.")
            await self._trash(db, node)
            return node_out(node)

    async def _trash(self, db: AsyncSession, node: Node) -> None:
        now = utcnow()
        node.trashed_from_id = node.parent_id
        await db.flush()
        await repository.trash_subtree(db, node.id, now)
        await db.refresh(node)
        await repository.log_change(db, node.owner_id, node.id, "trash", now)

    async def list_trash(self, principal: Principal | None, *, cursor: str | None, limit: int) -> NodePage:
        caller = authorize(principal, Action.FILE_READ)
        limit = max(1, min(limit, MAX_PAGE))
        after_raw = decode_cursor(cursor, 2)
        after = (datetime.fromisoformat(after_raw[0]), str(after_raw[1])) if after_raw else None
        async with self.db.session() as db:
            rows = await repository.list_trash_roots(db, caller.user_id, after=after, limit=limit + 1)
        items = [node_out(n) for n in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            assert last.trashed_at is not None
            next_cursor = encode_cursor([last.trashed_at.isoformat(), last.id])
        return NodePage(items=items, next_cursor=next_cursor)

    async def restore(
        self, principal: Principal | None, node_id: str, *, parent_id: str | None, on_conflict: str
    ) -> NodeOut:
        async with self.db.transaction() as db:
            node = await self.load(db, principal, node_id, Action.FILE_WRITE, trashed=True)
            if node.trash_root_id != node.id:
                raise Conflict("This item was deleted with its folder; restore the folder instead.")
            target_id = parent_id or node.trashed_from_id
            target = await repository.get_node(db, target_id) if target_id else None
            if parent_id is not None:
                target = await self.load(db, principal, parent_id, Action.FILE_WRITE)
            if target is None or target.trashed_at is not None:
                raise Conflict(
                    "The original folder is gone or in the trash; choose a folder to restore into (parent_id)."
                )
            if target.kind != "folder":
                raise Conflict(f"{target.name!r} is a file; items can only be restored into folders.")
            existing = await repository.get_live_child(db, target.id, node.name)
            name = node.name
            if existing is not None:
                if on_conflict != "rename":
                    raise Conflict(
                        f"{node.name!r} already exists in the target folder; restore with on_conflict=rename.",
                        extra={"conflicting_id": existing.id},
                    )
                name = await unique_name(db, target.id, node.name)
            # Place the item first (still trashed, so the live-name index ignores it), then revive it.
            node.parent_id = target.id
            node.name = name
            node.modified_at = utcnow()
            await db.flush()
            await repository.restore_trash_set(db, node.id)
            await db.refresh(node)
            await repository.log_change(db, node.owner_id, node.id, "restore", utcnow())
            return node_out(node)

    async def purge(self, principal: Principal | None, node_id: str) -> None:
        async with self.db.transaction() as db:
            node = await self.load(db, principal, node_id, Action.FILE_WRITE, trashed=True)
            if node.trash_root_id != node.id:
                raise Conflict("This item was deleted with its folder; purge the folder instead.")
            await purge_trash_set(db, node)

    async def empty_trash(self, principal: Principal | None) -> int:
        caller = authorize(principal, Action.FILE_WRITE)
        async with self.db.transaction() as db:
            roots = await repository.all_trash_roots(db, caller.user_id)
            for root in roots:
                await purge_trash_set(db, root)
        return len(roots)

    async def purge_expired(self, retention: timedelta, *, batch: int = 100) -> int:
        """Purge trash older than ``retention`` (never younger). Called periodically by the server."""
        cutoff = utcnow() - retention
        purged = 0
        while True:
            async with self.db.transaction() as db:
                roots = await repository.trash_roots_older_than(db, cutoff, batch)
                for root in roots:
                    await purge_trash_set(db, root)
            purged += len(roots)
            if len(roots) < batch:
                return purged

    # --- batch ------------------------------------------------------------------------------

    async def batch_delete(self, principal: Principal | None, ids: Sequence[str], status_of: StatusOf) -> BatchResult:
        """Trash each item in its own unit of work; one failure does not undo the others."""
        authorize(principal, Action.FILE_WRITE)  # the request itself must be allowed at all
        results = []
        for node_id in ids:
            results.append(await _batch_item(node_id, self.trash(principal, node_id), status_of))
        return BatchResult(results=results)

    async def batch_move(
        self,
        principal: Principal | None,
        ids: Sequence[str],
        parent_id: str,
        on_conflict: ConflictPolicy,
        status_of: StatusOf,
    ) -> BatchResult:
        authorize(principal, Action.FILE_WRITE)
        results = []
        for node_id in ids:
            call = self.update(principal, node_id, name=None, parent_id=parent_id, on_conflict=on_conflict)
            results.append(await _batch_item(node_id, call, status_of))
        return BatchResult(results=results)

    # --- ZIP ----------------------------------------------------------------------------------

    async def zip_entries(self, principal: Principal | None, ids: Sequence[str]) -> list[ZipEntry]:
        """Plan an archive of the given nodes (folders recursively), paths relative to each item."""
        entries: list[ZipEntry] = []
        async with self.db.session() as db:
            for node_id in ids:
                node = await self.load(db, principal, node_id, Action.FILE_READ)
                subtree = await repository.live_subtree_nodes(db, node.id) if node.kind == "folder" else [node]
                by_id = {n.id: n for n in subtree}
                for item in subtree:
                    parts = [item.name]
                    cursor = item
                    while cursor.id != node.id and cursor.parent_id in by_id:
                        cursor = by_id[cursor.parent_id]
                        parts.append(cursor.name)
                    if node.parent_id is None:
                        parts = parts[:-1]
                    path = "/".join(reversed(parts))
                    if item.kind == "folder":
                        if path:
                            entries.append(ZipEntry(path=path + "/", modified=item.modified_at))
                        continue
                    entries.append(
                        ZipEntry(
                            path=path,
                            modified=item.modified_at,
                            size=item.size,
                            content=self._reader(item.sha256),
                        )
                    )
        entries.sort(key=lambda e: e.path)  # parents before their contents, stable order for clients
        return entries

    def _reader(self, sha256: str | None) -> Any:
        store = self.deps.store
        verify = self.deps.settings.verify_reads

        async def checked_content(digest: str) -> AsyncIterator[bytes]:
            # Checked when the archive reaches this entry; a failure then aborts the stream (logged).
            await ensure_servable(store, digest, verify)
            async with contextlib.aclosing(store.open_read(digest)) as chunks:
                async for chunk in chunks:
                    yield chunk

        def open_content() -> AsyncIterator[bytes]:
            if sha256 is None:
                return _empty()
            return checked_content(sha256)

        return open_content


StatusOf = Callable[[StowageError], int]


async def _batch_item(node_id: str, call: Awaitable[NodeOut], status_of: StatusOf) -> BatchItemResult:
    """Run one item; its result carries the status the front end would have answered for it alone."""
    try:
        node = await call
    except StowageError as exc:
        return BatchItemResult(id=node_id, status=status_of(exc), error=exc.code, detail=exc.detail)
    return BatchItemResult(id=node_id, status=200, node=node)


async def _empty() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk


# --- helpers shared with the upload service ---------------------------------------------------


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
    try:
        async with db.begin_nested():
            db.add(root)
            await db.flush()
    except IntegrityError:
        existing = await repository.get_root(db, owner_id)
        if existing is None:
            raise
        return existing
    return root


async def path_of(db: AsyncSession, node: Node) -> str:
    parts: list[str] = []
    cursor: Node | None = node
    while cursor is not None and cursor.parent_id is not None:
        parts.append(cursor.name)
        cursor = await repository.get_node(db, cursor.parent_id)
    return "/" + "/".join(reversed(parts))


async def unique_name(db: AsyncSession, parent_id: str, name: str) -> str:
    """The first free ``name (n)`` in the folder, for the "rename" conflict policy."""
    taken = await repository.live_child_names(db, parent_id, name.rpartition(".")[0] or name)
    for number in range(2, MAX_RENAME_ATTEMPTS):
        candidate = with_suffix_number(name, number)
        if candidate not in taken:
            return candidate
    raise Conflict(f"Too many items named like {name!r} in this folder.")


def quota_of(user: User, settings: Settings) -> int:
    return user.quota_bytes if user.quota_bytes is not None else settings.default_quota_bytes


async def charge_or_fail(db: AsyncSession, settings: Settings, owner_id: str, delta: int) -> None:
    user = await db.get(User, owner_id)
    if user is None:
        raise NotFound("No such user.")
    quota = quota_of(user, settings)
    if delta > 0 and not await repository.charge_usage(db, owner_id, delta, quota):
        await db.refresh(user)
        raise quota_exceeded(needed=delta, used=user.used_bytes, limit=quota)


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
