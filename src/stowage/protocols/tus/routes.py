"""The tus 1.0 front end: ``/api/v1/uploads/`` (creation) and ``/api/v1/uploads/{id}`` (an upload).

Core protocol plus creation, creation-with-upload, creation-defer-length, termination, checksum
(sha1, sha256, md5), expiration and concatenation. Handlers translate headers into calls of the
uploads services and the result back into tus headers; the services decide everything else. The
upload URL's id is also the id of the file it creates (``Stowage-Node-Id`` says so once it is
recorded), so ``/api/v1/nodes/{id}/content`` downloads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, Response, delete, head, patch, post, route
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from stowage.errors import FieldError, InvalidInput, MethodNotAllowed, StowageError, UnsupportedMediaType
from stowage.http.semantics import http_date
from stowage.policy import confined_to_upload
from stowage.protocols.tus import openapi
from stowage.protocols.tus.auth import principal_of, tus_before_request
from stowage.protocols.tus.errors import EXCEPTION_HANDLERS
from stowage.protocols.tus.headers import (
    OFFSET_OCTET_STREAM,
    TUS_VERSION,
    parse_checksum,
    parse_concat,
    parse_integer,
    parse_metadata,
    target_of,
)
from stowage.runtime import Runtime
from stowage.uploads.schemas import NewUpload, UploadState
from stowage.uploads.services import CHECKSUM_ALGORITHMS, ChunkChecksum, UploadServices

ENDPOINT = "/api/v1/uploads"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
    "concatenation",
)
NODE_ID_HEADER = "Stowage-Node-Id"

AnyRequest = Request[Any, Any, Any]


def _uploads(request: AnyRequest) -> UploadServices:
    runtime: Runtime = request.app.state.runtime
    return runtime.uploads


def state_headers(state: UploadState) -> dict[str, str]:
    """What tus says about an upload: offset, length (or that it is deferred), metadata and concatenation
    as received, expiry while unfinished, and the file's id once it is in the tree. (A final upload is
    joined at creation, so its offset is always known.)"""
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", "Upload-Offset": str(state.offset)}
    if state.length is not None:
        headers["Upload-Length"] = str(state.length)
    else:
        headers["Upload-Defer-Length"] = "1"
    if state.metadata:
        headers["Upload-Metadata"] = state.metadata
    if state.kind == "partial":
        headers["Upload-Concat"] = "partial"
    elif state.kind == "final":
        headers["Upload-Concat"] = "final;" + " ".join(f"{ENDPOINT}/{part}" for part in state.parts)
    if state.expires_at is not None:
        headers["Upload-Expires"] = http_date(state.expires_at)
    if state.node_id is not None:
        headers[NODE_ID_HEADER] = state.node_id
    return headers


def _checksum(request: AnyRequest) -> ChunkChecksum | None:
    value = request.headers.get("upload-checksum")
    if value is None:
        return None
    algorithm, digest = parse_checksum(value)
    return ChunkChecksum(algorithm=algorithm, digest=digest)


def _optional_integer(request: AnyRequest, name: str) -> int | None:
    value = request.headers.get(name.lower())
    return None if value is None else parse_integer(name, value)


def _new_upload(request: AnyRequest) -> NewUpload:
    """A creation request from its headers (Upload-Length or Upload-Defer-Length, Upload-Metadata,
    Upload-Concat)."""
    h = request.headers
    length = _optional_integer(request, "Upload-Length")
    defer = h.get("upload-defer-length")
    if defer is not None and defer.strip() != "1":
        raise InvalidInput(
            "Upload-Defer-Length must be 1.",
            errors=[FieldError(field="header.upload-defer-length", message="must be 1")],
        )
    kind: str = "single"
    parts: tuple[str, ...] = ()
    concat = h.get("upload-concat")
    if concat is not None:
        kind, parts = parse_concat(concat, ENDPOINT)
    if kind == "final":
        if length is not None or defer is not None:
            raise InvalidInput(
                "A final upload takes its length from its parts: send no Upload-Length or Upload-Defer-Length.",
                errors=[FieldError(field="header.upload-length", message="not allowed with Upload-Concat: final")],
            )
    elif (length is None) == (defer is None):
        raise InvalidInput(
            "Send either Upload-Length (the size in bytes) or Upload-Defer-Length: 1.",
            errors=[FieldError(field="header.upload-length", message="required unless the length is deferred")],
        )
    raw_metadata = h.get("upload-metadata")
    metadata = parse_metadata(raw_metadata) if raw_metadata is not None else {}
    return NewUpload(
        length=length,
        kind=kind,  # type: ignore[arg-type]  # "single", "partial" or "final" by construction
        target=target_of(metadata),
        metadata=raw_metadata.strip() if raw_metadata else None,
        parts=parts,
    )


def _has_body(request: AnyRequest) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in {"", "0"}
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


def _body(request: AnyRequest) -> AsyncIterator[bytes]:
    return request.stream()


class TusController(Controller):
    """tus 1.0 (see the module docstring); its own before-request hook and error mapping."""

    path = ENDPOINT
    tags = [openapi.TAG]
    security = openapi.SECURITY
    # A plain function (Litestar calls it with the request); mypy would take it for a method.
    before_request = tus_before_request  # type: ignore[assignment]
    exception_handlers = EXCEPTION_HANDLERS  # type: ignore[assignment]

    @route(
        "/",
        http_method="OPTIONS",
        security=[],
        summary="tus discovery: versions, extensions, limits",
        status_code=HTTP_204_NO_CONTENT,
        **openapi.discovery(),
    )
    async def advertise(self, request: AnyRequest) -> Response[None]:
        # Named to sort before ``create``: Litestar registers a controller's handlers in name order and
        # gives a path an automatic OPTIONS handler when its first handler arrives, which would win over
        # one registered later.
        return Response(
            content=None,
            status_code=HTTP_204_NO_CONTENT,
            headers={
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": ",".join(EXTENSIONS),
                "Tus-Max-Size": str(_uploads(request).max_size),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
                "Allow": "OPTIONS, POST",
            },
        )

    @post(
        "/",
        summary="Create an upload (creation, creation-with-upload, creation-defer-length, concatenation)",
        status_code=HTTP_201_CREATED,
        request_max_body_size=None,
        **openapi.create(),
    )
    async def create(self, request: AnyRequest) -> Response[None]:
        uploads = _uploads(request)
        new = _new_upload(request)
        state = await uploads.sessions.create(principal_of(request), new)
        # From here on the caller acts on this one upload (a presigned creation URL's holder, as its
        # Location will allow; anyone else, unchanged).
        principal = confined_to_upload(principal_of(request), state.id)
        with_body = new.kind != "final" and _has_body(request)
        if with_body and request.headers.get("content-type", "").split(";")[0].strip() == OFFSET_OCTET_STREAM:
            try:
                state = await uploads.chunks.append(principal, state.id, 0, _body(request), checksum=_checksum(request))
            except StowageError:
                # The upload exists: the client learns why its bytes were refused when it asks (HEAD)
                # or sends them again (PATCH); the creation itself succeeded.
                state = await uploads.sessions.peek(principal, state.id)
        headers = state_headers(state)
        headers["Location"] = _location(request, state.id)
        return Response(content=None, status_code=HTTP_201_CREATED, headers=headers)

    @head("/{upload_id:str}", summary="Offset and state of an upload", **openapi.status())
    async def upload_state(self, request: AnyRequest, upload_id: FromPath[str]) -> Response[None]:
        state = await _uploads(request).sessions.status(principal_of(request), upload_id)
        return Response(content=None, status_code=200, headers=state_headers(state))

    @patch(
        "/{upload_id:str}",
        summary="Append a chunk at Upload-Offset",
        status_code=HTTP_204_NO_CONTENT,
        request_max_body_size=None,
        **openapi.append(),
    )
    async def append(self, request: AnyRequest, upload_id: FromPath[str]) -> Response[None]:
        return await _append(request, upload_id)

    @delete("/{upload_id:str}", summary="Terminate an upload", status_code=HTTP_204_NO_CONTENT, **openapi.terminate())
    async def terminate(self, request: AnyRequest, upload_id: FromPath[str]) -> Response[None]:
        return await _terminate(request, upload_id)

    # The handler's own status is 200 (a HEAD's answer); PATCH and DELETE answers carry their 204.
    @post(
        "/{upload_id:str}",
        summary="X-HTTP-Method-Override: PATCH, DELETE or HEAD sent as POST",
        status_code=200,
        request_max_body_size=None,
        **openapi.override(),
    )
    async def overridden(self, request: AnyRequest, upload_id: FromPath[str]) -> Response[bytes] | Response[None]:
        """tus core: a client that can send only POST names the method it means in X-HTTP-Method-Override
        (PATCH, DELETE or HEAD), which is then used as the request's method."""
        method = request.headers.get("x-http-method-override", "").strip().upper()
        if method == "PATCH":
            return await _append(request, upload_id)
        if method == "DELETE":
            return await _terminate(request, upload_id)
        if method == "HEAD":
            return await _state(request, upload_id)
        raise MethodNotAllowed(
            "POST on an upload needs X-HTTP-Method-Override: PATCH, DELETE or HEAD; or send that method.",
            allowed=["DELETE", "HEAD", "OPTIONS", "PATCH", "POST"],
        )


