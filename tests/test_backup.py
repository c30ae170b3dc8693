"""``stowage backup`` and ``stowage restore``, run as real processes against real servers.

The round trip: a server on SQLite or PostgreSQL holds files (in folders, some sharing content);
uploads keep running while ``stowage backup`` copies the installation; the backup is restored into
an empty data folder (on PostgreSQL an empty database), a second server is started on it, and every
file it lists is downloaded and its hash compared with what was uploaded. Every file acknowledged
before the backup began must be there; files uploaded during the backup may or may not be, but
whatever is there must be intact. Then the refusals: a non-empty target, a damaged backup, no
``--yes`` off a terminal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from accounts_helpers import auth, login, signup
from conftest import POSTGRES_URL, require_postgres, require_tool
from files_helpers import ROOT, Account, child_path, children, node_path
from support.server import ServerProcess, clean_environ, run_stowage, running_server, stowage_command, wait_until

pytestmark = pytest.mark.slow
PASSWORD = "backup round trip, correct horse"


def stowage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_stowage(env, *args, timeout=300)


async def astowage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(stowage, env, *args)


def content(label: str, size: int) -> bytes:
    """Deterministic bytes of ``size`` that differ per label."""
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@asynccontextmanager
async def empty_database(backend: str, settings_env: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    """Database settings for the restore target: a new empty database on PostgreSQL, SQLite's default otherwise."""
    if backend == "sqlite":
        yield {}
        return
    name = f"restore_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(POSTGRES_URL)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    try:
        yield {"STOWAGE_DATABASE_URL": url, "STOWAGE_DATABASE_SCHEMA": settings_env["STOWAGE_DATABASE_SCHEMA"]}
    finally:
        admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def put(client: httpx.AsyncClient, token: str, folder_id: str, name: str, body: bytes) -> None:
    response = await client.put(child_path(folder_id, name), content=body, headers=auth(token))
    assert response.status_code == 201, response.text


async def every_file(client: httpx.AsyncClient, token: str) -> dict[str, tuple[str, str]]:
    """Path -> (ETag's hash, hash of the downloaded bytes) for every live file of the account."""
    root = (await client.get(ROOT, headers=auth(token))).json()["id"]
    account = Account(email="", user_id="", token=token, root_id=root)
    found: dict[str, tuple[str, str]] = {}
    pending = [(root, "")]
    while pending:
        folder_id, prefix = pending.pop()
        for item in await children(client, account, folder_id):
            path = f"{prefix}/{item['name']}"
            if item["kind"] == "folder":
                pending.append((item["id"], path))
                continue
            digest = hashlib.sha256()
            async with client.stream("GET", node_path(item["id"], "/content"), headers=auth(token)) as response:
                assert response.status_code == 200, path
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
            found[path] = (item["etag"].strip('"'), digest.hexdigest())
    return found


async def test_backup_while_uploading_then_restore_into_an_empty_installation(
    backend: str, settings_env: dict[str, str], tmp_path: Path
) -> None:
    if backend == "postgresql":
        require_tool("pg_dump", package="postgresql-client")
        require_tool("pg_restore", package="postgresql-client")
    source = ServerProcess(tmp_path / "source", env=settings_env)
    await source.start()
    expected: dict[str, bytes] = {}
    during: dict[str, bytes] = {}
    try:
        async with httpx.AsyncClient(base_url=source.base_url, timeout=60) as client:
            token = (await signup(client, "owner@example.com", PASSWORD))["access_token"]
            root = (await client.get(ROOT, headers=auth(token))).json()["id"]
            made = await client.post(node_path(root, "/folders"), json={"name": "Photos 2026"}, headers=auth(token))
            assert made.status_code == 201, made.text
            folder = made.json()["id"]
            for index, size in enumerate([0, 1, 1000, 65_536, 1_000_003, 4 * 1024 * 1024]):
                body = content(f"file {index}", size)
                expected[f"/file {index}.bin"] = body
                await put(client, token, root, f"file {index}.bin", body)
                expected[f"/Photos 2026/copy {index}.bin"] = body  # the same content twice: one blob
                await put(client, token, folder, f"copy {index}.bin", body)

            stop = asyncio.Event()

            async def keep_uploading() -> None:
                index = 0
                while not stop.is_set():
                    body = content(f"during {index}", 200_000 + index)
                    await put(client, token, folder, f"during {index}.bin", body)
                    during[f"/Photos 2026/during {index}.bin"] = body
                    index += 1

            uploader = asyncio.create_task(keep_uploading())
            await wait_until(lambda: len(during) >= 2)  # uploads are under way when the backup starts
            backup = await astowage(settings_env, "backup", str(tmp_path / "backup"), "--json")
            at_end = len(during)
            await wait_until(lambda: len(during) >= at_end + 2, within=30)  # and still going when it ends
            stop.set()
            await uploader
    finally:
        await source.stop()
    assert backup.returncode == 0, backup.stderr
    manifest = json.loads(backup.stdout)
    assert manifest == json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["database"]["engine"] == backend
    assert manifest["secret"] is not None
    assert (tmp_path / "backup" / "secret.key").read_text() == (
        Path(settings_env["STOWAGE_DATA_DIR"]) / "secret.key"
    ).read_text()

    async with empty_database(backend, settings_env) as database_env:
        target_env = {"STOWAGE_DATA_DIR": str(tmp_path / "restored" / "data"), **database_env}
        if backend == "postgresql":  # a dump of one schema only restores under that schema's name
            other = {**target_env, "STOWAGE_DATABASE_SCHEMA": "another_schema"}
            refused = await astowage(other, "restore", str(tmp_path / "backup"), "--yes")
            assert refused.returncode == 1
            assert "restore with the same database_schema" in refused.stderr
        restored = await astowage(target_env, "restore", str(tmp_path / "backup"), "--yes")
        assert restored.returncode == 0, restored.stderr
        assert "every hash verified" in restored.stdout

        target = ServerProcess(tmp_path / "restored", env=target_env)
        await target.start()
        try:
            async with httpx.AsyncClient(base_url=target.base_url, timeout=60) as client:
                token = (await login(client, "owner@example.com", PASSWORD))["access_token"]
                files = await every_file(client, token)
        finally:
            await target.stop()

    for path, (etag_hash, downloaded_hash) in files.items():
        body = expected.get(path, during.get(path))
        assert body is not None, f"{path} was never uploaded"
        assert etag_hash == downloaded_hash == hashlib.sha256(body).hexdigest(), path
    assert set(expected) <= set(files), "a file acknowledged before the backup is missing"
    assert len(files) < len(expected) + len(during), "files uploaded after the backup ended are in it"
    in_snapshot = [expected[p] for p in expected] + [during[p] for p in files if p in during]
    assert manifest["blobs"]["count"] == len({hashlib.sha256(body).hexdigest() for body in in_snapshot})


