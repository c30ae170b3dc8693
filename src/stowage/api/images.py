"""REST endpoints for image derivatives: a thumbnail (or any resize and re-encode) of an image file.

``GET /api/v1/nodes/{id}/thumbnail?w=&h=&fit=&q=&format=`` answers wherever the file's content does:
its owner, a user it is shared with, an administrator, and a presigned URL minted for exactly these
parameters (``POST /api/v1/nodes/{id}/presign/thumbnail``); a share link's visitor uses
``/api/v1/s/{token}/thumbnail`` (a shared file) or ``/api/v1/s/{token}/nodes/{id}/thumbnail`` (a file in
a shared folder). The content is opened by the read path exactly as for a download (same
authorisation), then ``media.ThumbnailService`` serves the derivative from its cache or renders it.
A derivative is answered like any small file: ETag (its content hash), 304 on If-None-Match, Range,
``Vary: Accept`` when the format was negotiated. Cached ones usually go through the hot-read lane.
"""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, post, route
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from stowage.accounts.schemas import PresignedUrl, PresignThumbnailRequest
from stowage.api.deps import BEARER, Req
from stowage.api.downloads import HeaderLookup, answer_download
from stowage.api.openapi import operation
from stowage.api.presign import url_base
from stowage.blobs import BlobNotFound
from stowage.files.services import Opened
from stowage.http.responses import BlobResponse
from stowage.images import normalise
from stowage.media.services import Derivative, ThumbnailService, TransformRequest

Width = Annotated[int | None, QueryParameter(ge=1, le=16384, description="Largest width in pixels (never enlarged).")]
Height = Annotated[int | None, QueryParameter(ge=1, le=16384, description="Largest height in pixels (never enlarged).")]
Fit = Annotated[
    Literal["cover", "contain", "inside"] | None,
    QueryParameter(
        description="With both w and h: cover crops to exactly w x h (default), contain letterboxes to w x h, "
        "inside fits within w x h. Ignored with one side."
    ),
]
Quality = Annotated[int | None, QueryParameter(ge=1, le=100, description="Encoder quality (JPEG, WebP, AVIF).")]
Format = Annotated[
    Literal["jpeg", "png", "webp", "avif", "auto"] | None,
    QueryParameter(
        name="format",
        description="Output format; auto (the default) picks WebP, else AVIF, from Accept, else JPEG (PNG for "
        "images that may be transparent), and the answer says Vary: Accept.",
    ),
]
GrantQuery = Annotated[
    str | None, QueryParameter(max_length=300, description="The grant from unlock (instead of X-Share-Grant)")
]
GrantHeader = Annotated[
    str | None,
    HeaderParameter(name="x-share-grant", max_length=300, description="The grant from unlock, for a password link"),
]
_THUMBNAIL_DESCRIPTION = (
    "JPEG, PNG, WebP, GIF (first frame), TIFF, AVIF and HEIC/HEIF inputs; EXIF orientation applied; no "
    "metadata (EXIF, GPS, XMP, ICC) in the output. Give w, h or both. 400 names the allowed sizes when "
    "image_allowed_sizes is set; 415 when the file's media type is not image/*; 422 when its bytes are not a "
    "readable image (not-an-image, image-damaged) or are too large to decode (image-too-large: pixels or bytes "
    "over the limits, refused from the header); 503 image-timeout when rendering took too long."
)


def transform_request(
    request: Req, w: int | None, h: int | None, fit: str | None, q: int | None, fmt: str | None
) -> TransformRequest:
    return TransformRequest(width=w, height=h, fit=fit, quality=q, format=fmt, accept=request.headers.get("accept"))


async def answer_derivative(derivative: Derivative, *, method: str, header: HeaderLookup) -> BlobResponse:
    """A GET or HEAD of a derivative, answered like any download."""
    response = await answer_download(
        (derivative.content, derivative.source), method=method, header=header, attachment=False
    )
    if derivative.negotiated:
        response.plan.headers["vary"] = "Accept"
    return response


async def answer_thumbnail_of(
    media: ThumbnailService, opened: Opened, request: TransformRequest, *, method: str, header: HeaderLookup
) -> BlobResponse:
    """The derivative of content the caller opened, answered (every thumbnail route and the hot-read
    lane). A remembered derivative whose file turns out to be gone is looked up again and rendered."""
    try:
        return await answer_derivative(await media.open(opened, request), method=method, header=header)
    except BlobNotFound:
        derivative = await media.open(opened, request, trust_memo=False)
        return await answer_derivative(derivative, method=method, header=header)


