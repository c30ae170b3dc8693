"""The outermost ASGI layer: request id, access log, metrics, security headers, last-resort 500,
and the request body's life cycle.

It wraps the whole Litestar application (not just matched routes), so unknown paths, wrong methods
and framework failures get a request id, a log line and a metric like everything else.

It also sees every read of the request body, so two HTTP/1.1 rules are kept here, once for every
route: a body that stops arriving for ``body_idle_timeout`` seconds ends the request with a 408
(the upload reading it aborts and removes its spool), and an answer sent before the body was read
to its end (a 401, 413 or 507 decided from the headers, or that 408) carries ``Connection: close``,
because the unread rest of the body would otherwise be parsed as the next request on the
connection (RFC 9110 §10.1.1, RFC 9112 §9.6). Granian closes the connection after such an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from stowage.errors import RequestTimeout
from stowage.observability import context, forwarded
from stowage.observability.logging import get_logger
from stowage.observability.metrics import Metrics

access_log = get_logger("stowage.access")
_access_logger = logging.getLogger("stowage.access")  # asked first, so a disabled access log costs nothing
error_log = get_logger("stowage.errors")

# Plain ASGI shapes: this layer handles raw messages (including extensions such as
# ``http.response.pathsend``) that the framework's narrower TypedDicts do not list.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# The answer to headers over the limit: (limit, bytes sent, path) -> (status, headers, body).
HeaderRefusal = Callable[[int, int, str], tuple[int, list[tuple[bytes, bytes]], bytes]]

UNMATCHED_ROUTE = "<unmatched>"
DEFAULT_BODY_IDLE_TIMEOUT = 60.0
# Versions whose connections carry more requests after this one: only there does ``Connection``
# mean anything (HTTP/2 forbids the header; each request has its own stream).
_PERSISTENT_HTTP1 = frozenset({"1.0", "1.1"})

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
        body_idle_timeout: float = DEFAULT_BODY_IDLE_TIMEOUT,
        last_resort: tuple[str, Callable[[], bytes]] = ("text/plain; charset=utf-8", lambda: b"Internal Server Error"),
        header_limit: tuple[int, HeaderRefusal] | None = None,
        trusted_proxies: tuple[str, ...] = (),
    ) -> None:
        """``last_resort`` is the media type and body of the 500 sent when the application fails
        before answering: the front end's error format (problem+json for REST), given by ``app.py``
        so this layer needs no front end. ``header_limit`` is the most bytes of request headers (names
        and values) a request may send, and the answer (status, headers, body) to one that sends more:
        the HTTP server's own limit is its read buffer, which is larger so that bodies arrive in big
        pieces (see ``cli.serve``)."""
        self.app = app
        self.header_limit = header_limit
        self.trusted_proxies = trusted_proxies  # the access log names the client behind them
        self.last_resort_type = last_resort[0].encode()
        self.last_resort_body = last_resort[1]
        self.metrics = metrics
        self.body_idle_timeout = body_idle_timeout
        # Paths that serve pages meant to render in a browser, with the CSP each needs.
        self.page_policies = {path: policy.encode() for path, policy in (page_policies or {}).items()}
        self.security_headers = dict(BASE_SECURITY_HEADERS)
        if hsts:
            self.security_headers[b"strict-transport-security"] = b"max-age=63072000; includeSubDomains"
        self.security_items = list(self.security_headers.items())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One coroutine for the whole request (no inner helper to await): this runs for every request.
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered_id, may_have_body, header_bytes = _request_facts(scope)
        request_id = context.accept_request_id(offered_id)
        request_context = context.RequestContext(request_id=request_id)
        token = context.set_current(request_context)
        state: dict[str, Any] = {
            "status": 0,
            "bytes_in": 0,
            "bytes_out": 0,
            "started": False,
            "declared_length": None,
            # True until the last chunk of the request body has been received (or the client left).
            "body_pending": may_have_body,
        }
        if self.metrics:
            self.metrics.request_started()

        async def counting_receive() -> Message:
            if state["body_pending"] and not state["started"]:
                message = await self._receive_body_chunk(receive, scope, state)
            else:
                # Once the answer is under way, reads only listen for the client leaving: no deadline.
                message = await receive()
            if message["type"] == "http.request":
                state["bytes_in"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    state["body_pending"] = False
            elif message["type"] == "http.disconnect":
                state["body_pending"] = False
            return message

        async def decorating_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = message.get("headers", [])
                if state["body_pending"] and scope.get("http_version") in _PERSISTENT_HTTP1:
                    headers = _with_connection_close(headers)
                message["headers"], state["declared_length"] = self._with_headers(headers, request_id, scope["path"])
            elif message["type"] == "http.response.body":
                state["bytes_out"] += len(message.get("body", b""))
            elif message["type"] == "http.response.pathsend":
                state["bytes_out"] += state["declared_length"] or _file_size(message["path"])
            await send(message)

        try:
            if self.header_limit is not None and header_bytes > self.header_limit[0]:
                await self._refuse_headers(scope, header_bytes, decorating_send)
            else:
                await self.app(scope, counting_receive, decorating_send)
        except Exception:
            error_log.exception("unhandled_exception_outside_framework", path=scope.get("path"))
            if state["started"]:
                # Headers (maybe part of the body) are out: the only honest move left is to abort
                # the connection, so the client cannot mistake a truncated body for a whole one.
                state["aborted"] = True
                raise
            await self._last_resort(decorating_send)
        finally:
            self._record(scope, state, time.perf_counter() - started, request_context.user_id)
            context.reset_current(token)

    async def _last_resort(self, send: Send) -> None:
        """The 500 for a failure before any answer started."""
        body = self.last_resort_body()
        headers = [(b"content-type", self.last_resort_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _refuse_headers(self, scope: Scope, header_bytes: int, send: Send) -> None:
        """431 for a request whose headers pass the HTTP server's buffer but not our limit; the body (if
        any) is not read, so the answer closes the connection (``decorating_send`` adds the header)."""
        assert self.header_limit is not None
        limit, refusal = self.header_limit
        status, headers, body = refusal(limit, header_bytes, scope.get("path", ""))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _record(self, scope: Scope, state: dict[str, Any], duration: float, user_id: str | None) -> None:
        """The request's access-log line and metrics."""
        route = scope.get("path_template") or UNMATCHED_ROUTE
        method = scope.get("method", "")
        status = state["status"] or 499  # nothing sent: the client went away first
        if self.metrics:
            self.metrics.record_request(
                method, route, status, duration=duration, bytes_in=state["bytes_in"], bytes_out=state["bytes_out"]
            )
        if not _access_logger.isEnabledFor(logging.INFO):
            return
        access_log.info(
            "request" if not state.get("aborted") else "request_aborted",
            method=method,
            route=route,
            path=scope.get("path", ""),
            status=status,
            bytes_in=state["bytes_in"],
            bytes_out=state["bytes_out"],
            duration_ms=round(duration * 1000, 2),
            user_id=user_id,
            client=_client(scope, self.trusted_proxies),
        )

    async def _receive_body_chunk(self, receive: Receive, scope: Scope, state: dict[str, Any]) -> Message:
        """The next body message, or ``RequestTimeout`` when none comes within ``body_idle_timeout``.

        Raised inside the application's read, it unwinds whatever is consuming the body (an upload
        aborts and deletes its spool file) and is answered as a 408 problem, with ``Connection: close``
        since the body never ended.
        """
        try:
            async with asyncio.timeout(self.body_idle_timeout):
                return await receive()
        except TimeoutError:
            error_log.warning(
                "request_body_timeout",
                path=scope.get("path"),
                bytes_in=state["bytes_in"],
                idle_seconds=self.body_idle_timeout,
            )
            raise RequestTimeout(
                f"The request body stopped arriving: no byte came for {self.body_idle_timeout:g} s after the "
                f"first {state['bytes_in']}. Nothing was stored; send the request again."
            ) from None

    def _with_headers(self, headers: Any, request_id: str, path: str) -> tuple[list[tuple[bytes, bytes]], int | None]:
        """The response headers with ours added (where the app set none), and its Content-Length."""
        result = list(headers)
        declared_length = None
        security = self.security_headers
        overridden: set[bytes] | None = None  # security headers the application set itself (rare)
        for name, value in result:
            lowered = name.lower()
            if lowered == b"content-length":
                if value.isdigit():
                    declared_length = int(value)
            elif lowered in security:
                overridden = (overridden or set()) | {lowered}
        result.append((b"x-request-id", request_id.encode("ascii")))
        page_policy = self.page_policies.get(path) if self.page_policies else None
        if page_policy is not None and (overridden is None or b"content-security-policy" not in overridden):
            result.append((b"content-security-policy", page_policy))
            overridden = (overridden or set()) | {b"content-security-policy"}
        if overridden is None:
            result.extend(self.security_items)
        else:
            result.extend(item for item in self.security_items if item[0] not in overridden)
        return result, declared_length


