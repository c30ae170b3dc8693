"""What every REST controller shares: the request type handlers take, and the security requirement.

There is no dependency injection for the caller and the services: a handler takes
``request: Req`` and reads ``request.principal``, ``request.files``, ``request.accounts``,
``request.runtime`` and ``request.client_info`` (see ``api.requests``). The caller is established
once per request by ``api.authn.authenticate_first``, before the body is read.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

from stowage.api.openapi import SESSION_SECURITY, USER_SECURITY
from stowage.api.requests import StowageRequest

# The security requirement of every route that needs a caller: an access token or a personal token.
BEARER = USER_SECURITY
# Routes that manage the account and its credentials take an access token (a session) only.
SESSION_ONLY = SESSION_SECURITY

Req = StowageRequest

# Paging parameters of the file listings (children, trash).
Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
Cursor = Annotated[str | None, QueryParameter(max_length=2000, description="`next_cursor` of the previous page")]
