"""From an HTTP request to a Principal (or None) — the REST adapter's half of auth.

The decision itself is the policy module's; this only establishes who is calling — and, for routes
that declare bearer security, does so before the request body is read (``authenticate_first``): an
anonymous or badly authenticated request is answered 401 whatever its body holds, and an upload
without credentials is refused before a byte of it is spooled.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from litestar import Request
from litestar.handlers import HTTPRouteHandler

from stowage.accounts.caller import PRINCIPAL_SCOPE_KEY, principal_of_scope
from stowage.observability import forwarded
from stowage.policy import Principal, require_principal
from stowage.runtime import Runtime


async def authenticate(scope: MutableMapping[str, Any], runtime: Runtime | None = None) -> Principal | None:
    """The caller of this request (``accounts.caller``: a presigned URL, else the bearer credential);
    None when absent, 401 (403 for a presigned URL) when not valid.

    ``runtime`` defaults to the Litestar application's (layers in front of Litestar pass their own)."""
    if PRINCIPAL_SCOPE_KEY in scope:
        cached: Principal | None = scope[PRINCIPAL_SCOPE_KEY]
        return cached
    if runtime is None:
        runtime = scope["litestar_app"].state.runtime
    assert runtime is not None
    return await principal_of_scope(scope, runtime.accounts.auth, runtime.presign)


def _is_protected(handler: Any) -> bool:
    """A route that declares bearer security needs a caller. The declared security is the one marker:
    it is what the OpenAPI document publishes and what ``tests/test_authz_matrix.py`` checks against
    each route's access rule. The ``OPTIONS`` handlers Litestar adds to every path inherit it but only
    list the allowed methods: they stay open."""
    return (
        isinstance(handler, HTTPRouteHandler)
        and handler.http_methods != {"OPTIONS"}
        and bool(handler.resolve_security())
    )


async def authenticate_first(request: Request[Any, Any, Any]) -> None:
    """Before-request hook of every route (it runs after routing, before Litestar reads or validates the
    body or the parameters): the caller of a protected route is established here, once, and kept in the
    scope for the handler.

    A hook rather than a guard or a route middleware: Litestar copies the route handler for every guard
    call, and a route middleware brings a second exception-handling layer — each measured here at more
    than the whole authentication of a cached credential."""
    scope: dict[str, Any] = request.scope  # type: ignore[assignment]
    if _is_protected(scope["route_handler"]):  # Litestar keeps each handler's resolved security
        require_principal(await authenticate(scope))


def client_address(request: Request[Any, Any, Any], trusted_proxies: tuple[str, ...]) -> str:
    """The peer address — or, when the peer is a trusted proxy, the last untrusted X-Forwarded-For hop."""
    peer = request.client.host if request.client else "unknown"
    if not trusted_proxies:
        return peer
    return forwarded.client_address(peer, forwarded.forwarded_for_header(request.scope["headers"]), trusted_proxies)
