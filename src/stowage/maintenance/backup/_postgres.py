"""PostgreSQL: ``pg_dump`` of one snapshot shared with our own listing of blobs, and ``pg_restore``.

The backup opens a repeatable-read transaction, exports its snapshot (``pg_export_snapshot``) and
runs ``pg_dump --snapshot`` with it, so the dump and the blob list read in that same transaction
describe one instant while the server keeps writing. ``pg_dump`` and ``pg_restore`` come from the
PostgreSQL client package (``postgresql-client`` on Debian); the password is passed in ``PGPASSWORD``,
never on the command line.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import NamedTuple, TextIO

import asyncpg
from sqlalchemy.engine import make_url

from stowage.maintenance.backup._manifest import BLOB_QUERY, BackupError


def libpq_target(database_url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password (for the command line) and the environment carrying it."""
    url = make_url(database_url).set(drivername="postgresql")
    env = {"PGPASSWORD": url.password} if url.password else {}
    return url.set(password=None).render_as_string(hide_password=False), env


def _dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not on PATH: install the PostgreSQL client tools (Debian: postgresql-client)")
    return found


def _table(schema: str | None, name: str) -> str:
    return f'"{schema}"."{name}"' if schema else name


async def _run(command: list[str], env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    if process.returncode != 0:
        detail = err.decode(errors="replace").strip()
        raise BackupError(f"{Path(command[0]).name} failed (exit {process.returncode}): {detail}")


class Dumped(NamedTuple):
    revision: str | None  # the snapshot's Alembic revision
    extensions: list[tuple[str, str]]  # (name, schema) of each extension but the built-in plpgsql


async def dump(database_url: str, schema: str | None, target: Path, blob_list: TextIO) -> Dumped:
    """Dump the database (custom format) and list its blobs (``BLOB_QUERY``), both from one snapshot."""
    pg_dump = _tool("pg_dump")
    target.parent.mkdir(parents=True, exist_ok=True)
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            snapshot_id = await connection.fetchval("SELECT pg_export_snapshot()")
            url, env = libpq_target(database_url)
            command = [pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot_id}"]
            if schema:
                command.append(f"--schema={schema}")
            await _run([*command, f"--file={target}", f"--dbname={url}"], env)
            revision = await connection.fetchval(f"SELECT version_num FROM {_table(schema, 'alembic_version')}")  # noqa: S608 - schema from settings, quoted
            extensions = await connection.fetch(
                "SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                "WHERE e.extname <> 'plpgsql' ORDER BY e.extname"
            )
            query = BLOB_QUERY.format(blobs=_table(schema, "blobs"), versions=_table(schema, "versions"))
            async for sha, size, referenced in connection.cursor(query, prefetch=1000):
                blob_list.write(f"{sha} {size} {int(bool(referenced))}\n")
    finally:
        await connection.close()
    return Dumped(None if revision is None else str(revision), [(str(n), str(s)) for n, s in extensions])


async def prepare_target(database_url: str, schema: str | None, extensions: list[tuple[str, str]]) -> None:
    """Refuse a database (or schema) that already holds tables; drop the named schema if it is empty.

    A dump of one schema creates that schema itself, so an existing empty one is removed first, and
    leaves out the database's extensions, which are created here (that needs a privileged role).
    """
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        tables = await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema or "public")
        if tables:
            where = f"schema {schema!r}" if schema else "the database"
            raise BackupError(f"{where} already holds {tables} tables: restore only into an empty database")
        if schema:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}"')
            for name, where in extensions:
                try:
                    await connection.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}" SCHEMA "{where}"')
                except asyncpg.PostgresError as exc:
                    raise BackupError(f"cannot create the extension {name} the backup needs: {exc}") from exc
    finally:
        await connection.close()


async def restore(database_url: str, source: Path) -> None:
    """Load a custom-format dump in one transaction; any error leaves the database as it was."""
    pg_restore = _tool("pg_restore")
    url, env = libpq_target(database_url)
    command = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    await _run([*command, f"--dbname={url}", str(source)], env)
