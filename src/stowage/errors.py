"""Protocol-neutral domain errors.

Services raise these; each front end (REST problem+json, S3 XML, WebDAV status codes, tus headers)
maps them once. This module must never import a web framework. Each error has a stable ``code``
(the last segment of the problem ``type`` URI) and a human ``detail`` telling the client what to fix.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec


class FieldError(msgspec.Struct, frozen=True):
    """One invalid input field: where it is (``body.email``, ``query.limit``) and what is wrong."""

    field: str
    message: str


class StowageError(Exception):
    """Base of every error a client may see. ``code`` and ``title`` are stable; ``detail`` varies."""

    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Error"

    def __init__(self, detail: str, *, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})


class InvalidInput(StowageError):
    code = "invalid-input"
    title = "The request is not valid"

    def __init__(self, detail: str, *, errors: Sequence[FieldError] = (), extra: Mapping[str, Any] | None = None):
        super().__init__(detail, extra=extra)
        self.errors = list(errors)


class Unauthenticated(StowageError):
    code = "unauthenticated"
    title = "Authentication is required"


class PermissionDenied(StowageError):
    code = "permission-denied"
    title = "Not allowed"


class NotFound(StowageError):
    code = "not-found"
    title = "Not found"


class MethodNotAllowed(StowageError):
    code = "method-not-allowed"
    title = "Method not allowed"

    def __init__(self, detail: str, *, allowed: Sequence[str] = ()) -> None:
        super().__init__(detail)
        self.allowed = sorted(allowed)


class Conflict(StowageError):
    code = "conflict"
    title = "Conflict with the current state"


class PreconditionFailed(StowageError):
    code = "precondition-failed"
    title = "A precondition failed"


class PayloadTooLarge(StowageError):
    code = "payload-too-large"
    title = "The request body is too large"


class RequestHeadersTooLarge(StowageError):
    """The request's header section is larger than ``max_request_header_bytes``."""

    code = "request-headers-too-large"
    title = "The request headers are too large"


class RequestTimeout(StowageError):
    """The client stopped sending the request body before it was complete."""

    code = "request-timeout"
    title = "The request body stopped arriving"


class UnsupportedMediaType(StowageError):
    code = "unsupported-media-type"
    title = "Unsupported media type"


class UnprocessableContent(StowageError):
    """The request is well-formed but the stored content cannot be processed as asked (an image that
    does not decode, a decompression bomb): 422, and retrying the same request will not help."""

    code = "unprocessable-content"
    title = "The content cannot be processed"


class RangeNotSatisfiable(StowageError):
    code = "range-not-satisfiable"
    title = "The requested range cannot be served"

    def __init__(self, detail: str, *, size: int) -> None:
        super().__init__(detail)
        self.size = size


class QuotaExceeded(StowageError):
    code = "quota-exceeded"
    title = "Storage quota exceeded"


class InsufficientStorage(StowageError):
    """The server's own storage is full (a full disk, a filesystem quota, a file-size limit): nothing was stored.

    Not the user's quota (:class:`QuotaExceeded`): an operator must free space. ``path`` says where
    the write failed, for the log only — clients are not told the server's paths.
    """

    code = "insufficient-storage"
    title = "The server's storage is full"

    def __init__(self, detail: str, *, path: str | None = None) -> None:
        super().__init__(detail)
        self.path = path


# errno values meaning "no room to write": the disk is full, a filesystem quota is used up, or the
# file would pass the filesystem's (or the process's) largest file size.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` is an OS error saying the disk (or a quota on it) has no room left."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


class RateLimited(StowageError):
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class ServiceUnavailable(StowageError):
    code = "service-unavailable"
    title = "A service the server depends on is unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail, extra=extra)
        self.retry_after = retry_after


class InternalError(StowageError):
    code = "internal-error"
    title = "Internal server error"
