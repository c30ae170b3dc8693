"""Removing blob files from a local store without racing a deduplicating upload (``LocalBlobStore.remove_if_old``,
used by ``fsck``/``gc``).

Blob files are deleted only when older than the grace period, and through a quarantine rename that
closes the race with a deduplicating upload: the write path refreshes the mtime of a blob it is about to
reference again (``LocalBlobStore.already_stored``), so a file that is still old *after* it has been
renamed away cannot be in use by an upload — and one touched in between is put back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

TEMP_PREFIX = "upload-"  # the local store's spool names: quarantined files are swept with them
TEMP_SUFFIX = ".part"


async def remove_if_old(
    path: Path, quarantine_dir: Path, cutoff: float, *, still_unreferenced: Callable[[], Awaitable[bool]]
) -> bool:
    """Delete the blob file at ``path`` if it was last touched at or before ``cutoff`` and, once moved
    aside, ``still_unreferenced()`` says no row names it; True if deleted."""
    moved = await asyncio.to_thread(quarantine, path, quarantine_dir, cutoff)
    if moved is None:
        return False
    if not await still_unreferenced():
        # Recorded meanwhile by an upload that found the file before we moved it: put it back.
        await asyncio.to_thread(restore, moved, path)
        return False
    await asyncio.to_thread(unlink_quietly, moved)
    return True


def file_mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def quarantine(path: Path, directory: Path, cutoff: float) -> Path | None:
    """Rename ``path`` away if it was last modified at or before ``cutoff``; return where it went.

    A deduplicating upload refreshes the blob's mtime before it records a reference. If that happened
    before the rename, the moved file shows it and is put back; if after, the upload no longer finds the
    file and publishes its own copy. Either way no recorded reference is left without its file.
    """
    mtime = file_mtime(path)
    if mtime is None or mtime > cutoff:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    moved = directory / f"{TEMP_PREFIX}fsck-{path.name}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        path.rename(moved)
    except FileNotFoundError:
        return None
    after = file_mtime(moved)
    if after is not None and after > cutoff:
        restore(moved, path)
        return None
    return moved


def restore(moved: Path, path: Path) -> None:
    """Put a quarantined blob back (over an identical copy an upload may have published meanwhile)."""
    with contextlib.suppress(FileNotFoundError):
        moved.replace(path)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def unlink_quietly(path: Path) -> None:
    """Remove the file; one already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
