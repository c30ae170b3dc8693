"""From an HTTP request to a Principal (or None) and a ClientInfo — the REST adapter's half of auth.

The decision itself is the policy module's; this only establishes who is calling.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from litestar import Request

from stowage.accounts.common import ClientInfo
from stowage.errors import Unauthenticated
from stowage.observability.context import current
from stowage.policy import Principal
from stowage.runtime import Runtime


async def provide_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """Resolve ``Authorization: Bearer …``; None when absent, 401 when present but not valid."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated("Send credentials as Authorization: Bearer <token>.")
    runtime: Runtime = request.app.state.runtime
    principal = await runtime.accounts.auth.authenticate(credential)
    context = current()
    if context is not None:
        context.user_id = principal.user_id
    return principal


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
