"""The request class of the REST application: Litestar's, with the caller and the services at hand,
and a JSON body that cannot crash it.

Handlers take ``request: StowageRequest`` and use ``request.principal``, ``request.files``,
``request.accounts``, ``request.runtime`` and ``request.client_info`` instead of injected dependencies:
Litestar resolves every injected dependency per request at a cost (measured here: 18 µs for one, 85 µs
for two, which it resolves in a task group) larger than whole hot requests.

Every JSON body a route declares (``data: JSONBody[...]``) is decoded by ``Request.json()`` before
the handler runs. msgspec decodes recursively, so a body nested deeper than the interpreter's
recursion limit (5,000 ``[`` then 5,000 ``]``, or ``{"a":{"a":…}}``) raises ``RecursionError``,
which Litestar does not treat as a bad body: it would be a 500. Catching it here, where the bytes
are decoded, covers every JSON route at once and only the decoding — a ``RecursionError`` anywhere
else is still a bug and still a logged 500.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
from litestar import Request
from litestar.datastructures import State

from stowage.accounts.caller import PRINCIPAL_SCOPE_KEY
from stowage.accounts.services import AccountServices, ClientInfo
from stowage.api.authn import client_address
from stowage.errors import FieldError, InvalidInput
from stowage.files.services import FileServices
from stowage.policy import Principal
from stowage.runtime import Runtime


class StowageRequest(Request[Any, Any, State]):
    @property
    def principal(self) -> Principal | None:
        """The caller, established by ``authenticate_first`` before the handler ran (None when anonymous)."""
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]  # our own key in the request's scope
        principal: Principal | None = scope.get(PRINCIPAL_SCOPE_KEY)
        return principal

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.scope["litestar_app"].state.runtime
        return runtime

    @property
    def files(self) -> FileServices:
        return self.runtime.files

    @property
    def accounts(self) -> AccountServices:
        return self.runtime.accounts

    @property
    def client_info(self) -> ClientInfo:
        """Where the request came from (the proxy-aware address, the user agent), for sessions and audits."""
        return ClientInfo(
            ip=client_address(self, self.runtime.settings.trusted_proxies),
            user_agent=self.headers.get("user-agent", "")[:512],
        )

    async def json(self) -> Any:
        """The decoded JSON body; a body nested too deeply to decode is the client's error (400), and so
        is one that only a lax reading would accept (see ``_refuse_lax_values``)."""
        try:
            value = await super().json()
        except RecursionError:
            raise InvalidInput(
                "The JSON body is nested too deeply to be read; no request needs more than a few levels.",
                errors=[FieldError(field="body", message="nested too deeply")],
            ) from None
        _refuse_lax_values(self.scope.get("route_handler"), value)
        return value


@lru_cache(maxsize=256)
def _body_type(handler: Any) -> type[msgspec.Struct] | None:
    field = handler.parsed_fn_signature.parameters.get("data")
    annotation = getattr(field, "annotation", None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct) else None


def _integral_floats_as_ints(value: Any) -> Any:
    """JSON Schema counts 126.0 as an integer; so does this check (msgspec's strict mode would not)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    return value


def _refuse_lax_values(handler: Any, value: Any) -> None:
    """Litestar converts bodies leniently (``0`` for ``false``, ``"5"`` for ``5``); the published schema
    says what the types are, so a body that only the lenient reading accepts is refused like any other
    invalid body. Bodies that fail both readings are left to Litestar's own error, unchanged."""
    body_type = _body_type(handler) if handler is not None else None
    if body_type is None:
        return
    try:
        msgspec.convert(_integral_floats_as_ints(value), body_type, strict=True)
    except msgspec.ValidationError as strict_error:
        try:
            msgspec.convert(value, body_type, strict=False)
        except msgspec.ValidationError:
            return
        message, _, where = str(strict_error).partition(" - at `$")
        field = "body" + where.rstrip("`") if where else "body"
        raise InvalidInput(
            f"The request is not valid: {field}: {message}",
            errors=[FieldError(field=field, message=message)],
        ) from None
