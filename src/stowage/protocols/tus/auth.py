"""Who is calling the tus front end, decided before anything else happens.

The tus routes' before-request hook (it replaces the application's for these routes) resolves
``Authorization: Bearer <access token or personal token>`` with the same account service as the REST
API (its credential cache included), before the body is read — an anonymous request is a 401 on every
protected route, whatever it holds — and then checks the protocol version: tus requires that a request
in a version the server does not speak is refused with 412 and not processed. ``OPTIONS`` (protocol
discovery) needs neither.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from stowage.errors import Unauthenticated
from stowage.observability.context import current
from stowage.policy import Principal, require_principal
from stowage.protocols.tus.errors import UnsupportedVersion
from stowage.protocols.tus.headers import TUS_VERSION
from stowage.runtime import Runtime

# The scope key under which a request's principal is kept once resolved (the REST front end uses the same).
PRINCIPAL_SCOPE_KEY = "stowage.principal"


def check_version(request: Request[Any, Any, Any]) -> None:
    version = request.headers.get("tus-resumable")
    if version is None:
        raise UnsupportedVersion(f"Send Tus-Resumable: {TUS_VERSION} with every tus request (except OPTIONS).")
    if version.strip() != TUS_VERSION:
        raise UnsupportedVersion(f"This server speaks tus {TUS_VERSION} only, not {version.strip()!r:.20}.")


async def authenticate(request: Request[Any, Any, Any]) -> Principal | None:
    """The caller named by the bearer credential; None without one, 401 for a bad one."""
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


async def tus_before_request(request: Request[Any, Any, Any]) -> None:
    """The caller first (401 before any byte of the body, as on every protected route of the server,
    whatever else the request holds), then the version (412, nothing processed)."""
    if request.method == "OPTIONS":
        return
    principal = require_principal(await authenticate(request))
    check_version(request)
    scope: dict[str, Any] = request.scope  # type: ignore[assignment]
    scope[PRINCIPAL_SCOPE_KEY] = principal


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    scope: dict[str, Any] = request.scope  # type: ignore[assignment]
    principal: Principal = scope[PRINCIPAL_SCOPE_KEY]
    return principal
