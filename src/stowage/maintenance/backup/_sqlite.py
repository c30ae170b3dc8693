"""SQLite: a consistent copy with the online backup API while the server writes, and its restore.

``sqlite3.Connection.backup`` with all pages in one step holds one read transaction for the copy: in
WAL mode (the server's mode) writers carry on meanwhile and the copy is the database as of the
moment that transaction began, with every committed upload before it and none after.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from stowage.maintenance.backup._manifest import BLOB_QUERY, BackupError


def sqlite_path(database_url: str) -> Path:
    """The database file named by a ``sqlite+…:///path`` URL."""
    _scheme, _sep, rest = database_url.partition(":///")
    if not rest or rest.startswith(":memory:"):
        raise BackupError(f"cannot back up the SQLite database {database_url!r}: it is not a file")
    return Path(rest.split("?", 1)[0])


def snapshot(source: Path, target: Path) -> None:
    """Copy the live database at ``source`` into a new file ``target`` (online backup API)."""
    if not source.is_file():
        raise BackupError(f"no database at {source}: nothing to back up (run `stowage migrate` first?)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)) as live,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        live.backup(copy)  # pages=-1: every page in one step, one read snapshot
        # A self-contained file: no -wal beside it, so copying or hashing it alone is enough.
        copy.execute("PRAGMA journal_mode=DELETE")


@contextlib.contextmanager
def _open_read_only(path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as connection:
        yield connection


def revision(path: Path) -> str | None:
    """The Alembic revision recorded in the database file (None before the first migration)."""
    with _open_read_only(path) as connection:
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            return None
    return None if row is None else str(row[0])


def write_blob_list(path: Path, out: TextIO) -> tuple[int, int]:
    """Write ``sha256 size referenced`` for each blob row of the snapshot to ``out``; return the count and bytes."""
    count = total = 0
    with _open_read_only(path) as connection:
        for sha, size, referenced in connection.execute(BLOB_QUERY.format(blobs="blobs", versions="versions")):
            out.write(f"{sha} {size} {int(bool(referenced))}\n")
            count += 1
            total += int(size)
    return count, total


def check_empty_target(target: Path) -> None:
    if target.exists():
        raise BackupError(f"{target} already exists: restore only into an empty installation")
