"""End to end: the real ``stowage serve`` (Granian) in a child process, spoken to over TCP."""

from __future__ import annotations

import asyncio
import signal
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import POSTGRES_URL, postgres_proxy_target
from stowage import __version__
from stowage.config import SECRET_FILE_NAME
from support import assert_problem
from support.server import ServerProcess
from support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

StartServer = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start ``stowage serve`` processes; every one is stopped (or killed) when the test ends."""
    started: list[ServerProcess] = []

    async def start(env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()) -> ServerProcess:
        server = ServerProcess(tmp_path / f"server{len(started)}", env=env, args=args)
        started.append(server)
        await server.start()
        return server

    yield start
    for server in started:
        await server.stop(timeout=15)


async def wait_until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll ``condition``: a server writes its access line just after the response has left."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


def access_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [r for r in server.log_records() if r.get("logger") == "stowage.access" and r.get("event") == "request"]


async def test_readme_flow_on_sqlite(start_server: StartServer) -> None:
    server = await start_server()

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        ready = await client.get("/readyz")
        info = await client.get("/api/v1/info")
        docs = await client.get("/docs")

    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert info.status_code == 200
    body = info.json()
    assert body["name"] == "Stowage"
    assert body["version"] == __version__
    assert body["database"] == "sqlite"
    assert len(body["instance_id"]) == 36
    assert docs.status_code == 200
    secret_file = server.data_dir / SECRET_FILE_NAME
    assert secret_file.is_file()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert (server.data_dir / "stowage.db").is_file()


async def test_served_logs_are_json_lines_with_our_request_id(start_server: StartServer) -> None:
    server = await start_server()

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        response = await client.get("/api/v1/info?token=supersecret", headers={"X-Request-ID": "e2e-request-1"})
    await wait_until(lambda: any(line["request_id"] == "e2e-request-1" for line in access_lines(server)))

    assert response.headers["x-request-id"] == "e2e-request-1"
    [line] = [line for line in access_lines(server) if line["request_id"] == "e2e-request-1"]
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/info"
    assert line["status"] == 200
    assert line["bytes_out"] == len(response.content)
    assert "supersecret" not in server.stderr_text()
    started = [r for r in server.log_records() if r.get("event") == "started"]
    assert started
    assert started[0]["database"] == "sqlite"
    # Every line on stderr is JSON (a pipe is not a terminal), including Granian's own.
    assert all(line.startswith("{") for line in server.stderr_text().splitlines() if line.strip())


async def test_oversized_request_headers_are_refused(start_server: StartServer) -> None:
    limit = 16384
    server = await start_server({"STOWAGE_MAX_REQUEST_HEADER_BYTES": str(limit)})

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        fits = await client.get("/healthz", headers={"X-Padding": "a" * (limit // 2)})
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        too_big = await client.get("/healthz", headers={"X-Padding": "a" * (limit * 2)})
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        afterwards = await client.get("/healthz")

    assert fits.status_code == 200
    problem = assert_problem(too_big, 431, "request-headers-too-large")
    assert problem["limit"] == limit
    assert str(limit) in problem["detail"]
    assert afterwards.status_code == 200  # the server keeps serving


async def test_headers_past_the_read_buffer_are_refused_by_the_http_server(start_server: StartServer) -> None:
    """Above the HTTP server's read buffer (1 MiB) the request never reaches the application."""
    server = await start_server({})
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        try:
            refused: httpx.Response | None = await client.get("/healthz", headers={"X-Padding": "a" * (2 << 20)})
        except httpx.HTTPError:
            refused = None  # the connection closed instead of an answer: refused too
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        afterwards = await client.get("/healthz")

    assert refused is None or refused.status_code in {400, 431}
    assert afterwards.status_code == 200


async def test_sigterm_stops_the_server_cleanly(start_server: StartServer) -> None:
    shutdown_timeout = 5
    server = await start_server({"STOWAGE_SHUTDOWN_TIMEOUT": str(shutdown_timeout)})
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200

    server.signal(signal.SIGTERM)
    exit_code = await server.wait(timeout=shutdown_timeout + 10)

    assert exit_code == 0
    assert any(r.get("event") == "stopped" and r.get("logger") == "stowage.app" for r in server.log_records())
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")


