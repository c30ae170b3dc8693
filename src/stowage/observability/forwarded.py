"""Who the client is behind a reverse proxy: the one rule every layer uses (access log, REST, tus).

A connection from an address in ``trusted_proxies`` may say, in ``X-Forwarded-For``, whom it forwards
for. Each proxy appends the address it received the request from, so the client is the last address
in the header that is not itself a trusted proxy; anything before it could have been sent by the
client and is not believed. A connection from any other address is the client itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _is_trusted(address: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(trusted))


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The peer, or — when the peer is a trusted proxy — the last untrusted ``X-Forwarded-For`` hop."""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return peer


def forwarded_for_header(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Every ``X-Forwarded-For`` field of raw ASGI headers joined in order (a proxy may add its own line)."""
    values = [value.decode("latin-1") for name, value in headers if name.lower() == b"x-forwarded-for"]
    return ", ".join(values) if values else None
