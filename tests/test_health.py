"""Liveness and readiness, on SQLite and PostgreSQL, including dependencies that fail and come back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from accounts_helpers import PASSWORD, SIGNUP
from conftest import POSTGRES_URL, make_settings, postgres_proxy_target
from stowage.app import create_app, litestar_of
from stowage.config import Settings
from stowage.db import migrate
from stowage.db.engine import Database
from stowage.errors import ServiceUnavailable
from stowage.system.service import CHECK_TIMEOUT_SECONDS
from support import asgi_client, assert_problem
from support.tcp_proxy import TcpProxy

ANSWER_WITHIN_SECONDS = 15  # a generous bound: the point is that a broken dependency never hangs a request
# Small database timeouts for the stalled-server tests, and what may pass beyond their sum (scheduling on
# a busy machine). A correctness bound, not a benchmark: before every wait was bounded, these settings
# let a stalled server hold a request for 9 s (the statement timeout plus 5 s, plus a 2 s polite close).
STALL_CONNECT_TIMEOUT = 1.0
STALL_STATEMENT_TIMEOUT = 2.0
STALL_MARGIN = 3.0


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The application on the backend under test, and a client served in this event loop."""
    application = create_app(settings)
    async with asgi_client(application) as http:
        yield http, application


@pytest.fixture
def http(running: tuple[httpx.AsyncClient, Any]) -> httpx.AsyncClient:
    return running[0]


async def _get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
        return await client.get(path)


async def test_liveness(http: httpx.AsyncClient) -> None:
    response = await _get(http, "/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_reports_every_check(http: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    response = await _get(http, "/readyz")
    elapsed_ms = (time.perf_counter() - started) * 1000

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "schema", "data_dir"}
    for name, check in body["checks"].items():
        assert check["ok"] is True, name
        assert check["error"] is None
        # Each check's own time: some, and no more than the whole request took.
        assert 0 < check["duration_ms"] <= elapsed_ms, (name, check, elapsed_ms)


async def test_unwritable_data_folder_makes_the_server_unready_until_fixed(
    http: httpx.AsyncClient, data_dir: Path
) -> None:
    # Tests run as root, for whom permission bits do not stop writes; a file where the server needs
    # its tmp folder makes every write under it fail instead.
    tmp = data_dir / "tmp"
    tmp.rmdir()
    tmp.write_text("not a folder")

    broken = await _get(http, "/readyz")

    body = assert_problem(broken, 503, "service-unavailable")
    checks = body["checks"]
    assert checks["data_dir"]["ok"] is False
    assert checks["data_dir"]["error"]
    assert checks["database"]["ok"] is True
    assert checks["schema"]["ok"] is True
    assert "data_dir" in body["detail"]
    assert broken.headers["retry-after"].isdigit()

    tmp.unlink()
    tmp.mkdir()
    repaired = await _get(http, "/readyz")

    assert repaired.status_code == 200
    assert repaired.json()["checks"]["data_dir"]["ok"] is True
    assert list(tmp.iterdir()) == []  # the probe cleans up after itself


async def test_schema_behind_this_build_makes_the_server_unready(running: tuple[httpx.AsyncClient, Any]) -> None:
    client, application = running
    database: Database = litestar_of(application).state.runtime.database
    await migrate.downgrade(database, "base")

    behind = await _get(client, "/readyz")

    body = assert_problem(behind, 503, "service-unavailable")
    assert body["checks"]["schema"]["ok"] is False
    assert "stowage migrate" in body["checks"]["schema"]["error"]
    assert "stowage migrate" in body["detail"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["data_dir"]["ok"] is True

    await migrate.upgrade(database)
    assert (await _get(client, "/readyz")).status_code == 200


# --- the database going away and coming back (PostgreSQL, through a TCP proxy we can cut) ------------


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    host, port = postgres_proxy_target()
    async with TcpProxy(host, port) as running:
        yield running


def proxied_settings(settings_env: dict[str, str], proxy: TcpProxy, **overrides: Any) -> Settings:
    """Settings for the same database and test schema, reached through ``proxy``."""
    target = httpx.URL(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1))
    return make_settings(settings_env, database_url=str(target.copy_with(port=proxy.port)), **overrides)


@pytest.fixture
async def proxied_client(settings_env: dict[str, str], proxy: TcpProxy) -> AsyncIterator[httpx.AsyncClient]:
    """The application with its database reached through ``proxy`` (same database, same test schema)."""
    async with asgi_client(create_app(proxied_settings(settings_env, proxy))) as client:
        yield client


@pytest.fixture
def stall_settings(settings_env: dict[str, str], proxy: TcpProxy) -> Settings:
    return proxied_settings(
        settings_env,
        proxy,
        database_connect_timeout=STALL_CONNECT_TIMEOUT,
        database_statement_timeout=STALL_STATEMENT_TIMEOUT,
    )


