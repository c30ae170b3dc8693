"""Who is calling, read from an ASGI scope: the one resolution every front end uses (REST, tus, …).

A presigned URL (the query carries presign parameters) decides alone; otherwise
``Authorization: Bearer <access token or personal token>``. The result is kept in the scope, so a
request is authenticated once whichever layer asks first. No web framework: the scope is a mapping.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from stowage.accounts.presign import has_presign
from stowage.accounts.services import AuthService, PresignService
from stowage.errors import Unauthenticated
from stowage.observability.context import current
from stowage.policy import Principal

# The ASGI scope key under which the request's principal is kept once resolved. The scope belongs to
# this one request, unlike ``scope["state"]``, which a server may share.
PRINCIPAL_SCOPE_KEY = "stowage.principal"


def _header(scope: MutableMapping[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name or key.lower() == name:
            found: bytes = value
            return found
    return None


async def principal_of_scope(
    scope: MutableMapping[str, Any], auth: AuthService, presign: PresignService
) -> Principal | None:
    """The caller of this request; None when it names none, 401 when its bearer credential is not valid
    (403 when its presigned URL is not)."""
    if PRINCIPAL_SCOPE_KEY in scope:
        cached: Principal | None = scope[PRINCIPAL_SCOPE_KEY]
        return cached
    principal: Principal | None = None
    if has_presign(scope["query_string"]):
        # A presigned URL: the query alone decides (an Authorization header is not consulted).
        content_type = _header(scope, b"content-type")
        principal = await presign.authenticate(
            scope["method"],
            scope["path"],
            scope["query_string"],
            content_type.decode("latin-1") if content_type is not None else None,
        )
    if principal is None:
        header = _header(scope, b"authorization")
        if header is not None:
            scheme, _, credential = header.decode("latin-1").partition(" ")
            credential = credential.strip()
            if scheme.lower() != "bearer" or not credential:
                raise Unauthenticated("Send credentials as Authorization: Bearer <token>.")
            principal = await auth.authenticate(credential)
    if principal is not None:
        context = current()
        if context is not None:
            context.user_id = principal.user_id
    scope[PRINCIPAL_SCOPE_KEY] = principal
    return principal
