"""Comparing the hot-read lane with Litestar alone: the same request through the full application and
through the bare Litestar app (inside the same outer layer) must get the same answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
from litestar import Litestar

# What differs between any two answers: the request id (its own per request) and the date.
IGNORED_HEADERS = {"x-request-id", "date"}

Scope = MutableMapping[str, Any]


class LitestarSpy:
    """Stands in for the Litestar application inside the lane, recording which paths reached it."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.state = app.state
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)  # type: ignore[arg-type]


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    """What must be equal in both lanes' answers: all but the request id (its own per request, also
    in a problem's body, where it must match the header) and the date."""
    headers = sorted((k, v) for k, v in response.headers.multi_items() if k not in IGNORED_HEADERS)
    body: Any = response.content
    if response.headers.get("content-type") == "application/problem+json" and body:
        body = response.json()
        assert body.pop("request_id") == response.headers["x-request-id"]
    return response.status_code, headers, body


async def answers_alike(
    full: httpx.AsyncClient,
    plain: httpx.AsyncClient,
    spy: LitestarSpy,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
) -> tuple[httpx.Response, bool]:
    """Send the request through both applications; assert equal answers; say whether the lane answered
    (no path reached Litestar in the full application)."""
    spy.paths.clear()
    fast = await full.request(method, url, headers=headers)
    answered_by_lane = not spy.paths
    slow = await plain.request(method, url, headers=headers)
    assert comparable(fast) == comparable(slow), f"{method} {url} {headers}"
    assert fast.headers["x-request-id"]
    return fast, answered_by_lane
