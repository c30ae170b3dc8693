"""The presigned-URL query (``accounts.presign``) as the OpenAPI document describes it on the routes that
accept it: a file's download (GET, HEAD) and the raw upload into a folder (PUT)."""

from __future__ import annotations

from litestar.openapi.spec import OpenAPIType, Parameter, Schema

_NOTE = " Part of a presigned URL (from presignDownload or presignUpload): copy the URL as is."


def _query(name: str, description: str, schema: Schema) -> Parameter:
    return Parameter(name=name, param_in="query", required=False, description=description + _NOTE, schema=schema)


PRESIGN_PARAMETERS = [
    _query(
        "X-Stowage-Expires",
        "When the URL stops working, in Unix seconds.",
        Schema(type=OpenAPIType.INTEGER, minimum=0),
    ),
    _query(
        "X-Stowage-Credential",
        "Who signed the URL: s.<session id>.<user id> or p.<token id>.<user id>.",
        Schema(type=OpenAPIType.STRING, pattern=r"^[sp]\.[A-Za-z0-9-]{1,64}\.[A-Za-z0-9-]{1,64}$"),
    ),
    _query(
        "X-Stowage-Signature",
        "HMAC-SHA256 of the request, base64url. Any change to the URL answers 403.",
        Schema(type=OpenAPIType.STRING, pattern=r"^[A-Za-z0-9_-]{43}$"),
    ),
]
PRESIGN_UPLOAD_PARAMETERS = [
    _query(
        "X-Stowage-Max-Size",
        "The largest body the URL accepts, in bytes (413 above).",
        Schema(type=OpenAPIType.INTEGER, minimum=1),
    ),
    _query(
        "X-Stowage-Media-Type",
        "The only media type the URL accepts (type/subtype or type/*; 415 otherwise).",
        Schema(type=OpenAPIType.STRING, max_length=255),
    ),
    *PRESIGN_PARAMETERS,
]
