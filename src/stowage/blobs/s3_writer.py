"""Writing one blob to an S3 store: hashed while it streams, in bounded memory, published by its digest.

The object key is the content's SHA-256, known only once the last byte is in. So:

* **Small blobs** (everything fits in one part, ``part_size``, 8 MiB by default) stay in memory and
  are sent with one ``PutObject`` straight to their final key at commit — one request, no copy.
* **Big blobs** go out as a multipart upload to a temporary key ``<prefix>tmp/upload-<random>``: a
  part is sent each time ``part_size`` bytes have arrived, while the next part fills (one part in
  flight, so memory stays at about two parts per upload). At commit the upload is completed, copied
  server-side to ``<prefix>blobs/ab/cd/<sha256>`` (``CopyObject``, or ``UploadPartCopy`` ranges for
  objects over 5 GiB) and the temporary object deleted. The bytes cross the network once.

Crash safety: nothing is visible under a blob key before its content is complete (an S3 PUT, a
completed multipart upload and a copy are atomic). A crash leaves an unfinished multipart upload or a
temporary object under ``tmp/``; ``remove_stale_temp`` (run by gc and housekeeping) aborts or deletes
those whose last byte is older than its cut-off. Dedup: if intact content with the digest is stored
already, the upload is dropped and the stored object's timestamp refreshed (gc's grace period then
covers the reference about to be recorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from stowage.blobs._s3client import NO_SUCH_UPLOAD, error_code
from stowage.blobs.base import BlobInfo, SpoolingWriter

if TYPE_CHECKING:
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

    from stowage.blobs.s3 import S3BlobStore

T = TypeVar("T")


class S3BlobWriter(SpoolingWriter):
    """Spools to memory up to one part, then to a multipart upload under a temporary key."""

    def __init__(self, store: S3BlobStore, *, max_size: int | None) -> None:
        super().__init__(max_size=max_size)
        self._store = store
        self._part_size = store.part_size
        self._buffer = bytearray()
        self.temp_key: str | None = None
        self.multipart_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._in_flight: asyncio.Future[Any] | None = None
        self._completed = False  # the temporary object exists (between complete and delete)

    async def _remote(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a request that must not be abandoned half-way: if we are cancelled it still finishes (so an
        upload id or a part is never lost to a cancellation), and ``_discard`` waits for it."""
        task = asyncio.ensure_future(make())
        self._in_flight = task
        return await asyncio.shield(task)

    async def _drain(self) -> None:
        """Wait for the part in flight; its failure is raised here."""
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            await asyncio.shield(pending)

    async def _spool(self, chunk: bytes) -> None:
        self._hasher.update(chunk)
        self._buffer += chunk
        if len(self._buffer) >= self._part_size:
            await self._send_part()

    async def _send_part(self) -> None:
        """Start uploading the buffer as the next part; the previous part must have finished first."""
        await self._drain()
        client = await self._store.client()
        if self.multipart_id is None:
            self.temp_key = self._store.new_temp_key()
            temp_key = self.temp_key

            async def create() -> None:
                # The id is kept inside the task: if we are cancelled meanwhile, _discard still aborts it.
                created = await client.create_multipart_upload(Bucket=self._store.bucket, Key=temp_key)
                self.multipart_id = created["UploadId"]

            await self._remote(create)
        data, self._buffer = bytes(self._buffer), bytearray()
        number = len(self._parts) + 1
        upload_id, key = self.multipart_id, self.temp_key
        assert key is not None
        assert upload_id is not None

        async def upload() -> None:
            try:
                answer = await client.upload_part(
                    Bucket=self._store.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
            except ClientError as exc:
                if error_code(exc) == NO_SUCH_UPLOAD:
                    raise FileNotFoundError(f"the multipart upload of {key} was removed as stale") from exc
                raise
            self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        # One part in flight: it uploads while the next one fills (``_drain`` waits before the next).
        self._in_flight = asyncio.ensure_future(upload())

    async def _publish(self, info: BlobInfo) -> None:
        store = self._store
        if self.multipart_id is None:
            data, self._buffer = bytes(self._buffer), bytearray()
            if await store.refresh_if_stored(info):
                return
            await self._remote(lambda: store.put_blob(info, data))
            return
        if self._buffer:
            await self._send_part()
        await self._drain()
        if await store.refresh_if_stored(info):
            await self._discard()
            return
        client = await store.client()
        upload_id, key = self.multipart_id, self.temp_key
        assert key is not None
        parts = sorted(self._parts, key=lambda part: int(part["PartNumber"]))
        try:
            await self._remote(
                lambda: client.complete_multipart_upload(
                    Bucket=store.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            )
        except ClientError as exc:
            if error_code(exc) == NO_SUCH_UPLOAD or not await self._upload_exists(key, upload_id):
                self.multipart_id = None
                raise FileNotFoundError(f"the multipart upload of {key} was removed as stale before commit") from exc
            raise
        self.multipart_id = None
        self._completed = True
        await self._remote(lambda: store.copy_into_place(key, info))
        await self._discard()

    async def _upload_exists(self, key: str, upload_id: str | None) -> bool:
        """Whether the multipart upload is still open (some servers answer a completion of an aborted
        upload with a 500 rather than NoSuchUpload; listing its parts tells)."""
        client = await self._store.client()
        try:
            await client.list_parts(Bucket=self._store.bucket, Key=key, UploadId=upload_id or "", MaxParts=1)
        except ClientError as exc:
            if error_code(exc) == NO_SUCH_UPLOAD:
                return False
            raise
        return True

    async def _discard(self) -> None:
        self._buffer = bytearray()
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            if not pending.done():
                await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # retrieved: the caller saw it, or is aborting after a failure
        client = await self._store.client()
        if self.multipart_id is not None:
            upload_id, self.multipart_id = self.multipart_id, None
            try:
                await client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self.temp_key or "", UploadId=upload_id
                )
            except ClientError as exc:
                if error_code(exc) != NO_SUCH_UPLOAD:
                    raise
        if self._completed and self.temp_key is not None:
            self._completed = False
            await client.delete_object(Bucket=self._store.bucket, Key=self.temp_key)
