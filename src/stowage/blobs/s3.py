"""Blobs as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage…), through aiobotocore.

Layout, under the configured ``prefix``:

* ``blobs/ab/cd/<sha256>`` — one object per blob, named by its content (as on the local store);
* ``tmp/upload-<random>`` — multipart uploads of big blobs before their digest is known
  (``blobs/s3_writer.py``), removed by ``remove_stale_temp`` when abandoned;
* ``staging/<upload id>/<offset>`` — the durable chunks of resumable uploads (``blobs/s3_staging.py``),
  so a tus PATCH can land on any node.

Nothing is kept on local disk: several Stowage nodes share one bucket. Reads stream ``GetObject``
(ranged when asked) in chunks of the requested size; the integrity check before serving
(``ensure_intact``) costs one ``HEAD``: the content is re-hashed only when its ETag or size differ
from what this process last verified or wrote (a write of other bytes always changes the ETag).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stowage.blobs._s3client import (
    COPY_OBJECT_LIMIT,
    INVALID_RANGE,
    BlobStoreUnavailable,
    ClientHolder,
    S3Location,
    check_bucket,
    error_code,
    is_not_found,
)
from stowage.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobCorrupt,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    check_read_range,
    check_sha256,
    check_upload_id,
)
from stowage.blobs.s3_copy import copy_pieces, ranges_of
from stowage.blobs.s3_staging import S3Staging, StagingHashes, concatenate, scan_staging
from stowage.blobs.s3_writer import S3BlobWriter
from stowage.observability.logging import get_logger

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

DEFAULT_PART_SIZE = 8 * 1024 * 1024
VERIFIED_CACHE_SIZE = 65536
# A deduplicating upload re-stamps an existing blob older than this (a server-side copy onto itself),
# so gc's grace period (a day by default) covers the reference it is about to record.
REFRESH_AFTER_SECONDS = 3600.0
VERIFY_CHUNK = 1024 * 1024
_BLOB_KEY = re.compile(r"blobs/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")

log = get_logger("stowage.blobs")

# An object's ETag and size: any write of other content changes the ETag (S3 gives every PUT,
# completed multipart upload and copy of different bytes a different one), and a write's own answer
# carries it, so what this process wrote is known without asking again.
ObjectFingerprint = tuple[str, int]


def _fingerprint(head: Any) -> ObjectFingerprint:
    return (str(head["ETag"]), int(head["ContentLength"]))


class _Verified:
    """Fingerprints of objects whose content this process checked (or wrote), least recently used out first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, ObjectFingerprint] = OrderedDict()

    def matches(self, sha256: str, fingerprint: ObjectFingerprint) -> bool:
        if self._entries.get(sha256) != fingerprint:
            return False
        self._entries.move_to_end(sha256)
        return True

    def record(self, sha256: str, fingerprint: ObjectFingerprint) -> None:
        self._entries[sha256] = fingerprint
        self._entries.move_to_end(sha256)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget(self, sha256: str) -> None:
        self._entries.pop(sha256, None)


async def _read_up_to(body: Any, size: int) -> bytes:
    """Up to ``size`` bytes of a streaming body: fewer only at its end (reads return what has arrived)."""
    first = await body.read(size)
    if len(first) == size or not first:
        return bytes(first)
    gathered = bytearray(first)
    while len(gathered) < size:
        more = await body.read(size - len(gathered))
        if not more:
            break
        gathered += more
    return bytes(gathered)


