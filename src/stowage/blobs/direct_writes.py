"""Writing a resumable upload's staged bytes past the page cache (``O_DIRECT``), in whole blocks.

Why: a staged upload is written once, hashed as it arrives, then renamed into place; buffering it in
the page cache first costs a kernel copy and, per 4 KiB, a page the kernel must find. On a machine whose
free memory goes back to its hypervisor (a balloon with free-page reporting, as on most cloud VMs),
finding those pages was the largest cost of a 256 MiB tus upload. Written with ``O_DIRECT``, the bytes go
from a few reused, page-aligned buffers straight to the device, and the ``fsync`` that makes a chunk
durable has only the file's size left to write.

``O_DIRECT`` needs the buffer's address, the length and the file offset aligned to the device's block.
So a staging file is written in whole ``BLOCK`` blocks: bytes past the last whole block are carried
(``DirectFile.carry``) into the next write; a ``final`` write (the end of a chunk, before ``fsync``)
writes the partial block padded with zeros and cuts the file back to its true size. A later request
(a new handle, maybe in another process) reads that partial block back before it appends. Rewriting it
is safe: its first bytes are the same ones again, and bytes past the committed offset never count (the
next chunk cuts them off).

A device write takes about as long as hashing the same bytes, so they overlap: the caller's thread
hashes and copies into an aligned buffer, and the whole blocks are written by the store's small writer
pool, at most ``MAX_IN_FLIGHT`` buffers per file at once (they never overlap: only whole blocks before the
carry). A ``final`` write first waits for them all; an error of any is raised by the next call.
Memory: an upload receiving a chunk holds at most three buffers (the one filling and two being
written; 1 MiB each at the server's spool size), and a store keeps up to eight idle ones.

Where the file system refuses ``O_DIRECT`` (``probe``: tmpfs on older kernels, some FUSE and network file
systems), the store writes through the page cache as before.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import secrets
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

IOV_MAX = 1024  # buffers per pwritev call (POSIX's minimum is 16; Linux allows 1024)
BLOCK = 4096  # a multiple of every logical block size Linux's file systems use for direct I/O
O_DIRECT: int = getattr(os, "O_DIRECT", 0)  # 0 where the platform has none: then never direct
MAX_IN_FLIGHT = 2  # device writes per file at once


class DirectWriters:
    """What a store's direct writes share: page-aligned buffers (anonymous ``mmap``) of one size, reused
    (a fresh mapping's pages are untouched memory, the expensive kind this module exists to avoid; at
    most ``keep`` idle ones stay), and the threads that write them."""

    def __init__(self, size: int, *, keep: int = 8, threads: int = 4) -> None:
        self.size = max(BLOCK, -(-size // BLOCK) * BLOCK)
        self._keep = keep
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()  # writer threads take and give back
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return mmap.mmap(-1, self.size)

    def give_back(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(buffer)
                return
        buffer.close()

    def submit(self, fd: int, buffer: mmap.mmap, length: int, position: int) -> Future[None]:
        """Write ``buffer[:length]`` at ``position`` in a writer thread, then give the buffer back."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="stowage-direct")
            pool = self._pool
        return pool.submit(self._write_and_give_back, fd, buffer, length, position)

    def _write_and_give_back(self, fd: int, buffer: mmap.mmap, length: int, position: int) -> None:
        try:
            with memoryview(buffer) as view:
                write_exactly(fd, view[:length], position)
        finally:
            self.give_back(buffer)


