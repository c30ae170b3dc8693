"""REST endpoints that mint presigned URLs: a GET URL for one file, a PUT URL for one new file, a tus
creation URL for resumable uploads into one folder.

The URLs themselves are the ordinary content routes plus a query (``accounts.presign``): the file's
``GET /api/v1/nodes/{id}/content`` (also answered by the hot-read lane) and the raw upload
``PUT /api/v1/nodes/{folder}/children/{name}``, and tus's ``POST /api/v1/uploads/``. They are absolute:
under ``public_url`` when it is set (behind a proxy), else under the address this request reached.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from litestar import Controller, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from stowage.accounts.schemas import PresignDownloadRequest, PresignedUrl, PresignTusRequest, PresignUploadRequest
from stowage.api.deps import BEARER, Req
from stowage.api.openapi import operation
from stowage.errors import FieldError, InvalidInput
from stowage.files.media_types import has_image_facts
from stowage.files.schemas import NodeOut
from stowage.images import limits_from, normalise


def url_base(request: Req) -> str:
    """Where clients reach this server: ``public_url``, or the scheme and host of this request."""
    public = request.runtime.settings.public_url
    return public.rstrip("/") if public else str(request.base_url).rstrip("/")


def with_thumbnail_urls(request: Req, items: Sequence[NodeOut], size: int, expires_in: int | None) -> list[NodeOut]:
    """A listing's items with ``thumbnail_url`` on every image file: a presigned URL of its square
    ``size``-pixel cover thumbnail, format chosen when fetched (``PresignService.thumbnail_urls``: one
    HMAC each, no database work). A size the thumbnail endpoint would refuse is a 400 here."""
    try:
        normalise(
            width=size,
            height=size,
            fit="cover",
            quality=None,
            format=None,
            accept=None,
            limits=limits_from(request.runtime.settings),
        )
    except InvalidInput as exc:
        raise InvalidInput(
            f"thumbnail: {exc.detail}", errors=[FieldError(field="query.thumbnail", message="not an allowed size")]
        ) from None
    images = [item.id for item in items if item.kind == "file" and has_image_facts(item.media_type)]
    transform = {"w": size, "h": size, "fit": "cover"}
    urls = dict(
        zip(
            images,
            request.runtime.presign.thumbnail_urls(request.principal, images, transform, expires_in, url_base(request)),
            strict=True,
        )
    )
    return [msgspec.structs.replace(item, thumbnail_url=urls[item.id]) if item.id in urls else item for item in items]


class PresignController(Controller):
    path = "/api/v1"
    tags = ["content"]
    security = BEARER

    @post(
        "/nodes/{node_id:str}/presign",
        status_code=HTTP_200_OK,
        summary="A presigned GET URL for a file (works without a token until it expires)",
        description="The URL is the file's content URL with X-Stowage-Expires, X-Stowage-Credential and "
        "X-Stowage-Signature: GET and HEAD (Range, ETag and conditionals as usual) need no Authorization "
        "header. A read-only token may mint it. It stops working when it expires, when the credential that "
        "minted it is revoked or its account disabled, and when the file goes.",
        **operation("presignDownload", conflicts=True, writes=False),
    )
    async def presign_download(
        self, request: Req, node_id: FromPath[str], data: JSONBody[PresignDownloadRequest]
    ) -> PresignedUrl:
        return await request.runtime.presign.download(request.principal, node_id, data.expires_in, url_base(request))

    @post(
        "/presign/upload",
        status_code=HTTP_200_OK,
        summary="A presigned PUT URL that stores one new file (size and media type limits signed in)",
        description="Say where: folder_id and name, or path (its folder must exist). PUT the bytes to the URL "
        "without an Authorization header: 201 with the file (or 200 with on_conflict=replace when it existed); "
        "a body over max_size answers 413 and content of another media_type 415, and nothing is stored. "
        "Needs the write scope.",
        **operation("presignUpload", conflicts=True, writes=False, errors=(404,)),
    )
    async def presign_upload(self, request: Req, data: JSONBody[PresignUploadRequest]) -> PresignedUrl:
        return await request.runtime.presign.upload(request.principal, data, url_base(request))

    @post(
        "/presign/tus",
        status_code=HTTP_200_OK,
        summary="A presigned tus creation URL: resumable uploads into one folder without a token",
        description="Say which folder: folder_id or path. Give the URL to a tus client as its endpoint, with "
        "no Authorization header: each POST creates an upload in that folder (Upload-Metadata may name the "
        "file, and the folder only if it is this one) and answers a Location presigned for that upload alone, "
        "so HEAD, PATCH and DELETE need no header either. Single uploads only (no Upload-Concat); an upload over "
        "max_size answers 413, a media type other than media_type (declared in Upload-Metadata, or sniffed "
        "from the content at the end) 415. Both URLs stop working at expires_at, or when the credential that "
        "minted them is revoked. Needs the write scope, on the folder (its owner or a read-write share).",
        **operation("presignTus", conflicts=True, writes=False, errors=(404,)),
    )
    async def presign_tus(self, request: Req, data: JSONBody[PresignTusRequest]) -> PresignedUrl:
        return await request.runtime.presign.tus_creation(request.principal, data, url_base(request))


__all__ = ["PresignController", "url_base"]