def _location(request: AnyRequest, upload_id: str) -> str:
    """Where the new upload continues: its URL, presigned for it alone when a presigned creation URL
    created it (the holder has no other credential)."""
    principal = principal_of(request)
    if principal.restriction is None:
        return f"{ENDPOINT}/{upload_id}"
    runtime: Runtime = request.app.state.runtime
    return runtime.presign.tus_location(principal, upload_id)


async def _state(request: AnyRequest, upload_id: str) -> Response[bytes]:
    """The answer to HEAD (also when it came as a POST with X-HTTP-Method-Override): headers, no body."""
    state = await _uploads(request).sessions.status(principal_of(request), upload_id)
    return Response(content=b"", status_code=200, headers=state_headers(state))


async def _append(request: AnyRequest, upload_id: str) -> Response[None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != OFFSET_OCTET_STREAM:
        raise UnsupportedMediaType(f"A PATCH carries Content-Type: {OFFSET_OCTET_STREAM}.")
    offset_header = request.headers.get("upload-offset")
    if offset_header is None:
        raise InvalidInput(
            "Send Upload-Offset: the offset this chunk starts at.",
            errors=[FieldError(field="header.upload-offset", message="required")],
        )
    state = await _uploads(request).chunks.append(
        principal_of(request),
        upload_id,
        parse_integer("Upload-Offset", offset_header),
        _body(request),
        length=_optional_integer(request, "Upload-Length"),
        checksum=_checksum(request),
    )
    headers = state_headers(state)
    headers.pop("Upload-Metadata", None)
    return Response(content=None, status_code=HTTP_204_NO_CONTENT, headers=headers)


async def _terminate(request: AnyRequest, upload_id: str) -> Response[None]:
    await _uploads(request).sessions.terminate(principal_of(request), upload_id)
    return Response(content=None, status_code=HTTP_204_NO_CONTENT, headers={"Tus-Resumable": TUS_VERSION})
