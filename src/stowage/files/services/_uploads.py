"""Writing file content: the write-path invariant of DESIGN.md, whatever protocol the bytes came by.

stream body → temp file while hashing and counting → size and quota enforced on every chunk →
client digests checked → fsync + rename into the content-addressed store (dedup) → one transaction
(blob reference, version, node, usage, change log) → 2xx. Preconditions and the name conflict are
checked before the first byte is read and again inside the transaction; a client that disconnects,
sends a wrong digest or runs out of quota leaves nothing behind but, at worst, an unreferenced blob
file that ``gc`` collects.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import msgspec

from stowage.blobs import BlobInfo
from stowage.db.base import utcnow
from stowage.db.direct import DirectTransaction
from stowage.errors import Conflict, FieldError, InvalidInput, NotFound, PayloadTooLarge
from stowage.files import direct_repository
from stowage.files.direct_repository import NodeRow
from stowage.files.facts_repository import FactsRow
from stowage.files.media_types import has_image_facts, sniff_media_type
from stowage.files.names import normalise_name, split_path
from stowage.files.schemas import NodeOut
from stowage.files.services._common import FileDeps, charge_or_fail, ensure_root, node_out, quota_exceeded, unique_name
from stowage.files.services._image_content import without_gps
from stowage.files.services._tree import TreeService
from stowage.files.services._upload_checks import (
    QuotaRoom,
    UploadOptions,
    check_if_match,
    check_media_type,
    check_target,
    spool,
    verify,
)
from stowage.files.services._versions import apply_retention, retention_policy
from stowage.policy import Action, Principal, authorize

MAX_INSERT_ATTEMPTS = 5
# Extra statements a caller of ``record_blob`` runs in its transaction (tus marks its upload recorded).
Within = Callable[[DirectTransaction, NodeRow], Awaitable[None]]


class UploadPlan(msgspec.Struct, frozen=True):
    """What ``prepare`` decided before the first byte: the folder, the clean name, the file it would
    replace (the one seen now) and the room left in the folder owner's quota."""

    parent_id: str
    name: str
    existing_id: str | None
    room: QuotaRoom


