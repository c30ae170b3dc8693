"""Who is calling the tus front end, decided before anything else happens.

The tus routes' before-request hook (it replaces the application's for these routes) resolves the
caller exactly as the REST API does (``accounts.caller``: the bearer credential through the same
credential cache, or a presigned tus URL's query — a creation URL for ``POST /api/v1/uploads/``, an
upload URL for one upload — whose principal ``policy.Restriction`` confines; any other presigned URL
is refused with 403), before the body is read — an anonymous request is a 401 on every
protected route, whatever it holds — and then checks the protocol version: tus requires that a request
in a version the server does not speak is refused with 412 and not processed. ``OPTIONS`` (protocol
discovery) needs neither.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from stowage.accounts.caller import PRINCIPAL_SCOPE_KEY, principal_of_scope
from stowage.policy import Principal, require_principal
from stowage.protocols.tus.errors import UnsupportedVersion
from stowage.protocols.tus.headers import TUS_VERSION
from stowage.runtime import Runtime


def check_version(request: Request[Any, Any, Any]) -> None:
    version = request.headers.get("tus-resumable")
    if version is None:
        raise UnsupportedVersion(f"Send Tus-Resumable: {TUS_VERSION} with every tus request (except OPTIONS).")
    if version.strip() != TUS_VERSION:
        raise UnsupportedVersion(f"This server speaks tus {TUS_VERSION} only, not {version.strip()!r:.20}.")


async def authenticate(request: Request[Any, Any, Any]) -> Principal | None:
    """The caller, resolved as on every front end (``accounts.caller``); None without credentials."""
    runtime: Runtime = request.app.state.runtime
    scope: dict[str, Any] = request.scope  # type: ignore[assignment]
    return await principal_of_scope(scope, runtime.accounts.auth, runtime.presign)


async def tus_before_request(request: Request[Any, Any, Any]) -> None:
    """The caller first (401 before any byte of the body, as on every protected route of the server,
    whatever else the request holds), then the version (412, nothing processed)."""
    if request.method == "OPTIONS":
        return
    require_principal(await authenticate(request))  # kept in the scope for ``principal_of``
    check_version(request)


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    scope: dict[str, Any] = request.scope  # type: ignore[assignment]
    principal: Principal = scope[PRINCIPAL_SCOPE_KEY]
    return principal
