"""RFC 9457 problem details: the one shape every REST error takes.

Domain errors and Litestar's own HTTP exceptions (unknown route, wrong method, body too large,
validation) are translated here, once. ``type`` is a stable URN built from the error's code; the
``detail`` tells the client what to fix; ``request_id`` lets an operator find the log lines.
A 500 never shows a stack trace to the client; the trace goes to the log with the request id.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response
from litestar.exceptions.http_exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    RequestEntityTooLarge,
    ValidationException,
)

from stowage import errors
from stowage.observability.context import current_request_id
from stowage.observability.logging import get_logger
from stowage.system.schemas import CheckResult

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:stowage:problem:"

log = get_logger("stowage.errors")


def _member(description: str) -> msgspec.Meta:
    return msgspec.Meta(description=description)


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem details object, with Stowage's extension members.

    Every member after ``errors`` is carried only by the problems that say so in its description; the
    OpenAPI document publishes this one shape for every error response (``api.openapi``).
    """

    type: Annotated[str, _member("Stable identifier: urn:stowage:problem:<code>; branch on this.")]
    title: Annotated[str, _member("Fixed per type.")]
    status: Annotated[int, msgspec.Meta(ge=100, le=599, description="The HTTP status of this answer.")]
    detail: Annotated[str, _member("What went wrong and what to do, for humans; may change.")]
    request_id: Annotated[str | None, _member("Quote it when reporting a problem (also in X-Request-ID).")] = None
    instance: Annotated[str | None, _member("The request path.")] = None
    errors: Annotated[
        list[errors.FieldError] | None,
        _member("invalid-input: each invalid field (body.x, query.x, path.x, header.x)."),
    ] = None
    allowed_methods: Annotated[list[str] | None, _member("method-not-allowed: the methods this path accepts.")] = None
    retry_after: Annotated[
        int | None, _member("rate-limited, service-unavailable: seconds to wait (also in Retry-After).")
    ] = None
    conflicting_id: Annotated[
        str | None, _member("conflict: the id of the item that holds the name (null when it could not be read).")
    ] = None
    quota: Annotated[str | None, _member("quota-exceeded: which quota (storage).")] = None
    used_bytes: Annotated[int | None, _member("quota-exceeded: bytes the owner uses now.")] = None
    limit_bytes: Annotated[int | None, _member("quota-exceeded: the owner's quota in bytes.")] = None
    free_bytes: Annotated[int | None, _member("quota-exceeded: bytes still free.")] = None
    needed_bytes: Annotated[int | None, _member("quota-exceeded: bytes the request needed.")] = None
    max_size: Annotated[int | None, _member("payload-too-large: the largest accepted size in bytes.")] = None
    checks: Annotated[
        dict[str, CheckResult] | None, _member("service-unavailable from /readyz: each readiness check.")
    ] = None
    password_required: Annotated[
        bool | None, _member("permission-denied from a share link: unlock it with its password first.")
    ] = None
    presign: Annotated[
        Literal["signature", "expired", "revoked"] | None,
        _member("permission-denied from a presigned URL: changed (signature), expired, or its signer revoked."),
    ] = None
    expired_at: Annotated[str | None, _member("permission-denied, presign expired: when the URL expired.")] = None
    max_seconds: Annotated[
        int | None, _member("invalid-input: the longest lifetime a presigned URL may have (presign_max_seconds).")
    ] = None
    accepted: Annotated[
        str | None, _member("unsupported-media-type: the media type (or type/*) a presigned upload URL accepts.")
    ] = None
    media_type: Annotated[str | None, _member("unsupported-media-type: the type the content was sniffed as.")] = None


