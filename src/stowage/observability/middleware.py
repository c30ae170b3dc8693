"""The outermost ASGI layer: request id, access log, metrics, security headers, last-resort 500.

It wraps the whole Litestar application (not just matched routes), so unknown paths, wrong methods
and framework failures get a request id, a log line and a metric like everything else.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import structlog

from stowage.api.problems import PROBLEM_MEDIA_TYPE, internal_error_body
from stowage.observability import context
from stowage.observability.logging import get_logger
from stowage.observability.metrics import Metrics

access_log = get_logger("stowage.access")
error_log = get_logger("stowage.errors")

# Plain ASGI shapes: this layer handles raw messages (including extensions such as
# ``http.response.pathsend``) that the framework's narrower TypedDicts do not list.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED_ROUTE = "<unmatched>"

BASE_SECURITY_HEADERS: Mapping[bytes, bytes] = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"cross-origin-opener-policy": b"same-origin",
    # API answers are data, never documents: nothing in them may run or be framed. Pages that are
    # meant to render (the API docs) set their own policy, which takes precedence.
    b"content-security-policy": b"default-src 'none'; frame-ancestors 'none'; sandbox",
}


class ObservabilityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None,
        hsts: bool,
        page_policies: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        # Paths that serve pages meant to render in a browser, with the CSP each needs.
        self.page_policies = {path: policy.encode() for path, policy in (page_policies or {}).items()}
        self.security_headers = dict(BASE_SECURITY_HEADERS)
        if hsts:
            self.security_headers[b"strict-transport-security"] = b"max-age=63072000; includeSubDomains"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self._handle_http(scope, receive, send)

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = context.accept_request_id(_header(scope, b"x-request-id"))
        request_context = context.RequestContext(request_id=request_id)
        token = context.set_current(request_context)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        state: dict[str, Any] = {"status": 0, "bytes_in": 0, "bytes_out": 0, "started": False}
        if self.metrics:
            self.metrics.in_flight.inc()

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["bytes_in"] += len(message.get("body", b""))
            return message

        async def decorating_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = self._with_headers(message.get("headers", []), request_id, scope["path"])
            elif message["type"] == "http.response.body":
                state["bytes_out"] += len(message.get("body", b""))
            elif message["type"] == "http.response.pathsend":
                state["bytes_out"] += _file_size(message["path"])
            await send(message)

        try:
            await self.app(scope, counting_receive, decorating_send)
        except Exception:
            error_log.exception("unhandled_exception_outside_framework", path=scope.get("path"))
            if not state["started"]:
                body = internal_error_body()
                await decorating_send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await decorating_send({"type": "http.response.body", "body": body, "more_body": False})
            else:
                # Headers (maybe part of the body) are out: the only honest move left is to abort
                # the connection, so the client cannot mistake a truncated body for a whole one.
                state["aborted"] = True
                raise
        finally:
            duration = time.perf_counter() - started
            route = scope.get("path_template") or UNMATCHED_ROUTE
            method = scope.get("method", "")
            status = state["status"] or 499  # nothing sent: the client went away first
            if self.metrics:
                self.metrics.in_flight.dec()
                self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
                self.metrics.latency.labels(method=method, route=route).observe(duration)
                self.metrics.bytes_in.labels(route=route).inc(state["bytes_in"])
                self.metrics.bytes_out.labels(route=route).inc(state["bytes_out"])
            access_log.info(
                "request" if not state.get("aborted") else "request_aborted",
                method=method,
                route=route,
                path=scope.get("path", ""),
                status=status,
                bytes_in=state["bytes_in"],
                bytes_out=state["bytes_out"],
                duration_ms=round(duration * 1000, 2),
                user_id=request_context.user_id,
                client=_client(scope),
            )
            structlog.contextvars.unbind_contextvars("request_id")
            context.reset_current(token)

    def _with_headers(self, headers: Any, request_id: str, path: str) -> list[tuple[bytes, bytes]]:
        result = list(headers)
        present = {name.lower() for name, _ in result}
        result.append((b"x-request-id", request_id.encode("ascii")))
        page_policy = self.page_policies.get(path)
        if page_policy is not None and b"content-security-policy" not in present:
            result.append((b"content-security-policy", page_policy))
            present.add(b"content-security-policy")
        for name, value in self.security_headers.items():
            if name not in present:
                result.append((name, value))
        return result


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            try:
                decoded: str = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return decoded
    return None


def _file_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    return str(client[0])
