"""What every REST controller shares: the request type handlers take, and the security requirement.

There is no dependency injection for the caller and the services: a handler takes
``request: Req`` and reads ``request.principal``, ``request.files``, ``request.accounts``,
``request.runtime`` and ``request.client_info`` (see ``api.requests``). The caller is established
once per request by ``api.authn.authenticate_first``, before the body is read.
"""

from __future__ import annotations

from stowage.api.requests import StowageRequest

# The security requirement of every route that needs a caller (bearer access token or personal token).
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

Req = StowageRequest