class DirectFile:
    """One open staging file written in whole blocks with ``O_DIRECT``; ``write`` is called by one thread
    at a time (the staging's write in flight).

    ``end`` is the file's true size as this handle knows it: whole blocks up to ``end - len(carry)``
    are on the device (or being written), ``carry`` holds the bytes after them (on the device too only
    when ``carry_written``).
    """

    def __init__(self, fd: int, size: int, writers: DirectWriters) -> None:
        self.fd = fd
        self.end = size
        self._writers = writers
        self.carry: bytes | None = None  # None: the partial last block is still only in the file
        self.carry_written = True
        self._in_flight: deque[Future[None]] = deque()

    def write(self, pieces: Sequence[bytes], *, final: bool) -> None:
        """Append ``pieces``; with ``final``, wait for every device write and write the partial last
        block (padded, then cut back), so that the file holds every byte and has its true size."""
        carry = self._carried()
        position = self.end - len(carry)  # block-aligned
        fill = _Fill(self._writers)
        try:
            fill.add(memoryview(carry))  # less than a block: never fills the buffer
            for piece in pieces:
                with memoryview(piece) as source:  # slices of a view copy nothing
                    taken = 0
                    while taken < len(source):
                        taken += fill.add(source[taken:])
                        if not fill.room:  # full: every byte is a whole block
                            position = self._hand_over(fill, fill.used, position)
            used = fill.used
            whole = used - used % BLOCK
            self.carry = fill.copy(whole, used)
            self.end = position + used
            if whole:  # the whole blocks go to a writer thread, the carry to the start of a new buffer
                position = self._hand_over(fill, whole, position)
                fill.add(memoryview(self.carry))
            self.carry_written = not fill.used
            if final:
                self.wait()
                if fill.used:
                    fill.pad_to(BLOCK)  # the carry is less than one block
                    write_exactly(self.fd, fill.view[:BLOCK], position)
                    os.ftruncate(self.fd, self.end)
                    self.carry_written = True
        except BaseException:
            with contextlib.suppress(BaseException):
                self.wait()  # a failed call leaves no write running
            raise
        finally:
            fill.close()

    def _hand_over(self, fill: _Fill, length: int, position: int) -> int:
        """Give the first ``length`` bytes of the filling buffer to a writer thread; returns the position
        after them (the buffer's bytes past ``length`` are dropped: the caller copies them again)."""
        buffer = fill.release()
        self._submit(buffer, length, position)
        fill.renew()
        return position + length

    @property
    def busy(self) -> bool:
        """Whether device writes of this file may still be running."""
        return bool(self._in_flight)

    def wait(self) -> None:
        """Wait for every device write of this file; raise the first one's error."""
        error: BaseException | None = None
        while self._in_flight:
            try:
                self._in_flight.popleft().result()
            except BaseException as exc:  # every write is waited for, the first error raised
                error = error or exc
        if error is not None:
            raise error

    def cut(self, size: int) -> None:
        """The file was truncated to ``size``: its partial block is read back when next needed."""
        self.end = size
        self.carry = None
        self.carry_written = True

    def _submit(self, buffer: mmap.mmap, length: int, position: int) -> None:
        while len(self._in_flight) >= MAX_IN_FLIGHT or (self._in_flight and self._in_flight[0].done()):
            self._in_flight.popleft().result()  # an error surfaces here, at the latest at ``final``
        self._in_flight.append(self._writers.submit(self.fd, buffer, length, position))

    def _carried(self) -> bytes:
        if self.carry is None:
            self.carry = _read_partial_block(self.fd, self.end, self._writers)
        return self.carry


class _Fill:
    """The aligned buffer a ``DirectFile.write`` is filling, and how much of it is filled."""

    def __init__(self, writers: DirectWriters) -> None:
        self._writers = writers
        self._buffer: mmap.mmap | None = writers.take()
        self.view = memoryview(self._buffer)
        self.used = 0

    @property
    def room(self) -> int:
        return len(self.view) - self.used

    def add(self, data: memoryview) -> int:
        """Copy as much of ``data`` as fits; returns how much that was."""
        n = min(len(data), self.room)
        self.view[self.used : self.used + n] = data[:n]
        self.used += n
        return n

    def copy(self, start: int, end: int) -> bytes:
        return bytes(self.view[start:end])

    def pad_to(self, size: int) -> None:
        self.view[self.used : size] = bytes(size - self.used)

    def release(self) -> mmap.mmap:
        """Let go of the buffer (a writer thread gives it back once written)."""
        buffer, self._buffer = self._buffer, None
        assert buffer is not None
        self.view.release()
        return buffer

    def renew(self) -> None:
        """Start filling a fresh buffer."""
        self._buffer = self._writers.take()
        self.view = memoryview(self._buffer)
        self.used = 0

    def close(self) -> None:
        self.view.release()
        if self._buffer is not None:
            self._writers.give_back(self._buffer)
            self._buffer = None


def open_direct(path: str | os.PathLike[str], flags: int, mode: int) -> int:
    """``os.open`` with ``O_DIRECT``."""
    return os.open(path, flags | O_DIRECT, mode)


def probe(directory: Path) -> bool:
    """Whether files in ``directory`` take direct writes of whole blocks (opening and writing a scratch
    file: some file systems accept the flag, then refuse the write)."""
    if not O_DIRECT:
        return False
    scratch = directory / f".direct-probe-{secrets.token_hex(4)}"
    buffer = mmap.mmap(-1, BLOCK)
    try:
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_DIRECT, 0o600)
        try:
            with memoryview(buffer) as view:
                write_exactly(fd, view, 0)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return False
    finally:
        buffer.close()
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
    return True


def write_all_at(fd: int, pieces: Sequence[bytes], position: int) -> int:
    """Write ``pieces`` one after the other at ``position`` (``pwritev``, resumed after a short write);
    returns the position after them."""
    views = [memoryview(piece) for piece in pieces if piece]
    while views:
        done = os.pwritev(fd, views[:IOV_MAX], position)
        position += done
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if views and done:
            views[0] = views[0][done:]
    return position


def write_exactly(fd: int, view: memoryview, position: int) -> None:
    while len(view):
        done = os.pwrite(fd, view, position)
        position += done
        view = view[done:]


def _read_partial_block(fd: int, size: int, writers: DirectWriters) -> bytes:
    """The bytes of the file's last, partial block (``size % BLOCK`` of them), read with an aligned read."""
    wanted = size % BLOCK
    if not wanted:
        return b""
    buffer = writers.take()
    try:
        with memoryview(buffer) as view:
            got = os.preadv(fd, [view[:BLOCK]], size - wanted)
            data = bytes(view[: min(got, wanted)])
    finally:
        writers.give_back(buffer)
    if len(data) != wanted:
        raise OSError(errno.EIO, f"the staging file's last block has {len(data)} of its {wanted} bytes")
    return data
