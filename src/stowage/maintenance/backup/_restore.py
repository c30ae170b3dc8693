"""``stowage restore SRC``: verify a backup and lay it into an empty installation.

Only an empty data folder (and, on PostgreSQL, an empty database or schema) is accepted: a restore
never merges into or overwrites a live installation. Every file is checked against the manifest
before or while it is copied: the database and secret by the manifest's hashes, each blob by its name.
The database goes in last, so a restore that fails half-way leaves blobs but no database: empty the
folder and run it again. A snapshot from an older release is brought up to date by ``stowage migrate``
(or ``serve``'s automatic migration); one from a newer release is refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util import CommandError

from stowage.config import SECRET_FILE_NAME, Settings
from stowage.db.migrate import alembic_config
from stowage.maintenance.backup import _files, _postgres, _sqlite
from stowage.maintenance.backup._backup import Progress, blob_store_kind
from stowage.maintenance.backup._manifest import BLOB_LIST, BLOBS, BackupError, FileEntry, Manifest, read_manifest


async def restore(settings: Settings, source: Path, progress: Progress) -> Manifest:
    """Restore the backup in ``source`` into the (empty) installation ``settings`` describe."""
    source = await asyncio.to_thread(source.resolve)
    manifest = await asyncio.to_thread(read_manifest, source)
    _check_revision(manifest.database.revision)
    engine = "sqlite" if settings.is_sqlite else "postgresql"
    if manifest.database.engine != engine:
        raise BackupError(
            f"the backup holds a {manifest.database.engine} database but the settings name {engine}: "
            "restore onto the same engine (moving between engines is not supported)"
        )
    if engine == "postgresql" and manifest.database.schema != settings.database_schema:
        # A dump of one schema recreates that schema by name: it would land beside the configured one.
        raise BackupError(
            f"the backup holds the schema {manifest.database.schema or '(whole database)'} but the settings "
            f"name {settings.database_schema or '(none: the whole database)'}: restore with the same database_schema"
        )
    if manifest.blobs.store != blob_store_kind(settings):
        raise BackupError(
            f"the backup's blobs are in the {manifest.blobs.store} store but the settings choose "
            f"{blob_store_kind(settings)}: point the installation at the same kind of store"
        )
    data_dir = await asyncio.to_thread(settings.data_dir.resolve)
    if not await asyncio.to_thread(_files.is_empty_dir, data_dir):
        raise BackupError(f"the data folder {data_dir} is not empty: restore only into an empty one")
    url = settings.effective_database_url
    if settings.is_sqlite:
        await asyncio.to_thread(_sqlite.check_empty_target, _sqlite.sqlite_path(url))
    else:
        await _postgres.prepare_target(url, settings.database_schema, manifest.database.extensions)

    progress.start("restore: checking", None)
    await asyncio.to_thread(_verify, source, manifest.database.file)
    await asyncio.to_thread(_verify, source, manifest.blobs.list)
    if manifest.secret is not None:
        await asyncio.to_thread(_verify, source, manifest.secret)
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)

    if manifest.blobs.store == "local":
        progress.start("restore: blobs", manifest.blobs.count)
        await asyncio.to_thread(_copy_blobs, source, data_dir, progress)
    if manifest.secret is not None and settings.secret_key is None:
        await asyncio.to_thread(
            _files.copy_hashed, source / manifest.secret.path, data_dir / SECRET_FILE_NAME, mode=0o600
        )

    progress.start("restore: database", None)
    database_file = source / manifest.database.file.path
    if settings.is_sqlite:
        target = _sqlite.sqlite_path(url)
        copied, _size = await asyncio.to_thread(_files.copy_hashed, database_file, target, mode=0o600)
        if copied != manifest.database.file.sha256:
            target.unlink(missing_ok=True)
            raise BackupError(f"{database_file} changed while it was restored: run the restore again")
    else:
        await _postgres.restore(url, database_file)
    await asyncio.to_thread(_files.fsync_tree, data_dir)
    return manifest


def _check_revision(revision: str | None) -> None:
    if revision is None:
        return
    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        known = scripts.get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise BackupError(
            f"the backup's database is at revision {revision}, which this release does not know: "
            "restore it with the release that made it (or a newer one)"
        )


def _verify(folder: Path, entry: FileEntry) -> None:
    path = folder / entry.path
    try:
        sha, size = _files.hash_file(path)
    except FileNotFoundError:
        raise BackupError(f"{path} is missing from the backup") from None
    if (sha, size) != (entry.sha256, entry.size):
        raise BackupError(f"{path} does not match the manifest (sha256 {sha}, {size} bytes): the backup is damaged")


def _copy_blobs(source: Path, data_dir: Path, progress: Progress) -> None:
    with (source / BLOB_LIST).open(encoding="ascii") as lines:
        for line in lines:
            sha, size, referenced = line.split()
            relative = _files.blob_relpath(sha)
            origin = source / BLOBS / relative
            target = data_dir / "blobs" / relative
            if not origin.exists() and referenced == "0":
                continue  # collected by gc while the backup ran (counted in the manifest)
            try:
                copied, length = _files.copy_hashed(origin, target)
            except FileNotFoundError:
                raise BackupError(f"blob {sha} is missing from the backup: the backup is damaged") from None
            if (copied, length) != (sha, int(size)):
                target.unlink(missing_ok=True)
                raise BackupError(
                    f"blob {sha} in the backup is damaged (hashes to {copied}, {length} bytes): "
                    "nothing of it was kept; restore from another backup"
                )
            progress.advance()
