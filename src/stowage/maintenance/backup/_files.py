"""File steps of backup and restore: streaming copies that hash as they go, then fsync and rename.

Every copy reads and writes in chunks (constant memory whatever the size), lands under a temporary
name and is renamed into place only after an fsync, so an interrupted backup or restore never leaves
a complete-looking file with partial content.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1024 * 1024


def blob_relpath(sha256: str) -> str:
    """The blob's path below ``blobs/``, as the local store lays it out."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def hash_file(path: Path) -> tuple[str, int]:
    """The SHA-256 and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_hashed(source: Path, target: Path, *, mode: int = 0o644) -> tuple[str, int]:
    """Copy ``source`` to ``target`` (fsynced, atomically renamed); return the SHA-256 and size of what was copied.

    The target's folders are created. The caller compares the hash with what it expects and deletes
    the target if it differs (the copy itself does not know what to expect).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial")
    digest = hashlib.sha256()
    size = 0
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with source.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    temporary.replace(target)
    return digest.hexdigest(), size


def fsync_tree(root: Path) -> None:
    """fsync every folder below ``root`` (and itself), so the renames in them are durable."""
    for folder, _dirs, _files in os.walk(root):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_empty_dir(path: Path) -> bool:
    """True when ``path`` does not exist or is a folder with nothing in it."""
    if not path.exists():
        return True
    return path.is_dir() and not any(path.iterdir())
