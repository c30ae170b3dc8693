"""Blobs as read-only files under ``<root>/blobs/ab/cd/<sha256>``, spooled in ``<root>/tmp``.

Write path (DESIGN.md, "Write path invariant"): each chunk is hashed as it arrives and gathered in
memory; every ``SPOOL_BUFFER_BYTES`` the gathered bytes go to a private temp file (``O_EXCL``, mode
0600) in one worker-thread call; ``commit`` writes the rest, makes the file read-only, fsyncs it,
renames it into place (same filesystem, so atomic) and fsyncs the directory —
and the new fan-out directories' parents, so a crash never loses a published name. If the blob is
already stored the temp file is dropped instead (dedup) and the existing file's mtime refreshed when it is
older than ``MTIME_REFRESH_SECONDS``, so ``gc``'s grace period (at least ``MIN_GC_GRACE_SECONDS``) covers the
reference about to be recorded. A file touched within that minute is left alone: every ``utime`` changes
the file's fingerprint, and each worker process would then re-hash the whole blob before trusting it again
(with two workers taking turns, a 256 MiB upload of stored content was hashed twice). An existing file of the wrong size
(truncated by a crash or a disk) is replaced by the fresh copy.

Reads are checked by ``ensure_intact``: a blob is re-hashed before it is served unless this process
has verified (or written) it since the file last changed — judged by inode, size, mtime and ctime,
which a rewrite, truncation, replacement or ``touch`` changes (a same-size rewrite within one tick of
the filesystem clock, a few milliseconds, after the last verification could go unseen). Silent media
decay that changes none of them is ``fsck``'s job (it re-hashes everything). A deduplicating upload
likewise re-hashes an existing copy it has not verified before trusting it, and replaces a damaged one
with its own bytes, so uploading the content again heals a corrupted blob.

A write that finds no room — a full disk, a used-up filesystem quota, a file past the largest size
the filesystem allows (ENOSPC, EDQUOT, EFBIG) — raises :class:`~stowage.errors.InsufficientStorage`
after the spool is removed, so a full disk leaves nothing behind and the next upload that fits works.

File I/O runs in worker threads, except ``stat``-sized metadata calls on the hot paths (the read
check, the dedup of a small upload), which the kernel answers from its caches faster than a thread
hop. A file descriptor is only touched by one thread call at a time; if a caller is cancelled
mid-call, ``abort`` waits for that call before closing the descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import stat
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from stowage.blobs import local_removal
from stowage.blobs._fs import BLOB_MODE, TEMP_MODE, VERIFY_CHUNK, VerifiedFiles
from stowage.blobs._fs import close_quietly as _close_quietly
from stowage.blobs._fs import fingerprint as _fingerprint
from stowage.blobs._fs import fsync_dir as _fsync_dir
from stowage.blobs._fs import unlink_quietly as _unlink_quietly
from stowage.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobCorrupt,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    SpoolingWriter,
    check_read_range,
    check_sha256,
    check_upload_id,
    to_thread_owning,
)
from stowage.blobs.direct_writes import DirectWriters
from stowage.blobs.local_removal import file_mtime, remove_if_old
from stowage.blobs.local_staging import HashStates, LocalStaging, concatenate_sync, scan_staging
from stowage.errors import InsufficientStorage, is_disk_full
from stowage.observability.logging import get_logger

# Spool names (quarantined blobs are named like them, so the same sweep removes a forgotten one).
TEMP_PREFIX = local_removal.TEMP_PREFIX
TEMP_SUFFIX = local_removal.TEMP_SUFFIX
_HEX = frozenset("0123456789abcdef")
VERIFIED_CACHE_SIZE = 65536
# A deduplicating upload refreshes an existing blob's mtime only when it is older than this: gc removes
# unreferenced files older than its grace period, which must therefore be longer (MIN_GC_GRACE_SECONDS).
MTIME_REFRESH_SECONDS = 60.0
MIN_GC_GRACE_SECONDS = 2 * MTIME_REFRESH_SECONDS
# Received bytes gathered in memory before one worker-thread call writes them (per upload in flight).
SPOOL_BUFFER_BYTES = 1024 * 1024
DISK_FULL_DETAIL = (
    "The server's disk is full (no space left to store the content); nothing was stored. "
    "Retry once an administrator has freed space."
)

log = get_logger("stowage.blobs")


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(VERIFY_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _refresh_mtime(path: Path, seen: os.stat_result) -> bool:
    """Set the blob's mtime to now if it is older than ``MTIME_REFRESH_SECONDS`` (True if it was set)."""
    if seen.st_mtime >= time.time() - MTIME_REFRESH_SECONDS:
        return False
    os.utime(path)
    return True


T = TypeVar("T")


def _is_fanout_dir(name: str) -> bool:
    return len(name) == 2 and set(name) <= _HEX


