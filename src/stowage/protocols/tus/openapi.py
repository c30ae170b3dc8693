"""How the tus routes appear in the OpenAPI document: their headers, bodies, answers and problems.

tus is a protocol of headers, so each operation lists the request headers it reads and the response
headers it sends, and every error answer the one ``Problem`` schema (the REST front end's component,
referenced by name). Built once, when Litestar builds the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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
)

TAG = "uploads"
TAG_DESCRIPTION = (
    "Resumable uploads (tus 1.0.0: creation, creation-with-upload, creation-defer-length, termination, "
    "checksum, expiration, concatenation). Use a tus client (tus-js-client, Uppy, TUSKit, tuspy) with "
    "the endpoint /api/v1/uploads/."
)
# The REST front end's security schemes, by name: an access token or a personal token.
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"personalToken": []}]
PROBLEM_REF = Reference(ref="#/components/schemas/Problem")
PROBLEM_MEDIA_TYPE = "application/problem+json"

_INTEGER = r"^[0-9]{1,19}$"
_HTTP_DATE = r"^[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"


def _string(description: str, **constraints: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, **constraints)


def _header(description: str, **constraints: Any) -> OpenAPIHeader:
    return OpenAPIHeader(schema=_string(description, **constraints), description=description)


def _request_header(name: str, description: str, *, required: bool = False, **constraints: Any) -> Parameter:
    return Parameter(
        name=name,
        param_in="header",
        required=required,
        schema=_string(description, **constraints),
        description=description,
    )


TUS_RESUMABLE = _request_header(
    "Tus-Resumable", "The tus version: 1.0.0 (another, or none, answers 412).", required=True, enum=["1.0.0"]
)
UPLOAD_LENGTH = _request_header(
    "Upload-Length", "The upload's size in bytes (at most Tus-Max-Size, else 413).", pattern=_INTEGER
)
UPLOAD_DEFER_LENGTH = _request_header(
    "Upload-Defer-Length", "1: the length is not known yet; send Upload-Length with a later PATCH.", enum=["1"]
)
UPLOAD_METADATA = _request_header(
    "Upload-Metadata",
    "Comma-separated `key base64(value)` pairs, echoed by HEAD. Stowage reads filename (or name): the file's "
    "name (default upload-<id>); filetype (or type): its media type when the content does not say; folder: "
    "a folder id, or path: a folder path (created if missing; default the root); on_conflict: fail "
    "(default), replace or rename.",
    pattern=r"^[\x20-\x7e]*$",
)
UPLOAD_CONCAT = _request_header(
    "Upload-Concat",
    "partial: a part of a concatenation; final;<url> <url>…: join these complete partial uploads, in order, "
    "into the file (no Upload-Length then).",
    pattern=r"^(partial|final;[\x21-\x7e]+( [\x21-\x7e]+)*)$",
)
UPLOAD_OFFSET = _request_header(
    "Upload-Offset",
    "Where this chunk starts: the upload's current offset (409 otherwise).",
    required=True,
    pattern=_INTEGER,
)
UPLOAD_CHECKSUM = _request_header(
    "Upload-Checksum",
    "<algorithm> <base64 digest> of this chunk (sha1, sha256 or md5): a mismatch answers 460 and the "
    "chunk is discarded; another algorithm 400.",
    pattern=r"^[a-z0-9-]+ [A-Za-z0-9+/]+={0,2}$",
)
METHOD_OVERRIDE = _request_header(
    "X-HTTP-Method-Override",
    "The method this POST stands for (for clients that can send only POST).",
    required=True,
    enum=["PATCH", "DELETE", "HEAD"],
)
LATE_LENGTH = _request_header(
    "Upload-Length", "For a deferred length: the upload's size, once (it cannot change).", pattern=_INTEGER
)

_PRESIGNED = " Part of a presigned tus URL (presignTus, or the Location it answers): copy the URL as is."


def _presign_query(name: str, description: str, schema: Schema) -> Parameter:
    return Parameter(name=name, param_in="query", required=False, description=description + _PRESIGNED, schema=schema)


# A presigned tus URL's query (``accounts.presign``): instead of Authorization, on every tus request.
PRESIGN_QUERY = [
    _presign_query(
        "X-Stowage-Folder", "The folder the URL uploads into (its id).", _string("A folder id.", max_length=64)
    ),
    _presign_query(
        "X-Stowage-Max-Size",
        "The largest upload the URL accepts, in bytes (413 above).",
        Schema(type=OpenAPIType.INTEGER, minimum=1),
    ),
    _presign_query(
        "X-Stowage-Media-Type",
        "The only media type the URL accepts (type/subtype or type/*; 415 otherwise).",
        _string("A media type or type/*.", max_length=255),
    ),
    _presign_query(
        "on_conflict",
        "What the URL does when the file name is taken (Upload-Metadata may say only the same).",
        _string("fail, rename or replace.", enum=["fail", "rename", "replace"]),
    ),
    _presign_query(
        "X-Stowage-Expires", "When the URL stops working, in Unix seconds.", Schema(type=OpenAPIType.INTEGER, minimum=0)
    ),
    _presign_query(
        "X-Stowage-Credential",
        "Who signed the URL: s.<session id>.<user id> or p.<token id>.<user id>.",
        _string("The signer.", pattern=r"^[sp]\.[A-Za-z0-9-]{1,64}\.[A-Za-z0-9-]{1,64}$"),
    ),
    _presign_query(
        "X-Stowage-Signature",
        "HMAC-SHA256 of the request, base64url. Any change to the URL answers 403.",
        _string("The signature.", pattern=r"^[A-Za-z0-9_-]{43}$"),
    ),
]

RESPONSE_HEADERS: dict[str, OpenAPIHeader | Reference] = {
    "Tus-Resumable": _header("The tus version of this answer.", enum=["1.0.0"]),
    "Upload-Offset": _header("The bytes stored so far.", pattern=_INTEGER),
    "Upload-Length": _header("The upload's size in bytes, when known.", pattern=_INTEGER),
    "Upload-Defer-Length": _header("1 while the length is not known.", enum=["1"]),
    "Upload-Metadata": _header("Upload-Metadata as it was sent at creation."),
    "Upload-Concat": _header("partial, or final;<urls> as sent at creation."),
    "Upload-Expires": _header("When an unfinished upload will be removed (HTTP-date).", pattern=_HTTP_DATE),
    "Stowage-Node-Id": _header(
        "Once the last byte is stored: the file's id (/api/v1/nodes/{id}); a new file has the upload's id."
    ),
    "Location": _header(
        "The new upload's URL: /api/v1/uploads/<id> (created through a presigned URL: with a query that "
        "presigns it for this upload alone).",
        pattern=r"^/api/v1/uploads/[^/?]+(\?[\x21-\x7e]*)?$",
    ),
    "Cache-Control": _header("no-store", enum=["no-store"]),
    "Retry-After": _header("Seconds to wait before retrying.", pattern=r"^[0-9]+$"),
}
DISCOVERY_HEADERS: dict[str, OpenAPIHeader | Reference] = {
    "Tus-Version": _header("The tus versions spoken: 1.0.0.", enum=["1.0.0"]),
    "Tus-Extension": _header(
        "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,concatenation"
    ),
    "Tus-Max-Size": _header("The largest upload in bytes (the max_upload_bytes setting).", pattern=_INTEGER),
    "Tus-Checksum-Algorithm": _header("sha1,sha256,md5"),
}

PROBLEMS: dict[int, str] = {
    400: "invalid-input: a tus header is malformed or missing (see errors[]), or an unsupported checksum algorithm.",
    401: "unauthenticated: no credentials, or they are expired, revoked or malformed.",
    403: "permission-denied: the credential lacks the write scope, or a presigned URL is changed, expired, revoked "
    "or for another upload or folder (or a concatenation); upload-final: a final upload takes no PATCH.",
    404: "not-found: no such upload (or not yours), or the target folder does not exist.",
    405: "method-not-allowed: a POST to an upload without X-HTTP-Method-Override (PATCH, DELETE or HEAD).",
    408: "request-timeout: the body stopped arriving (the bytes that arrived are kept; HEAD says how many).",
    409: "upload-offset-mismatch: Upload-Offset is not the upload's offset (Upload-Offset in the answer says it); "
    "conflict: the file name is taken (on_conflict=fail), or the lease was lost.",
    410: "upload-gone: the upload expired before it was finished (or its bytes were lost): start a new one.",
    412: "tus-version: Tus-Resumable is missing or not 1.0.0 (Tus-Version in the answer); nothing was done.",
    413: "payload-too-large: the length exceeds Tus-Max-Size (or a presigned URL's max size), or the chunk goes "
    "past Upload-Length.",
    415: "unsupported-media-type: a PATCH must carry Content-Type: application/offset+octet-stream; a presigned "
    "URL's upload declares (Upload-Metadata) or turns out to be of another media type than it allows.",
    423: "upload-locked: another request is sending bytes to this upload; retry after Retry-After seconds.",
    460: "checksum-mismatch: the chunk does not match Upload-Checksum; it was discarded (the offset is unchanged).",
    500: "internal-error: quote request_id.",
    503: "service-unavailable: the database is unreachable; retry_after seconds.",
    507: "quota-exceeded (the folder owner's quota) or insufficient-storage (the server's disk is full).",
}
_HEADERS_BY_PROBLEM: dict[int, tuple[str, ...]] = {
    409: ("Upload-Offset",),
    423: ("Retry-After",),
    503: ("Retry-After",),
}


def _problem(status: int, *, body: bool) -> OpenAPIResponse:
    headers = {"Tus-Resumable": RESPONSE_HEADERS["Tus-Resumable"]}
    headers |= {name: RESPONSE_HEADERS[name] for name in _HEADERS_BY_PROBLEM.get(status, ())}
    if status == 412:
        headers["Tus-Version"] = DISCOVERY_HEADERS["Tus-Version"]
    return OpenAPIResponse(
        description=PROBLEMS[status],
        headers=headers,
        content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=PROBLEM_REF)} if body else None,
    )


def _chunk_body(description: str, *, required: bool) -> RequestBody:
    return RequestBody(
        required=required,
        description=description,
        content={
            "application/offset+octet-stream": OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
            )
        },
    )


@dataclass
class TusOperation(Operation):
    """An operation whose headers, body and answers are fixed by this module (see ``_operation``)."""

    spec: ClassVar[dict[str, Any]]

    def __post_init__(self) -> None:
        spec = self.spec
        path_parameters = [p for p in self.parameters or [] if isinstance(p, Parameter) and p.param_in == "path"]
        self.parameters = [*path_parameters, *spec["headers"], *([] if spec.get("public") else PRESIGN_QUERY)] or None
        self.request_body = spec.get("body")
        method = spec["method"]
        responses: dict[str, OpenAPIResponse | Reference] = {
            str(status): OpenAPIResponse(
                description=description,
                headers={name: RESPONSE_HEADERS.get(name) or DISCOVERY_HEADERS[name] for name in names},
            )
            for status, (description, names) in spec["success"].items()
        }
        for status in sorted(spec["problems"]):
            responses[str(status)] = _problem(status, body=method != "HEAD")
        self.responses = responses
        if spec.get("public"):
            self.security = None


def _operation(operation_id: str, **spec: Any) -> dict[str, Any]:
    operation_class = type(f"{operation_id}Operation", (TusOperation,), {"spec": spec})
    return {"operation_id": operation_id, "operation_class": operation_class}


_AUTH = {401, 403, 412, 500, 503}
_STATE = ("Tus-Resumable", "Upload-Offset", "Upload-Length", "Upload-Defer-Length", "Upload-Expires", "Stowage-Node-Id")


def discovery() -> dict[str, Any]:
    return _operation(
        "tusOptions",
        method="OPTIONS",
        public=True,
        headers=[],
        success={"204": ("What this server supports.", tuple(DISCOVERY_HEADERS))},
        problems={500},
    )


def create() -> dict[str, Any]:
    return _operation(
        "createUpload",
        method="POST",
        headers=[TUS_RESUMABLE, UPLOAD_LENGTH, UPLOAD_DEFER_LENGTH, UPLOAD_METADATA, UPLOAD_CONCAT, UPLOAD_CHECKSUM],
        body=_chunk_body(
            "creation-with-upload: the first bytes of the upload (Content-Type: application/offset+octet-stream); "
            "without that type the body is ignored.",
            required=False,
        ),
        success={
            "201": (
                "Created. Location is the upload's URL; Upload-Offset says how many bytes of the body were "
                "stored. A final upload (or one of length 0) is a file at once: Stowage-Node-Id.",
                ("Location", *_STATE),
            )
        },
        problems=_AUTH | {400, 404, 408, 409, 413, 415, 507},
    )


def status() -> dict[str, Any]:
    return _operation(
        "getUploadOffset",
        method="HEAD",
        headers=[TUS_RESUMABLE],
        success={
            "200": (
                "The upload's state. Once complete, Stowage-Node-Id names the file.",
                (*_STATE, "Upload-Metadata", "Upload-Concat", "Cache-Control"),
            )
        },
        problems=_AUTH | {400, 404, 409, 410, 415, 423, 507},
    )


def append() -> dict[str, Any]:
    return _operation(
        "appendToUpload",
        method="PATCH",
        headers=[TUS_RESUMABLE, UPLOAD_OFFSET, UPLOAD_CHECKSUM, LATE_LENGTH],
        body=_chunk_body("The chunk's bytes, stored from Upload-Offset on.", required=True),
        success={
            "204": (
                "Stored: Upload-Offset is the new offset. With the last byte the file is in the tree "
                "(Stowage-Node-Id).",
                _STATE,
            )
        },
        problems=_AUTH | {400, 404, 408, 409, 410, 413, 415, 423, 460, 507},
    )


def terminate() -> dict[str, Any]:
    return _operation(
        "terminateUpload",
        method="DELETE",
        headers=[TUS_RESUMABLE],
        success={
            "204": (
                "Terminated: the upload and its stored bytes are gone (a file it became stays).",
                ("Tus-Resumable",),
            )
        },
        problems=_AUTH | {400, 404, 410, 423},
    )


def override() -> dict[str, Any]:
    return _operation(
        "overrideUploadMethod",
        method="POST",
        headers=[
            TUS_RESUMABLE,
            METHOD_OVERRIDE,
            _request_header("Upload-Offset", "With PATCH: where this chunk starts.", pattern=_INTEGER),
            UPLOAD_CHECKSUM,
            LATE_LENGTH,
        ],
        body=_chunk_body("With PATCH: the chunk's bytes.", required=False),
        success={
            "200": ("As HEAD: the upload's state.", (*_STATE, "Upload-Metadata", "Upload-Concat", "Cache-Control")),
            "204": ("As PATCH (the new Upload-Offset) or DELETE.", _STATE),
        },
        problems=_AUTH | {400, 404, 405, 408, 409, 410, 413, 415, 423, 460, 507},
    )
