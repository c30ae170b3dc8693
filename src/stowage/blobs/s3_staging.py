"""Resumable uploads' staged bytes on an S3 store: one object per durable chunk, no local state.

An upload's bytes are the objects ``<prefix>staging/<upload id>/<offset>`` (the offset zero-padded to
20 digits, so key order is byte order), each holding the bytes from that offset on. The staged size
is what a listing shows: the sum of the chunks that follow each other from offset 0. So any node can
continue an upload another node started — a tus PATCH may land anywhere — and nothing a node keeps in
memory is needed to resume.

* ``append`` gathers bytes in memory and PUTs a chunk each time ``part_size`` bytes are gathered;
  ``sync`` PUTs the rest. A PUT is atomic: a chunk that failed leaves no object.
* ``truncate`` deletes the chunks at or past the new size and rewrites the one it cuts (at most one
  chunk, ``part_size`` bytes, passes through memory).
* ``finish`` streams the chunks in order into a blob writer, which hashes them and publishes the blob
  (one PUT, or a multipart upload + server-side copy), then deletes the chunks.
* Concatenation (tus ``concatenation``) copies the parts' chunks server-side under the new upload.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from botocore.exceptions import ClientError

from stowage.blobs._s3client import is_not_found
from stowage.blobs.base import BlobInfo, check_upload_id

if TYPE_CHECKING:
    from stowage.blobs.s3 import S3BlobStore

OFFSET_DIGITS = 20
READ_CHUNK = 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest multipart part (all but the last)


class Chunk(msgspec.Struct, frozen=True):
    key: str
    offset: int
    size: int
    etag: str = ""


# The chunks as they were when a hash state was kept: the same keys with the same ETags hold the same bytes.
ChunksFingerprint = tuple[tuple[str, str], ...]


def fingerprint(chunks: Sequence[Chunk]) -> ChunksFingerprint:
    return tuple((chunk.key, chunk.etag) for chunk in chunks)


class StagingHashes:
    """The SHA-256 state of each upload's durable chunks in this process, with the chunks' keys and ETags
    then (least recently used out first). The next request for the upload that reaches this process
    continues it; ``finish`` then knows the digest without reading the chunks back, and publishes them by
    server-side copies. A state is used only while the listing shows exactly those chunks, so chunks
    another node wrote or rewrote are re-read, never trusted."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._states: OrderedDict[str, tuple[ChunksFingerprint, Any]] = OrderedDict()

    def keep(self, upload_id: str, at: ChunksFingerprint, hasher: Any) -> None:
        self._states[upload_id] = (at, hasher.copy())
        self._states.move_to_end(upload_id)
        while len(self._states) > self._capacity:
            self._states.popitem(last=False)

    def resume(self, upload_id: str, now: ChunksFingerprint) -> Any:
        kept = self._states.get(upload_id)
        if kept is None or kept[0] != now:
            return None
        return kept[1].copy()

    def forget(self, upload_id: str) -> None:
        self._states.pop(upload_id, None)


def chunk_key(store: S3BlobStore, upload_id: str, offset: int) -> str:
    return f"{store.staging_prefix(upload_id)}{offset:0{OFFSET_DIGITS}d}"


async def list_chunks(store: S3BlobStore, upload_id: str) -> tuple[list[Chunk], list[str]]:
    """The chunks that follow each other from offset 0, and the keys of any others (after a gap: left
    by an interrupted truncation; never part of the staged bytes, removed by the next truncate)."""
    prefix = store.staging_prefix(upload_id)
    chunks: list[Chunk] = []
    strays: list[str] = []
    expected = 0
    async for entry in store.list_objects(prefix):
        key = entry["Key"]
        name = key[len(prefix) :]
        if len(name) != OFFSET_DIGITS or not name.isdigit():
            strays.append(key)
            continue
        offset = int(name)
        if offset == expected and not strays:
            chunks.append(Chunk(key=key, offset=offset, size=int(entry["Size"]), etag=str(entry.get("ETag", ""))))
            expected += int(entry["Size"])
        else:
            strays.append(key)
    return chunks, strays


