"""Shared fixtures: one parametrised database fixture runs every app test on SQLite and PostgreSQL.

PostgreSQL tests use ``STOWAGE_TEST_POSTGRES_URL`` (default: the local server's ``test`` database)
and a fresh schema per test, built by the real migrations. When the server is unreachable they skip
with the reason — unless ``STOWAGE_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which turns that skip
into a failure so CI can never pass without having run them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from stowage.app import create_app
from stowage.config import Settings, load_settings

POSTGRES_URL = os.environ.get("STOWAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("STOWAGE_REQUIRE_SERVICES") == "1"


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _postgres_reachable() -> str | None:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


_postgres_problem: list[str | None] = []


def postgres_unavailable_reason() -> str | None:
    """Why PostgreSQL cannot be used (checked once per run), or None when it can."""
    if not _postgres_problem:
        _postgres_problem.append(asyncio.run(_postgres_reachable()))
    return _postgres_problem[0]


def require_capability(name: str, reason: str | None) -> None:
    """Skip the test when ``reason`` says why ``name`` (a service, a privilege) cannot be had here —
    or fail it under ``STOWAGE_REQUIRE_SERVICES=1``, so CI cannot pass without having run it."""
    if reason is None:
        return
    message = f"{name}: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; STOWAGE_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message)


def require_postgres() -> None:
    reason = postgres_unavailable_reason()
    require_capability(f"PostgreSQL at {POSTGRES_URL}", None if reason is None else f"unreachable ({reason})")


def postgres_proxy_target() -> tuple[str, int]:
    """Host and port of the test PostgreSQL server, for tests that put a TCP proxy in front of it.

    A server reached through a Unix socket cannot be proxied: skip, or fail under
    ``STOWAGE_REQUIRE_SERVICES=1`` like every other missing capability.
    """
    url = urlsplit(_asyncpg_dsn(POSTGRES_URL))
    reason = None if url.hostname else "it is not reached over TCP, so no TCP proxy can be put in front of it"
    require_capability(f"the test database {POSTGRES_URL}", reason)
    assert url.hostname is not None
    return url.hostname, url.port or 5432


def require_tool(name: str, *, package: str | None = None) -> str:
    """The path of the command-line tool ``name`` (e.g. ``jq``), for tests that run shell commands.

    Missing, the test is skipped with the install command — or fails under ``STOWAGE_REQUIRE_SERVICES=1``.
    """
    path = shutil.which(name)
    reason = None if path else f"not installed (on Debian/Ubuntu: sudo apt-get install {package or name})"
    require_capability(name, reason)
    assert path is not None
    return path


async def _drop_schema(schema: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The metadata engine under test; every test that uses it runs once per engine."""
    name: str = request.param
    if name == "postgresql":
        require_postgres()
    return name


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings_env(backend: str, data_dir: Path) -> Iterator[dict[str, str]]:
    """Environment for a server on ``backend`` with a private data folder (and PostgreSQL schema)."""
    env = {
        "STOWAGE_DATA_DIR": str(data_dir),
        "STOWAGE_LOG_FORMAT": "json",
    }
    schema = None
    if backend == "postgresql":
        schema = f"t_{secrets.token_hex(6)}"
        env["STOWAGE_DATABASE_URL"] = POSTGRES_URL
        env["STOWAGE_DATABASE_SCHEMA"] = schema
    yield env
    if schema is not None:
        asyncio.run(_drop_schema(schema))


def make_settings(env: dict[str, str], **overrides: Any) -> Settings:
    merged = dict(env)
    for key, value in overrides.items():
        merged[f"STOWAGE_{key.upper()}"] = value if isinstance(value, str) else str(value)
    return load_settings(merged)


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return make_settings(settings_env)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """An in-process client for a fully started application (lifespan run, schema migrated)."""
    async with AsyncTestClient(app=create_app(settings)) as test_client:  # type: ignore[arg-type]
        yield test_client


# --- a real S3 server (moto's server mode) for the S3 blob store -------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of moto's S3 server, started once per test session in a child process on 127.0.0.1.

    Without moto installed the tests that need it skip with the reason (a failure under
    ``STOWAGE_REQUIRE_SERVICES=1``); moto is a test dependency, so CI always runs them."""
    from support.s3_server import MotoServer, moto_unavailable_reason

    require_capability("moto's S3 server", moto_unavailable_reason())
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str) -> dict[str, str]:
    """Settings (as STOWAGE_* variables) for blob_store = "s3" on a new bucket of moto's server."""
    from support.s3_server import ACCESS_KEY, REGION, SECRET_KEY, new_bucket_name

    return {
        "STOWAGE_BLOB_STORE": "s3",
        "STOWAGE_S3_ENDPOINT_URL": s3_endpoint,
        "STOWAGE_S3_BUCKET": new_bucket_name(),
        "STOWAGE_S3_REGION": REGION,
        "STOWAGE_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "STOWAGE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "STOWAGE_S3_CREATE_BUCKET": "true",
        "STOWAGE_S3_ADDRESSING_STYLE": "path",
    }


def s3_store_for(s3_endpoint: str, *, part_size: int = 5 * 1024 * 1024, prefix: str = "") -> Any:
    """An S3 blob store on a new bucket of moto's server (``await store.start()`` creates the bucket)."""
    from stowage.blobs.s3 import S3BlobStore, S3Location
    from support.s3_server import ACCESS_KEY, REGION, SECRET_KEY, new_bucket_name

    location = S3Location(
        bucket=new_bucket_name(),
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        prefix=prefix,
        addressing_style="path",
        create_bucket=True,
    )
    return S3BlobStore(location, part_size=part_size)


@pytest.fixture
async def s3_store(s3_endpoint: str) -> AsyncIterator[Any]:
    """A started S3 blob store on its own bucket (5 MiB parts: S3's smallest, so multipart is exercised)."""
    store = s3_store_for(s3_endpoint)
    await store.start()
    try:
        yield store
    finally:
        await store.close()
