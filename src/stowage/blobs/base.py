"""The blob-store contract: content-addressed, immutable byte strings named by their SHA-256.

A blob is written through a :class:`BlobWriter` that hashes and counts while it spools, enforces the
size limit on every chunk, and publishes the content under its digest on an explicit ``commit()``.
Nothing becomes visible before that, so a crash or an abort leaves at most a temporary spool that
``remove_stale_temp`` (run by ``gc``) deletes later. Publishing content that is already stored is a
no-op (deduplication); the database counts references, the store does not.

Every implementation (memory, local, later S3) passes the one contract suite in
``tests/test_blobs.py`` and reports a missing blob as :class:`BlobNotFound`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import msgspec

from stowage.errors import PayloadTooLarge, StowageError

DEFAULT_CHUNK_SIZE = 256 * 1024

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

T = TypeVar("T")


class BlobNotFound(StowageError):
    """A blob the caller expected is not in the store — an inconsistency between metadata and storage.

    Not a subclass of :class:`~stowage.errors.NotFound`: a client asked for a file that exists, the
    server lost its content, so front ends answer 500. ``sha256`` is kept off the client-facing detail.
    """

    code = "blob-not-found"
    title = "Stored content is missing"

    def __init__(self, sha256: str) -> None:
        super().__init__("The content of this file is missing from storage; an administrator should run fsck.")
        self.sha256 = sha256


class BlobCorrupt(StowageError):
    """A stored blob does not hold what its name promises (shorter than its recorded size, or wrong digest)."""

    code = "blob-corrupt"
    title = "Stored content is damaged"

    def __init__(self, sha256: str, reason: str) -> None:
        super().__init__("The content of this file is damaged in storage; an administrator should run fsck.")
        self.sha256 = sha256
        self.reason = reason


class BlobInfo(msgspec.Struct, frozen=True):
    """What a commit stored: the lowercase hex SHA-256 of the content and its length in bytes."""

    sha256: str
    size: int


def check_sha256(value: object) -> str:
    """Return ``value`` if it is 64 lowercase hex digits, else raise ValueError.

    Every store validates names with this before touching storage, so no caller-supplied string can
    become a path (``../../etc/passwd``) or an object key outside the blob namespace.
    """
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise ValueError(f"not a SHA-256 hex digest (64 lowercase hex digits): {value!r:.80}")
    return value


_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_upload_id(value: object) -> str:
    """Return ``value`` if it is a lowercase UUID (how upload ids are made), else raise ValueError: a
    staging name never comes from a client without passing here, so it cannot escape the staging folder."""
    if not isinstance(value, str) or not _UPLOAD_ID.fullmatch(value):
        raise ValueError(f"not an upload id (a lowercase UUID): {value!r:.80}")
    return value


def check_read_range(start: int, end: int | None, chunk_size: int) -> None:
    """Validate ``open_read`` arguments before any I/O (ranges are clamped to the size like a slice)."""
    if start < 0:
        raise ValueError(f"start must be 0 or more, got {start}")
    if end is not None and end < start:
        raise ValueError(f"end must be None or at least start ({start}), got {end}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")


async def to_thread_owning(fn: Callable[[], T], release: Callable[[T], None]) -> T:
    """Run ``fn`` (which acquires a resource, e.g. opens a file) in a worker thread.

    If the caller is cancelled while the thread runs, the thread still finishes; ``release`` is then
    called with its result, on the event loop, so the resource is not leaked. ``release`` must be
    quick (closing a file descriptor, unlinking a file) and must not raise.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:

        def _release_orphan(done: asyncio.Future[T]) -> None:
            if not done.cancelled() and done.exception() is None:
                release(done.result())

        task.add_done_callback(_release_orphan)
        raise


class BlobWriter(Protocol):
    """One upload being spooled. Use it from one task; ``abort()`` is always safe."""

    async def write(self, chunk: bytes) -> None:
        """Append a chunk; raises PayloadTooLarge (after cleaning up) once the total exceeds ``max_size``."""
        ...

    async def commit(self) -> BlobInfo:
        """Make the content durable and visible under its digest (a no-op if already stored); once only."""
        ...

    async def abort(self) -> None:
        """Discard the spool; safe after a failure, after commit, and when called twice."""
        ...

    @property
    def bytes_written(self) -> int: ...

    @property
    def sha256_so_far(self) -> str:
        """Lowercase hex digest of the bytes written so far (compare with a client's digest before commit)."""
        ...

    def digest(self) -> bytes:
        """Raw SHA-256 digest of the bytes written so far (for Content-Digest / Repr-Digest checks)."""
        ...


