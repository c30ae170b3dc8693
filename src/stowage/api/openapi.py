"""The OpenAPI document: what every REST operation declares, decided here once.

Controllers name each operation and say what it does with one helper, ``operation(...)``, splatted
into the route decorator::

    @get("/nodes/{node_id:str}/children", **operation("listChildren", tag="files"))

Everything else follows from the operation itself when Litestar builds the document
(``StowageOperation.__post_init__``), so no status is copied by hand from route to route:

- declared security → 401 (no or bad credentials) and 403 (a missing scope or role, a personal token
  on a session-only route);
- a path parameter → 404 (also another user's resource: existence is never revealed);
- parameters or a body → 400 ``invalid-input``; a body → 408 (it stopped arriving) and 413 (too large);
- the database → 503 (unreachable, with ``Retry-After``), and 507 for every write (a full disk on the
  database or blob side; an upload's quota);
- every operation → 500;
- what the helper says: conflicts (409), preconditions (412), rate limits (429), and the shape of
  the success: downloads (200/206/304 binary with their validators, 412, 416), ZIP archives, raw and
  multipart uploads (request bodies; 201 with ``Location`` or 200, both with ``ETag``).

Every error is ``application/problem+json`` with the one ``Problem`` schema (``api.problems.Problem``);
Litestar's own ``{status_code, detail, extra}`` error shape never appears. Document-wide details that
belong to no single operation (the ``Problem`` component, byte limits of names, email formats) are
applied by ``api.openapi_document.finish_document`` when the document is first served. None of this
costs anything per request: the document is built once, lazily, and cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
    Tag,
)
from litestar.types import Method

from stowage.api.presign_openapi import PRESIGN_PARAMETERS, PRESIGN_UPLOAD_PARAMETERS
from stowage.api.problems import PROBLEM_MEDIA_TYPE
from stowage.files.names import MAX_NAME_BYTES

Success = Literal["json", "download", "zip", "upload", "replace", "multipart", "drop"]

PROBLEM_REF = Reference(ref="#/components/schemas/Problem")
NODE_REF = Reference(ref="#/components/schemas/NodeOut")

# Security schemes. Both user credentials travel as `Authorization: Bearer …`; they are two schemes
# because they are obtained differently and not every route takes both (session-only routes refuse
# personal tokens), so a generated client knows which one an operation needs.
SESSION_SCHEME = "bearer"
TOKEN_SCHEME = "personalToken"  # noqa: S105 - a scheme name, not a secret
METRICS_SCHEME = "metricsToken"
SECURITY_SCHEMES = {
    SESSION_SCHEME: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="An access token (a JWT, `eyJ…`) from sign-up, login or refresh; it expires after "
        "`access_token_ttl` (15 minutes): refresh it with the refresh token.",
    ),
    TOKEN_SCHEME: SecurityScheme(
        type="http",
        scheme="bearer",
        description="A personal access token (`stp_…`) from `POST /api/v1/me/tokens`, with the scopes chosen "
        "then (read, write, admin). Sent as `Authorization: Bearer stp_…`. Accepted by file, search, trash "
        "and admin routes; refused (403) by the routes that manage the account and its credentials.",
    ),
    METRICS_SCHEME: SecurityScheme(
        type="http",
        scheme="bearer",
        description="The server's `metrics_token` setting, for `/metrics` only. When the setting is not "
        "set, `/metrics` is open.",
    ),
}
# The security requirement of routes that take either user credential, and of those that need a session.
USER_SECURITY: list[dict[str, list[str]]] = [{SESSION_SCHEME: []}, {TOKEN_SCHEME: []}]
SESSION_SECURITY: list[dict[str, list[str]]] = [{SESSION_SCHEME: []}]
USER_SCHEMES = frozenset({SESSION_SCHEME, TOKEN_SCHEME})

TAGS = [
    Tag(name="auth", description="Sign up, sign in, refresh and end sessions, email and password flows."),
    Tag(name="account", description="The signed-in user: profile, password, sessions, personal access tokens."),
    Tag(name="files", description="The tree: folders, metadata, listings, move, copy, star, batch operations."),
    Tag(name="content", description="Uploads (raw body or multipart) and downloads (Range, ETag), ZIP archives."),
    Tag(
        name="uploads",
        description="Resumable uploads, tus 1.0.0 (creation, creation-with-upload, creation-defer-length, "
        "termination, checksum, expiration, concatenation): point a tus client at /api/v1/uploads/.",
    ),
    Tag(name="versions", description="A file's kept contents: list, download, restore, pin, delete."),
    Tag(name="trash", description="Deleted items: list, restore, purge."),
    Tag(name="search", description="Search by name and filters, starred items, recent files."),
    Tag(
        name="shares",
        description="Share links (owner side) and shares with other users; what others shared with you.",
    ),
    Tag(
        name="links",
        description="A share link's visitor: no account; the token in the path, X-Share-Grant after a password.",
    ),
    Tag(name="images", description="Thumbnails and transforms of image files (cached), and their presigned URLs."),
    Tag(name="admin", description="Administrators: users, invitations, audit log, maintenance, storage."),
    Tag(name="system", description="Health, readiness, metrics and instance information."),
]

# --- pieces of the document ----------------------------------------------------------------------


def _string(description: str, **constraints: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, **constraints)


def _header(description: str, **constraints: Any) -> OpenAPIHeader:
    return OpenAPIHeader(schema=_string(description, **constraints), description=description)


def _request_header(name: str, description: str, **constraints: Any) -> Parameter:
    return Parameter(name=name, param_in="header", required=False, schema=_string(description, **constraints))


_BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
_ETAG_PATTERN = r'^"[0-9a-f]{64}"$'
_HTTP_DATE = r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"  # noqa: E501

RESPONSE_HEADERS: dict[str, OpenAPIHeader | Reference] = {
    "ETag": _header("Strong validator: the SHA-256 of the content, quoted.", pattern=_ETAG_PATTERN),
    "Last-Modified": _header("The file's modification time (HTTP-date).", pattern=_HTTP_DATE),
    "Accept-Ranges": _header("Single byte ranges are served.", enum=["bytes"]),
    "Content-Disposition": _header(
        "inline, or attachment (with ?download=true and for types a browser would run), with the file name "
        "(RFC 6266; RFC 8187 filename* for non-ASCII names)."
    ),
    "Content-Range": _header("The bytes sent: bytes <first>-<last>/<size>.", pattern=r"^bytes [0-9]+-[0-9]+/[0-9]+$"),
    "Unsatisfied-Range": _header("bytes */<size>", pattern=r"^bytes \*/[0-9]+$"),
    "Location": _header("The created file: /api/v1/nodes/<id>.", pattern=r"^/api/v1/nodes/[^/]+$"),
    "Retry-After": _header("Seconds to wait before retrying.", pattern=r"^[0-9]+$"),
    "WWW-Authenticate": _header('Bearer realm="stowage"'),
}

# Conditional and range headers follow RFC 9110: a value the server cannot parse is ignored (the
# whole file is served), never refused, so their syntax is described rather than constrained.
DOWNLOAD_HEADERS = [
    _request_header("Range", "One byte range: bytes=<first>-[<last>] or bytes=-<suffix> (others: whole file)."),
    _request_header("If-Range", "Serve the range only if the file still has this ETag (or HTTP-date)."),
    _request_header("If-None-Match", "304 when the file still has one of these ETags (or *)."),
    _request_header("If-Modified-Since", "304 when the file has not changed since this HTTP-date."),
    _request_header("If-Match", "412 unless the file has one of these ETags (or *)."),
    _request_header("If-Unmodified-Since", "412 if the file changed since this HTTP-date."),
]
UPLOAD_HEADERS = [
    _request_header("If-Match", "Replace only this version: its ETag, or * for any (412 otherwise)."),
    _request_header("If-None-Match", "* : create only (412 if the name exists).", enum=["*"]),
    _request_header(
        "Content-Digest",
        "RFC 9530: sha-256=:<base64 of the body's SHA-256>: (other algorithms are ignored); a mismatch or a "
        "malformed value is a 400 and nothing is stored.",
    ),
    _request_header(
        "X-Content-SHA256",
        "The body's SHA-256 as 64 hex characters (or base64); a mismatch is a 400 and nothing is stored.",
        pattern=r"^[ \t]*([0-9a-fA-F]{64}|[A-Za-z0-9+/_-]{43}=?)[ \t]*$",
    ),
    _request_header(
        "X-Modified-At",
        "The file's modification time, ISO 8601 such as 2026-05-01T12:00:00Z (no offset = UTC), for sync "
        "clients; another value is a 400.",
    ),
    _request_header(
        "X-Strip-GPS",
        "true: store an image without its GPS position (the bytes as sent are not kept); false: as sent. "
        "Without it, the server's strip_gps_on_upload decides.",
        enum=["true", "false"],
    ),
]
# Every request header the API documents, for CORS (``api.cors``) and for the contract test.
DOCUMENTED_REQUEST_HEADERS = tuple(
    dict.fromkeys(
        ["Authorization", "Content-Type", "X-Request-ID", "X-Share-Grant"]
        + [p.name for p in (*DOWNLOAD_HEADERS, *UPLOAD_HEADERS)]
    )
)

NAME_DESCRIPTION = (
    f"1-{MAX_NAME_BYTES} bytes of UTF-8 (the server NFC-normalises it; count bytes, not characters); "
    "no '/', NUL or other control characters; not '.' or '..'; not only spaces."
)
NAME_PATTERN = r"^(?!\.\.?$)(?! +$)[^/\x00-\x1f\x7f]+$"


def _problem(
    description: str, headers: Mapping[str, OpenAPIHeader | Reference] | None = None, *, body: bool = True
) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description,
        headers=dict(headers) if headers else None,
        content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=PROBLEM_REF)} if body else None,
    )


PROBLEMS: dict[int, tuple[str, dict[str, OpenAPIHeader | Reference]]] = {
    400: ("invalid-input: a parameter, header or the body is not valid (see errors[]).", {}),
    401: (
        "unauthenticated: no credentials, or they are expired, revoked or malformed.",
        {"WWW-Authenticate": RESPONSE_HEADERS["WWW-Authenticate"]},
    ),
    403: (
        "permission-denied: the credential lacks the scope or role, or this route needs a session; or a "
        "presigned URL was changed, has expired (presign: expired) or its signer's credential was revoked.",
        {},
    ),
    404: ("not-found: no such item (or not yours: existence is never revealed).", {}),
    408: ("request-timeout: the body stopped arriving; nothing was stored.", {}),
    409: ("conflict: the name is taken (conflicting_id), or the item cannot do this in its state.", {}),
    412: ("precondition-failed: If-Match, If-None-Match or If-Unmodified-Since did not hold.", {}),
    413: ("payload-too-large: the body exceeds the limit for this route (max_size when known).", {}),
    415: ("unsupported-media-type: not the type a presigned upload URL allows, or not an image.", {}),
    422: ("not-an-image, image-damaged or image-too-large: the stored file cannot be processed as an image.", {}),
    416: (
        "range-not-satisfiable: the range starts past the end.",
        {"Content-Range": RESPONSE_HEADERS["Unsatisfied-Range"]},
    ),
    429: ("rate-limited: too many attempts; retry_after seconds.", {"Retry-After": RESPONSE_HEADERS["Retry-After"]}),
    500: ("internal-error (also blob-corrupt, blob-not-found): quote request_id.", {}),
    503: (
        "service-unavailable: the database is unreachable; retry_after seconds.",
        {"Retry-After": RESPONSE_HEADERS["Retry-After"]},
    ),
    507: (
        "quota-exceeded (used_bytes, limit_bytes, free_bytes, needed_bytes) or insufficient-storage "
        "(the server's disk is full): nothing was stored.",
        {},
    ),
}


@dataclass(frozen=True, slots=True)
class Traits:
    """What an operation can answer that its signature does not show."""

    methods: dict[str, str]  # operationId → HTTP method
    tag: str | None = None
    success: Success = "json"
    conflicts: bool = False
    preconditions: bool = False
    rate_limited: bool = False
    database: bool = True
    created_or_existing: bool = False
    security: tuple[tuple[str, ...], ...] | None = None
    errors: tuple[int, ...] = ()
    writes: bool | None = None  # None: every method but GET and HEAD writes
    presigned: bool = False  # also answers presigned URLs (their query parameters; uploads: 415)


@dataclass
class StowageOperation(Operation):
    """An operation that completes its own responses from its traits (see the module docstring)."""

    traits: ClassVar[Traits]

    def __post_init__(self) -> None:
        traits = self.traits
        method = traits.methods.get(self.operation_id or "", "GET")
        if traits.tag is not None:
            self.tags = [traits.tag]
        if traits.security is not None:
            self.security = [{name: [] for name in alternative} for alternative in traits.security]
        generated = dict(self.responses or {})
        success = {code: response for code, response in generated.items() if code.startswith(("1", "2", "3"))}
        statuses = self._error_statuses(method)
        if traits.success == "download":
            success = _download_responses()
            statuses |= {412, 416}
            self.parameters = [*(self.parameters or []), *DOWNLOAD_HEADERS]
            if traits.presigned:
                self.parameters += PRESIGN_PARAMETERS
        elif traits.success == "zip":
            success = {"200": _zip_response()}
        elif traits.success in {"upload", "replace"}:
            success = _upload_responses(created=traits.success == "upload")
            statuses |= {408, 409, 412, 413, 507}
            self.parameters = [*(self.parameters or []), *UPLOAD_HEADERS]
            self.request_body = _raw_body()
            if traits.presigned and method == "PUT":  # a presigned upload URL signs PUT
                self.parameters += PRESIGN_UPLOAD_PARAMETERS
                statuses.add(415)
        elif traits.success == "drop":  # a raw body in, the handler's own JSON answer out
            statuses |= {408, 413, 507}
            self.request_body = _raw_body()
        elif traits.success == "multipart":
            statuses |= {408, 409, 413, 507}
            self.request_body = _multipart_body()
        if traits.created_or_existing and "201" in success:
            existing = success["201"]
            assert isinstance(existing, OpenAPIResponse)
            success["200"] = OpenAPIResponse(description="It already existed", content=existing.content)
        responses: dict[str, OpenAPIResponse | Reference] = dict(sorted(success.items()))
        for status in sorted(statuses):
            description, headers = PROBLEMS[status]
            responses[str(status)] = _problem(description, headers, body=method != "HEAD")
        if method == "HEAD":
            responses = {code: _without_body(response) for code, response in responses.items()}
        self.responses = responses

    def _error_statuses(self, method: str) -> set[int]:
        traits = self.traits
        parameters = [p for p in self.parameters or [] if isinstance(p, Parameter)]
        statuses = {500}
        if self.security and any(USER_SCHEMES & requirement.keys() for requirement in self.security):
            statuses |= {401, 403}
        elif self.security:
            statuses.add(401)
        if any(p.param_in == "path" for p in parameters):
            statuses.add(404)
        if parameters or self.request_body is not None:
            statuses.add(400)
        if self.request_body is not None:
            statuses |= {408, 413}
        if traits.database:
            statuses.add(503)
            writes = traits.writes if traits.writes is not None else method not in {"GET", "HEAD"}
            if writes:
                statuses.add(507)
        if traits.conflicts:
            statuses.add(409)
        if traits.preconditions:
            statuses.add(412)
        if traits.rate_limited:
            statuses.add(429)
        return statuses | set(traits.errors)


def _without_body(response: OpenAPIResponse | Reference) -> OpenAPIResponse | Reference:
    if isinstance(response, OpenAPIResponse):
        return OpenAPIResponse(description=response.description, headers=response.headers)
    return response


def _download_responses() -> dict[str, OpenAPIResponse | Reference]:
    validators = {name: RESPONSE_HEADERS[name] for name in ("ETag", "Last-Modified", "Accept-Ranges")}
    whole: dict[str, OpenAPIHeader | Reference] = {
        **validators,
        "Content-Disposition": RESPONSE_HEADERS["Content-Disposition"],
    }
    binary = {"*/*": OpenAPIMediaType(schema=_BINARY)}
    return {
        "200": OpenAPIResponse(
            description="The content, with the file's own Content-Type (sniffed at upload).",
            headers=whole,
            content=binary,
        ),
        "206": OpenAPIResponse(
            description="The requested byte range.",
            headers={**whole, "Content-Range": RESPONSE_HEADERS["Content-Range"]},
            content=binary,
        ),
        "304": OpenAPIResponse(description="Not modified (If-None-Match or If-Modified-Since).", headers=validators),
        "307": OpenAPIResponse(
            description="With s3_redirect_downloads: fetch the whole file from the object store at Location "
            "(a presigned URL valid for s3_presign_seconds).",
            headers={**validators, "Location": _header("A presigned object-store URL.", pattern=r"^https?://")},
        ),
    }


def _zip_response() -> OpenAPIResponse:
    return OpenAPIResponse(
        description="A ZIP archive, streamed (stored entries, ZIP64 when needed).",
        headers={"Content-Disposition": RESPONSE_HEADERS["Content-Disposition"]},
        content={"application/zip": OpenAPIMediaType(schema=_BINARY)},
    )


def _upload_responses(*, created: bool) -> dict[str, OpenAPIResponse | Reference]:
    node = {"application/json": OpenAPIMediaType(schema=NODE_REF)}
    etag: dict[str, OpenAPIHeader | Reference] = {"ETag": RESPONSE_HEADERS["ETag"]}
    responses: dict[str, OpenAPIResponse | Reference] = {
        "200": OpenAPIResponse(description="Stored as a new version of the existing file.", headers=etag, content=node)
    }
    if created:
        responses["201"] = OpenAPIResponse(
            description="Stored as a new file.",
            headers={**etag, "Location": RESPONSE_HEADERS["Location"]},
            content=node,
        )
    return responses


def _raw_body() -> RequestBody:
    return RequestBody(
        required=True,
        description="The file's bytes, as is (Expo uploadAsync BINARY_CONTENT, fetch with a Blob, curl -T). "
        "Any Content-Type is accepted; the stored type is sniffed from the content.",
        content={"application/octet-stream": OpenAPIMediaType(schema=_BINARY)},
    )


def _multipart_body() -> RequestBody:
    return RequestBody(
        required=True,
        description="Every part with a filename is stored in this folder, in order. Send the fields "
        "(on_conflict) BEFORE the file parts: a field that arrives after a file it would have applied to "
        "is refused with 400 (nothing after it is stored), never silently ignored.",
        content={
            "multipart/form-data": OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT,
                    properties={
                        "on_conflict": Schema(
                            type=OpenAPIType.STRING,
                            enum=["fail", "rename", "replace"],
                            description="Overrides the query parameter; must come before the files.",
                        ),
                        "file": Schema(
                            type=OpenAPIType.ARRAY,
                            items=_BINARY,
                            min_items=1,
                            description="One or more file parts (any field name; the part's filename is used).",
                        ),
                    },
                    required=["file"],
                )
            )
        },
    )


def operation(
    ids: str | Mapping[str, str],
    *,
    tag: str | None = None,
    success: Success = "json",
    conflicts: bool = False,
    preconditions: bool = False,
    rate_limited: bool = False,
    database: bool = True,
    created_or_existing: bool = False,
    security: tuple[tuple[str, ...], ...] | None = None,
    errors: tuple[int, ...] = (),
    writes: bool | None = None,
    presigned: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for a route decorator: the operation id(s) and what the operation documents.

    ``ids`` is one operationId, or one per HTTP method when a handler serves several (GET and HEAD, PUT
    and POST). ``security`` documents a requirement that authentication does not enforce (``/metrics``);
    ``errors`` adds statuses no category covers (a public route's 401 for a wrong password);
    ``presigned`` documents the presigned-URL query a download or raw upload also accepts.
    """
    by_method = None if isinstance(ids, str) else dict(ids)
    traits = Traits(
        methods={} if by_method is None else {op_id: method for method, op_id in by_method.items()},
        tag=tag,
        success=success,
        conflicts=conflicts,
        preconditions=preconditions,
        rate_limited=rate_limited,
        database=database,
        created_or_existing=created_or_existing,
        security=security,
        errors=errors,
        writes=writes,
        presigned=presigned,
    )

    def operation_id(handler: HTTPRouteHandler, method: Method, components: list[Any]) -> str:
        name = str(getattr(method, "value", method))  # an HttpMethod member or a plain string
        op_id = ids if isinstance(ids, str) else ids[name]
        traits.methods[op_id] = name  # Litestar names an operation just before it builds it
        return op_id

    name = ids if isinstance(ids, str) else next(iter(ids.values()))
    operation_class = cast("type[StowageOperation]", type(f"{name}Operation", (StowageOperation,), {"traits": traits}))
    return {"operation_id": operation_id, "operation_class": operation_class}


__all__ = [
    "DOCUMENTED_REQUEST_HEADERS",
    "SESSION_SECURITY",
    "USER_SECURITY",
    "StowageOperation",
    "operation",
]