def _request_facts(scope: Scope) -> tuple[str | None, bool, int]:
    """One pass over the request headers (ASGI names them in lower case): the ``X-Request-ID`` offered,
    whether the request can carry a body — HTTP/1.x declares it (RFC 9112 §6.3); HTTP/2 may not — and
    the bytes of the header names and values."""
    offered: str | None = None
    framed = False
    has_body = False
    size = 0
    for name, value in scope.get("headers", ()):
        size += len(name) + len(value)
        if name == b"x-request-id":
            try:
                offered = value.decode("ascii")
            except UnicodeDecodeError:
                offered = None
        elif name == b"transfer-encoding":
            has_body = True
        elif name == b"content-length":
            framed = True
            has_body = has_body or value.strip() != b"0"
    if not has_body and not framed:
        has_body = scope.get("http_version") not in _PERSISTENT_HTTP1
    return offered, has_body, size


def _with_connection_close(headers: Any) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Connection: close`` (replacing whatever connection option the app set)."""
    kept = [(name, value) for name, value in headers if name.lower() != b"connection"]
    kept.append((b"connection", b"close"))
    return kept


def _file_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _client(scope: Scope, trusted_proxies: tuple[str, ...]) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    peer = str(client[0])
    if not trusted_proxies:
        return peer
    return forwarded.client_address(peer, forwarded.forwarded_for_header(scope["headers"]), trusted_proxies)
