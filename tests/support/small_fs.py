"""A real, small filesystem for testing what happens when the disk is full.

``small_tmpfs(path, size_bytes)`` mounts a tmpfs of that size at ``path`` and always unmounts it
afterwards. Mounting needs root (CAP_SYS_ADMIN); when it is not possible the context manager raises
:class:`CannotMount` with the reason, which the caller turns into a skip — or a failure under
``STOWAGE_REQUIRE_SERVICES=1`` (``conftest.require_capability``). ``fill`` then writes a ballast file
until only the requested room is left, so a test controls exactly what no longer fits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

BALLAST_NAME = "ballast.bin"
_CHUNK = 1024 * 1024


class CannotMount(Exception):
    """Why this process cannot mount a filesystem here (not root, no mount command, refused)."""


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)


@contextlib.contextmanager
def small_tmpfs(path: Path, size_bytes: int, *, inodes: int | None = None) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` (and at most ``inodes`` files) at ``path``; unmount on exit."""
    if os.geteuid() != 0:
        raise CannotMount("mounting a filesystem needs root, and the tests are not running as root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        raise CannotMount("the mount and umount commands are not installed")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes},mode=0755" + (f",nr_inodes={inodes}" if inodes is not None else "")
    mounted = _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path))
    if mounted.returncode != 0:
        first_line = mounted.stderr.strip().splitlines()[0] if mounted.stderr.strip() else f"exit {mounted.returncode}"
        raise CannotMount(f"mount -t tmpfs failed: {first_line}")
    try:
        yield path
    finally:
        if _run("umount", str(path)).returncode != 0:
            _run("umount", "--lazy", str(path))  # something still holds a file open: detach it anyway


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(path: Path, *, leave: int = 0) -> Path:
    """Write a ballast file into the filesystem of ``path`` until at most ``leave`` bytes are free.

    With ``leave=0`` the ballast grows until the filesystem itself says ENOSPC, down to the last
    byte of its last block, so nothing that needs a new block fits any more.
    """
    ballast = path / BALLAST_NAME
    with ballast.open("ab", buffering=0) as handle:
        while (room := free_bytes(path) - leave) > 0:
            try:
                handle.write(b"\0" * min(room, _CHUNK))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        if leave == 0:
            for size in (4096, 512, 1):  # top up the partly used last block
                with contextlib.suppress(OSError):
                    while True:
                        handle.write(b"\0" * size)
    return ballast
