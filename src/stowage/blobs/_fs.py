"""Small file-system steps the local store and its staging share: durable directory entries, quiet
closes and unlinks, and the fingerprint that tells whether a file changed since it was verified."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

BLOB_MODE = 0o444
TEMP_MODE = 0o600
VERIFY_CHUNK = 1024 * 1024

Fingerprint = tuple[int, int, int, int]


def fingerprint(st: os.stat_result) -> Fingerprint:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class VerifiedFiles:
    """Fingerprints of blob files whose content this process has checked, least recently used out first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, Fingerprint] = OrderedDict()
        self._lock = threading.Lock()  # writer threads and the event loop both record

    def matches(self, sha256: str, fingerprint: Fingerprint) -> bool:
        with self._lock:
            if self._entries.get(sha256) != fingerprint:
                return False
            self._entries.move_to_end(sha256)
            return True

    def record(self, sha256: str, fingerprint: Fingerprint) -> None:
        with self._lock:
            self._entries[sha256] = fingerprint
            self._entries.move_to_end(sha256)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def forget(self, sha256: str) -> None:
        with self._lock:
            self._entries.pop(sha256, None)
