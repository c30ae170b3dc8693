"""The backup folder's layout and its manifest: what was copied, from which release, with which hashes.

A backup is a plain folder, readable without Stowage::

    manifest.json   this manifest (format, versions, engine, the hash of every file below)
    database/       stowage.db (SQLite, made with the online backup API) or stowage.dump (pg_dump -Fc)
    secret.key      the signing secret from the data folder (absent when it is set in the settings)
    blobs.txt       one line per blob row: sha256, size, 1 if a version references it (else 0)
    blobs/ab/cd/<sha256>  the content-addressed blob files, as in the data folder
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec

FORMAT = "stowage-backup/1"
MANIFEST = "manifest.json"
BLOB_LIST = "blobs.txt"
BLOBS = "blobs"
SECRET = "secret.key"  # noqa: S105 - a file name
SQLITE_FILE = "database/stowage.db"
POSTGRES_FILE = "database/stowage.dump"

# Every blob row of the snapshot, and whether a version references it (the same text on both engines).
BLOB_QUERY = (
    "SELECT b.sha256, b.size, EXISTS (SELECT 1 FROM {versions} v WHERE v.sha256 = b.sha256) "
    "FROM {blobs} b ORDER BY b.sha256"
)


class BackupError(Exception):
    """The backup or restore cannot go on; the message says why and what to do."""


class FileEntry(msgspec.Struct, frozen=True):
    path: str  # relative to the backup folder
    sha256: str
    size: int


class DatabaseEntry(msgspec.Struct, frozen=True):
    engine: Literal["sqlite", "postgresql"]
    file: FileEntry
    revision: str | None  # the Alembic revision of the snapshot
    schema: str | None = None  # PostgreSQL: the schema that was dumped (None: the whole database)
    # PostgreSQL: extensions (name, schema) the database had; a dump of one schema leaves them out
    # (``pg_trgm`` lives in ``public``), so the restore creates them first.
    extensions: list[tuple[str, str]] = msgspec.field(default_factory=list)


class BlobsEntry(msgspec.Struct, frozen=True):
    count: int  # blob files in the backup (0 when the blobs stay in an object store)
    bytes: int
    list: FileEntry  # blobs.txt
    # "local": the files are in blobs/; any other store (s3) keeps them itself and blobs/ is empty.
    store: str = "local"


class Manifest(msgspec.Struct, frozen=True):
    format: str
    stowage_version: str
    created_at: datetime
    database: DatabaseEntry
    blobs: BlobsEntry
    secret: FileEntry | None
    # Unreferenced blob rows whose files were collected by gc while the backup ran: not copied
    # (``stowage gc`` after a restore drops their rows).
    blobs_collected_meanwhile: int = 0


def write_manifest(folder: Path, manifest: Manifest) -> None:
    path = folder / MANIFEST
    path.write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n")


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        manifest = msgspec.json.decode(path.read_bytes(), type=Manifest)
    except FileNotFoundError as exc:
        raise BackupError(f"{folder} is not a Stowage backup: {MANIFEST} is missing") from exc
    except msgspec.ValidationError as exc:
        raise BackupError(f"{path} is not a valid manifest: {exc}") from exc
    if manifest.format != FORMAT:
        raise BackupError(f"{path}: unknown backup format {manifest.format!r} (this release reads {FORMAT})")
    return manifest
