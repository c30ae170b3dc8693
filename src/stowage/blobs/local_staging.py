"""Resumable uploads' staged bytes on the local store: ``<data_dir>/staging/<upload id>``.

``LocalStaging`` is one upload's handle (append, sync, truncate, finish); ``concatenate_sync`` and
``scan_staging`` are the store-level steps (``LocalBlobStore.stage_concatenation`` and
``staged_uploads``), run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from stowage.blobs._fs import (
    BLOB_MODE,
    TEMP_MODE,
    VERIFY_CHUNK,
    Fingerprint,
    close_quietly,
    fingerprint,
    fsync_dir,
    unlink_quietly,
)
from stowage.blobs.base import BlobInfo, check_upload_id
from stowage.blobs.direct_writes import DirectFile, open_direct, probe, write_all_at
from stowage.errors import is_disk_full

if TYPE_CHECKING:
    from stowage.blobs.local import LocalBlobStore

T = TypeVar("T")
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range, do not wait


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """glibc's ``sync_file_range`` (Linux), or None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", function)


_SYNC_FILE_RANGE = _sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (a hint: durability still comes from fsync)."""
    if _SYNC_FILE_RANGE is not None and length > 0:
        _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class LocalStaging:
    """One resumable upload's bytes in ``<root>/staging/<upload id>`` (mode 0600), appended across requests.

    Appended chunks are gathered in memory (as a list: never copied into one buffer) up to the store's
    spool buffer and handed to one worker-thread call per buffer, which runs while the next buffer fills
    (one call in flight at a time). Where the file system takes ``O_DIRECT`` (probed once per store), the
    call hashes the bytes and copies them into aligned buffers whose whole blocks go to the device past the
    page cache (``direct_writes``: no page to find per 4 KiB, no kernel copy); elsewhere it writes them with
    one ``pwritev`` and asks the kernel to start writing the range back (``sync_file_range``), so the
    ``fsync`` in ``sync`` finds little left to do.
    The bytes are hashed as they are written (in the writer thread), and the hash state of the synced
    bytes is kept in this process (``HashStates``) with the file's fingerprint: the next request for the
    upload that reaches this process continues it. ``finish`` uses it when it covers every byte and the
    file has not changed since (same inode, size, mtime and ctime); otherwise — the state was lost: a
    restart, another worker, a truncation — it hashes the file by re-reading it in 1 MiB reads inside one
    thread call. Then it makes the file read-only,
    renames it into ``blobs/ab/cd/<sha256>`` (the same filesystem: atomic) and fsyncs both directories —
    or, when intact content with that digest is stored already, removes it (dedup)."""

    def __init__(self, store: LocalBlobStore, upload_id: str, *, buffer_bytes: int) -> None:
        self.upload_id = upload_id
        self._store = store
        self._path = store.staging_path(upload_id)
        self._buffer_bytes = buffer_bytes
        # Appended chunks not yet handed to the writer thread, kept as they came (no copy into one
        # buffer: the thread hashes each and writes them all with one ``pwritev``).
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._fd: int | None = None
        self._written = 0  # bytes in the file: the worker thread's write position
        self._size = 0  # bytes staged, as this handle's callers see them (file + in flight + buffer)
        self._pending: asyncio.Future[Any] | None = None
        self._hasher: Any = None  # hash of the file's first ``_written`` bytes, when known
        self._direct: DirectFile | None = None  # written in whole blocks past the page cache (direct_writes)

    async def _call(self, fn: Callable[[], T]) -> T:
        """``fn`` in a worker thread, after the write in flight; it finishes even if we are cancelled
        (``close`` waits for it)."""
        await self._drain()
        task: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(fn))
        self._pending = task
        return await self._wait(task)

    async def _wait(self, task: asyncio.Future[T]) -> T:
        try:
            return await asyncio.shield(task)
        except OSError as exc:
            if is_disk_full(exc):
                raise self._store.disk_full() from exc
            raise

    async def _drain(self) -> None:
        """Wait for the write in flight (its error is raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await self._wait(pending)

    def _open_sync(self) -> None:
        if self._fd is not None:
            return
        created = not self._path.exists()
        try:
            fd, direct = self._open_file()
        except FileNotFoundError:
            self._store.staging_dir.mkdir(parents=True, exist_ok=True)
            fd, direct = self._open_file()
        if created:
            fsync_dir(self._path.parent)  # the staging's name survives a crash from its first byte on
        self._fd = fd
        st = os.fstat(fd)
        self._written = self._size = st.st_size
        if direct:
            self._direct = DirectFile(fd, st.st_size, self._store.direct_writers)
        self._hasher = self._store.hash_states.resume(self.upload_id, fingerprint(st))
        if self._hasher is None and st.st_size == 0:
            self._hasher = hashlib.sha256()

    def _open_file(self) -> tuple[int, bool]:
        """The staging file, opened for direct writes where the file system takes them (asked once)."""
        flags = os.O_RDWR | os.O_CREAT
        if self._store.direct_staging is None:
            self._store.staging_dir.mkdir(parents=True, exist_ok=True)
            self._store.direct_staging = probe(self._store.staging_dir)
        if self._store.direct_staging:
            return open_direct(self._path, flags, TEMP_MODE), True
        return os.open(self._path, flags, TEMP_MODE), False

    async def open(self) -> LocalStaging:
        await self._call(self._open_sync)
        return self

    async def size(self) -> int:
        return self._size

    async def truncate(self, size: int) -> None:
        if size < 0 or size > self._size:
            raise ValueError(f"cannot truncate {self.upload_id} to {size}: {self._size} bytes are staged")
        data = self._take_pieces()

        def cut() -> None:
            fd = self._require_fd()
            self._write_sync(fd, data, final=True)
            os.ftruncate(fd, size)
            os.fsync(fd)
            if self._direct is not None:
                self._direct.cut(size)
            self._written = size
            # The hash cannot be taken back; it is known again only from scratch (or by re-reading).
            self._hasher = hashlib.sha256() if size == 0 else None
            self._store.hash_states.forget(self.upload_id)

        await self._call(cut)
        self._size = size

    async def append(self, chunk: bytes) -> None:
        self._pieces.append(chunk)
        self._buffered += len(chunk)
        self._size += len(chunk)
        if self._buffered >= self._buffer_bytes:
            await self._drain()
            data = self._take_pieces()
            fd = self._require_fd()
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._write_sync, fd, data))

    async def sync(self) -> int:
        data = self._take_pieces()

        def flush() -> None:
            fd = self._require_fd()
            self._write_sync(fd, data, final=True)
            os.fsync(fd)
            if self._hasher is not None:
                self._store.hash_states.keep(self.upload_id, fingerprint(os.fstat(fd)), self._hasher.copy())

        await self._call(flush)
        return self._size

    def _take_pieces(self) -> list[bytes]:
        pieces, self._pieces, self._buffered = self._pieces, [], 0
        return pieces

    def _write_sync(self, fd: int, pieces: list[bytes], *, final: bool = False) -> None:
        """Hash and write ``pieces``; ``final`` (before an fsync): the file must then hold every byte."""
        if self._hasher is not None:
            for piece in pieces:
                self._hasher.update(piece)  # releases the GIL for large pieces
        direct = self._direct
        if direct is not None:
            if pieces or (final and not direct.carry_written):
                direct.write(pieces, final=final)
            elif final:
                direct.wait()
            self._written = direct.end
            return
        if not pieces:
            return
        start = self._written
        self._written = write_all_at(fd, pieces, start)
        start_writeback(fd, start, self._written - start)

    def _require_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"the staging of {self.upload_id} is closed")
        return self._fd

    async def finish(self) -> BlobInfo:
        await self.sync()
        info = await self._call(self._publish_sync)
        await self.close()
        return info

    def _publish_sync(self) -> BlobInfo:
        fd = self._require_fd()
        size = os.fstat(fd).st_size
        hasher = self._hasher if self._hasher is not None and self._written == size else None
        if hasher is None:  # the hash state was lost: re-read the staged bytes (through the page cache)
            hasher = hashlib.sha256()
            size = 0
            with self._path.open("rb") as staged:
                while data := staged.read(VERIFY_CHUNK):
                    hasher.update(data)
                    size += len(data)
        self._store.hash_states.forget(self.upload_id)
        info = BlobInfo(sha256=hasher.hexdigest(), size=size)
        if self._store.already_stored(info.sha256, info.size):
            self._path.unlink()
        else:
            os.fchmod(fd, BLOB_MODE)
            final = self._store.blob_path(info.sha256)
            self._store.make_fanout_dirs(final.parent)
            self._path.replace(final)
            fsync_dir(final.parent)
            self._store.verified.record(info.sha256, fingerprint(final.stat()))
        fsync_dir(self._path.parent)
        # Closed here, in the worker thread: when the content was stored already, this closes the last
        # reference to the unlinked file and the kernel frees its blocks then (~40 ms for 256 MiB).
        self._fd = None
        close_quietly(fd)
        return info

    async def close(self) -> None:
        self._take_pieces()
        pending, self._pending = self._pending, None
        if pending is not None:
            if not pending.done():
                await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # retrieved: the caller saw it, or is closing after a failure
        direct, self._direct = self._direct, None
        if direct is not None and direct.busy:  # device writes of a chunk that failed: never close under them
            with contextlib.suppress(OSError):
                await asyncio.to_thread(direct.wait)
        fd, self._fd = self._fd, None
        if fd is not None:
            close_quietly(fd)


