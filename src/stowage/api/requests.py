"""The request class of the REST application: Litestar's, with a JSON body that cannot crash it.

Every JSON body a route declares (``data: JSONBody[...]``) is decoded by ``Request.json()`` before
the handler runs. msgspec decodes recursively, so a body nested deeper than the interpreter's
recursion limit (5,000 ``[`` then 5,000 ``]``, or ``{"a":{"a":…}}``) raises ``RecursionError``,
which Litestar does not treat as a bad body: it would be a 500. Catching it here, where the bytes
are decoded, covers every JSON route at once and only the decoding — a ``RecursionError`` anywhere
else is still a bug and still a logged 500.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from stowage.errors import FieldError, InvalidInput


class StowageRequest(Request[Any, Any, State]):
    async def json(self) -> Any:
        """The decoded JSON body; a body nested too deeply to decode is the client's error (400)."""
        try:
            return await super().json()
        except RecursionError:
            raise InvalidInput(
                "The JSON body is nested too deeply to be read; no request needs more than a few levels.",
                errors=[FieldError(field="body", message="nested too deeply")],
            ) from None
