"""Blobs in a dict: the reference implementation of the contract, for unit tests of services.

Same semantics as the local store — deduplication, size limit, slice-like ranges, BlobNotFound,
stale spools — without any I/O. ``open_writer_count`` and ``tamper`` are hooks for tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from stowage.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    SpoolingWriter,
    check_read_range,
    check_sha256,
    check_upload_id,
)


class MemoryBlobWriter(SpoolingWriter):
    def __init__(self, store: MemoryBlobStore, *, max_size: int | None) -> None:
        super().__init__(max_size=max_size)
        self._store = store
        self._chunks: list[bytes] = []
        self.last_write_at = time.time()  # the "mtime" that remove_stale_temp compares

    async def _spool(self, chunk: bytes) -> None:
        data = bytes(chunk)  # the caller may reuse its buffer
        self._chunks.append(data)
        self._hasher.update(data)
        self.last_write_at = time.time()

    async def _publish(self, info: BlobInfo) -> None:
        self._store.publish(self, info, b"".join(self._chunks))
        self._chunks.clear()

    async def _discard(self) -> None:
        self._chunks.clear()
        self._store.forget(self)


class MemoryStaging:
    """A staging in the store's dict: every append is "durable" at once; ``finish`` publishes like a writer."""

    def __init__(self, store: MemoryBlobStore, upload_id: str) -> None:
        self.upload_id = upload_id
        self._store = store
        self._closed = False

    def _bytes(self) -> bytearray:
        if self._closed:
            raise RuntimeError(f"the staging of {self.upload_id} is closed")
        return self._store.staged.setdefault(self.upload_id, bytearray())

    async def size(self) -> int:
        return len(self._bytes())

    async def truncate(self, size: int) -> None:
        staged = self._bytes()
        if size < 0 or size > len(staged):
            raise ValueError(f"cannot truncate {self.upload_id} to {size}: {len(staged)} bytes are staged")
        del staged[size:]
        self._store.touch(self.upload_id)

    async def append(self, chunk: bytes) -> None:
        self._bytes().extend(chunk)
        self._store.touch(self.upload_id)

    async def sync(self) -> int:
        return len(self._bytes())

    async def finish(self) -> BlobInfo:
        content = bytes(self._bytes())
        info = BlobInfo(sha256=hashlib.sha256(content).hexdigest(), size=len(content))
        self._store.put(info, content)
        await self._store.discard_staging(self.upload_id)
        await self.close()
        return info

    async def close(self) -> None:
        self._closed = True


class MemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._spools: set[MemoryBlobWriter] = set()
        self.staged: dict[str, bytearray] = {}
        self._staged_at: dict[str, float] = {}

    def touch(self, upload_id: str) -> None:
        self._staged_at[upload_id] = time.time()

    def put(self, info: BlobInfo, content: bytes) -> None:
        """Publish content (dedup: an intact copy is kept)."""
        existing = self._blobs.get(info.sha256)
        if existing is None or len(existing) != info.size:
            self._blobs[info.sha256] = content

    async def open_staging(self, upload_id: str) -> MemoryStaging:
        check_upload_id(upload_id)
        self.staged.setdefault(upload_id, bytearray())
        self.touch(upload_id)
        return MemoryStaging(self, upload_id)

    async def stage_concatenation(self, upload_id: str, parts: Sequence[str]) -> int:
        check_upload_id(upload_id)
        missing = [part for part in parts if check_upload_id(part) not in self.staged]
        if missing:
            raise FileNotFoundError(f"no staging for {missing[0]}")
        self.staged[upload_id] = bytearray(b"".join(self.staged[part] for part in parts))
        self.touch(upload_id)
        return len(self.staged[upload_id])

    async def discard_staging(self, upload_id: str) -> None:
        check_upload_id(upload_id)
        self.staged.pop(upload_id, None)
        self._staged_at.pop(upload_id, None)

    async def staged_uploads(self) -> dict[str, float]:
        return {upload_id: self._staged_at.get(upload_id, 0.0) for upload_id in self.staged}

    @property
    def open_writer_count(self) -> int:
        """Writers neither committed nor aborted (nor reaped by remove_stale_temp): the "temp files"."""
        return len(self._spools)

    def tamper(self, sha256: str, content: bytes) -> None:
        """Test hook: replace a stored blob's bytes without renaming it (to exercise verify and fsck)."""
        if check_sha256(sha256) not in self._blobs:
            raise BlobNotFound(sha256)
        self._blobs[sha256] = content

    def publish(self, writer: MemoryBlobWriter, info: BlobInfo, content: bytes) -> None:
        existing = self._blobs.get(info.sha256)
        if existing is None or len(existing) != info.size:
            if writer not in self._spools:
                # Like the local store, whose rename fails once remove_stale_temp has deleted the spool.
                raise FileNotFoundError(f"the spool of this upload was removed as stale before commit ({info.sha256})")
            self._blobs[info.sha256] = content
        self._spools.discard(writer)

    def forget(self, writer: MemoryBlobWriter) -> None:
        self._spools.discard(writer)

    async def open_writer(self, *, max_size: int | None = None) -> MemoryBlobWriter:
        writer = MemoryBlobWriter(self, max_size=max_size)
        self._spools.add(writer)
        return writer

    async def exists(self, sha256: str) -> bool:
        return check_sha256(sha256) in self._blobs

    async def size(self, sha256: str) -> int:
        return len(self._get(sha256))

    def _get(self, sha256: str) -> bytes:
        try:
            return self._blobs[check_sha256(sha256)]
        except KeyError:
            raise BlobNotFound(sha256) from None

    def open_read(
        self, sha256: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        check_sha256(sha256)
        check_read_range(start, end, chunk_size)
        return self._stream(sha256, start, end, chunk_size)

    async def _stream(self, sha256: str, start: int, end: int | None, chunk_size: int) -> AsyncGenerator[bytes, None]:
        content = self._get(sha256)  # a snapshot: a delete during the read does not cut it short
        stop = len(content) if end is None else min(end, len(content))
        for position in range(start, stop, chunk_size):
            await asyncio.sleep(0)
            yield content[position : min(position + chunk_size, stop)]

    def local_path(self, sha256: str) -> Path | None:
        check_sha256(sha256)
        return None

    def local_file(self, sha256: str) -> str | None:
        check_sha256(sha256)
        return None

    async def delete(self, sha256: str) -> None:
        self._blobs.pop(check_sha256(sha256), None)

    async def iter_hashes(self) -> AsyncGenerator[str, None]:
        for sha256 in sorted(self._blobs):
            yield sha256

    async def verify(self, sha256: str) -> bool:
        return hashlib.sha256(self._get(sha256)).hexdigest() == sha256

    async def remove_stale_temp(self, older_than_seconds: float) -> int:
        if older_than_seconds < 0:
            raise ValueError(f"older_than_seconds must be 0 or more, got {older_than_seconds}")
        cutoff = time.time() - older_than_seconds
        stale = [w for w in self._spools if w.last_write_at <= cutoff]
        self._spools.difference_update(stale)
        return len(stale)
