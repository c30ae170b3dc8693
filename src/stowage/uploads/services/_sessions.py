"""Creating, inspecting, terminating and expiring resumable uploads; joining partial uploads.

Everything an upload's recording will need is decided at creation: the caller may write into the target
folder, the name is valid and free (or the conflict policy says what to do), and the declared length
fits the upload limit and the folder owner's quota. The recording checks it all again, since the tree
may change while the bytes arrive.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import cast

from stowage.db.base import utcnow
from stowage.errors import Conflict, FieldError, InvalidInput, NotFound, PayloadTooLarge, StowageError
from stowage.files.schemas import ConflictPolicy
from stowage.files.services import UploadOptions, quota_exceeded
from stowage.policy import Action, Principal, authorize
from stowage.uploads import repository
from stowage.uploads.errors import UploadLocked
from stowage.uploads.schemas import NewUpload, UploadRow, UploadState, UploadTarget
from stowage.uploads.services._common import UploadCore

MAX_PARTS = 1000
EXPIRE_BATCH = 500
# A staging whose upload row is gone (the owner was deleted, a crash between the two removals) is
# removed by housekeeping once it has not changed for this long.
ORPHAN_STAGING_SECONDS = 3600.0


class SessionService:
    def __init__(self, core: UploadCore) -> None:
        self.core = core
        self.db = core.db

    async def create(self, principal: Principal | None, new: NewUpload) -> UploadState:
        """A new upload of the caller's. A final upload is joined from its parts and recorded at once; an
        upload of length 0 is recorded at once too."""
        caller = authorize(principal, Action.FILE_WRITE)
        if caller.restriction is not None:  # a presigned tus creation URL: its kind, size and media type
            caller.restriction.check_new_upload(
                new.kind, new.length, self.core.max_size, folder_path=bool((new.target.folder_path or "").strip("/"))
            )
            self.core.check_media_type(caller, new.target.media_type, declared=True)
        if new.length is not None:
            self._check_size(new.length)
        upload_id = str(uuid.uuid4())
        now = utcnow()
        parts: list[UploadRow] = []
        length = new.length
        if new.kind == "final":
            parts = await self._parts(caller, new.parts)
            length = sum(part.length or 0 for part in parts)
            self._check_size(length)
        folder_id, name = None, None
        if new.kind != "partial":
            folder_id, name = await self._target(caller, new.target, upload_id, length)
        else:
            await self._check_quota_of(caller.user_id, length or 0)
        row = UploadRow(
            id=upload_id,
            owner_id=caller.user_id,
            kind=new.kind,
            length=length,
            received_bytes=0,
            folder_id=folder_id,
            name=name,
            media_type=new.target.media_type,
            on_conflict=_conflict_policy(caller, new.target),
            upload_metadata=new.metadata,
            concat_parts=tuple(part.id for part in parts),
            created_at=now,
            expires_at=self.core.expiry(now),
            completed_at=None,
            node_id=None,
            sha256=None,
        )
        async with self.db.transaction() as db:
            await repository.insert_upload(db, row)
        if new.kind == "final":
            return await self._join(caller, row, parts)
        if length == 0 and new.kind == "single":
            return await self._record_at_once(caller, row)
        return UploadState.of(row)

    async def peek(self, principal: Principal | None, upload_id: str) -> UploadState:
        """Where the upload stands, as stored (``status`` without retrying a refused recording)."""
        return UploadState.of(await self.core.load(principal, upload_id, Action.FILE_WRITE))

    async def status(self, principal: Principal | None, upload_id: str) -> UploadState:
        """Where the upload stands. An upload whose bytes all arrived but that is not in the tree yet (its
        recording was refused, or the server stopped in between) is recorded now, or says why not."""
        row = await self.core.load(principal, upload_id, Action.FILE_WRITE)
        if row.recorded or row.kind == "partial" or row.length is None or row.received_bytes < row.length:
            return UploadState.of(row)
        assert principal is not None  # load authorised it
        with contextlib.suppress(UploadLocked):  # the holder is recording it: report what is stored
            async with self.core.lease(row.id) as lease:
                row = await self.core.reload(row.id)
                if not row.recorded:
                    await self.core.finish_complete(principal, row, lease.token)
                    row = await self.core.reload(row.id)
        return UploadState.of(row)

    async def terminate(self, principal: Principal | None, upload_id: str) -> None:
        """Remove the upload and its staged bytes (a file it became stays in the tree). Refused while a
        request is sending bytes to it (``UploadLocked``)."""
        await self.core.load(principal, upload_id, Action.FILE_WRITE)
        async with self.core.lease(upload_id), self.db.transaction() as db:
            await repository.delete_upload(db, upload_id)
        await self.core.store.discard_staging(upload_id)

    async def remove_expired(self, *, orphan_seconds: float = ORPHAN_STAGING_SECONDS) -> int:
        """Housekeeping: remove uploads past their expiry (unfinished ones with their staged bytes; the
        rows of finished ones), and stagings whose upload no longer exists. Returns how many uploads."""
        removed = 0
        while True:
            async with self.db.session() as db:
                batch = await repository.expired(db, utcnow(), EXPIRE_BATCH)
            if not batch:
                break
            async with self.db.transaction() as db:
                removed += await repository.delete_uploads(db, batch)
            for upload_id in batch:
                await self.core.store.discard_staging(upload_id)
            if len(batch) < EXPIRE_BATCH:
                break
        staged = await self.core.store.staged_uploads()
        if staged:
            async with self.db.session() as db:
                alive = await repository.existing(db, staged)
            cutoff = utcnow().timestamp() - orphan_seconds
            for upload_id, changed_at in staged.items():
                if upload_id not in alive and changed_at <= cutoff:
                    await self.core.store.discard_staging(upload_id)
        return removed

    # --- creation --------------------------------------------------------------------------------

    def _check_size(self, length: int) -> None:
        if length > self.core.max_size:
            raise PayloadTooLarge(
                f"Uploads are limited to {self.core.max_size} bytes; this one has {length}.",
                extra={"max_size": self.core.max_size},
            )

    async def _check_quota_of(self, owner_id: str, length: int) -> None:
        room = await self.core.files.uploads.room(owner_id)
        if length > room.free:
            raise quota_exceeded(needed=length, used=room.used, limit=room.limit)

    async def _target(
        self, caller: Principal, target: UploadTarget, upload_id: str, length: int | None
    ) -> tuple[str, str]:
        """The folder and name the file will have, checked now: the folder exists and the caller may
        write there (a folder path is created as needed), the name is valid and the conflict policy
        allows it, and a known length fits the owner's quota."""
        files = self.core.files
        if target.folder_id is not None and target.folder_path is not None:
            raise InvalidInput(
                "Name the target folder by id or by path, not both.",
                errors=[FieldError(field="header.upload-metadata", message="folder and path are exclusive")],
            )
        if target.folder_id is not None:
            folder_id = target.folder_id
        elif target.folder_path is not None and target.folder_path.strip("/"):
            folder_id = (await files.tree.create_folder_path(caller, target.folder_path))[0].id
        elif caller.restriction is not None:  # a presigned URL's folder (another one is refused by the policy)
            folder_id = caller.restriction.node_id
        else:
            folder_id = await files.uploads.root_id(caller)
        plan = await files.uploads.prepare(
            caller,
            folder_id,
            target.name or f"upload-{upload_id}",
            UploadOptions(on_conflict=_conflict_policy(caller, target)),
        )
        if length is not None and length > plan.room.free:
            raise quota_exceeded(needed=length, used=plan.room.used, limit=plan.room.limit)
        return plan.parent_id, plan.name

    async def _parts(self, caller: Principal, part_ids: tuple[str, ...]) -> list[UploadRow]:
        """The partial uploads a final upload joins, each the caller's and complete."""
        if not part_ids:
            raise InvalidInput("A final upload names at least one partial upload.")
        if len(part_ids) > MAX_PARTS:
            raise InvalidInput(f"A final upload joins at most {MAX_PARTS} partial uploads.")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidInput("A final upload names each partial upload once.")
        parts: list[UploadRow] = []
        for part_id in part_ids:
            part = await self.core.load(caller, part_id, Action.FILE_WRITE)
            if part.kind != "partial":
                raise Conflict(
                    f"Upload {part_id} is not a partial upload (Upload-Concat: partial); it cannot be joined."
                )
            if part.length is None or part.received_bytes != part.length:
                raise Conflict(f"Partial upload {part_id} is not complete yet; finish it before joining it.")
            parts.append(part)
        return parts

    async def _join(self, caller: Principal, row: UploadRow, parts: list[UploadRow]) -> UploadState:
        """Concatenate the parts into the final upload's staging and record it; the parts are removed
        once the file is in the tree. On failure the final upload is removed and the parts are kept."""
        try:
            async with self.core.lease(row.id) as lease:
                staged = await self.core.store.stage_concatenation(row.id, [part.id for part in parts])
                if staged != row.length:
                    raise Conflict("The partial uploads changed while they were joined; try again.")
                staging = await self.core.store.open_staging(row.id)
                try:
                    info = await staging.finish()
                finally:
                    await staging.close()
                await self.core.record(caller, row, info, lease.token)
        except (StowageError, FileNotFoundError) as exc:
            async with self.db.transaction() as db:
                await repository.delete_upload(db, row.id)
            await self.core.store.discard_staging(row.id)
            if isinstance(exc, FileNotFoundError):
                raise NotFound("The stored bytes of a partial upload are missing; upload that part again.") from exc
            raise
        async with self.db.transaction() as db:
            await repository.delete_uploads(db, [part.id for part in parts])
        for part in parts:
            await self.core.store.discard_staging(part.id)
        return UploadState.of(await self.core.reload(row.id))

    async def _record_at_once(self, caller: Principal, row: UploadRow) -> UploadState:
        """An empty upload is complete at creation: record the empty file now (removed again if refused)."""
        try:
            async with self.core.lease(row.id) as lease:
                staging = await self.core.store.open_staging(row.id)
                try:
                    info = await staging.finish()
                finally:
                    await staging.close()
                await self.core.record(caller, row, info, lease.token)
        except StowageError:
            async with self.db.transaction() as db:
                await repository.delete_upload(db, row.id)
            await self.core.store.discard_staging(row.id)
            raise
        return UploadState.of(await self.core.reload(row.id))


def _conflict_policy(caller: Principal, target: UploadTarget) -> ConflictPolicy:
    """What to do when the name is taken: as the metadata says, else as a presigned URL was signed, else fail."""
    if target.on_conflict is not None:
        return target.on_conflict
    signed = caller.restriction.on_conflict if caller.restriction is not None else None
    return cast("ConflictPolicy", signed) if signed in ("fail", "rename", "replace") else "fail"
