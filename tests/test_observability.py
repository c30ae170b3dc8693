"""Request ids, structured logs, the access log, secret redaction, security headers and the log file."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from litestar import Litestar, Request, get, post
from litestar.params import FromPath

from conftest import make_settings
from stowage.app import DOCS_CSP, create_app
from stowage.config import REDACTED, Settings
from stowage.observability.context import accept_request_id, current_request_id, new_request_id
from stowage.observability.logging import get_logger, logging_dict_config
from stowage.observability.middleware import ObservabilityMiddleware
from support import LogCapture, asgi_client, capture_logs

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


@pytest.fixture
def sqlite_settings(data_dir: Path) -> Settings:
    return make_settings({"STOWAGE_DATA_DIR": str(data_dir), "STOWAGE_LOG_FORMAT": "json"})


@pytest.fixture
def logs(sqlite_settings: Settings) -> Iterator[LogCapture]:
    with capture_logs(sqlite_settings) as capture:
        yield capture


@pytest.fixture
async def app_client(sqlite_settings: Settings, logs: LogCapture) -> AsyncIterator[httpx.AsyncClient]:
    """The real application on SQLite, with logging configured and captured; startup lines discarded."""
    async with asgi_client(create_app(sqlite_settings)) as client:
        logs.clear()
        yield client


SLOW_HANDLER_MS = 50


def _mini_app() -> ObservabilityMiddleware:
    """Routes that log the way handlers and libraries do, to check what the log lines carry."""
    handler_log = get_logger("stowage.example")

    @get("/chatty")
    async def chatty() -> dict[str, str]:
        handler_log.info("handler_event", detail="from structlog")
        logging.getLogger("some.library").warning("library line")
        return {"ok": "yes"}

    @post("/echo", status_code=200)
    async def echo(request: Request[Any, Any, Any]) -> dict[str, int]:
        return {"size": len(await request.body())}

    @get("/items/{item_id:int}")
    async def item(item_id: FromPath[int]) -> dict[str, int]:
        return {"id": item_id}

    @get("/slow")
    async def slow() -> dict[str, int]:
        await asyncio.sleep(SLOW_HANDLER_MS / 1000)
        return {"slept_ms": SLOW_HANDLER_MS}

    litestar = Litestar([chatty, echo, item, slow], logging_config=None, openapi_config=None)
    return ObservabilityMiddleware(litestar, metrics=None, hsts=False)  # type: ignore[arg-type]


@pytest.fixture
async def mini(logs: LogCapture) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_mini_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://mini.test") as client:
        yield client


# --- request ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["abc-123", "edge.lb:7/req+1=2@eu-west", "A" + "b" * 127])
async def test_sane_request_id_is_echoed_and_logged(app_client: httpx.AsyncClient, logs: LogCapture, sent: str) -> None:
    response = await app_client.get("/healthz", headers={"X-Request-ID": sent})

    assert response.headers["x-request-id"] == sent
    [access] = logs.access_lines()
    assert access["request_id"] == sent


@pytest.mark.parametrize(
    "sent",
    [
        "a" * 129,  # too long
        "has space",
        'quote"inside',
        "new\nline",
        "tab\there",
        "-starts-with-dash",
        "semi;colon",
        "caf\xe9".encode("latin-1"),  # not ASCII
    ],
    ids=["too-long", "space", "quote", "newline", "tab", "leading-dash", "semicolon", "latin1"],
)
async def test_insane_request_id_is_replaced(
    app_client: httpx.AsyncClient, logs: LogCapture, sent: str | bytes
) -> None:
    headers = {"X-Request-ID": sent} if isinstance(sent, str) else {b"X-Request-ID": sent}
    response = await app_client.get("/healthz", headers=headers)

    replaced = response.headers["x-request-id"]
    assert GENERATED_ID.match(replaced)
    [access] = logs.access_lines()
    assert access["request_id"] == replaced
    raw = sent if isinstance(sent, str) else sent.decode("latin-1")
    assert raw not in logs.text


async def test_request_id_is_generated_when_absent(app_client: httpx.AsyncClient) -> None:
    first = await app_client.get("/healthz")
    second = await app_client.get("/healthz")

    assert GENERATED_ID.match(first.headers["x-request-id"])
    assert GENERATED_ID.match(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_accept_request_id_rules() -> None:
    assert accept_request_id("ok-1") == "ok-1"
    assert GENERATED_ID.match(accept_request_id(None))
    assert GENERATED_ID.match(accept_request_id(""))
    assert GENERATED_ID.match(accept_request_id("x\r\nSet-Cookie: a=b"))


def _child_request_ids(connection: Any) -> None:
    connection.send([new_request_id(), new_request_id()])
    connection.close()


def test_a_forked_worker_draws_request_ids_of_its_own() -> None:
    """Granian forks its workers from one process: each must number its requests under a prefix of its own,
    or two workers would hand out the same ids."""
    parent_before = new_request_id()
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_child_request_ids, args=(sending,))
    child.start()
    child_ids = receiving.recv()
    child.join(timeout=30)
    parent_after = new_request_id()

    assert child.exitcode == 0
    prefixes = {request_id[:16] for request_id in child_ids}
    assert len(prefixes) == 1  # one prefix per process, then a counter
    assert parent_before[:16] == parent_after[:16]
    assert parent_before[:16] not in prefixes
    assert len({*child_ids, parent_before, parent_after}) == 4


# --- log lines and the access log ------------------------------------------------------------------


async def test_every_line_logged_during_a_request_carries_its_id(mini: httpx.AsyncClient, logs: LogCapture) -> None:
    response = await mini.get("/chatty", headers={"X-Request-ID": "chatty-1"})
    logging.getLogger("some.library").warning("after the request")

    assert response.status_code == 200
    records = logs.records
    during, after = records[:-1], records[-1]
    assert {r["event"] for r in during} == {"handler_event", "library line", "request"}
    assert all(r["request_id"] == "chatty-1" for r in during), during
    assert after["event"] == "after the request"
    assert "request_id" not in after  # the id does not leak into lines outside the request
    assert current_request_id() is None


async def test_failing_readiness_lines_carry_the_request_id(
    app_client: httpx.AsyncClient, logs: LogCapture, data_dir: Path
) -> None:
    tmp = data_dir / "tmp"
    tmp.rmdir()
    tmp.write_text("a file where the server needs a folder")

    response = await app_client.get("/readyz", headers={"X-Request-ID": "ready-1"})

    assert response.status_code == 503
    events = {r["event"]: r for r in logs.records}
    assert set(events) == {"dependency_unavailable", "request"}
    assert all(r["request_id"] == "ready-1" for r in events.values())


async def test_exactly_one_access_line_per_request_with_its_fields(
    app_client: httpx.AsyncClient, logs: LogCapture
) -> None:
    took_ms: dict[str, float] = {}  # each request's time as the client measured it

    async def timed(request_id: str, sent: Awaitable[httpx.Response]) -> httpx.Response:
        started = time.perf_counter()
        response = await sent
        took_ms[request_id] = (time.perf_counter() - started) * 1000
        return response

    info = await timed("info-1", app_client.get("/api/v1/info", headers={"X-Request-ID": "info-1"}))
    missing = await timed("missing-1", app_client.get("/not/here", headers={"X-Request-ID": "missing-1"}))
    wrong = await timed("wrong-1", app_client.post("/healthz", headers={"X-Request-ID": "wrong-1"}))

    lines = logs.access_lines()
    assert [line["request_id"] for line in lines] == ["info-1", "missing-1", "wrong-1"]
    by_id = {line["request_id"]: line for line in lines}
    for request_id, response, method, route, path in (
        ("info-1", info, "GET", "/api/v1/info", "/api/v1/info"),
        ("missing-1", missing, "GET", "<unmatched>", "/not/here"),
        ("wrong-1", wrong, "POST", "<unmatched>", "/healthz"),
    ):
        line = by_id[request_id]
        assert line["level"] == "info"
        assert line["method"] == method
        assert line["route"] == route
        assert line["path"] == path
        assert line["status"] == response.status_code
        assert line["bytes_in"] == 0
        assert line["bytes_out"] == len(response.content)
        assert isinstance(line["duration_ms"], int | float)
        assert 0 <= line["duration_ms"] <= took_ms[request_id], (line, took_ms)
        assert "user_id" in line
        assert line["user_id"] is None
    assert info.status_code == 200
    assert missing.status_code == 404
    assert wrong.status_code == 405


async def test_access_line_duration_is_the_time_the_request_took(mini: httpx.AsyncClient, logs: LogCapture) -> None:
    started = time.perf_counter()
    response = await mini.get("/slow")
    took_ms = (time.perf_counter() - started) * 1000

    assert response.json() == {"slept_ms": SLOW_HANDLER_MS}
    (line,) = logs.access_lines()
    assert SLOW_HANDLER_MS - 1 <= line["duration_ms"] <= took_ms, (line, took_ms)


async def test_access_line_counts_request_bytes_and_uses_route_templates(
    mini: httpx.AsyncClient, logs: LogCapture
) -> None:
    echoed = await mini.post("/echo", content=b"z" * 321)
    item = await mini.get("/items/7")

    assert echoed.json() == {"size": 321}
    assert item.json() == {"id": 7}
    echo_line, item_line = logs.access_lines()
    assert echo_line["bytes_in"] == 321
    assert echo_line["route"] == "/echo"
    assert item_line["route"] == "/items/{item_id}"
    assert item_line["path"] == "/items/7"


async def test_query_strings_never_reach_the_log(app_client: httpx.AsyncClient, logs: LogCapture) -> None:
    responses = [
        await app_client.get("/healthz?token=supersecret"),
        await app_client.get("/nope", params={"token": "supersecret", "password": "hunter2"}),
        await app_client.get("/api/v1/info?access_token=supersecret"),
    ]

    assert len(logs.access_lines()) == 3
    assert "supersecret" not in logs.text
    assert "hunter2" not in logs.text
    for response in responses:
        assert "supersecret" not in response.text


def test_secret_looking_keys_are_redacted(logs: LogCapture) -> None:
    log = get_logger("stowage.test")
    log.info(
        "secrets",
        password="p4ss",
        token="tok-1",
        secret="s3",
        authorization="Bearer abc",
        cookie="sid=1",
        api_key="k-1",
        refresh_token="r-1",
        upload_token="u-1",
        db_password="d-1",
        client_secret="c-1",
        signing_key="g-1",
        user="alice",
        token_count=3,
        path="/api/v1/info",
        **{"Authorization": "Bearer xyz"},
    )
    log.info("nothing_to_hide", password=None)

    record, empty = logs.records
    for key in (
        "password",
        "token",
        "secret",
        "authorization",
        "Authorization",
        "cookie",
        "api_key",
        "refresh_token",
        "upload_token",
        "db_password",
        "client_secret",
        "signing_key",
    ):
        assert record[key] == REDACTED, key
    assert record["user"] == "alice"
    assert record["token_count"] == 3
    assert record["path"] == "/api/v1/info"
    for raw in ("p4ss", "tok-1", "Bearer", "sid=1", "k-1", "r-1", "u-1", "d-1", "c-1", "g-1"):
        assert raw not in logs.text
    assert empty["password"] is None


# --- security headers ----------------------------------------------------------------------------------


async def test_api_responses_carry_security_headers(app_client: httpx.AsyncClient) -> None:
    for response in (await app_client.get("/healthz"), await app_client.get("/missing")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == API_CSP
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in response.headers


async def test_docs_page_gets_its_own_policy(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/docs")

    assert response.status_code == 200
    assert response.headers.get_list("content-security-policy") == [DOCS_CSP]
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_hsts_when_enabled(data_dir: Path) -> None:
    settings = make_settings({"STOWAGE_DATA_DIR": str(data_dir)}, hsts="true")
    async with asgi_client(create_app(settings)) as client:
        response = await client.get("/healthz")

    assert response.headers["strict-transport-security"].startswith("max-age=")


# --- log configuration -------------------------------------------------------------------------------


def test_stderr_format_follows_the_settings(data_dir: Path) -> None:
    def stderr_formatter(log_format: str) -> str:
        settings = make_settings({"STOWAGE_DATA_DIR": str(data_dir)}, log_format=log_format)
        formatter: str = logging_dict_config(settings)["handlers"]["stderr"]["formatter"]
        return formatter

    assert stderr_formatter("json") == "json"
    assert stderr_formatter("console") == "console"
    assert stderr_formatter("auto") == "json"  # pytest's stderr is not a terminal


def test_log_file_rotates_and_holds_json_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "stowage.log"
    settings = make_settings(
        {"STOWAGE_DATA_DIR": str(tmp_path / "data")},
        log_file=str(log_file),
        log_file_max_bytes="1024",
        log_file_backups="2",
        log_format="console",  # the file is JSON whatever the terminal format
    )
    log = get_logger("stowage.rotation")

    with capture_logs(settings):
        for number in range(200):
            log.info("filler", number=number, text="x" * 40)

    names = sorted(path.name for path in log_file.parent.iterdir())
    assert names == ["stowage.log", "stowage.log.1", "stowage.log.2"]
    for path in log_file.parent.iterdir():
        assert path.stat().st_size <= 1024
        lines = path.read_text().splitlines()
        assert lines
        for line in lines:
            record = json.loads(line)
            assert record["event"] == "filler"
            assert record["logger"] == "stowage.rotation"
    newest = [json.loads(line)["number"] for line in log_file.read_text().splitlines()]
    assert newest[-1] == 199


def test_each_worker_writes_its_own_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "stowage.log"
    settings = make_settings({"STOWAGE_DATA_DIR": str(tmp_path / "data")}, log_file=str(log_file))
    with capture_logs(settings, per_process_file=True):
        get_logger("stowage.worker").warning("worker_line")

    own_file = tmp_path / "logs" / f"stowage.{os.getpid()}.log"
    assert json.loads(own_file.read_text().splitlines()[-1])["event"] == "worker_line"
    assert not log_file.exists()


@pytest.fixture(autouse=True)
def _leaves_no_trace() -> Iterator[None]:
    """No request id bound after a request, and logging configuration put back as it was found."""
    structlog_before = structlog.get_config()
    yield
    assert structlog.contextvars.get_contextvars().get("request_id") is None
    assert structlog.get_config() == structlog_before
