"""What the upload services share: their dependencies, loading an upload for a caller, the PATCH lease,
and the step that turns a complete upload into a file of the tree.

Recording goes through the files domain's public write path (``UploadService.record_blob``): the same
transaction as every upload (blob reference, node, version, quota, change log) also marks the upload
recorded — only if no one else did — so the file and the upload's state change together or not at all.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from stowage.blobs import BlobInfo, BlobStore, check_upload_id
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.direct import DirectTransaction
from stowage.db.engine import Database
from stowage.errors import Conflict, NotFound, UnsupportedMediaType
from stowage.files.direct_repository import NodeRow
from stowage.files.media_types import media_type_allows, sniff_media_type
from stowage.files.schemas import NodeOut
from stowage.files.services import FileServices, UploadOptions
from stowage.policy import Action, Owned, Principal, authorize
from stowage.uploads import repository
from stowage.uploads.errors import UploadGone, UploadLocked
from stowage.uploads.schemas import UploadRow

# A PATCH holds its upload for this long and renews the lease while bytes keep arriving (every third of
# it). A request that stalls longer loses the lease: its next write is refused before it touches the
# staged bytes, and a request whose server died frees the upload after at most this long.
LEASE_SECONDS = 15.0
SNIFF_BYTES = 4096
OCTET_STREAM = "application/octet-stream"


@dataclass(slots=True)
class UploadDeps:
    settings: Settings
    database: Database
    store: BlobStore
    files: FileServices


class Lease:
    """This request's claim on one upload (see ``uploads.repository``); ``keep`` renews it when due.
    ``row`` is the upload as it was when the lease was taken (no other request can change it since)."""

    def __init__(self, core: UploadCore, row: UploadRow, token: str) -> None:
        self.core = core
        self.row = row
        self.upload_id = row.id
        self.token = token
        self.released = False  # given up with the offset commit: nothing to release at the end
        self._renewed_at = time.monotonic()

    async def keep(self) -> None:
        """Renew the lease once a third of it has passed; raise when it was lost meanwhile (the request
        stalled longer than the lease and another request took the upload)."""
        if time.monotonic() - self._renewed_at < self.core.lease_seconds / 3:
            return
        until = utcnow() + timedelta(seconds=self.core.lease_seconds)
        async with self.core.db.volatile_transaction() as tx:
            kept = await repository.renew_lease(tx, self.upload_id, self.token, until=until)
        if not kept:
            raise lease_lost()
        self._renewed_at = time.monotonic()


def lease_lost() -> Conflict:
    return Conflict(
        "This request stalled for longer than its lease and another request took over the upload; "
        "nothing more was stored. Ask for the offset (HEAD) and resume from there."
    )


class UploadCore:
    """Loading, leasing and recording: the parts every upload use case needs."""

    def __init__(self, deps: UploadDeps, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self.deps = deps
        self.db = deps.database
        self.store = deps.store
        self.files = deps.files
        self.lease_seconds = lease_seconds

    @property
    def max_size(self) -> int:
        """The largest upload accepted (tus: ``Tus-Max-Size``): the server's upload limit."""
        return self.deps.settings.max_upload_bytes

    def max_size_for(self, caller: Principal) -> int:
        """The largest upload this caller may send: the server's limit, or a presigned URL's within it."""
        if caller.restriction is None:
            return self.max_size
        return caller.restriction.size_limit(self.max_size)

    def check_media_type(self, caller: Principal, media_type: str | None, *, declared: bool) -> None:
        """A presigned URL signed for a media type accepts only that: 415 for another one, as the client
        declared it (Upload-Metadata, at creation) or as the content turned out (at the recording)."""
        allowed = caller.restriction.media_type if caller.restriction is not None else None
        if allowed is None or media_type is None or media_type_allows(allowed, media_type):
            return
        said = "declares" if declared else "is"
        raise UnsupportedMediaType(
            f"This presigned URL accepts only {allowed}; the upload {said} {media_type}.",
            extra={"accepted": allowed, "media_type": media_type},
        )

    def expiry(self, now: datetime) -> datetime:
        return now + timedelta(hours=self.deps.settings.upload_expiry_hours)

    async def load(self, principal: Principal | None, upload_id: str, action: Action) -> UploadRow:
        """The upload, if the caller may act on it: 404 for an unknown id or someone else's upload
        (existence is not revealed), 410 for an unfinished one past its expiry."""
        authorize(principal, action)
        try:
            check_upload_id(upload_id)
        except ValueError:
            raise NotFound("No such upload.") from None
        row = await repository.read(self.db.direct, upload_id)
        if row is None:
            raise NotFound("No such upload.")
        authorize(principal, action, Owned(owner_id=row.owner_id, upload_id=row.id))
        if not row.recorded and row.expires_at <= utcnow():
            raise UploadGone("This upload expired before it was finished; start a new one.")
        return row

    async def reload(self, upload_id: str) -> UploadRow:
        row = await repository.read(self.db.direct, upload_id)
        if row is None:
            raise NotFound("No such upload (it was terminated meanwhile).")
        return row

    @contextlib.asynccontextmanager
    async def lease(self, upload_id: str) -> AsyncIterator[Lease]:
        """Hold the upload for this request, or raise ``UploadLocked`` (with the seconds the holder's lease
        has left) when another request holds it. Released when the block ends, however it ends."""
        token = str(uuid.uuid4())
        now = utcnow()
        async with self.db.volatile_transaction() as tx:
            won = await repository.take_lease(
                tx, upload_id, token, now=now, until=now + timedelta(seconds=self.lease_seconds)
            )
            holder_until = None if won else await repository.lease_until(tx, upload_id)
        if won is None:
            if holder_until is None:  # no such row: it was terminated meanwhile
                raise NotFound("No such upload.")
            raise UploadLocked(retry_after=max(1, math.ceil((holder_until - now).total_seconds())))
        lease = Lease(self, won, token)
        try:
            yield lease
        finally:
            if not lease.released:
                async with self.db.volatile_transaction() as tx:
                    await repository.release_lease(tx, upload_id, token)

    async def record(self, caller: Principal, row: UploadRow, info: BlobInfo, token: str | None) -> NodeOut:
        """Put the complete upload's content into the tree, marking the upload recorded in the same
        transaction (refused, and everything rolled back, when it was recorded already or the lease was
        lost). A new file gets the upload's id as its id."""
        assert row.folder_id is not None
        assert row.name is not None
        media_type = await self._media_type(row, info)
        self.check_media_type(caller, media_type, declared=False)

        async def mark(tx: DirectTransaction, node: NodeRow) -> None:
            marked = await repository.mark_recorded(
                tx, row.id, token, node_id=node.id, size=info.size, sha256=info.sha256, now=utcnow()
            )
            if not marked:
                raise Conflict("This upload was finished by another request meanwhile.")

        node, _ = await self.files.uploads.record_blob(
            caller,
            parent_id=row.folder_id,
            name=row.name,
            info=info,
            media_type=media_type,
            options=UploadOptions(on_conflict=row.on_conflict),
            existing_id=None,
            node_id=row.id,
            within=mark,
        )
        return node

    async def _media_type(self, row: UploadRow, info: BlobInfo) -> str:
        """Sniffed from the content and name like every upload; the type the client declared counts only
        when the content says nothing more specific than "bytes"."""
        async with contextlib.aclosing(self.store.open_read(info.sha256, 0, SNIFF_BYTES)) as chunks:
            head = b"".join([chunk async for chunk in chunks])
        sniffed = sniff_media_type(head, row.name or "")
        if sniffed == OCTET_STREAM and row.media_type:
            return row.media_type
        return sniffed

    async def finish_complete(self, caller: Principal, row: UploadRow, token: str | None) -> NodeOut:
        """Record an upload whose every byte is durable but that is not in the tree yet: after a failed
        recording (a name conflict, the quota), or a crash between the last byte and the recording."""
        assert row.length is not None
        if row.sha256 is not None:
            if not await self.store.exists(row.sha256):
                raise UploadGone("The content of this upload was lost before it was recorded; upload it again.")
            info = BlobInfo(sha256=row.sha256, size=row.length)
        else:
            staging = await self.store.open_staging(row.id)
            try:
                staged = await staging.size()
                if staged < row.length:
                    raise UploadGone("The stored bytes of this upload were lost; upload it again.")
                if staged > row.length:
                    await staging.truncate(row.length)
                info = await staging.finish()
            finally:
                await staging.close()
        return await self.record_or_remember(caller, row, info, token)

    async def record_or_remember(self, caller: Principal, row: UploadRow, info: BlobInfo, token: str | None) -> NodeOut:
        """``record``; when it is refused, remember the published content's digest so a later request can
        retry the recording without the staged bytes (which publishing removed)."""
        try:
            return await self.record(caller, row, info, token)
        except BaseException:
            if token is not None:
                with contextlib.suppress(Exception):
                    async with self.db.direct_transaction() as tx:
                        await repository.commit_offset(
                            tx,
                            row.id,
                            token,
                            offset=info.size,
                            length=info.size,
                            expires_at=row.expires_at,
                            sha256=info.sha256,
                        )
            raise
