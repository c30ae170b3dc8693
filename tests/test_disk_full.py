"""A full disk under the data folder: 507 problem+json that says so, nothing half-stored, and service
resumes by itself once there is room again.

The data folder is a real tmpfs of a few MiB mounted for each test (it needs root; without it the
tests skip with the reason, or fail under ``STOWAGE_REQUIRE_SERVICES=1``). A ballast file fills it to
exactly what a test needs. On SQLite the metadata database lives on the same small filesystem.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from accounts_helpers import LOGIN, PASSWORD, SIGNUP, open_client
from conftest import make_settings, require_capability
from files_helpers import (
    assert_problem,
    assert_unchanged,
    download,
    new_account,
    put_raw,
    spool_files,
    storage,
)
from stowage.config import Settings
from stowage.db.engine import Database
from stowage.errors import InsufficientStorage
from support import LogCapture, capture_logs
from support.small_fs import CannotMount, fill, free_bytes, small_tmpfs

SMALL_FS_BYTES = 16 * 1024 * 1024
UPLOAD = bytes(range(256)) * 4096  # 1 MiB
DISK_FULL = "disk is full"


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Iterator[Path]:
    try:
        with small_tmpfs(tmp_path / "small-data", SMALL_FS_BYTES) as mounted:
            yield mounted
    except CannotMount as exc:
        require_capability("a small tmpfs filesystem for the full-disk tests", str(exc))


@pytest.fixture
def small_settings(settings_env: dict[str, str], small_data_dir: Path) -> Settings:
    """The backend under test with its data folder (and, on SQLite, its database) on the small filesystem."""
    return make_settings(settings_env, data_dir=str(small_data_dir))


@pytest.fixture
async def client(small_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(small_settings) as http:
        yield http


@pytest.fixture
def logs(small_settings: Settings) -> Iterator[LogCapture]:
    with capture_logs(small_settings) as capture:
        yield capture


def assert_logged_with_the_data_folder(logs: LogCapture, response: httpx.Response, data_dir: Path) -> None:
    """The operator is told, at error level, which folder's disk is full, under the request's id."""
    events = [e for e in logs.events("insufficient_storage") if e.get("request_id") == response.headers["x-request-id"]]
    assert events, logs.text
    assert events[0]["level"] == "error"
    assert events[0]["path"] == str(data_dir)


def truncate_sqlite_wal(settings: Settings) -> None:
    """Give the write-ahead log back to the filesystem, so the next write must grow it.

    Without this, a log that once grew keeps its size and later writes reuse it: they would still fit
    on a full disk, and the test would not test anything.
    """
    with sqlite3.connect(settings.data_dir / "stowage.db") as connection:
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0, "the checkpoint could not run; the log was not truncated"
    assert (settings.data_dir / "stowage.db-wal").stat().st_size == 0


async def test_an_upload_that_does_not_fit_is_507_and_stores_nothing(
    client: httpx.AsyncClient, small_settings: Settings, logs: LogCapture
) -> None:
    alice = await new_account(client, "alice@example.com")
    ballast = fill(small_settings.data_dir, leave=len(UPLOAD) // 4)
    before = await storage(small_settings)

    refused = await put_raw(client, alice, alice.root_id, "big.bin", UPLOAD)

    body = assert_problem(refused, 507, "insufficient-storage", detail_contains=(DISK_FULL, "nothing was stored"))
    assert str(small_settings.data_dir) not in body["detail"]  # the path is for the log, not the client
    assert_unchanged(before, await storage(small_settings))
    assert spool_files(small_settings) == frozenset()
    assert free_bytes(small_settings.data_dir) >= len(UPLOAD) // 4  # the partial spool gave its space back
    assert_logged_with_the_data_folder(logs, refused, small_settings.data_dir)

    ballast.unlink()
    stored = await put_raw(client, alice, alice.root_id, "big.bin", UPLOAD)

    assert stored.status_code == 201, stored.text
    assert (await download(client, alice, stored.json()["id"])).content == UPLOAD


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_full_disk_under_the_sqlite_database_is_507_not_database_unreachable(
    client: httpx.AsyncClient, small_settings: Settings, logs: LogCapture
) -> None:
    await new_account(client, "alice@example.com")
    truncate_sqlite_wal(small_settings)
    ballast = fill(small_settings.data_dir)
    before = await storage(small_settings)

    signup = await client.post(SIGNUP, json={"email": "bob@example.com", "password": PASSWORD})
    login = await client.post(LOGIN, json={"email": "alice@example.com", "password": PASSWORD})

    for refused in (signup, login):
        body = assert_problem(refused, 507, "insufficient-storage", detail_contains=DISK_FULL)
        assert "unreachable" not in body["detail"]
        assert_logged_with_the_data_folder(logs, refused, small_settings.data_dir)
    assert_unchanged(before, await storage(small_settings))  # no bob, no usage change

    ballast.unlink()

    assert (await client.post(SIGNUP, json={"email": "bob@example.com", "password": PASSWORD})).status_code == 201
    assert (await client.post(LOGIN, json={"email": "alice@example.com", "password": PASSWORD})).status_code == 200


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_postgres_disk_full_is_insufficient_storage(settings: Settings) -> None:
    """PostgreSQL's own disk_full (SQLSTATE 53100), raised by the real server, is not an outage either."""
    database = Database(settings)
    try:
        with pytest.raises(InsufficientStorage) as caught:
            async with database.transaction() as session:
                await session.execute(
                    text("DO $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$")
                )
    finally:
        await database.dispose()

    assert "database server's disk is full" in caught.value.detail
    assert caught.value.path is None  # not our disk: no local folder to point the operator to