class ThumbnailsController(Controller):
    path = "/api/v1"
    tags = ["images"]
    security = BEARER

    @route(
        "/nodes/{node_id:str}/thumbnail",
        http_method=["GET", "HEAD"],
        summary="A thumbnail or transform of an image file (cached; ETag, If-None-Match)",
        description=_THUMBNAIL_DESCRIPTION,
        **operation(
            {"GET": "getThumbnail", "HEAD": "headThumbnail"},
            success="download",
            conflicts=True,
            presigned=True,
            errors=(415, 422),
        ),
    )
    async def thumbnail(
        self,
        request: Req,
        node_id: FromPath[str],
        w: Width = None,
        h: Height = None,
        fit: Fit = None,
        q: Quality = None,
        format_: Format = None,
    ) -> BlobResponse:
        runtime = request.runtime
        opened = await runtime.files.reading.open_file(request.principal, node_id)
        transform = transform_request(request, w, h, fit, q, format_)
        return await answer_thumbnail_of(
            runtime.media, opened, transform, method=request.method, header=request.headers.get
        )

    @post(
        "/nodes/{node_id:str}/presign/thumbnail",
        status_code=HTTP_200_OK,
        summary="A presigned GET URL for one thumbnail of a file (its parameters are signed)",
        description="The URL is the file's thumbnail URL with these parameters and X-Stowage-Expires, "
        "X-Stowage-Credential and X-Stowage-Signature: changing any parameter invalidates it.",
        **operation("presignThumbnail", tag="images", conflicts=True, writes=False),
    )
    async def presign_thumbnail(
        self, request: Req, node_id: FromPath[str], data: JSONBody[PresignThumbnailRequest]
    ) -> PresignedUrl:
        runtime = request.runtime
        # Parameters a thumbnail would refuse are refused now, not when the URL is used.
        normalise(
            width=data.w,
            height=data.h,
            fit=data.fit,
            quality=data.q,
            format=data.format,
            accept=None,
            limits=runtime.media.limits,
        )
        return await runtime.presign.thumbnail(request.principal, node_id, data, url_base(request))


class LinkThumbnailsController(Controller):
    path = "/api/v1/s/{token:str}"
    tags = ["links"]

    @route(
        "/thumbnail",
        http_method=["GET", "HEAD"],
        summary="A thumbnail of the shared image (cached; ETag, If-None-Match)",
        description=_THUMBNAIL_DESCRIPTION,
        **operation(
            {"GET": "getLinkThumbnail", "HEAD": "headLinkThumbnail"},
            success="download",
            conflicts=True,
            errors=(403, 415, 422),
        ),
    )
    async def thumbnail(
        self,
        request: Req,
        token: FromPath[str],
        w: Width = None,
        h: Height = None,
        fit: Fit = None,
        q: Quality = None,
        format_: Format = None,
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> BlobResponse:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, x_share_grant if x_share_grant is not None else grant)
        transform = transform_request(request, w, h, fit, q, format_)
        return await answer_thumbnail_of(
            request.runtime.media,
            visitors.open_content(visit),
            transform,
            method=request.method,
            header=request.headers.get,
        )

    @route(
        "/nodes/{item_id:str}/thumbnail",
        http_method=["GET", "HEAD"],
        summary="A thumbnail of an image inside the shared folder (cached; ETag, If-None-Match)",
        description=_THUMBNAIL_DESCRIPTION,
        **operation(
            {"GET": "getLinkNodeThumbnail", "HEAD": "headLinkNodeThumbnail"},
            success="download",
            conflicts=True,
            errors=(403, 415, 422),
        ),
    )
    async def node_thumbnail(
        self,
        request: Req,
        token: FromPath[str],
        item_id: FromPath[str],
        w: Width = None,
        h: Height = None,
        fit: Fit = None,
        q: Quality = None,
        format_: Format = None,
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> BlobResponse:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, x_share_grant if x_share_grant is not None else grant)
        opened = await visitors.open_node_content(visit, item_id)
        transform = transform_request(request, w, h, fit, q, format_)
        return await answer_thumbnail_of(
            request.runtime.media, opened, transform, method=request.method, header=request.headers.get
        )


__all__ = ["LinkThumbnailsController", "ThumbnailsController", "answer_derivative", "answer_thumbnail_of"]