class UploadService:
    def __init__(self, deps: FileDeps, tree: TreeService) -> None:
        self.deps = deps
        self.tree = tree
        self.db = deps.database
        self.reader = deps.database.direct

    async def upload_to_folder(
        self,
        principal: Principal | None,
        parent_id: str,
        name: str,
        body: AsyncIterator[bytes],
        options: UploadOptions,
    ) -> tuple[NodeOut, bool]:
        """Store ``body`` as ``name`` in a folder. Returns (file, created)."""
        plan = await self.prepare(principal, parent_id, name, options)
        assert principal is not None  # prepare authorised it
        return await self._store(
            principal,
            parent_id=plan.parent_id,
            name=plan.name,
            body=body,
            options=options,
            room=plan.room,
            existing_id=plan.existing_id,
        )

    async def prepare(
        self, principal: Principal | None, parent_id: str, name: str, options: UploadOptions
    ) -> UploadPlan:
        """Everything an upload of ``name`` into a folder decides before its first byte: the caller may
        write there, the name is valid, the conditions and the conflict policy allow it, and the room
        in the owner's quota. Resumable uploads ask it at creation, long before ``record_blob``."""
        clean = normalise_name(name)
        if principal is not None and principal.restriction is not None:  # a presigned URL names its one file
            principal.restriction.check_name(clean)
            principal.restriction.check_conflict_policy(
                options.on_conflict, replaces_version=options.expected_etags is not None
            )
        parent = await self.tree.load_row(principal, parent_id, Action.FILE_WRITE)
        existing = await direct_repository.live_child(self.reader, parent.id, clean)
        check_target(parent, clean, existing, options, expected_id=None)
        room = await self._room(parent.owner_id)
        return UploadPlan(
            parent_id=parent.id, name=clean, existing_id=existing.id if existing is not None else None, room=room
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
        folder_parts = parts[:-1]
        # The folder usually exists already: one read finds it (no write transaction for mkdir -p).
        folder = await direct_repository.live_node_at(self.reader, caller.user_id, folder_parts)
        if folder is not None and folder.kind == "folder":
            parent_id = folder.id
        elif create_parents and folder_parts:
            created, _ = await self.tree.create_folder_path(caller, "/".join(folder_parts))
            parent_id = created.id
        else:  # the tree walk says what is missing (or creates a new user's root)
            await self.tree.ensure_user_root(caller, Action.FILE_WRITE)
            async with self.db.session() as db:
                parent_id = (await self.tree.resolve(db, caller, "/".join(folder_parts), Action.FILE_WRITE)).id
        return await self.upload_to_folder(caller, parent_id, parts[-1], body, options)

    async def replace_content(
        self, principal: Principal | None, node_id: str, body: AsyncIterator[bytes], options: UploadOptions
    ) -> NodeOut:
        """A new version of an existing file (``PUT …/nodes/{id}/content``)."""
        node = await self.tree.load_row(principal, node_id, Action.FILE_WRITE)
        if node.kind != "file":
            raise Conflict(f"{node.name!r} is a folder; it has no content to replace.")
        check_if_match(node, options)
        room = await self._room(node.owner_id)
        assert node.parent_id is not None  # the root is a folder
        assert principal is not None  # load_row authorised it
        forced = msgspec.structs.replace(options, on_conflict="replace")
        result, _ = await self._store(
            principal,
            parent_id=node.parent_id,
            name=node.name,
            body=body,
            options=forced,
            room=room,
            existing_id=node.id,
        )
        return result

    async def room(self, owner_id: str) -> QuotaRoom:
        """The owner's quota: used bytes and the limit (NotFound for an unknown user)."""
        return await self._room(owner_id)

    async def _room(self, owner_id: str) -> QuotaRoom:
        room = await direct_repository.quota_room(self.reader, owner_id, self.deps.settings.default_quota_bytes)
        if room is None:
            raise NotFound("No such user.")
        return QuotaRoom(used=room[0], limit=room[1])

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
        restriction = caller.restriction  # a presigned URL's own limits, on top of the server's
        if restriction is not None and restriction.max_size is not None:
            limit = min(limit, restriction.max_size)
        if options.declared_length is not None:
            if options.declared_length > limit:
                raise PayloadTooLarge(f"Files are limited to {limit} bytes; this one is {options.declared_length}.")
            if options.declared_length > room.free:
                raise quota_exceeded(needed=options.declared_length, used=room.used, limit=room.limit)
        writer = await self.deps.store.open_writer(max_size=min(limit, room.free))
        try:
            head = await spool(writer, body, limit=limit, room=room)
            verify(writer, options)
            media_type = sniff_media_type(head, name)
            if restriction is not None and restriction.media_type is not None:
                check_media_type(restriction.media_type, media_type)
            info = await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        return await self.record_blob(
            caller,
            parent_id=parent_id,
            name=name,
            info=info,
            media_type=media_type,
            options=options,
            existing_id=existing_id,
        )

    # --- the transaction --------------------------------------------------------------------

    async def record_blob(
        self,
        caller: Principal,
        *,
        parent_id: str,
        name: str,
        info: BlobInfo,
        media_type: str,
        options: UploadOptions,
        existing_id: str | None,
        node_id: str | None = None,
        within: Within | None = None,
    ) -> tuple[NodeOut, bool]:
        """Turn committed content into the file ``name`` in a folder, in one transaction: blob reference,
        node (new, or a new version of the one there), version, usage, change log, retention.

        ``node_id`` is the id a new file gets when it is free (tus: the upload's id, so the upload URL
        names the file); ``within`` runs in the same transaction once the file is recorded, and its
        error rolls everything back (tus: mark the upload recorded, only if no one else did).

        The seam every upload protocol ends in (REST, tus, S3, WebDAV): the bytes are already durable in
        the blob store. What was decided before the body is checked again here, since another writer may
        have won meanwhile. Hand-written SQL (``files.direct_repository``): this runs once per upload."""
        strip = options.strip_gps if options.strip_gps is not None else self.deps.settings.strip_gps_on_upload
        if strip and has_image_facts(media_type):  # the stored content is the one without a position
            info = await without_gps(self.deps.store, self.deps.settings.data_dir, info)
        now = utcnow()
        version_id = str(uuid.uuid4())
        async with self.db.direct_transaction() as tx:
            parent = await direct_repository.node_by_id(tx, parent_id)
            if parent is None or parent.trashed_at is not None:
                raise NotFound("No such file or folder.")
            authorize(caller, Action.FILE_WRITE, await self.tree.access(caller, parent.owner_id, parent.id))
            existing = await direct_repository.live_child(tx, parent.id, name)
            check_target(parent, name, existing, options, expected_id=existing_id, recheck=True)
            if existing is not None and options.on_conflict == "rename" and options.expected_etags is None:
                name = await unique_name(tx, parent.id, name)
                existing = None
            await direct_repository.reference_blob(tx, info.sha256, info.size, now)
            modified = options.modified_at or now
            created = existing is None
            node = existing
            if node is None:
                node, created = await self._insert_file(
                    tx,
                    parent,
                    name=name,
                    info=info,
                    media_type=media_type,
                    version_id=version_id,
                    now=now,
                    modified=modified,
                    options=options,
                    preferred_id=node_id,
                )
            if not created:
                await direct_repository.set_content(
                    tx,
                    node.id,
                    version_id=version_id,
                    size=info.size,
                    sha256=info.sha256,
                    media_type=media_type,
                    modified_at=modified,
                    now=now,
                )
            await direct_repository.insert_version(
                tx,
                version_id=version_id,
                node_id=node.id,
                sha256=info.sha256,
                size=info.size,
                media_type=media_type,
                author_id=caller.user_id or None,  # a link visitor has no account
                now=now,
            )
            image = has_image_facts(media_type)
            known = await self.tree.facts.recorded(tx, node.id, info.sha256) if image else None
            await direct_repository.log_change(tx, node.owner_id, node.id, "create" if created else "update", now)
            # Late in the transaction on purpose: on PostgreSQL the charge locks the owner's row until the
            # commit, and every upload of that owner needs it, so it is held as briefly as possible.
            await charge_or_fail(tx, self.deps.settings, parent.owner_id, info.size)
            if not created:
                await apply_retention(
                    tx,
                    node.id,
                    owner_id=node.owner_id,
                    current_version_id=version_id,
                    policy=retention_policy(self.deps.settings),
                    now=now,
                )
            if within is not None:
                await within(tx, node)
        stored = msgspec.structs.replace(
            node,
            size=info.size,
            sha256=info.sha256,
            media_type=media_type,
            modified_at=modified,
            current_version_id=version_id,
        )
        return _with_facts(node_out(stored), known, self.tree, info.sha256 if image else None), created

    async def _insert_file(
        self,
        tx: DirectTransaction,
        parent: NodeRow,
        *,
        name: str,
        info: BlobInfo,
        media_type: str,
        version_id: str,
        now: datetime,
        modified: datetime,
        options: UploadOptions,
        preferred_id: str | None = None,
    ) -> tuple[NodeRow, bool]:
        """Insert the new file node; if a concurrent request took the name first (the live-name index
        says so), follow the conflict policy instead of failing with a server error."""
        for attempt in range(MAX_INSERT_ATTEMPTS):
            node_id = preferred_id if attempt == 0 and preferred_id is not None else str(uuid.uuid4())
            inserted = await direct_repository.insert_file(
                tx,
                node_id=node_id,
                owner_id=parent.owner_id,
                parent_id=parent.id,
                name=name,
                size=info.size,
                media_type=media_type,
                sha256=info.sha256,
                version_id=version_id,
                now=now,
                modified_at=modified,
            )
            if inserted:
                return NodeRow(
                    id=node_id,
                    owner_id=parent.owner_id,
                    parent_id=parent.id,
                    kind="file",
                    name=name,
                    size=info.size,
                    media_type=media_type,
                    sha256=info.sha256,
                    modified_at=modified,
                    trashed_at=None,
                    created_at=now,
                    starred=False,
                    properties=None,
                    current_version_id=version_id,
                ), True
            winner = await direct_repository.live_child(tx, parent.id, name)
            if winner is None and node_id == preferred_id:
                continue  # the preferred id is taken (not the name): a fresh id
            if options.on_conflict == "rename":
                name = await unique_name(tx, parent.id, name)
                continue
            if options.on_conflict == "replace" and winner is not None and winner.kind == "file":
                return winner, False
            raise Conflict(
                f"{name!r} was created by someone else at the same moment.",
                extra={"conflicting_id": winner.id if winner else None},
            )
        raise Conflict(f"Could not find a free name like {name!r}; too many concurrent uploads.")

    async def root_id(self, principal: Principal | None) -> str:
        caller = authorize(principal, Action.FILE_WRITE)
        async with self.db.transaction() as db:
            return (await ensure_root(db, caller.user_id)).id


def _with_facts(out: NodeOut, known: FactsRow | None, tree: TreeService, image_sha256: str | None) -> NodeOut:
    """The recorded file with its image facts when they were known (its content was stored before);
    image content without them is scheduled, now that the transaction has committed."""
    if known is not None:
        if (image := known.image()) is not None:
            out.image = image
    elif image_sha256 is not None:
        tree.facts.schedule([image_sha256])
    return out