class BlobStaging(Protocol):
    """The bytes of one resumable upload, appended over several requests — possibly in several processes.

    Unlike a :class:`BlobWriter`, nothing lives only in memory between requests: what ``sync`` returned
    is on disk and survives a restart; ``truncate`` drops bytes past the offset the caller last made
    durable (a chunk that failed, or was refused). The caller serialises access to one upload (the
    uploads domain holds a database lease). ``finish`` hashes the staged bytes — re-reading them unless
    the store still holds the hash state of exactly these bytes — publishes them as a blob and removes
    the staging.
    Use one handle from one task, and ``close`` it (``finish`` and ``discard`` close it too)."""

    upload_id: str

    async def size(self) -> int:
        """The bytes staged now, including appended bytes not yet synced (0 for a new staging)."""
        ...

    async def truncate(self, size: int) -> None:
        """Drop every byte past ``size`` and make that durable; ValueError if fewer bytes are staged."""
        ...

    async def append(self, chunk: bytes) -> None:
        """Add ``chunk`` after the staged bytes (made durable by the next ``sync``)."""
        ...

    async def sync(self) -> int:
        """Make every appended byte durable; return the staged size."""
        ...

    async def finish(self) -> BlobInfo:
        """Hash the staged bytes (re-read in bounded memory when no kept hash state covers them), publish
        them as a blob (dedup) and remove the staging. Afterwards the handle is closed."""
        ...

    async def close(self) -> None:
        """Release the handle; the staged bytes stay. Safe to call twice."""
        ...