def stall_bound(settings: Settings) -> float:
    """How long a request may wait on a database that stopped answering: taking a connection, then one statement."""
    return settings.database_connect_timeout + settings.database_statement_timeout + STALL_MARGIN


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # a TCP proxy needs a networked database
async def test_database_outage_is_reported_quickly_and_recovers(
    proxied_client: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    client = proxied_client
    assert (await _get(client, "/readyz")).status_code == 200
    assert (await _get(client, "/api/v1/info")).status_code == 200

    await proxy.stop()  # closes the listener and every pooled connection

    not_ready = await _get(client, "/readyz")
    body = assert_problem(not_ready, 503, "service-unavailable")
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"]
    assert "database" in body["detail"]
    assert body["checks"]["data_dir"]["ok"] is True

    info = await _get(client, "/api/v1/info")
    body = assert_problem(info, 503, "service-unavailable")
    assert int(info.headers["retry-after"]) > 0
    assert body["retry_after"] == int(info.headers["retry-after"])

    await proxy.start()  # same port: the application reconnects by itself

    assert (await _get(client, "/readyz")).status_code == 200
    info = await _get(client, "/api/v1/info")
    assert info.status_code == 200
    assert info.json()["database"] == "postgresql"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_hung_database_gives_a_bounded_readiness_answer(
    proxied_client: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    client = proxied_client
    assert (await _get(client, "/readyz")).status_code == 200

    proxy.pause()  # connections stay open but nothing comes back, like a database stuck on I/O
    try:
        started = time.perf_counter()
        hung = await _get(client, "/readyz")
        elapsed_ms = (time.perf_counter() - started) * 1000
    finally:
        proxy.resume()

    body = assert_problem(hung, 503, "service-unavailable")
    database = body["checks"]["database"]
    assert database["ok"] is False
    # The check waited out its whole timeout, and the report says so.
    assert CHECK_TIMEOUT_SECONDS * 1000 <= database["duration_ms"] <= elapsed_ms, (database, elapsed_ms)
    assert f"{CHECK_TIMEOUT_SECONDS:g}s" in database["error"], database
    assert body["checks"]["data_dir"]["ok"] is True
    assert body["checks"]["schema"]["ok"] is False  # it needs the database too
    assert elapsed_ms < 2 * CHECK_TIMEOUT_SECONDS * 1000  # the checks ran side by side, not one after the other
    assert (await _get(client, "/readyz")).status_code == 200


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_database_that_stops_answering_gives_503_within_the_configured_timeouts(
    stall_settings: Settings, proxy: TcpProxy
) -> None:
    bound = stall_bound(stall_settings)
    async with asgi_client(create_app(stall_settings)) as client:
        assert (await _get(client, "/api/v1/info")).status_code == 200  # the pool now holds live connections

        proxy.pause()  # TCP stays open, nothing is forwarded: the pre-ping of the next checkout gets no answer
        try:
            async with asyncio.timeout(bound):
                read = await client.get("/api/v1/info")
            async with asyncio.timeout(bound):
                write = await client.post(SIGNUP, json={"email": "ann@example.com", "password": PASSWORD})
        finally:
            proxy.resume()

        for response in (read, write):
            body = assert_problem(response, 503, "service-unavailable")
            assert "database" in body["detail"]
            assert int(response.headers["retry-after"]) > 0
        assert (await _get(client, "/api/v1/info")).status_code == 200  # and it recovers by itself
        assert (await client.post(SIGNUP, json={"email": "ann@example.com", "password": PASSWORD})).status_code == 201


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_statement_that_gets_no_answer_is_cut_off_at_the_statement_timeout(
    stall_settings: Settings, proxy: TcpProxy
) -> None:
    """The server stalls after the connection was taken and pinged: only the statement bound can end the wait,
    and leaving the unit of work (rollback, returning the connection) must not wait for the server either."""
    database = Database(stall_settings)

    async def stall_after_checkout() -> None:
        async with asyncio.timeout(stall_bound(stall_settings)), database.transaction() as session:
            await session.execute(text("SELECT 1"))  # the connection is taken, pinged and answering
            proxy.pause()
            await session.execute(text("SELECT 2"))

    try:
        async with database.session() as session:
            assert (await session.execute(text("SELECT 1"))).scalar() == 1

        with pytest.raises(ServiceUnavailable) as caught:
            await stall_after_checkout()
        proxy.resume()

        assert isinstance(caught.value.__cause__, TimeoutError)
        async with database.session() as session:
            assert (await session.execute(text("SELECT 3"))).scalar() == 3
    finally:
        proxy.resume()
        await database.dispose()