class S3Staging:
    """One upload's staged bytes in the bucket; see the module docstring."""

    def __init__(self, store: S3BlobStore, upload_id: str) -> None:
        self.upload_id = upload_id
        self._store = store
        self._chunks: list[Chunk] = []
        self._strays: list[str] = []
        self._durable = 0  # bytes in chunk objects
        self._buffer = bytearray()
        self._closed = False
        self._hasher: Any = None  # the hash of the durable chunks, when known

    async def open(self) -> S3Staging:
        self._chunks, self._strays = await list_chunks(self._store, self.upload_id)
        self._durable = sum(chunk.size for chunk in self._chunks)
        self._hasher = self._store.staging_hashes.resume(self.upload_id, fingerprint(self._chunks))
        if self._hasher is None and self._durable == 0:
            self._hasher = hashlib.sha256()
        return self

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the staging of {self.upload_id} is closed")

    async def size(self) -> int:
        return self._durable + len(self._buffer)

    async def _put(self, offset: int, data: bytes) -> Chunk:
        key = chunk_key(self._store, self.upload_id, offset)
        client = await self._store.client()
        answer = await client.put_object(Bucket=self._store.bucket, Key=key, Body=data)
        return Chunk(key=key, offset=offset, size=len(data), etag=str(answer["ETag"]))

    async def _flush(self) -> None:
        if not self._buffer:
            return
        data, self._buffer = bytes(self._buffer), bytearray()
        hasher = None
        if self._hasher is not None:
            hasher = self._hasher.copy()  # the kept state advances only once the chunk is stored
            hasher.update(data)
        chunk = await self._put(self._durable, data)
        self._hasher = hasher
        if self._chunks and self._chunks[-1].offset == chunk.offset:
            self._chunks[-1] = chunk  # an empty chunk at this offset was replaced
        else:
            self._chunks.append(chunk)
        self._durable += chunk.size

    async def append(self, chunk: bytes) -> None:
        self._check_open()
        self._buffer += chunk
        if len(self._buffer) >= self._store.part_size:
            await self._flush()

    async def sync(self) -> int:
        self._check_open()
        if not self._chunks and not self._buffer:
            # A new upload with no byte yet: an empty chunk makes it exist (listed, joinable when empty).
            self._chunks.append(await self._put(0, b""))
        await self._flush()
        if self._hasher is not None:
            self._store.staging_hashes.keep(self.upload_id, fingerprint(self._chunks), self._hasher)
        return self._durable

    async def truncate(self, size: int) -> None:
        self._check_open()
        staged = await self.size()
        if size < 0 or size > staged:
            raise ValueError(f"cannot truncate {self.upload_id} to {size}: {staged} bytes are staged")
        if size >= self._durable:
            del self._buffer[size - self._durable :]
            await self._flush()
            return
        self._buffer = bytearray()
        # The hash cannot be taken back: it is known again only from scratch (or by re-reading).
        self._hasher = hashlib.sha256() if size == 0 else None
        self._store.staging_hashes.forget(self.upload_id)
        doomed = [chunk.key for chunk in self._chunks if chunk.offset >= size] + self._strays
        cut = next((c for c in self._chunks if c.offset < size < c.offset + c.size), None)
        # Delete first, then rewrite the cut chunk: a crash in between leaves more bytes staged (the
        # caller truncates again), never a gap that loses bytes before ``size``.
        if doomed:
            await self._store.delete_keys(doomed)
        kept = [chunk for chunk in self._chunks if chunk.offset < size]
        if cut is not None:
            data = await self._read_chunk(cut, size - cut.offset)
            kept[-1] = await self._put(cut.offset, data)
        self._chunks, self._strays = kept, []
        self._durable = size

    async def _read_chunk(self, chunk: Chunk, length: int) -> bytes:
        client = await self._store.client()
        answer = await client.get_object(Bucket=self._store.bucket, Key=chunk.key, Range=f"bytes=0-{length - 1}")
        body = answer["Body"]
        try:
            data = await body.read()
        finally:
            body.close()
        if len(data) != length:
            raise FileNotFoundError(f"the staged chunk {chunk.key} is shorter than listed")
        return bytes(data)

    async def finish(self) -> BlobInfo:
        await self.sync()
        self._store.staging_hashes.forget(self.upload_id)
        if self._hasher is not None:
            info = BlobInfo(sha256=self._hasher.hexdigest(), size=self._durable)
            if await publish_by_copy(self._store, info, self._chunks):
                await self._store.discard_staging(self.upload_id)
                await self.close()
                return info
        client = await self._store.client()
        async with self._store.writer() as writer:
            for chunk in self._chunks:
                answer = await client.get_object(Bucket=self._store.bucket, Key=chunk.key)
                body = answer["Body"]
                try:
                    while data := await body.read(READ_CHUNK):
                        await writer.write(data)
                finally:
                    body.close()
            info = await writer.commit()
        await self._store.discard_staging(self.upload_id)
        await self.close()
        return info

    async def close(self) -> None:
        self._buffer = bytearray()
        self._closed = True