class BlobStore(Protocol):
    """Content-addressed storage of immutable blobs. All methods validate ``sha256`` (ValueError)."""

    async def open_writer(self, *, max_size: int | None = None) -> BlobWriter: ...

    async def exists(self, sha256: str) -> bool: ...

    async def size(self, sha256: str) -> int:
        """Size in bytes; BlobNotFound if missing."""
        ...

    def open_read(
        self, sha256: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        """Stream bytes ``[start, end)`` (clamped to the size, like a slice) in chunks of at most ``chunk_size``.

        Arguments are validated at call time (ValueError); BlobNotFound is raised on the first
        iteration. Close an iterator you stop early (``contextlib.aclosing``) to release the file —
        hence the AsyncGenerator return type (an AsyncIterator with ``aclose``).
        """
        ...

    def local_path(self, sha256: str) -> Path | None:
        """Where the blob would live on local disk (for ASGI pathsend), without checking it exists; None if
        the store is not local. Call ``size()`` first: it raises BlobNotFound and gives Content-Length."""
        ...

    def local_file(self, sha256: str) -> str | None:
        """``local_path`` as a string: what a download sends, without building a ``Path`` per request."""
        ...

    async def delete(self, sha256: str) -> None:
        """Remove the blob; a missing blob is not an error."""
        ...

    def iter_hashes(self) -> AsyncGenerator[str, None]:
        """Every stored blob's digest (for gc and fsck)."""
        ...

    async def verify(self, sha256: str) -> bool:
        """Re-hash the content; False if it does not match its name. BlobNotFound if missing."""
        ...

    async def ensure_intact(self, sha256: str, *, always: bool = False) -> None:
        """Check the content before serving it: BlobNotFound if missing, BlobCorrupt if it no longer
        hashes to its name. A store may skip the re-hash when it can tell the content has not changed
        since it last verified it; ``always`` forbids that shortcut."""
        if not await self.verify(sha256):
            raise BlobCorrupt(sha256, "the content does not hash to its name")

    async def remove_stale_temp(self, older_than_seconds: float) -> int:
        """Delete spools of abandoned uploads last written more than that long ago; return how many."""
        ...

    async def modified_at(self, sha256: str) -> float | None:
        """When the blob was last written — or re-stamped by a deduplicating upload about to reference it —
        in epoch seconds; None if it is missing or the store cannot tell (gc then leaves it alone)."""
        check_sha256(sha256)
        return None

    async def remove_if_old(
        self, sha256: str, cutoff: float, *, still_unreferenced: Callable[[], Awaitable[bool]]
    ) -> bool:
        """gc's removal of an unreferenced blob: delete it if ``modified_at`` is at or before ``cutoff`` and
        ``still_unreferenced()`` holds, closing the race with a deduplicating upload as well as the store
        can; True if deleted. A store that cannot tell ages deletes nothing."""
        del cutoff, still_unreferenced
        check_sha256(sha256)
        return False

    async def presigned_get(
        self, sha256: str, *, expires_in: int, content_type: str, content_disposition: str
    ) -> str | None:
        """A URL where the client can fetch the whole blob itself for ``expires_in`` seconds, answered with
        these headers; None when the store has no such URLs (local, memory)."""
        del expires_in, content_type, content_disposition
        check_sha256(sha256)
        return None

    # --- lifecycle: the application's lifespan starts and closes the store ---------------------------

    async def start(self) -> None:
        """Check that the storage is usable (raise with the reason otherwise), before the server starts."""
        return

    async def check(self) -> None:
        """The readiness probe's check of the storage; raises with the reason when it is unusable."""
        return

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        return

    def describe(self) -> str:
        """Where the blobs live, for logs and the readiness report (no credentials)."""
        return type(self).__name__

    # --- staging: resumable uploads (tus), appended across requests -----------------------------------

    async def open_staging(self, upload_id: str) -> BlobStaging:
        """The staging of ``upload_id`` (created empty when new). Names are validated (``check_upload_id``)."""
        ...

    async def stage_concatenation(self, upload_id: str, parts: Sequence[str]) -> int:
        """Stage ``upload_id`` as the staged bytes of ``parts`` in order (durable); return its size.
        The parts are left as they are; a missing part raises FileNotFoundError (nothing staged)."""
        ...

    async def discard_staging(self, upload_id: str) -> None:
        """Remove an upload's staged bytes; a missing staging is not an error."""
        ...

    async def staged_uploads(self) -> dict[str, float]:
        """Every staged upload id with the time (epoch seconds) its bytes last changed (for housekeeping,
        which removes stagings whose upload is gone). Staged bytes are never blobs: ``iter_hashes``,
        ``remove_stale_temp`` and fsck do not see them."""
        ...

    @contextlib.asynccontextmanager
    async def writer(self, *, max_size: int | None = None) -> AsyncIterator[BlobWriter]:
        """``async with store.writer() as w:`` — the writer is aborted when the block exits without a commit
        (on an exception, or normally). Commit stays explicit: ``info = await w.commit()`` inside the block.
        """
        blob_writer = await self.open_writer(max_size=max_size)
        try:
            yield blob_writer
        finally:
            await blob_writer.abort()


class SpoolingWriter(abc.ABC):
    """The writer state machine shared by every store: hashing, counting, the size limit and one-shot commit.

    Subclasses provide ``_spool`` (store the chunk and feed ``self._hasher`` — the local store does both in
    one worker-thread call), ``_publish`` and ``_discard``.
    """

    def __init__(self, *, max_size: int | None) -> None:
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be None or 0 or more, got {max_size}")
        self._max_size = max_size
        self._hasher = hashlib.sha256()
        self._written = 0
        self._state: Literal["open", "committed", "aborted"] = "open"
        self._busy = False

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def sha256_so_far(self) -> str:
        return self._hasher.hexdigest()

    def digest(self) -> bytes:
        return self._hasher.digest()

    async def write(self, chunk: bytes) -> None:
        self._check_usable("write")
        if not chunk:
            return
        size = len(chunk)
        if self._max_size is not None and self._written + size > self._max_size:
            await self.abort()
            raise PayloadTooLarge(
                f"The content is larger than the limit of {self._max_size} bytes.", extra={"max_size": self._max_size}
            )
        self._busy = True
        try:
            await self._spool(chunk)
        except BaseException:
            # The chunk may be half-written (or still being written, if we were cancelled): unusable.
            self._busy = False
            await self.abort()
            raise
        self._busy = False
        self._written += size

    async def commit(self) -> BlobInfo:
        self._check_usable("commit")
        info = BlobInfo(sha256=self._hasher.hexdigest(), size=self._written)
        self._busy = True
        try:
            await self._publish(info)
        except BaseException:
            self._busy = False
            await self.abort()
            raise
        self._busy = False
        self._state = "committed"
        return info

    async def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        await self._discard()

    def _check_usable(self, action: str) -> None:
        if self._state != "open":
            raise RuntimeError(f"cannot {action}: the blob writer is already {self._state}")
        if self._busy:
            raise RuntimeError(f"cannot {action}: another write or commit on this blob writer is in progress")

    @abc.abstractmethod
    async def _spool(self, chunk: bytes) -> None:
        """Store ``chunk`` after the bytes spooled so far and update ``self._hasher`` with it."""

    @abc.abstractmethod
    async def _publish(self, info: BlobInfo) -> None:
        """Make the spooled content durable and visible as ``info.sha256`` (skip if already stored)."""

    @abc.abstractmethod
    async def _discard(self) -> None:
        """Remove the spool; must tolerate a spool that is already gone."""