class LocalBlobWriter(SpoolingWriter):
    """Hashes each chunk as it arrives and gathers chunks in memory, then writes them to the spool file
    in one worker-thread call per ``spool_buffer_bytes`` (the file is created by the first such call).

    A thread hop costs more than hashing or writing a few kilobytes, so an upload smaller than the
    buffer makes at most one, at commit — and none when its content is already stored and verified
    (dedup, decided in the loop with a ``stat``). Memory per upload stays bounded by the buffer."""

    def __init__(self, store: LocalBlobStore, *, max_size: int | None, buffer_bytes: int) -> None:
        super().__init__(max_size=max_size)
        self._store = store
        self._buffer_bytes = buffer_bytes
        self._buffer = bytearray()
        self._fd: int | None = None
        self._temp: Path | None = None
        self._pending: asyncio.Future[Any] | None = None

    @property
    def temp_path(self) -> Path | None:
        """The spool file, once the buffer has been written out (None while everything is in memory)."""
        return self._temp

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread; it keeps running if we are cancelled, and ``_discard`` waits for it.

        A full disk becomes InsufficientStorage here; the base class then aborts, removing the spool."""
        task: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(fn))
        self._pending = task
        try:
            return await asyncio.shield(task)
        except OSError as exc:
            if is_disk_full(exc):
                raise self._store.disk_full() from exc
            raise

    async def _spool(self, chunk: bytes) -> None:
        self._hasher.update(chunk)  # hashlib is about 1.7 GiB/s here: cheaper in place than a thread hop
        self._buffer += chunk
        if len(self._buffer) >= self._buffer_bytes:
            data, self._buffer = self._buffer, bytearray()
            await self._call(lambda: self._append_sync(data))

    def _append_sync(self, data: bytes | bytearray) -> None:
        """Write ``data`` at the end of the spool file, creating it first if needed (in a worker thread)."""
        if self._fd is None:
            self._fd, self._temp = self._store.create_temp()
        fd = self._fd
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    async def _publish(self, info: BlobInfo) -> None:
        if self._fd is None and self._store.stored_and_verified(info.sha256, info.size):
            self._buffer = bytearray()  # dedup of a small upload: nothing reaches the disk
            return
        data, self._buffer = self._buffer, bytearray()
        await self._call(lambda: self._publish_sync(info, data))

    def _publish_sync(self, info: BlobInfo, rest: bytearray) -> None:
        final = self._store.blob_path(info.sha256)
        try:
            if self._store.already_stored(info.sha256, info.size):
                return
            if rest or self._fd is None:
                self._append_sync(rest)
            fd = self._fd
            assert fd is not None
            os.fchmod(fd, BLOB_MODE)
            os.fsync(fd)
            self._store.make_fanout_dirs(final.parent)
            assert self._temp is not None
            self._temp.replace(final)
            _fsync_dir(final.parent)
            # These exact bytes were hashed on the way in: no need to re-hash them on the first read.
            self._store.verified.record(info.sha256, _fingerprint(final.stat()))
        finally:
            self._discard_sync()  # the spool is gone after the rename; a duplicate's spool is removed here

    async def _discard(self) -> None:
        self._buffer = bytearray()
        pending = self._pending
        if pending is not None:
            if not pending.done():
                await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # mark retrieved; the caller already saw it (or was cancelled)
        if self._fd is not None or self._temp is not None:
            await self._call(self._discard_sync)

    def _discard_sync(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            _close_quietly(fd)
        if self._temp is not None:
            _unlink_quietly(self._temp)


class LocalBlobStore(BlobStore):
    """Blobs on a local filesystem. ``root`` is the data folder; ``tmp`` must be on the same filesystem."""

    def __init__(self, root: Path, *, spool_buffer_bytes: int = SPOOL_BUFFER_BYTES) -> None:
        self._root = Path(root).absolute()
        self._spool_buffer_bytes = spool_buffer_bytes
        self._blobs = self._root / "blobs"
        self._blobs_prefix = f"{self._blobs}/"
        self._tmp = self._root / "tmp"
        self._staging = self._root / "staging"
        self.hash_states = HashStates()
        self.direct_staging: bool | None = None  # tus staging past the page cache? (probed at first use)
        self.direct_writers = DirectWriters(max(spool_buffer_bytes, SPOOL_BUFFER_BYTES))
        self.verified = VerifiedFiles(VERIFIED_CACHE_SIZE)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def temp_dir(self) -> Path:
        return self._tmp

    @property
    def staging_dir(self) -> Path:
        return self._staging

    def staging_path(self, upload_id: str) -> Path:
        return self._staging / check_upload_id(upload_id)

    def blob_path(self, sha256: str) -> Path:
        return Path(self._blob_file(sha256))

    def _blob_file(self, sha256: str) -> str:
        """The blob's file name as a string: the read check runs on every download, and building a
        ``Path`` from parts costs more than the ``stat`` itself."""
        check_sha256(sha256)
        return f"{self._blobs_prefix}{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def disk_full(self) -> InsufficientStorage:
        """The error for a write that found no room in the data folder (its path goes to the log only)."""
        return InsufficientStorage(DISK_FULL_DETAIL, path=str(self._root))

    def make_fanout_dirs(self, leaf: Path) -> None:
        """Create ``blobs/ab/cd`` as needed, fsyncing each new directory's parent so its entry is durable."""
        for directory in (self._blobs, leaf.parent, leaf):
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            _fsync_dir(directory.parent)

    # --- writing -----------------------------------------------------------------------------------

    async def open_writer(self, *, max_size: int | None = None) -> LocalBlobWriter:
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be None or 0 or more, got {max_size}")
        # No file yet: the writer creates its spool when it first writes to disk (see LocalBlobWriter).
        return LocalBlobWriter(self, max_size=max_size, buffer_bytes=self._spool_buffer_bytes)

    def create_temp(self) -> tuple[int, Path]:
        """A new private spool file (``O_EXCL``, mode 0600) in ``tmp``; called in a worker thread."""
        path = self._tmp / f"{TEMP_PREFIX}{secrets.token_hex(16)}{TEMP_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(path, flags, TEMP_MODE)
        except FileNotFoundError:
            self._tmp.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, TEMP_MODE)
        return fd, path

    # --- staging (resumable uploads): ``blobs/local_staging.py`` ---------------------------------------

    async def open_staging(self, upload_id: str) -> LocalStaging:
        staging = LocalStaging(self, check_upload_id(upload_id), buffer_bytes=self._spool_buffer_bytes)
        return await staging.open()

    async def stage_concatenation(self, upload_id: str, parts: Sequence[str]) -> int:
        target = self.staging_path(upload_id)
        sources = [self.staging_path(part) for part in parts]
        return await asyncio.to_thread(concatenate_sync, self._staging, target, sources)

    async def discard_staging(self, upload_id: str) -> None:
        self.hash_states.forget(check_upload_id(upload_id))
        await asyncio.to_thread(_unlink_quietly, self.staging_path(upload_id))

    async def staged_uploads(self) -> dict[str, float]:
        return await asyncio.to_thread(scan_staging, self._staging)

    # --- reading -----------------------------------------------------------------------------------

    async def exists(self, sha256: str) -> bool:
        # A stat is metadata the kernel answers from its inode cache in microseconds; a thread hop would
        # cost ten times more, on every download.
        return self.blob_path(sha256).is_file()

    async def size(self, sha256: str) -> int:
        path = self.blob_path(sha256)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    def open_read(
        self, sha256: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        path = self.blob_path(sha256)
        check_read_range(start, end, chunk_size)
        return self._stream(sha256, path, start, end, chunk_size)

    async def _stream(
        self, sha256: str, path: Path, start: int, end: int | None, chunk_size: int
    ) -> AsyncGenerator[bytes, None]:
        fd, size = await self._open_existing(sha256, path)
        try:
            stop = size if end is None else min(end, size)
            position = start
            while position < stop:
                data = await asyncio.to_thread(os.pread, fd, min(chunk_size, stop - position), position)
                if not data:
                    raise BlobCorrupt(sha256, f"file ends at {position} bytes, expected {size}")
                position += len(data)
                yield data
        finally:
            # Closing a read-only descriptor cannot block. A pread still running after a cancellation
            # would at worst read from a reused descriptor number, which has no side effect.
            _close_quietly(fd)

    async def _open_existing(self, sha256: str, path: Path) -> tuple[int, int]:
        def open_and_stat() -> tuple[int, int]:
            fd = os.open(path, os.O_RDONLY)
            try:
                return fd, os.fstat(fd).st_size
            except BaseException:
                os.close(fd)
                raise

        try:
            return await to_thread_owning(open_and_stat, lambda opened: _close_quietly(opened[0]))
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    def local_path(self, sha256: str) -> Path | None:
        return self.blob_path(sha256)

    def local_file(self, sha256: str) -> str | None:
        return self._blob_file(sha256)

    async def ensure_intact(self, sha256: str, *, always: bool = False) -> None:
        path = self._blob_file(sha256)
        try:
            before = os.stat(path)  # in the loop: see ``exists``  # noqa: PTH116 - a str path, see _blob_file
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        fingerprint = _fingerprint(before)
        if not always and self.verified.matches(sha256, fingerprint):
            return
        if not await self.verify(sha256):
            self.verified.forget(sha256)
            log.error("blob_corrupt", sha256=sha256, path=path, size=before.st_size)
            raise BlobCorrupt(sha256, "the content does not hash to its name")
        self.verified.record(sha256, fingerprint)

    def stored_and_verified(self, sha256: str, size: int) -> bool:
        """Dedup without a worker thread: True when the content is stored with this size and this process
        has verified it since the file last changed; its mtime is then refreshed (``gc``'s grace period
        covers the reference about to be recorded). False means "not known here": the committing thread
        decides with ``already_stored``, re-hashing if needed. A few system calls on cached metadata."""
        final = self.blob_path(sha256)
        try:
            existing = final.stat()
            if existing.st_size != size or not self.verified.matches(sha256, _fingerprint(existing)):
                return False
            if _refresh_mtime(final, existing):
                self.verified.record(sha256, _fingerprint(final.stat()))
        except OSError:
            return False
        return True

    def already_stored(self, sha256: str, size: int) -> bool:
        """Whether an intact copy of this content is stored (called by a committing writer, in its thread).

        If so its mtime is refreshed, so ``gc``'s grace period covers the reference about to be recorded.
        A copy of the wrong size or content (truncated by a crash, damaged on disk) is not intact: the
        caller replaces it with its fresh bytes.
        """
        final = self.blob_path(sha256)
        try:
            existing = final.stat()
        except FileNotFoundError:
            return False
        if existing.st_size != size:
            return False
        if not self.verified.matches(sha256, _fingerprint(existing)):
            try:
                intact = _hash_file(final) == sha256
            except FileNotFoundError:
                return False
            if not intact:
                log.error("blob_corrupt_replaced", sha256=sha256, path=str(final))
                return False
        try:
            _refresh_mtime(final, existing)
        except FileNotFoundError:
            return False  # deleted just now: publish ours
        except PermissionError:
            return True  # not ours to touch, but it is there and intact
        with contextlib.suppress(FileNotFoundError):
            self.verified.record(sha256, _fingerprint(final.stat()))
        return True

    # --- maintenance -------------------------------------------------------------------------------

    async def modified_at(self, sha256: str) -> float | None:
        return await asyncio.to_thread(file_mtime, self.blob_path(sha256))

    async def remove_if_old(
        self, sha256: str, cutoff: float, *, still_unreferenced: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Through a quarantine rename into ``tmp`` (``blobs/local_removal.py``): a deduplicating upload
        that touched the file before the rename shows in its mtime, and the file is put back."""
        return await remove_if_old(self.blob_path(sha256), self._tmp, cutoff, still_unreferenced=still_unreferenced)

    def describe(self) -> str:
        return f"local: {self._blobs}"

    async def delete(self, sha256: str) -> None:
        # Empty fan-out directories are kept: removing one could race with a commit publishing into it.
        await asyncio.to_thread(_unlink_quietly, self.blob_path(sha256))

    async def iter_hashes(self) -> AsyncGenerator[str, None]:
        for first in await asyncio.to_thread(self._list, self._blobs, directories=True):
            if not _is_fanout_dir(first):
                continue
            for second in await asyncio.to_thread(self._list, self._blobs / first, directories=True):
                if not _is_fanout_dir(second):
                    continue
                for name in await asyncio.to_thread(self._list, self._blobs / first / second, directories=False):
                    if name[:2] == first and name[2:4] == second:
                        with contextlib.suppress(ValueError):
                            yield check_sha256(name)

    @staticmethod
    def _list(directory: Path, *, directories: bool) -> list[str]:
        try:
            with os.scandir(directory) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False) == directories)
        except FileNotFoundError:
            return []

    async def verify(self, sha256: str) -> bool:
        fd, _ = await self._open_existing(sha256, self.blob_path(sha256))
        hasher = hashlib.sha256()

        def hash_at(offset: int) -> int:
            data = os.pread(fd, VERIFY_CHUNK, offset)
            hasher.update(data)
            return len(data)

        try:
            # One chunk per thread call, so a long fsck stays cancellable between chunks; pread (not read)
            # so a call still running after a cancellation cannot consume from a reused descriptor.
            offset = 0
            while read := await asyncio.to_thread(hash_at, offset):
                offset += read
        finally:
            _close_quietly(fd)
        return hasher.hexdigest() == sha256

    async def remove_stale_temp(self, older_than_seconds: float) -> int:
        if older_than_seconds < 0:
            raise ValueError(f"older_than_seconds must be 0 or more, got {older_than_seconds}")
        return await asyncio.to_thread(self._remove_stale_temp, time.time() - older_than_seconds)

    def _remove_stale_temp(self, cutoff: float) -> int:
        removed = 0
        try:
            with os.scandir(self._tmp) as entries:
                candidates = [e for e in entries if e.name.startswith(TEMP_PREFIX) and e.name.endswith(TEMP_SUFFIX)]
        except FileNotFoundError:
            return 0
        for entry in candidates:
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_mtime <= cutoff:
                    Path(entry.path).unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # finished or aborted meanwhile
        return removed