@pytest.fixture
def sqlite_backup(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A small SQLite installation with one user and one file, and its backup."""
    env = {"STOWAGE_DATA_DIR": str(tmp_path / "data")}

    async def fill() -> None:
        async with (
            running_server(tmp_path / "server", env) as server,
            httpx.AsyncClient(base_url=server.base_url) as client,
        ):
            token = (await signup(client, "owner@example.com", PASSWORD))["access_token"]
            root = (await client.get(ROOT, headers=auth(token))).json()["id"]
            await put(client, token, root, "a.bin", content("a", 5000))

    asyncio.run(fill())
    result = stowage(env, "backup", str(tmp_path / "backup"))
    assert result.returncode == 0, result.stderr
    return env, tmp_path / "backup"


def test_restore_refuses_a_non_empty_data_folder(sqlite_backup: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    _env, backup = sqlite_backup
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("someone's data")

    result = stowage({"STOWAGE_DATA_DIR": str(target)}, "restore", str(backup), "--yes")

    assert result.returncode == 1
    assert "is not empty" in result.stderr
    assert "stowage: restore failed:" in result.stderr
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_backup_refuses_a_non_empty_destination_and_writes_nothing(
    sqlite_backup: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _backup = sqlite_backup
    destination = tmp_path / "occupied"
    destination.mkdir()
    (destination / "other.txt").write_text("not a backup")

    result = stowage(env, "backup", str(destination))

    assert result.returncode == 1
    assert result.stderr.startswith(f"stowage: backup failed: {destination} is not empty")
    assert [p.name for p in destination.iterdir()] == ["other.txt"]


def test_restore_refuses_a_damaged_backup(sqlite_backup: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    _env, backup = sqlite_backup
    blob = next(p for p in (backup / "blobs").rglob("*") if p.is_file())
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[10] ^= 0xFF
    blob.write_bytes(bytes(data))
    target = tmp_path / "fresh"

    result = stowage({"STOWAGE_DATA_DIR": str(target)}, "restore", str(backup), "--yes")

    assert result.returncode == 1
    assert f"blob {blob.name} in the backup is damaged" in result.stderr
    assert not (target / "stowage.db").exists()  # the database goes in last: none after a failure


def test_restore_without_yes_off_a_terminal_changes_nothing(
    sqlite_backup: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    _env, backup = sqlite_backup
    target = tmp_path / "fresh"

    result = stowage({"STOWAGE_DATA_DIR": str(target)}, "restore", str(backup))

    assert result.returncode == 2
    assert "pass --yes" in result.stderr
    assert not target.exists()


def test_backup_refuses_a_non_empty_destination(sqlite_backup: tuple[dict[str, str], Path]) -> None:
    env, backup = sqlite_backup
    before = sorted(str(p) for p in backup.rglob("*"))

    result = stowage(env, "backup", str(backup))

    assert result.returncode == 1
    assert "is not empty" in result.stderr
    assert sorted(str(p) for p in backup.rglob("*")) == before


def test_manifest_hashes_match_the_files(sqlite_backup: tuple[dict[str, str], Path]) -> None:
    _env, backup = sqlite_backup
    manifest: dict[str, Any] = json.loads((backup / "manifest.json").read_text())
    for entry in (manifest["database"]["file"], manifest["blobs"]["list"], manifest["secret"]):
        data = (backup / entry["path"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry["sha256"], entry["size"])
    listed = (backup / "blobs.txt").read_text().split()
    assert listed[2] == "1"  # referenced by a version
    blob = backup / "blobs" / listed[0][:2] / listed[0][2:4] / listed[0]
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == listed[0]
    assert manifest["stowage_version"]
    assert manifest["database"]["revision"]
    assert (backup / "secret.key").stat().st_mode & 0o077 == 0


async def test_with_the_s3_store_the_backup_holds_the_database_and_secret_and_blobs_stay_in_the_bucket(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    env = {"STOWAGE_DATA_DIR": str(tmp_path / "data"), **s3_env}
    body = content("in the bucket", 300_000)
    async with (
        running_server(tmp_path / "source", env) as server,
        httpx.AsyncClient(base_url=server.base_url) as client,
    ):
        token = (await signup(client, "owner@example.com", PASSWORD))["access_token"]
        root = (await client.get(ROOT, headers=auth(token))).json()["id"]
        await put(client, token, root, "s3.bin", body)

    backup = await astowage(env, "backup", str(tmp_path / "backup"), "--json")

    assert backup.returncode == 0, backup.stderr
    manifest = json.loads(backup.stdout)
    assert manifest["blobs"]["store"] == "s3"
    assert manifest["blobs"]["count"] == 0
    assert not any(p.is_file() for p in (tmp_path / "backup").rglob("blobs/*"))
    assert (tmp_path / "backup" / "blobs.txt").read_text().split()[0] == hashlib.sha256(body).hexdigest()

    local = await astowage({"STOWAGE_DATA_DIR": str(tmp_path / "local")}, "restore", str(tmp_path / "backup"), "--yes")
    assert local.returncode == 1
    assert "the settings choose local" in local.stderr
    assert not (tmp_path / "local").exists()

    target_env = {**env, "STOWAGE_DATA_DIR": str(tmp_path / "restored" / "data")}
    restored = await astowage(target_env, "restore", str(tmp_path / "backup"), "--yes")
    assert restored.returncode == 0, restored.stderr
    async with (
        running_server(tmp_path / "restored", target_env) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=60) as client,
    ):
        token = (await login(client, "owner@example.com", PASSWORD))["access_token"]
        files = await every_file(client, token)
    assert files == {"/s3.bin": (hashlib.sha256(body).hexdigest(), hashlib.sha256(body).hexdigest())}


@asynccontextmanager
async def new_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the test server (the default deployment: no database_schema)."""
    name = f"whole_{secrets.token_hex(5)}"
    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(POSTGRES_URL)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def postgres_tools() -> None:
    """PostgreSQL reachable and its client tools installed (checked outside the test's event loop)."""
    require_postgres()
    require_tool("pg_dump", package="postgresql-client")
    require_tool("pg_restore", package="postgresql-client")


@pytest.mark.usefixtures("postgres_tools")
async def test_postgres_whole_database_round_trip(tmp_path: Path) -> None:
    """Without database_schema the whole database is dumped (extensions included) and restored."""
    async with new_database() as source_url, new_database() as target_url:
        source = {"STOWAGE_DATA_DIR": str(tmp_path / "source"), "STOWAGE_DATABASE_URL": source_url}
        assert (await astowage(source, "migrate")).returncode == 0
        created = await asyncio.to_thread(
            subprocess.run,
            [*stowage_command(), "user", "create", "whole@example.com", "--admin", "--password-stdin"],
            env=clean_environ({**source, "STOWAGE_LOG_LEVEL": "warning"}),
            input=PASSWORD,
            capture_output=True,
            text=True,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        backup = await astowage(source, "backup", str(tmp_path / "backup"), "--json")
        assert backup.returncode == 0, backup.stderr
        assert json.loads(backup.stdout)["database"]["schema"] is None

        target = {"STOWAGE_DATA_DIR": str(tmp_path / "target"), "STOWAGE_DATABASE_URL": target_url}
        restored = await astowage(target, "restore", str(tmp_path / "backup"), "--yes")
        assert restored.returncode == 0, restored.stderr
        again = await astowage(target, "restore", str(tmp_path / "backup"), "--yes")
        listed = await astowage(target, "user", "list", "--json")
        checked = await astowage(target, "migrate", "--check")

    assert again.returncode == 1  # the data folder and the database are no longer empty
    assert "not empty" in again.stderr
    assert [(u["email"], u["role"]) for u in json.loads(listed.stdout)] == [("whole@example.com", "admin")]
    assert checked.returncode == 0, checked.stdout + checked.stderr
