"""Receiving a chunk of a resumable upload (tus PATCH): the lease, the offset, the limits, the checksum,
the durable offset, and the recording of the finished file.

Order of events for one chunk, under the upload's lease:

1. the stored offset must equal the client's (409 otherwise); staged bytes past it (a chunk whose
   request broke before its offset was committed) are cut off;
2. the body streams into the staging, counted against the declared length, the upload limit and the
   folder owner's quota, and hashed when the client sent a checksum; the lease is renewed as it goes;
3. a checksum mismatch, a limit or a failure discards the whole chunk (the offset stays). A body that
   simply stops (the client went away) keeps what arrived: it is synced and its offset committed, so
   the client resumes from there;
4. ``sync`` (fsync), then the new offset is committed — only while the lease is still ours;
5. with the last byte: the staged bytes are hashed and published, and ``record`` puts the file into the
   tree in the transaction that also marks the upload recorded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from stowage.blobs import BlobStaging
from stowage.db.base import utcnow
from stowage.errors import FieldError, InvalidInput, PayloadTooLarge, RequestTimeout, StowageError
from stowage.files.services import quota_exceeded
from stowage.policy import Action, Principal
from stowage.uploads import repository
from stowage.uploads.errors import ChecksumMismatch, FinalUploadImmutable, OffsetMismatch, UploadGone
from stowage.uploads.schemas import UploadRow, UploadState
from stowage.uploads.services._common import Lease, UploadCore, lease_lost

# tus checksum extension: what ``Upload-Checksum`` may name (hashlib names).
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")


class ChunkChecksum(msgspec.Struct, frozen=True):
    """The digest the client says its chunk has (tus ``Upload-Checksum``): algorithm and raw digest."""

    algorithm: str
    digest: bytes


class _Limit(msgspec.Struct, frozen=True):
    """How many more bytes this chunk may bring, and which error says so when it brings more."""

    room: int
    error: StowageError


class ChunkService:
    def __init__(self, core: UploadCore) -> None:
        self.core = core
        self.db = core.db

    async def append(
        self,
        principal: Principal | None,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        length: int | None = None,
        checksum: ChunkChecksum | None = None,
    ) -> UploadState:
        """Store one chunk at ``offset``; ``length`` declares a deferred length (once, and never another
        value). Returns the upload's state after the chunk (the file's id once it is recorded)."""
        row = await self.core.load(principal, upload_id, Action.FILE_WRITE)
        assert principal is not None  # load authorised it
        if row.kind == "final":
            raise FinalUploadImmutable("A final upload is made of its partial uploads; it takes no bytes of its own.")
        if checksum is not None and checksum.algorithm not in CHECKSUM_ALGORITHMS:
            raise InvalidInput(
                f"Unsupported checksum algorithm {checksum.algorithm!r}; use one of {', '.join(CHECKSUM_ALGORITHMS)}.",
                errors=[FieldError(field="header.upload-checksum", message="unsupported algorithm")],
            )
        self._check_length(row, length, offset, self.core.max_size_for(principal))
        async with self.core.lease(upload_id) as lease:
            row = lease.row  # the offset as it is now that we hold the upload
            if offset != row.received_bytes:
                raise OffsetMismatch(expected=row.received_bytes, got=offset)
            total = row.length if row.length is not None else length
            if row.recorded or (total is not None and row.received_bytes == total):
                await _expect_empty(body)
                if row.length is None and total is not None:  # the deferred length, declared with no bytes
                    row = await self._declare_length(row, lease, total)
                if not row.recorded and row.kind != "partial":
                    await self.core.finish_complete(principal, row, lease.token)
                    row = await self.core.reload(upload_id)
                return UploadState.of(row)
            limit = await self._limit(principal, row, total, offset)
            staging = await self.core.store.open_staging(upload_id)
            try:
                row = await self._receive(
                    principal, row, staging, lease, body, offset=offset, total=total, limit=limit, checksum=checksum
                )
            finally:
                await staging.close()
        return UploadState.of(row)

    async def _declare_length(self, row: UploadRow, lease: Lease, length: int) -> UploadRow:
        async with self.db.direct_transaction() as tx:
            committed = await repository.commit_offset(
                tx, row.id, lease.token, offset=row.received_bytes, length=length, expires_at=row.expires_at
            )
        if committed is None:
            raise lease_lost()
        return committed

    def _check_length(self, row: UploadRow, length: int | None, offset: int, max_size: int) -> None:
        if length is None:
            return
        if row.length is not None and length != row.length:
            raise InvalidInput(
                f"This upload's length is {row.length} bytes; it cannot change to {length}.",
                errors=[FieldError(field="header.upload-length", message="differs from the declared length")],
            )
        if length < max(offset, row.received_bytes):
            raise InvalidInput(
                f"Upload-Length {length} is less than the bytes already received.",
                errors=[FieldError(field="header.upload-length", message="below the offset")],
            )
        if length > max_size:
            raise PayloadTooLarge(
                f"Uploads are limited to {max_size} bytes; this one has {length}.",
                extra={"max_size": max_size},
            )

    async def _limit(self, caller: Principal, row: UploadRow, total: int | None, offset: int) -> _Limit:
        """The bytes this chunk may add: up to the declared length (or the upload limit), and within the
        room left in the quota of the folder's owner (of the caller, for a partial upload). The caller must
        still be allowed to write into the folder; the name is checked at creation and at the recording
        only (a name taken meanwhile does not stop the transfer: freeing it lets the recording succeed)."""
        owner_id = row.owner_id
        if row.kind != "partial" and row.folder_id is not None:
            owner_id = (await self.core.files.tree.load_row(caller, row.folder_id, Action.FILE_WRITE)).owner_id
        room = await self.core.files.uploads.room(owner_id)
        max_size = self.core.max_size_for(caller)
        size_cap = total if total is not None else max_size
        needed = total if total is not None else offset
        if needed > room.free:
            raise quota_exceeded(needed=needed, used=room.used, limit=room.limit)
        if room.free < size_cap:
            return _Limit(
                room=room.free - offset,
                error=quota_exceeded(needed=room.free + 1, used=room.used, limit=room.limit),
            )
        error = (
            PayloadTooLarge(f"The chunk goes past the upload's length of {total} bytes; nothing of it was stored.")
            if total is not None
            else PayloadTooLarge(
                f"Uploads are limited to {max_size} bytes; nothing of this chunk was stored.",
                extra={"max_size": max_size},
            )
        )
        return _Limit(room=size_cap - offset, error=error)

    async def _receive(
        self,
        caller: Principal,
        row: UploadRow,
        staging: BlobStaging,
        lease: Lease,
        body: AsyncIterator[bytes],
        *,
        offset: int,
        total: int | None,
        limit: _Limit,
        checksum: ChunkChecksum | None,
    ) -> UploadRow:
        staged = await staging.size()
        if staged < offset:
            raise UploadGone("The stored bytes of this upload were lost; upload it again.")
        if staged > offset:
            await staging.truncate(offset)  # bytes of a chunk that never committed its offset
        try:
            stopped = await _stream(staging, lease, body, limit=limit, checksum=checksum, offset=offset)
        except BaseException:
            await staging.truncate(offset)
            raise
        new_offset = await staging.sync()
        complete = total is not None and new_offset == total
        last = complete and row.kind != "partial"  # the recording still needs the lease
        async with self.db.direct_transaction() as tx:
            committed = await repository.commit_offset(
                tx,
                row.id,
                lease.token,
                offset=new_offset,
                length=total,
                expires_at=self.core.expiry(utcnow()),
                release=not last,
            )
        if committed is None:
            raise lease_lost()
        lease.released = not last
        if isinstance(stopped, StowageError):
            raise stopped
        if stopped is not None:
            raise RequestTimeout(
                f"The chunk stopped before its end; the {new_offset - offset} bytes that arrived are stored "
                f"(Upload-Offset {new_offset}): resume from there."
            ) from stopped
        row = committed
        if last:
            info = await staging.finish()
            await self.core.record_or_remember(caller, row, info, lease.token)
            row = await self.core.reload(row.id)
        return row


async def _stream(
    staging: BlobStaging,
    lease: Lease,
    body: AsyncIterator[bytes],
    *,
    limit: _Limit,
    checksum: ChunkChecksum | None,
    offset: int,
) -> Exception | None:
    """Append the body to the staging. A body that stops early is returned (what arrived is kept)
    unless a checksum was sent (an incomplete chunk cannot be checked: raised, so it is discarded)."""
    hasher: Any = hashlib.new(checksum.algorithm) if checksum is not None else None
    received = 0
    chunks = aiter(body)
    while True:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except Exception as exc:  # the body stopped: the client went away or stalled
            if checksum is None:
                return exc
            if isinstance(exc, StowageError):
                raise
            raise RequestTimeout(
                "The chunk stopped before its end; with Upload-Checksum it cannot be checked, so it was "
                f"discarded and the upload stays at offset {offset}."
            ) from exc
        if not chunk:
            continue
        if received + len(chunk) > limit.room:
            raise limit.error
        await lease.keep()
        if hasher is not None:
            hasher.update(chunk)
        await staging.append(chunk)
        received += len(chunk)
    if checksum is not None and not hmac.compare_digest(hasher.digest(), checksum.digest):
        raise ChecksumMismatch(
            f"The chunk does not match its {checksum.algorithm} checksum; it was discarded "
            f"and the upload stays at offset {offset}.",
            errors=[FieldError(field="header.upload-checksum", message="mismatch")],
        )
    return None


async def _expect_empty(body: AsyncIterator[bytes]) -> None:
    """A chunk for an upload that has all its bytes must be empty."""
    async for chunk in body:
        if chunk:
            raise PayloadTooLarge("This upload has all its bytes already; nothing of the chunk was stored.")