async def test_workers_share_one_metrics_view(start_server: StartServer, tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    server = await start_server({"STOWAGE_LOG_FILE": str(log_dir / "stowage.log")}, args=("--workers", "2"))

    async def healthz_count() -> float:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        return sum(
            sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == "stowage_http_requests_total" and sample.labels.get("route") == "/healthz"
        )

    def workers_that_answered() -> set[str]:
        # With several workers each process logs to stowage.<pid>.log.
        return {
            path.name
            for path in log_dir.glob("stowage.*.log")
            if '"route": "/healthz"' in path.read_text(encoding="utf-8")
        }

    # The start-up probe's own /healthz is counted just after its answer left: wait until it shows.
    before = await healthz_count()
    settle_deadline = time.monotonic() + 10
    while time.monotonic() < settle_deadline:
        await asyncio.sleep(0.2)
        settled = await healthz_count()
        if settled == before and before >= 1:
            break
        before = settled
    sent = 0
    while sent < 20 or (len(workers_that_answered()) < 2 and sent < 400):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:  # a new connection each
            assert (await client.get("/healthz")).status_code == 200
        sent += 1

    assert len(workers_that_answered()) == 2, "every request went to one worker; the sum would prove nothing"
    # A worker counts a request just after its response has left, so the last few may land a moment later.
    deadline = time.monotonic() + 10
    while (counted := await healthz_count() - before) < sent and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert counted == sent


# --- shutdown while a request is in progress (PostgreSQL behind a proxy we can stall) -----------------


@pytest.fixture
async def stalled_db_env(settings_env: dict[str, str]) -> AsyncIterator[tuple[dict[str, str], TcpProxy]]:
    target = httpx.URL(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1))
    host, port = postgres_proxy_target()
    async with TcpProxy(host, port) as proxy:
        env = {**settings_env, "STOWAGE_DATABASE_URL": str(target.copy_with(port=proxy.port))}
        yield env, proxy


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_sigterm_lets_an_in_flight_request_finish(
    start_server: StartServer, stalled_db_env: tuple[dict[str, str], TcpProxy]
) -> None:
    env, proxy = stalled_db_env
    server = await start_server({**env, "STOWAGE_SHUTDOWN_TIMEOUT": "30"})
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        assert (await client.get("/readyz")).status_code == 200

        proxy.pause()  # the next database round trip stalls; readiness answers when its checks time out
        in_flight = asyncio.create_task(client.get("/readyz", headers={"X-Request-ID": "drain-1"}))
        async with asyncio.timeout(10):
            await proxy.held.wait()  # the request is inside the server, waiting on the database
        server.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                response = await in_flight
        finally:
            proxy.resume()

    body = assert_problem(response, 503, "service-unavailable")  # a complete answer, not a dropped connection
    assert body["request_id"] == "drain-1"
    assert body["checks"]["database"]["ok"] is False
    assert await server.wait(timeout=30) == 0
    events = [(r.get("event"), r.get("request_id")) for r in server.log_records()]
    assert ("request", "drain-1") in events
    assert events.index(("request", "drain-1")) < events.index(("stopped", None))


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_shutdown_timeout_bounds_a_request_that_never_finishes(
    start_server: StartServer, stalled_db_env: tuple[dict[str, str], TcpProxy]
) -> None:
    env, proxy = stalled_db_env
    server = await start_server(
        {
            **env,
            "STOWAGE_SHUTDOWN_TIMEOUT": "1",
            # Make a stalled database hang far longer than the test is prepared to wait.
            "STOWAGE_DATABASE_CONNECT_TIMEOUT": "60",
            "STOWAGE_DATABASE_STATEMENT_TIMEOUT": "60",
        }
    )
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        assert (await client.get("/api/v1/info")).status_code == 200

        proxy.pause()
        in_flight = asyncio.create_task(client.get("/api/v1/info"))
        try:
            async with asyncio.timeout(10):
                await proxy.held.wait()
            server.signal(signal.SIGTERM)

            assert await server.wait(timeout=15) == 0
            with pytest.raises(httpx.TransportError):
                await in_flight  # the worker was stopped under it
        finally:
            proxy.resume()
            in_flight.cancel()
