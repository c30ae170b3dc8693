"""Helpers shared by the test modules: an in-loop ASGI client, log capture and problem+json checks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import structlog

from stowage.config import Settings
from stowage.observability.logging import configure_logging, json_formatter, logging_dict_config

PROBLEM_TYPE_PREFIX = "urn:stowage:problem:"


@asynccontextmanager
async def asgi_client(app: Any, *, base_url: str = "http://stowage.test") -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and serve requests in *this* event loop.

    Litestar's test client runs the application in a separate thread and blocks the calling loop
    while a request is handled, so ``asyncio.timeout`` cannot interrupt a hung request and
    asyncio helpers in the test (such as a TCP proxy) would freeze. Here everything shares one loop.
    """
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    lifespan = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        await lifespan
        raise RuntimeError(f"application did not start: {started}")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await from_app.get()
        await lifespan
        if stopped["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"application did not stop cleanly: {stopped}")


# The tests' own HTTP client logs each request it makes (full URL included); that is not server output.
_CLIENT_LOGGERS = ("httpx", "httpcore")


class LogCapture(logging.Handler):
    """Keeps every log record as the JSON line the server would write for it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(json_formatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in _CLIENT_LOGGERS:
            return
        self.lines.append(self.format(record))

    def clear(self) -> None:
        self.lines.clear()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [record for record in self.records if record.get("event") == event]

    def access_lines(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("logger") == "stowage.access" and r.get("event") == "request"]


@contextmanager
def capture_logs(settings: Settings, *, per_process_file: bool = False) -> Iterator[LogCapture]:
    """Configure logging as the server does for ``settings`` and capture every line.

    Everything configured here is put back afterwards (root handlers and level, the levels of the
    loggers the configuration names, structlog's configuration), and loggers are not cached while
    capturing: a logger cached with this configuration would keep it for the rest of the session and
    defeat ``structlog.testing.capture_logs`` in other tests.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    named = [logging.getLogger(name) for name in logging_dict_config(settings)["loggers"]]
    saved_named = [(logger, logger.level, list(logger.handlers), logger.propagate) for logger in named]
    saved_structlog = structlog.get_config()
    configure_logging(settings, per_process_file=per_process_file)
    structlog.configure(cache_logger_on_first_use=False)
    capture = LogCapture()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        for logger, level, handlers, propagate in saved_named:
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        structlog.configure(**saved_structlog)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Check the RFC 9457 shape every error shares and return the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"].startswith(PROBLEM_TYPE_PREFIX), body
    if code is not None:
        assert body["type"] == PROBLEM_TYPE_PREFIX + code, body
    assert isinstance(body["title"], str)
    assert body["title"]
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"].strip()
    assert body["request_id"] == response.headers["x-request-id"]
    return body
