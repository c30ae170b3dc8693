"""From an HTTP request to a Principal (or None) and a ClientInfo — the REST adapter's half of auth.

The decision itself is the policy module's; this only establishes who is calling — and, for routes
that declare bearer security, does so before the request body is read (``authenticate_first``): an
anonymous or badly authenticated request is answered 401 whatever its body holds, and an upload
without credentials is refused before a byte of it is spooled.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler

from stowage.accounts.services import ClientInfo
from stowage.errors import Unauthenticated
from stowage.observability.context import current
from stowage.policy import Principal, require_principal
from stowage.runtime import Runtime

# The ASGI scope key under which the request's principal is kept once resolved (the guard and the
# dependency share it). The scope belongs to this one request, unlike ``scope["state"]``, which a
# server may share.
_PRINCIPAL_SCOPE_KEY = "stowage.principal"


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """Resolve ``Authorization: Bearer …`` once per request; None when absent, 401 when not valid."""
    scope = cast("dict[str, Any]", connection.scope)
    if _PRINCIPAL_SCOPE_KEY in scope:
        cached: Principal | None = scope[_PRINCIPAL_SCOPE_KEY]
        return cached
    header = connection.headers.get("authorization")
    principal: Principal | None = None
    if header is not None:
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("Send credentials as Authorization: Bearer <token>.")
        runtime: Runtime = connection.app.state.runtime
        principal = await runtime.accounts.auth.authenticate(credential)
        context = current()
        if context is not None:
            context.user_id = principal.user_id
    scope[_PRINCIPAL_SCOPE_KEY] = principal
    return principal


async def provide_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """The caller (see ``_authenticate``); routes without bearer security may be called anonymously."""
    return await _authenticate(request)


async def authenticate_first(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard of the whole application: a route that declares bearer security needs a caller, known
    before its body is read or validated (guards run before Litestar decodes the body).

    The route's declared security is the one marker: it is what the OpenAPI document publishes and
    what ``tests/test_authz_matrix.py`` checks against each route's access rule. The ``OPTIONS``
    handlers Litestar adds to every path inherit it but only list the allowed methods: they stay open.
    """
    if isinstance(handler, HTTPRouteHandler) and handler.http_methods != {"OPTIONS"} and handler.resolve_security():
        require_principal(await _authenticate(connection))


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def client_address(request: Request[Any, Any, Any], trusted_proxies: tuple[str, ...]) -> str:
    """The peer address — or, when the peer is a trusted proxy, the last untrusted X-Forwarded-For hop."""
    peer = request.client.host if request.client else "unknown"
    if not trusted_proxies:
        return peer
    networks = _networks(trusted_proxies)

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    if not trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            return hop
    return peer


async def provide_client(request: Request[Any, Any, Any]) -> ClientInfo:
    runtime: Runtime = request.app.state.runtime
    return ClientInfo(
        ip=client_address(request, runtime.settings.trusted_proxies),
        user_agent=request.headers.get("user-agent", "")[:512],
    )