async def concatenate(store: S3BlobStore, upload_id: str, parts: Sequence[str]) -> int:
    """Stage ``upload_id`` as the parts' bytes in order, by server-side copies of their chunks. A missing
    part (no chunk at all) raises FileNotFoundError before anything is written."""
    listed: list[list[Chunk]] = []
    for part in parts:
        chunks, _ = await list_chunks(store, part)
        if not chunks:
            raise FileNotFoundError(f"no staged bytes for the upload {part}")
        listed.append(chunks)
    await store.delete_prefix(store.staging_prefix(upload_id))
    client = await store.client()
    offset = 0
    for chunks in listed:
        for chunk in chunks:
            if chunk.size == 0:
                continue
            source: Any = {"Bucket": store.bucket, "Key": chunk.key}
            try:
                await client.copy_object(
                    Bucket=store.bucket, Key=chunk_key(store, upload_id, offset), CopySource=source
                )
            except ClientError as exc:
                if is_not_found(exc):
                    await store.delete_prefix(store.staging_prefix(upload_id))
                    raise FileNotFoundError(f"a staged chunk vanished while it was copied: {chunk.key}") from exc
                raise
            offset += chunk.size
    if offset == 0:  # only empty parts: keep the staging visible with one empty chunk
        await client.put_object(Bucket=store.bucket, Key=chunk_key(store, upload_id, 0), Body=b"")
    return offset


async def scan_staging(store: S3BlobStore) -> dict[str, float]:
    """Every staged upload id with the time its last chunk was written (other keys are skipped)."""
    found: dict[str, float] = {}
    root = store.staging_root
    async for entry in store.list_objects(root):
        name = entry["Key"][len(root) :].split("/", 1)[0]
        with contextlib.suppress(ValueError):
            upload_id = check_upload_id(name)
            found[upload_id] = max(found.get(upload_id, 0.0), entry["LastModified"].timestamp())
    return found


async def publish_by_copy(store: S3BlobStore, info: BlobInfo, chunks: Sequence[Chunk]) -> bool:
    """Publish staged chunks whose digest is known without their bytes passing through this process:
    nothing to do when intact content with that digest is stored (dedup); one ``CopyObject`` for a single
    chunk; a multipart upload of ``UploadPartCopy`` parts when every chunk but the last is at least 5 MiB
    (S3's smallest part). False when neither applies (many small chunks): the caller streams them."""
    if await store.refresh_if_stored(info):
        return True
    parts = [chunk for chunk in chunks if chunk.size > 0]
    if len(parts) <= 1:
        source = parts[0].key if parts else None
        if source is None:
            return False  # the empty blob: one PUT through the writer
        await store.copy_into_place(source, info)
        return True
    if any(chunk.size < MIN_PART_SIZE for chunk in parts[:-1]):
        return False
    await store.copy_parts_into_place([chunk.key for chunk in parts], info)
    return True
