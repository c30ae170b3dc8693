"""Per-request context: the request id and the caller, visible to every layer without passing them.

The outermost middleware creates one ``RequestContext`` per request and stores it in a ContextVar.
Inner layers mutate the object (for example authentication sets ``user_id``) rather than setting
ContextVars themselves, because a value set in a child context would not be seen by the access log.
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    user_id: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("stowage_request", default=None)


class _RequestIds:
    """Unique ids without a system call per request: 64 random bits drawn once per process (again in a
    forked child), then a counter. Request ids name a request in the logs; they are not secrets."""

    def __init__(self) -> None:
        self._restart()
        os.register_at_fork(after_in_child=self._restart)

    def _restart(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_ids = _RequestIds()


def new_request_id() -> str:
    """A URL-safe id of 32 hex characters, unique across processes and restarts (random per process)."""
    return _ids.next()


def accept_request_id(candidate: str | None) -> str:
    """Use the client's (or proxy's) ``X-Request-ID`` when it is sane; otherwise make one up.

    Sane means 1-128 characters from a conservative set, so an id can never smuggle a newline,
    quote or escape sequence into a log line.
    """
    if candidate and _SANE_REQUEST_ID.match(candidate):
        return candidate
    return new_request_id()


def current() -> RequestContext | None:
    return _current.get()


def current_request_id() -> str | None:
    context = _current.get()
    return context.request_id if context else None


def set_current(context: RequestContext) -> object:
    return _current.set(context)


def reset_current(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