def concatenate_sync(staging_dir: Path, target: Path, sources: list[Path]) -> int:
    """Copy the parts into a new staging with the kernel's copy (no bytes through Python), fsync it,
    then rename it into place: a crash leaves the old state or the whole concatenation."""
    staging_dir.mkdir(parents=True, exist_ok=True)
    temp = staging_dir / f".{target.name}.{secrets.token_hex(4)}"
    out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TEMP_MODE)
    try:
        total = 0
        for source in sources:
            with source.open("rb") as part:
                size = os.fstat(part.fileno()).st_size
                copied = 0
                while copied < size:
                    sent = os.sendfile(out, part.fileno(), copied, size - copied)
                    if sent == 0:
                        break
                    copied += sent
                total += copied
        os.fsync(out)
    except BaseException:
        os.close(out)
        unlink_quietly(temp)
        raise
    os.close(out)
    temp.replace(target)
    fsync_dir(staging_dir)
    return total


def scan_staging(staging_dir: Path) -> dict[str, float]:
    """Every staged upload id with its file's mtime (names that are not upload ids are skipped)."""
    found: dict[str, float] = {}
    try:
        with os.scandir(staging_dir) as entries:
            for entry in entries:
                with contextlib.suppress(ValueError, FileNotFoundError):
                    found[check_upload_id(entry.name)] = entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        pass
    return found


class HashStates:
    """The hash of each upload's synced bytes in this process, with the staging file's fingerprint then
    (least recently used out first). A state is used only while the file still has that fingerprint, so a
    file another process changed is re-read, never trusted."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._states: OrderedDict[str, tuple[Fingerprint, Any]] = OrderedDict()
        self._lock = threading.Lock()  # writer threads keep states, the event loop resumes them

    def keep(self, upload_id: str, at: Fingerprint, hasher: Any) -> None:
        with self._lock:
            self._states[upload_id] = (at, hasher)
            self._states.move_to_end(upload_id)
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)

    def resume(self, upload_id: str, now: Fingerprint) -> Any:
        """A copy of the kept state if the file is as it was then, else None."""
        with self._lock:
            kept = self._states.get(upload_id)
            if kept is None or kept[0] != now:
                return None
            return kept[1].copy()

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._states.pop(upload_id, None)