STATUS_BY_ERROR: dict[type[errors.StowageError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.MethodNotAllowed: 405,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.RequestTimeout: 408,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.RequestHeadersTooLarge: 431,
    errors.RangeNotSatisfiable: 416,
    errors.UnprocessableContent: 422,
    errors.QuotaExceeded: 507,
    errors.InsufficientStorage: 507,
    errors.RateLimited: 429,
    errors.ServiceUnavailable: 503,
    errors.InternalError: 500,
}

# Errors that can be built from a detail alone, for Litestar exceptions we only know by status.
_SIMPLE_ERRORS: dict[int, type[errors.StowageError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    412: errors.PreconditionFailed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    500: errors.InternalError,
}


def status_for(error: errors.StowageError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def problem_for(
    error: errors.StowageError, *, instance: str | None = None, status: int | None = None
) -> tuple[Problem, dict[str, str]]:
    """The problem body and extra headers for a domain error (``status`` overrides the mapping)."""
    status = status or status_for(error)
    headers: dict[str, str] = {}
    problem = Problem(
        type=TYPE_PREFIX + error.code,
        title=error.title,
        status=status,
        detail=error.detail,
        request_id=current_request_id(),
        instance=instance,
    )
    if isinstance(error, errors.InvalidInput) and error.errors:
        problem.errors = error.errors
    if isinstance(error, errors.MethodNotAllowed):
        problem.allowed_methods = error.allowed
        headers["allow"] = ", ".join(error.allowed)
    if isinstance(error, errors.RateLimited | errors.ServiceUnavailable):
        problem.retry_after = error.retry_after
        headers["retry-after"] = str(error.retry_after)
    if isinstance(error, errors.Unauthenticated):
        headers["www-authenticate"] = 'Bearer realm="stowage"'
    if isinstance(error, errors.RangeNotSatisfiable):
        headers["content-range"] = f"bytes */{error.size}"
    return problem, headers


def encode_problem(problem: Problem, **extensions: Any) -> bytes:
    """Serialise a problem; ``extensions`` become extra top-level members, as RFC 9457 allows."""
    if not extensions:
        return msgspec.json.encode(problem)
    document: dict[str, Any] = msgspec.to_builtins(problem)
    for name, value in extensions.items():
        document.setdefault(name, msgspec.to_builtins(value))
    return msgspec.json.encode(document)


def problem_response(
    error: errors.StowageError, *, instance: str | None = None, status: int | None = None
) -> Response[bytes]:
    problem, headers = problem_for(error, instance=instance, status=status)
    extensions = {k: v for k, v in error.extra.items() if k != "retry_after"}
    return Response(
        content=encode_problem(problem, **extensions),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _from_http_exception(exc: HTTPException, path: str) -> tuple[errors.StowageError, int | None]:
    """Translate Litestar's exceptions into domain errors with details a client can act on."""
    if isinstance(exc, NotFoundException):
        return errors.NotFound(f"No resource at {path}; see /docs for the API's paths."), None
    if isinstance(exc, MethodNotAllowedException):
        headers = {name.lower(): value for name, value in (exc.headers or {}).items()}
        allowed = [m.strip() for m in headers.get("allow", "").split(",") if m.strip()]
        return errors.MethodNotAllowed(
            f"This path does not accept that method; use one of: {', '.join(sorted(allowed)) or 'none'}.",
            allowed=allowed,
        ), None
    if isinstance(exc, RequestEntityTooLarge):
        return errors.PayloadTooLarge("The request body exceeds the size this endpoint accepts."), None
    if isinstance(exc, ValidationException):
        field_errors = _field_errors(exc.extra)
        summary = "; ".join(f"{e.field}: {e.message}" for e in field_errors) or exc.detail
        return errors.InvalidInput(f"The request is not valid: {summary}", errors=field_errors), None
    detail = exc.detail or "The request could not be processed."
    cls = _SIMPLE_ERRORS.get(exc.status_code)
    if cls is not None:
        return cls(detail), None
    if exc.status_code < 500:
        return errors.InvalidInput(detail), exc.status_code
    return errors.InternalError(detail), exc.status_code


_FIELD_IN_MESSAGE = re.compile(
    r"(?:at `\$\.([A-Za-z0-9_.\[\]]+)`|required field `([A-Za-z0-9_]+)`|unknown field `([A-Za-z0-9_]+)`)"
)


def _field_errors(extra: Any) -> list[errors.FieldError]:
    """Litestar reports body problems under the key ``data``; name the real field where msgspec says it."""
    found: list[errors.FieldError] = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                source = item.get("source") or "body"
                source = getattr(source, "value", source)  # Litestar's ParamType enum → "query", "path", ...
                key = item.get("key")
                message = str(item.get("message", "invalid value"))
                match = _FIELD_IN_MESSAGE.search(message)
                if key == "data" and match:
                    key = match.group(1) or match.group(2) or match.group(3)
                    message = message.split(" - at `", maxsplit=1)[0]
                field = f"{source}.{key}" if key else str(source)
                found.append(errors.FieldError(field=field, message=message))
    return found


def log_domain_error(exc: errors.StowageError) -> None:
    """Server-side faults behind a domain error go to the log; client errors do not."""
    if isinstance(exc, errors.ServiceUnavailable):
        log.warning("dependency_unavailable", detail=exc.detail, cause=repr(exc.__cause__))
    elif isinstance(exc, errors.InsufficientStorage):
        # The operator's problem, not the client's: say where the disk is full (the client is not told).
        log.error("insufficient_storage", detail=exc.detail, path=exc.path, cause=repr(exc.__cause__))
    elif isinstance(exc, errors.InternalError) or (
        status_for(exc) >= 500 and not isinstance(exc, errors.QuotaExceeded)
    ):
        # Lost or damaged data (a blob missing or failing its hash) and other server-side faults:
        # the client gets a generic answer, the log gets everything needed to investigate.
        log.error("server_error", code=exc.code, detail=exc.detail, sha256=getattr(exc, "sha256", None))


def handle_domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, errors.StowageError)
    log_domain_error(exc)
    return problem_response(exc, instance=request.url.path)


def handle_http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    error, status = _from_http_exception(exc, request.url.path)
    return problem_response(error, instance=request.url.path, status=status)


def unexpected_error(path: str, exc: Exception) -> errors.InternalError:
    """Log the trace with the request id; tell the client only that it was our fault."""
    log.error("unhandled_exception", path=path, exc_info=exc)
    return errors.InternalError(
        "The server failed to handle this request. It has been logged; quote the request id when reporting it."
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return problem_response(unexpected_error(request.url.path, exc), instance=request.url.path)


def problem_message(error: errors.StowageError, *, instance: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A domain error as raw ASGI parts (status, headers, body), for layers that answer without the
    framework (``api.hot_reads``): the same body and headers as ``problem_response``."""
    problem, headers = problem_for(error, instance=instance)
    extensions = {k: v for k, v in error.extra.items() if k != "retry_after"}
    body = encode_problem(problem, **extensions)
    raw = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    raw.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())
    return problem.status, raw, body


def internal_error_body() -> bytes:
    """The 500 body for failures outside the framework (used by the outermost middleware)."""
    problem, _ = problem_for(
        errors.InternalError(
            "The server failed to handle this request. It has been logged; quote the request id when reporting it."
        )
    )
    return encode_problem(problem)


EXCEPTION_HANDLERS = {
    errors.StowageError: handle_domain_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
