"""Writing file content: the write-path invariant of DESIGN.md, whatever protocol the bytes came by.

stream body → temp file while hashing and counting → size and quota enforced on every chunk →
client digests checked → fsync + rename into the content-addressed store (dedup) → one transaction
(blob reference, version, node, usage, change log) → 2xx. Preconditions and the name conflict are
checked before the first byte is read and again inside the transaction; a client that disconnects,
sends a wrong digest or runs out of quota leaves nothing behind but, at worst, an unreferenced blob
file that ``gc`` collects.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.blobs import BlobInfo, BlobWriter
from stowage.db.base import utcnow
from stowage.db.tables import Node, User, Version
from stowage.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    PreconditionFailed,
)
from stowage.files import repository
from stowage.files.media_types import sniff_media_type
from stowage.files.names import normalise_name, split_path
from stowage.files.schemas import ConflictPolicy, NodeOut, etag_of
from stowage.files.services._common import (
    FileDeps,
    charge_or_fail,
    ensure_root,
    node_out,
    quota_exceeded,
    quota_of,
    unique_name,
)
from stowage.files.services._tree import TreeService
from stowage.files.services._versions import apply_retention, retention_policy
from stowage.policy import Action, Principal, authorize

SNIFF_BYTES = 4096
MAX_INSERT_ATTEMPTS = 5


class QuotaRoom(msgspec.Struct, frozen=True):
    used: int
    limit: int

    @property
    def free(self) -> int:
        return max(self.limit - self.used, 0)


AnyEtag = Literal["*"]


class UploadOptions(msgspec.Struct, frozen=True):
    """Everything about an upload that is known before its body: decided before the first byte.

    Conditions arrive parsed, whatever protocol sent them: ``expected_etags`` is the set of entity
    tags the current file must have (HTTP ``If-Match``, S3 ``x-amz-copy-source-if-match``, WebDAV
    ``If:``), or ``"*"`` for "must exist"; ``if_none_match_any`` means "must not exist"."""

    on_conflict: ConflictPolicy = "fail"
    expected_etags: frozenset[str] | AnyEtag | None = None  # replace only this version (its ETag)
    if_none_match_any: bool = False  # create only
    sha256: bytes | None = None  # expected digest from Content-Digest / X-Content-SHA256
    declared_length: int | None = None
    modified_at: datetime | None = None


class UploadService:
    def __init__(self, deps: FileDeps, tree: TreeService) -> None:
        self.deps = deps
        self.tree = tree
        self.db = deps.database

    async def upload_to_folder(
        self,
        principal: Principal | None,
        parent_id: str,
        name: str,
        body: AsyncIterator[bytes],
        options: UploadOptions,
    ) -> tuple[NodeOut, bool]:
        """Store ``body`` as ``name`` in a folder. Returns (file, created)."""
        clean = normalise_name(name)
        caller = authorize(principal, Action.FILE_WRITE)
        async with self.db.session() as db:
            parent = await self.tree.load(db, caller, parent_id, Action.FILE_WRITE)
            existing = await self._precheck(db, parent, clean, options)
            room = await self._room(db, caller.user_id)
        return await self._store(
            caller, parent_id=parent.id, name=clean, body=body, options=options, room=room, existing_id=existing
        )

    async def upload_to_path(
        self,
        principal: Principal | None,
        path: str,
        body: AsyncIterator[bytes],
        options: UploadOptions,
        *,
        create_parents: bool,
    ) -> tuple[NodeOut, bool]:
        """Store ``body`` at ``/a/b/name``; missing folders are created when ``create_parents``."""
        parts = split_path(path)
        if not parts:
            raise InvalidInput("The path names no file.", errors=[FieldError(field="path", message="empty")])
        caller = authorize(principal, Action.FILE_WRITE)
        folder_path = "/".join(parts[:-1])
        if create_parents and folder_path:
            folder, _ = await self.tree.create_folder_path(caller, folder_path)
            parent_id = folder.id
        else:
            async with self.db.transaction() as db:
                parent_id = (await self.tree.resolve(db, caller, folder_path, Action.FILE_WRITE)).id
        return await self.upload_to_folder(caller, parent_id, parts[-1], body, options)

    async def replace_content(
        self, principal: Principal | None, node_id: str, body: AsyncIterator[bytes], options: UploadOptions
    ) -> NodeOut:
        """A new version of an existing file (``PUT …/nodes/{id}/content``)."""
        caller = authorize(principal, Action.FILE_WRITE)
        async with self.db.session() as db:
            node = await self.tree.load(db, caller, node_id, Action.FILE_WRITE)
            if node.kind != "file":
                raise Conflict(f"{node.name!r} is a folder; it has no content to replace.")
            self._check_if_match(node, options)
            room = await self._room(db, caller.user_id)
            parent_id, name = node.parent_id, node.name
        assert parent_id is not None
        forced = msgspec.structs.replace(options, on_conflict="replace")
        result, _ = await self._store(
            caller, parent_id=parent_id, name=name, body=body, options=forced, room=room, existing_id=node.id
        )
        return result

    # --- before the body ------------------------------------------------------------------------

    async def _precheck(self, db: AsyncSession, parent: Node, name: str, options: UploadOptions) -> str | None:
        if parent.kind != "folder":
            raise Conflict(f"{parent.name!r} is a file; uploads go into folders.")
        existing = await repository.get_live_child(db, parent.id, name)
        if options.if_none_match_any and existing is not None:
            raise PreconditionFailed(f"{name!r} already exists (If-None-Match: *).")
        if options.expected_etags is not None:
            if existing is None:
                raise PreconditionFailed(f"{name!r} does not exist, so it cannot match If-Match.")
            self._check_if_match(existing, options)
        if existing is not None and existing.kind == "folder":
            raise Conflict(f"{name!r} is a folder in this place; a file cannot replace it.")
        if existing is not None and options.on_conflict == "fail" and options.expected_etags is None:
            raise Conflict(
                f"{name!r} already exists; upload with on_conflict=replace or rename.",
                extra={"conflicting_id": existing.id},
            )
        return existing.id if existing is not None else None

    @staticmethod
    def _check_if_match(node: Node, options: UploadOptions) -> None:
        expected = options.expected_etags
        if expected is None or expected == "*":
            return
        if node.sha256 is None or etag_of(node.sha256) not in expected:
            raise PreconditionFailed("The file has changed since that version (If-Match does not match its ETag).")

    async def _room(self, db: AsyncSession, user_id: str) -> QuotaRoom:
        user = await db.get(User, user_id)
        assert user is not None
        return QuotaRoom(used=user.used_bytes, limit=quota_of(user, self.deps.settings))

    # --- the body -------------------------------------------------------------------------------

    async def _store(
        self,
        caller: Principal,
        *,
        parent_id: str,
        name: str,
        body: AsyncIterator[bytes],
        options: UploadOptions,
        room: QuotaRoom,
        existing_id: str | None,
    ) -> tuple[NodeOut, bool]:
        limit = self.deps.settings.max_upload_bytes
        if options.declared_length is not None:
            if options.declared_length > limit:
                raise PayloadTooLarge(f"Files are limited to {limit} bytes; this one is {options.declared_length}.")
            if options.declared_length > room.free:
                raise quota_exceeded(needed=options.declared_length, used=room.used, limit=room.limit)
        writer = await self.deps.store.open_writer(max_size=min(limit, room.free))
        try:
            head = await _spool(writer, body, limit=limit, room=room)
            _verify(writer, options)
            info = await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        media_type = sniff_media_type(head, name)
        return await self._record(
            caller,
            parent_id=parent_id,
            name=name,
            info=info,
            media_type=media_type,
            options=options,
            existing_id=existing_id,
        )

    # --- the transaction --------------------------------------------------------------------

    async def _record(
        self,
        caller: Principal,
        *,
        parent_id: str,
        name: str,
        info: BlobInfo,
        media_type: str,
        options: UploadOptions,
        existing_id: str | None,
    ) -> tuple[NodeOut, bool]:
        now = utcnow()
        async with self.db.transaction() as db:
            parent = await self.tree.load(db, caller, parent_id, Action.FILE_WRITE)
            if parent.kind != "folder":
                raise Conflict(f"{parent.name!r} is a file; uploads go into folders.")
            existing = await repository.get_live_child(db, parent.id, name)
            # Re-check what was decided before the body: another writer may have won meanwhile.
            if options.if_none_match_any and existing is not None:
                raise PreconditionFailed(f"{name!r} was created by someone else meanwhile (If-None-Match: *).")
            if options.expected_etags is not None:
                if existing is None:
                    raise PreconditionFailed(f"{name!r} no longer exists.")
                self._check_if_match(existing, options)
            if existing is not None and existing.kind == "folder":
                raise Conflict(f"{name!r} is a folder in this place; a file cannot replace it.")
            if existing is not None and existing.id != existing_id and options.on_conflict == "fail":
                raise Conflict(
                    f"{name!r} was created by someone else meanwhile.", extra={"conflicting_id": existing.id}
                )
            if existing is not None and options.on_conflict == "rename" and options.expected_etags is None:
                name = await unique_name(db, parent.id, name)
                existing = None
            await charge_or_fail(db, self.deps.settings, parent.owner_id, info.size)
            await repository.reference_blob(db, info.sha256, info.size, now)
            modified = options.modified_at or now
            created = existing is None
            node = existing
            if node is None:
                node, created = await self._insert_file(
                    db,
                    parent,
                    name=name,
                    info=info,
                    media_type=media_type,
                    now=now,
                    modified=modified,
                    options=options,
                )
            version = Version(
                id=str(uuid.uuid4()),
                node_id=node.id,
                sha256=info.sha256,
                size=info.size,
                media_type=media_type,
                author_id=caller.user_id,
                created_at=now,
            )
            db.add(version)
            await db.flush()
            node.current_version_id = version.id
            node.size = info.size
            node.sha256 = info.sha256
            node.media_type = media_type
            node.modified_at = modified
            node.uploaded_at = now
            await db.flush()
            await repository.log_change(db, node.owner_id, node.id, "create" if created else "update", now)
            if not created:
                await apply_retention(db, node, retention_policy(self.deps.settings), now)
            return node_out(node), created

    async def _insert_file(
        self,
        db: AsyncSession,
        parent: Node,
        *,
        name: str,
        info: BlobInfo,
        media_type: str,
        now: datetime,
        modified: datetime,
        options: UploadOptions,
    ) -> tuple[Node, bool]:
        """Insert the new file node; if a concurrent request took the name first (the live-name
        index says so), follow the conflict policy instead of failing with a server error."""
        for _attempt in range(MAX_INSERT_ATTEMPTS):
            node = Node(
                id=str(uuid.uuid4()),
                owner_id=parent.owner_id,
                parent_id=parent.id,
                kind="file",
                name=name,
                size=info.size,
                media_type=media_type,
                sha256=info.sha256,
                created_at=now,
                modified_at=modified,
            )
            if not await repository.insert_node(db, node):
                winner = await repository.get_live_child(db, parent.id, name)
                if options.on_conflict == "rename":
                    name = await unique_name(db, parent.id, name)
                    continue
                if options.on_conflict == "replace" and winner is not None and winner.kind == "file":
                    return winner, False
                raise Conflict(
                    f"{name!r} was created by someone else at the same moment.",
                    extra={"conflicting_id": winner.id if winner else None},
                )
            return node, True
        raise Conflict(f"Could not find a free name like {name!r}; too many concurrent uploads.")

    async def root_id(self, principal: Principal | None) -> str:
        caller = authorize(principal, Action.FILE_WRITE)
        async with self.db.transaction() as db:
            return (await ensure_root(db, caller.user_id)).id


async def _spool(writer: BlobWriter, body: AsyncIterator[bytes], *, limit: int, room: QuotaRoom) -> bytes:
    """Feed the body to the writer; return its first bytes for type sniffing. Limits apply per chunk."""
    head = bytearray()
    async for chunk in body:
        if not chunk:
            continue
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        try:
            await writer.write(chunk)
        except PayloadTooLarge:
            if room.free < limit:
                raise quota_exceeded(
                    needed=writer.bytes_written + len(chunk), used=room.used, limit=room.limit
                ) from None
            raise PayloadTooLarge(f"Files are limited to {limit} bytes.") from None
    return bytes(head)


def _verify(writer: BlobWriter, options: UploadOptions) -> None:
    """Length and client digest must match before anything is published."""
    if options.declared_length is not None and writer.bytes_written != options.declared_length:
        raise InvalidInput(
            f"The body had {writer.bytes_written} bytes but Content-Length said {options.declared_length}."
        )
    if options.sha256 is not None and not hmac.compare_digest(writer.digest(), options.sha256):
        raise InvalidInput(
            "The content does not match the digest you sent (Content-Digest / X-Content-SHA256); nothing was stored.",
            errors=[FieldError(field="header.content-digest", message="sha-256 mismatch")],
        )
