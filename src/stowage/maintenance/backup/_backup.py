"""``stowage backup DEST``: database snapshot first, then the blobs it references, then the manifest.

The order is what makes a backup taken while the server runs consistent. The write path publishes a
blob file before the transaction that records it, and files are immutable and named by their hash,
so every blob row in the snapshot already has its file when the snapshot is taken; copying the files
afterwards finds them all (gc removes a file only after its row is gone and the grace period has
passed: a row removed after the snapshot is the one race, reported). Uploads that commit after the
snapshot are simply not in the backup. The manifest is written last: a folder without one is an
interrupted backup.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from stowage import __version__
from stowage.config import SECRET_FILE_NAME, Settings
from stowage.maintenance.backup import _files, _postgres, _sqlite
from stowage.maintenance.backup._manifest import (
    BLOB_LIST,
    BLOBS,
    FORMAT,
    POSTGRES_FILE,
    SECRET,
    SQLITE_FILE,
    BackupError,
    BlobsEntry,
    DatabaseEntry,
    FileEntry,
    Manifest,
    write_manifest,
)


class Progress(Protocol):
    """Where long jobs report (the CLI draws a bar on a terminal)."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, amount: int = 1) -> None: ...


async def backup(settings: Settings, destination: Path, progress: Progress) -> Manifest:
    """Back up the installation described by ``settings`` into ``destination`` (new or empty)."""
    destination, data_dir = await asyncio.to_thread(_prepare, settings, destination)

    progress.start("backup: database", None)
    database = await _snapshot_database(settings, destination)
    store = blob_store_kind(settings)
    count, total = _count(destination / BLOB_LIST)
    collected = 0
    if store == "local":
        progress.start("backup: blobs", count)
        collected = await asyncio.to_thread(_copy_blobs, data_dir, destination, progress)
    else:
        count = total = 0  # the objects stay in the store (its versioning and replication keep them)
    secret = await asyncio.to_thread(_copy_secret, settings, data_dir, destination)
    blob_list = await asyncio.to_thread(_entry, destination, BLOB_LIST)
    manifest = Manifest(
        format=FORMAT,
        stowage_version=__version__,
        created_at=datetime.now(UTC),
        database=database,
        blobs=BlobsEntry(count=count - collected, bytes=total, list=blob_list, store=store),
        secret=secret,
        blobs_collected_meanwhile=collected,
    )
    await asyncio.to_thread(_files.fsync_tree, destination)
    await asyncio.to_thread(write_manifest, destination, manifest)
    return manifest


def blob_store_kind(settings: Settings) -> str:
    """Which blob store the settings choose ("local" when the release has no choice)."""
    return str(getattr(settings, "blob_store", "local"))


def _prepare(settings: Settings, destination: Path) -> tuple[Path, Path]:
    """Resolve and create the destination, refusing a non-empty one or one inside the data folder."""
    destination = destination.resolve()
    data_dir = settings.data_dir.resolve()
    if not _files.is_empty_dir(destination):
        raise BackupError(f"{destination} is not empty: back up into a new or empty folder")
    if destination == data_dir or data_dir in destination.parents:
        raise BackupError(f"{destination} is inside the data folder {data_dir}: choose a folder outside it")
    destination.mkdir(parents=True, exist_ok=True)
    return destination, data_dir


async def _snapshot_database(settings: Settings, destination: Path) -> DatabaseEntry:
    url = settings.effective_database_url
    with (destination / BLOB_LIST).open("w", encoding="ascii") as blob_list:
        if settings.is_sqlite:
            source = _sqlite.sqlite_path(url)
            target = destination / SQLITE_FILE
            await asyncio.to_thread(_sqlite.snapshot, source, target)
            revision = await asyncio.to_thread(_sqlite.revision, target)
            await asyncio.to_thread(_sqlite.write_blob_list, target, blob_list)
            return DatabaseEntry(
                engine="sqlite", file=await asyncio.to_thread(_entry, destination, SQLITE_FILE), revision=revision
            )
        target = destination / POSTGRES_FILE
        dumped = await _postgres.dump(url, settings.database_schema, target, blob_list)
    return DatabaseEntry(
        engine="postgresql",
        file=await asyncio.to_thread(_entry, destination, POSTGRES_FILE),
        revision=dumped.revision,
        schema=settings.database_schema,
        extensions=dumped.extensions,
    )


def _entry(folder: Path, relative: str) -> FileEntry:
    sha, size = _files.hash_file(folder / relative)
    return FileEntry(path=relative, sha256=sha, size=size)


def _count(blob_list: Path) -> tuple[int, int]:
    count = total = 0
    with blob_list.open(encoding="ascii") as lines:
        for line in lines:
            count += 1
            total += int(line.split()[1])
    return count, total


def _copy_blobs(data_dir: Path, destination: Path, progress: Progress) -> int:
    """Copy every listed blob, checking its hash; return how many unreferenced ones had vanished."""
    vanished = 0
    with (destination / BLOB_LIST).open(encoding="ascii") as lines:
        for line in lines:
            sha, size, referenced = line.split()
            relative = _files.blob_relpath(sha)
            source = data_dir / "blobs" / relative
            target = destination / BLOBS / relative
            try:
                copied, length = _files.copy_hashed(source, target, mode=0o444)
            except FileNotFoundError:
                if referenced == "1":
                    raise BackupError(
                        f"blob {sha} vanished while the backup ran although the snapshot references it "
                        "(collected by gc meanwhile?): run the backup again"
                    ) from None
                vanished += 1
                continue
            if copied != sha or length != int(size):
                target.unlink(missing_ok=True)
                raise BackupError(
                    f"blob {sha} is corrupt in the data folder (hashes to {copied}, {length} bytes): "
                    "run `stowage fsck`, repair it, then back up again"
                )
            progress.advance()
    return vanished


def _copy_secret(settings: Settings, data_dir: Path, destination: Path) -> FileEntry | None:
    """The signing secret from the data folder; None when the settings provide it (back those up yourself)."""
    source = data_dir / SECRET_FILE_NAME
    if settings.secret_key is not None or not source.is_file():
        return None
    _files.copy_hashed(source, destination / SECRET, mode=0o600)
    return _entry(destination, SECRET)
