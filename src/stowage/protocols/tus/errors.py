"""Domain errors as tus answers: the tus status, ``Tus-Resumable`` on every answer, and an RFC 9457
problem body with the same ``type``/``title``/``detail``/``request_id`` members as the REST API's.

tus fixes some statuses of its own: 409 for an offset that does not match, 410 for an expired upload,
412 (with ``Tus-Version``) for an unsupported protocol version, 415 for a PATCH of another media
type, 423 for an upload another request is writing to, 460 for a checksum mismatch, and 403 for a
PATCH of a final upload. Everything else keeps the status the REST API gives it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException

from stowage import errors
from stowage.observability.context import current_request_id
from stowage.observability.logging import get_logger
from stowage.protocols.tus.headers import TUS_VERSION
from stowage.uploads.errors import ChecksumMismatch, FinalUploadImmutable, OffsetMismatch, UploadGone, UploadLocked

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:stowage:problem:"
CHECKSUM_MISMATCH = 460

log = get_logger("stowage.tus")


class UnsupportedVersion(errors.PreconditionFailed):
    """The client speaks a tus version this server does not (412 with ``Tus-Version``)."""

    code = "tus-version"
    title = "Unsupported tus version"


# Most specific first: the first class in an error's MRO found here gives its status.
STATUS_BY_ERROR: dict[type[errors.StowageError], int] = {
    UploadGone: 410,
    OffsetMismatch: 409,
    UploadLocked: 423,
    ChecksumMismatch: CHECKSUM_MISMATCH,
    FinalUploadImmutable: 403,
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.MethodNotAllowed: 405,
    errors.RequestTimeout: 408,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.RateLimited: 429,
    errors.ServiceUnavailable: 503,
    errors.QuotaExceeded: 507,
    errors.InsufficientStorage: 507,
}


def tus_status(error: errors.StowageError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def tus_error_response(
    error: errors.StowageError, *, instance: str, head: bool = False, status: int | None = None
) -> Response[bytes]:
    """The tus answer for a domain error (no body for HEAD, as HTTP requires)."""
    status = status or tus_status(error)
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if isinstance(error, UnsupportedVersion):
        headers["Tus-Version"] = TUS_VERSION
    if isinstance(error, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="stowage"'
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, OffsetMismatch):
        headers["Upload-Offset"] = str(error.expected)
    if isinstance(error, errors.MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    document: dict[str, Any] = {
        "type": TYPE_PREFIX + error.code,
        "title": error.title,
        "status": status,
        "detail": error.detail,
        "request_id": current_request_id(),
        "instance": instance,
    }
    if isinstance(error, errors.InvalidInput) and error.errors:
        document["errors"] = msgspec.to_builtins(error.errors)
    for name, value in error.extra.items():
        document.setdefault(name, msgspec.to_builtins(value))
    body = b"" if head else msgspec.json.encode({k: v for k, v in document.items() if v is not None})
    return Response(content=body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _is_head(request: Request[Any, Any, Any]) -> bool:
    return request.method == "HEAD"


def handle_domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, errors.StowageError)
    if tus_status(exc) >= 500 and not isinstance(exc, errors.QuotaExceeded | errors.ServiceUnavailable):
        log.error("tus_server_error", code=exc.code, detail=exc.detail)
    return tus_error_response(exc, instance=request.url.path, head=_is_head(request))


def handle_http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Litestar's own exceptions (a body over the limit, a broken connection) in the tus shape."""
    assert isinstance(exc, HTTPException)
    error: errors.StowageError
    status: int | None = None
    if isinstance(exc, NotFoundException):
        error = errors.NotFound("No such upload.")
    elif isinstance(exc, MethodNotAllowedException):
        headers = {name.lower(): value for name, value in (exc.headers or {}).items()}
        allowed = [m.strip() for m in headers.get("allow", "").split(",") if m.strip()]
        error = errors.MethodNotAllowed(
            f"This path does not accept that method; use one of: {', '.join(sorted(allowed)) or 'none'}.",
            allowed=allowed,
        )
    elif exc.status_code == 413:
        error = errors.PayloadTooLarge("The request body exceeds the size this endpoint accepts.")
    elif exc.status_code < 500:
        error, status = errors.InvalidInput(exc.detail or "The request could not be processed."), exc.status_code
    else:
        error = errors.InternalError("The server failed to handle this request.")
        status = exc.status_code
    return tus_error_response(error, instance=request.url.path, head=_is_head(request), status=status)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unhandled_exception", path=request.url.path, exc_info=exc)
    error = errors.InternalError(
        "The server failed to handle this request. It has been logged; quote the request id when reporting it."
    )
    return tus_error_response(error, instance=request.url.path, head=_is_head(request))


EXCEPTION_HANDLERS = {
    errors.StowageError: handle_domain_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