class S3BlobStore(BlobStore):
    """Content-addressed blobs in a bucket. Call ``start`` (checks the bucket) and ``close`` in the lifespan."""

    def __init__(self, location: S3Location, *, part_size: int = DEFAULT_PART_SIZE) -> None:
        self.location = location
        self.bucket = location.bucket
        self.prefix = location.prefix
        self.part_size = part_size
        self._holder = ClientHolder(location)
        self.verified = _Verified(VERIFIED_CACHE_SIZE)
        self.staging_hashes = StagingHashes()

    # --- the connection ----------------------------------------------------------------------------

    async def client(self) -> S3Client:
        return await self._holder.get()

    async def start(self) -> None:
        """Check that the bucket is reachable with our credentials (creating it if configured to):
        BlobStoreUnavailable with the reason otherwise, so a misconfigured server does not start."""
        await check_bucket(self._holder, self.location, create=self.location.create_bucket)

    async def check(self) -> None:
        """The readiness probe: the bucket answers (BlobStoreUnavailable with the reason otherwise)."""
        await check_bucket(self._holder, self.location, create=False)

    async def close(self) -> None:
        await self._holder.close()

    def describe(self) -> str:
        return f"s3: {self.location.describe()}, prefix {self.prefix!r}"

    # --- keys --------------------------------------------------------------------------------------

    def blob_key(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.prefix}blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def new_temp_key(self) -> str:
        return f"{self.prefix}tmp/upload-{secrets.token_hex(16)}"

    @property
    def temp_prefix(self) -> str:
        return f"{self.prefix}tmp/"

    @property
    def staging_root(self) -> str:
        return f"{self.prefix}staging/"

    def staging_prefix(self, upload_id: str) -> str:
        return f"{self.staging_root}{check_upload_id(upload_id)}/"

    # --- writing -----------------------------------------------------------------------------------

    async def open_writer(self, *, max_size: int | None = None) -> S3BlobWriter:
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be None or 0 or more, got {max_size}")
        return S3BlobWriter(self, max_size=max_size)

    async def put_blob(self, info: BlobInfo, data: bytes) -> None:
        """Publish a small blob whose bytes are in memory with one PUT (atomic: all or nothing)."""
        client = await self.client()
        answer = await client.put_object(Bucket=self.bucket, Key=self.blob_key(info.sha256), Body=data)
        self._record_written(info, str(answer["ETag"]))

    def _record_written(self, info: BlobInfo, etag: str) -> None:
        """Remember that we wrote these exact bytes (hashed on the way in): no re-hash on the first read."""
        self.verified.record(info.sha256, (etag, info.size))

    async def copy_into_place(self, source_key: str, info: BlobInfo) -> None:
        """Server-side copy of a completed temporary object to the blob's key (no bytes through us)."""
        client = await self.client()
        key = self.blob_key(info.sha256)
        source = {"Bucket": self.bucket, "Key": source_key}
        if info.size <= COPY_OBJECT_LIMIT:
            answer = await client.copy_object(Bucket=self.bucket, Key=key, CopySource=source)  # type: ignore[arg-type]
            etag = str(answer["CopyObjectResult"]["ETag"])
        else:
            etag = await self._copy_in_parts(source_key, key, info.size)
        self._record_written(info, etag)

    async def _copy_in_parts(self, source_key: str, key: str, size: int) -> str:
        """Copy an object over 5 GiB (CopyObject's limit) as ``UploadPartCopy`` ranges; return the ETag."""
        step = max(self.part_size, 512 * 1024 * 1024)
        return await copy_pieces(await self.client(), self.bucket, key, ranges_of(source_key, size, step))

    async def copy_parts_into_place(self, sources: Sequence[str], info: BlobInfo) -> None:
        """Join whole objects (a resumable upload's chunks: each at least 5 MiB but the last) into the blob's
        key by server-side part copies."""
        etag = await copy_pieces(
            await self.client(), self.bucket, self.blob_key(info.sha256), [(s, None) for s in sources]
        )
        self._record_written(info, etag)

    async def refresh_if_stored(self, info: BlobInfo) -> bool:
        """Dedup: True when intact content with this digest and size is stored (re-hashed first unless this
        process verified it since it last changed); an old object's timestamp is refreshed so gc's grace
        period covers the reference about to be recorded. A wrong-size or damaged copy is replaced."""
        client = await self.client()
        key = self.blob_key(info.sha256)
        try:
            head = await client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise
        if int(head["ContentLength"]) != info.size:
            return False
        if not self.verified.matches(info.sha256, _fingerprint(head)):
            try:
                if not await self.verify(info.sha256):
                    log.error("blob_corrupt_replaced", sha256=info.sha256, key=key)
                    return False
            except BlobNotFound:
                return False
        etag = str(head["ETag"])
        if time.time() - head["LastModified"].timestamp() > REFRESH_AFTER_SECONDS and info.size <= COPY_OBJECT_LIMIT:
            try:
                answer = await client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    MetadataDirective="REPLACE",
                    Metadata={"refreshed": str(int(time.time()))},
                )
            except ClientError as exc:
                if is_not_found(exc):
                    return False  # removed just now by gc: publish ours
                raise
            etag = str(answer["CopyObjectResult"]["ETag"])
        self._record_written(info, etag)
        return True

    # --- staging (resumable uploads): ``blobs/s3_staging.py`` -----------------------------------------

    async def open_staging(self, upload_id: str) -> S3Staging:
        staging = S3Staging(self, check_upload_id(upload_id))
        return await staging.open()

    async def stage_concatenation(self, upload_id: str, parts: Sequence[str]) -> int:
        return await concatenate(self, check_upload_id(upload_id), [check_upload_id(part) for part in parts])

    async def discard_staging(self, upload_id: str) -> None:
        self.staging_hashes.forget(check_upload_id(upload_id))
        await self.delete_prefix(self.staging_prefix(upload_id))

    async def staged_uploads(self) -> dict[str, float]:
        return await scan_staging(self)

    async def list_objects(self, prefix: str) -> AsyncGenerator[Any, None]:
        """Every object under ``prefix``, in key order (the listing's entries: Key, Size, ETag, LastModified)."""
        client = await self.client()
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                yield entry

    async def delete_keys(self, keys: Sequence[str]) -> None:
        client = await self.client()
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            await client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})  # type: ignore[typeddict-item]

    async def delete_prefix(self, prefix: str) -> None:
        keys = [entry["Key"] async for entry in self.list_objects(prefix)]
        if keys:
            await self.delete_keys(keys)

    # --- reading -----------------------------------------------------------------------------------

    async def _head(self, sha256: str) -> Any:
        client = await self.client()
        try:
            return await client.head_object(Bucket=self.bucket, Key=self.blob_key(sha256))
        except ClientError as exc:
            if is_not_found(exc):
                raise BlobNotFound(sha256) from None
            raise

    async def exists(self, sha256: str) -> bool:
        try:
            await self._head(sha256)
        except BlobNotFound:
            return False
        return True

    async def size(self, sha256: str) -> int:
        return int((await self._head(sha256))["ContentLength"])

    def open_read(
        self, sha256: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        self.blob_key(sha256)
        check_read_range(start, end, chunk_size)
        return self._stream(sha256, start, end, chunk_size)

    async def _stream(self, sha256: str, start: int, end: int | None, chunk_size: int) -> AsyncGenerator[bytes, None]:
        if end is not None and end <= start:  # nothing to read, but a missing blob is still an error
            await self._head(sha256)
            return
        extra: dict[str, str] = {}
        if start > 0 or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        client = await self.client()
        try:
            answer = await client.get_object(Bucket=self.bucket, Key=self.blob_key(sha256), **extra)  # type: ignore[arg-type]
        except ClientError as exc:
            if is_not_found(exc):
                raise BlobNotFound(sha256) from None
            if error_code(exc) == INVALID_RANGE:
                return  # the range starts at or past the end: an empty slice of a blob that exists
            raise
        body = answer["Body"]
        expected = int(answer["ContentLength"])
        received = 0
        try:
            while chunk := await _read_up_to(body, chunk_size):
                received += len(chunk)
                yield chunk
        finally:
            body.close()
        if received != expected:
            raise BlobCorrupt(sha256, f"the object ended after {received} of {expected} bytes")

    def local_path(self, sha256: str) -> Path | None:
        check_sha256(sha256)
        return None

    def local_file(self, sha256: str) -> str | None:
        check_sha256(sha256)
        return None

    async def presigned_get(
        self, sha256: str, *, expires_in: int, content_type: str, content_disposition: str
    ) -> str | None:
        """A URL the object store answers directly with the blob's bytes for ``expires_in`` seconds, with
        these Content-Type and Content-Disposition (``response-*`` parameters; signed, so not alterable)."""
        client = await self.client()
        return await client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.blob_key(sha256),
                "ResponseContentType": content_type,
                "ResponseContentDisposition": content_disposition,
            },
            ExpiresIn=expires_in,
        )

    async def ensure_intact(self, sha256: str, *, always: bool = False) -> None:
        head = await self._head(sha256)
        fingerprint = _fingerprint(head)
        if not always and self.verified.matches(sha256, fingerprint):
            return
        if not await self.verify(sha256):
            self.verified.forget(sha256)
            log.error("blob_corrupt", sha256=sha256, key=self.blob_key(sha256), size=fingerprint[1])
            raise BlobCorrupt(sha256, "the content does not hash to its name")
        self.verified.record(sha256, fingerprint)

    # --- maintenance -------------------------------------------------------------------------------

    async def delete(self, sha256: str) -> None:
        self.verified.forget(sha256)
        client = await self.client()
        await client.delete_object(Bucket=self.bucket, Key=self.blob_key(sha256))

    async def iter_hashes(self) -> AsyncGenerator[str, None]:
        base = f"{self.prefix}blobs/"
        async for entry in self.list_objects(base):
            match = _BLOB_KEY.fullmatch(entry["Key"][len(self.prefix) :])
            if match and match.group(3)[:2] == match.group(1) and match.group(3)[2:4] == match.group(2):
                yield match.group(3)

    async def verify(self, sha256: str) -> bool:
        hasher = hashlib.sha256()
        async with contextlib.aclosing(self.open_read(sha256, chunk_size=VERIFY_CHUNK)) as chunks:
            try:
                async for chunk in chunks:
                    hasher.update(chunk)
            except BlobCorrupt:
                return False
        return hasher.hexdigest() == sha256

    async def modified_at(self, sha256: str) -> float | None:
        try:
            return float((await self._head(sha256))["LastModified"].timestamp())
        except BlobNotFound:
            return None

    async def remove_if_old(
        self, sha256: str, cutoff: float, *, still_unreferenced: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Delete the object if it was last written at or before ``cutoff`` and no row names it.

        A deduplicating upload re-stamps an old object before it records a reference, so the age check
        closes most of the race; the window between the last check and the delete (milliseconds) is not
        closed, as S3 has no atomic rename to quarantine with — see docs/operations.md."""
        when = await self.modified_at(sha256)
        if when is None or when > cutoff or not await still_unreferenced():
            return False
        await self.delete(sha256)
        if not await still_unreferenced():
            log.error("blob_removed_while_referenced", sha256=sha256, key=self.blob_key(sha256))
        return True

    async def remove_stale_temp(self, older_than_seconds: float) -> int:
        """Abort multipart uploads whose last part is older than the cut-off and delete temporary objects
        last written before it (the spools of writers that crashed or were abandoned)."""
        if older_than_seconds < 0:
            raise ValueError(f"older_than_seconds must be 0 or more, got {older_than_seconds}")
        cutoff = time.time() - older_than_seconds
        client = await self.client()
        removed = 0
        stale = [
            entry["Key"]
            async for entry in self.list_objects(self.temp_prefix)
            if entry["LastModified"].timestamp() <= cutoff
        ]
        if stale:
            await self.delete_keys(stale)
            removed += len(stale)
        removed += await self._abort_stale_multipart(client, cutoff)
        return removed

    async def _abort_stale_multipart(self, client: S3Client, cutoff: float) -> int:
        """Abort the unfinished multipart uploads under ``tmp/`` whose last part is older than ``cutoff``.
        A server without ListMultipartUploads (s3rver) keeps them: an operator's lifecycle rule
        (AbortIncompleteMultipartUpload) must then collect them — see docs/operations.md."""
        removed = 0
        paginator = client.get_paginator("list_multipart_uploads")
        try:
            pages = [page async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.temp_prefix)]
        except ClientError as exc:
            if error_code(exc) != "NotImplemented":
                raise
            log.warning("s3_list_multipart_uploads_not_implemented", bucket=self.bucket)
            return 0
        for page in pages:
            for upload in page.get("Uploads", []):
                last = upload["Initiated"].timestamp()
                parts = await client.list_parts(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                for part in parts.get("Parts", []):
                    last = max(last, part["LastModified"].timestamp())
                if last > cutoff:
                    continue
                try:
                    await client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
                except ClientError as exc:
                    if error_code(exc) != "NoSuchUpload":
                        raise
        return removed


__all__ = ["BlobStoreUnavailable", "S3BlobStore", "S3Location"]
