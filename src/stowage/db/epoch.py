"""A counter that every process of one installation on this machine reads from shared memory.

The principal cache (``accounts.services.credential_cache``) keeps a credential's check for a moment
instead of asking the database on every request; any change that can revoke a credential bumps this
counter after its commit, and every worker sees the new value on its next request — a read of eight
bytes from a memory-mapped file in ``data_dir/run``, no system call. Workers on other machines (a
shared PostgreSQL) cannot see it; for them the cache's lifetime bounds how long a revoked
credential can last.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_COUNTER = struct.Struct("<Q")


class SharedEpoch:
    """The counter in ``path`` (created on first use, in each process, so forked workers map it themselves)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._pid = 0

    def _mapping(self) -> mmap.mmap:
        if self._map is not None and self._pid == os.getpid():
            return self._map
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < _COUNTER.size:
            with _locked(fd):
                if os.fstat(fd).st_size < _COUNTER.size:
                    os.ftruncate(fd, _COUNTER.size)
        self._fd, self._map, self._pid = fd, mmap.mmap(fd, _COUNTER.size), os.getpid()
        return self._map

    def value(self) -> int:
        """The current count (a plain memory read once mapped)."""
        count: int = _COUNTER.unpack_from(self._mapping())[0]
        return count

    def bump(self) -> None:
        """Add one, atomically across processes (an advisory lock around read-increment-write)."""
        mapping = self._mapping()
        assert self._fd is not None
        with _locked(self._fd):
            _COUNTER.pack_into(mapping, 0, (_COUNTER.unpack_from(mapping)[0] + 1) % 2**64)

    def close(self) -> None:
        if self._map is not None and self._pid == os.getpid():
            self._map.close()
            if self._fd is not None:
                os.close(self._fd)
        self._map, self._fd = None, None


class _locked:  # noqa: N801 - used like a function: ``with _locked(fd):``
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
