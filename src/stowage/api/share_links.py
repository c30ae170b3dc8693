"""REST endpoints of a share link's visitor: no account, the link's token in the path.

What the link leads to, its content (Range, ETag, conditionals, as every download), a shared
folder's listings and ZIP archives, the password unlock, and uploads through a drop link. A
password-protected link needs the grant ``POST …/unlock`` returns, as the ``X-Share-Grant`` header
(or the ``grant`` query parameter, for an ``<img>`` tag). Everything outside the shared node is 404.
GET and HEAD of ``/api/v1/s/<token>/content`` are usually answered by the hot-read lane
(``api.hot_reads``), with these same parts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post, route
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from stowage.api.deps import Cursor, Limit, Req
from stowage.api.downloads import HeaderLookup, answer_download, zip_response
from stowage.api.openapi import operation
from stowage.files.schemas import FileContent, SortKey
from stowage.files.services import ContentSource, UploadOptions
from stowage.http.responses import BlobResponse, StreamResponse
from stowage.http.semantics import parse_content_digest, parse_sha256_header
from stowage.sharing.schemas import DropResult, LinkInfo, SharedNodeOut, SharedNodePage, UnlockGrant, UnlockRequest
from stowage.sharing.services import Visit, VisitorService, counts_as_download

GrantQuery = Annotated[
    str | None, QueryParameter(max_length=300, description="The grant from unlock (instead of X-Share-Grant)")
]
GrantHeader = Annotated[
    str | None,
    HeaderParameter(name="x-share-grant", max_length=300, description="The grant from unlock, for a password link"),
]
Download = Annotated[bool, QueryParameter(description="Force Content-Disposition: attachment")]
Sort = Annotated[SortKey, QueryParameter()]
Order = Annotated[Literal["asc", "desc"], QueryParameter()]


async def send_link_content(
    visitors: VisitorService,
    visit: Visit,
    opened: tuple[FileContent, ContentSource],
    *,
    method: str,
    header: HeaderLookup,
    attachment: bool,
) -> BlobResponse:
    """Answer a visitor's GET or HEAD like any download, counting it against the link's limit first
    when it is one (``counts_as_download``): the limit is checked before a byte is sent."""
    response = await answer_download(opened, method=method, header=header, attachment=attachment)
    if counts_as_download(method, response.plan.status, response.plan.start):
        await visitors.record_download(visit)
    return response


def _grant(header: str | None, query: str | None) -> str | None:
    return header if header is not None else query


def _drop_options(request: Request[Any, Any, Any]) -> UploadOptions:
    headers = request.headers
    digests = parse_content_digest(headers.get("content-digest"))
    length = headers.get("content-length")
    return UploadOptions(
        on_conflict="rename",
        sha256=digests.get("sha-256") or parse_sha256_header(headers.get("x-content-sha256")),
        declared_length=int(length) if length is not None and length.isdigit() else None,
    )


class ShareLinksController(Controller):
    path = "/api/v1/s/{token:str}"
    tags = ["links"]

    @get("/", summary="What a share link leads to", **operation("getLink"))
    async def info(
        self, request: Req, token: FromPath[str], x_share_grant: GrantHeader = None, grant: GrantQuery = None
    ) -> LinkInfo:
        return await request.runtime.sharing.visitors.info(token, _grant(x_share_grant, grant))

    @post(
        "/unlock",
        status_code=HTTP_200_OK,
        summary="Unlock a password-protected link: a short-lived grant",
        description="Wrong passwords answer 403; attempts are limited per address and per link (429).",
        **operation("unlockLink", conflicts=True, rate_limited=True, writes=False, errors=(403,)),
    )
    async def unlock(self, request: Req, token: FromPath[str], data: JSONBody[UnlockRequest]) -> UnlockGrant:
        return await request.runtime.sharing.visitors.unlock(token, data.password, request.client_info.ip)

    @route(
        "/content",
        http_method=["GET", "HEAD"],
        summary="Download the shared file (Range, ETag, conditionals)",
        **operation({"GET": "downloadLink", "HEAD": "headLink"}, success="download", conflicts=True, errors=(403,)),
    )
    async def content(
        self,
        request: Req,
        token: FromPath[str],
        download: Download = False,
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> BlobResponse:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, _grant(x_share_grant, grant))
        return await send_link_content(
            visitors,
            visit,
            visitors.open_content(visit),
            method=request.method,
            header=request.headers.get,
            attachment=download,
        )

    @get("/children", summary="List the shared folder", **operation("listLinkChildren", conflicts=True, errors=(403,)))
    async def children(
        self,
        request: Req,
        token: FromPath[str],
        sort: Sort = "name",
        order: Order = "asc",
        cursor: Cursor = None,
        limit: Limit = 100,
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> SharedNodePage:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, _grant(x_share_grant, grant))
        return await visitors.children(visit, None, sort=sort, descending=order == "desc", cursor=cursor, limit=limit)

    @get(
        "/zip",
        summary="The shared folder (or file) as a ZIP archive",
        **operation("downloadLinkZip", success="zip", errors=(403,)),
    )
    async def zip(
        self, request: Req, token: FromPath[str], x_share_grant: GrantHeader = None, grant: GrantQuery = None
    ) -> StreamResponse:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, _grant(x_share_grant, grant))
        return zip_response(await visitors.zip_entries(visit, None), visit.link.name)

    # --- inside a shared folder ---------------------------------------------------------------

    @get(
        "/nodes/{item_id:str}",
        summary="A file or folder inside the shared folder",
        **operation("getLinkNode", errors=(403,)),
    )
    async def node(
        self,
        request: Req,
        token: FromPath[str],
        item_id: FromPath[str],
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> SharedNodeOut:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, _grant(x_share_grant, grant))
        return await visitors.node(visit, item_id)

    @get(
        "/nodes/{item_id:str}/children",
        summary="List a folder inside the shared folder",
        **operation("listLinkNodeChildren", conflicts=True, errors=(403,)),
    )
    async def node_children(
        self,
        request: Req,
        token: FromPath[str],
        item_id: FromPath[str],
        sort: Sort = "name",
        order: Order = "asc",
        cursor: Cursor = None,
        limit: Limit = 100,
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> SharedNodePage:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, _grant(x_share_grant, grant))
        return await visitors.children(
            visit, item_id, sort=sort, descending=order == "desc", cursor=cursor, limit=limit
        )

    @route(
        "/nodes/{item_id:str}/content",
        http_method=["GET", "HEAD"],
        summary="Download a file inside the shared folder (Range, ETag, conditionals)",
        **operation(
            {"GET": "downloadLinkNode", "HEAD": "headLinkNode"}, success="download", conflicts=True, errors=(403,)
        ),
    )
    async def node_content(
        self,
        request: Req,
        token: FromPath[str],
        item_id: FromPath[str],
        download: Download = False,
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> BlobResponse:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, _grant(x_share_grant, grant))
        opened = await visitors.open_node_content(visit, item_id)
        return await send_link_content(
            visitors, visit, opened, method=request.method, header=request.headers.get, attachment=download
        )

    @get(
        "/nodes/{item_id:str}/zip",
        summary="A folder inside the shared folder as a ZIP archive",
        **operation("downloadLinkNodeZip", success="zip", errors=(403,)),
    )
    async def node_zip(
        self,
        request: Req,
        token: FromPath[str],
        item_id: FromPath[str],
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> StreamResponse:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, _grant(x_share_grant, grant))
        entries = await visitors.zip_entries(visit, item_id)
        return zip_response(entries, None)

    # --- drop links ---------------------------------------------------------------------------

    @route(
        "/files/{name:str}",
        http_method=["PUT", "POST"],
        status_code=HTTP_201_CREATED,
        summary="Add a file through a drop link (the raw body)",
        description="A taken name gets a number; the answer says the stored name. Visitors of a drop link see "
        "nothing else. Content-Digest (sha-256) or X-Content-SHA256 are checked when sent.",
        request_max_body_size=None,
        **operation({"PUT": "dropFile", "POST": "dropFileViaPost"}, success="drop", errors=(403,)),
    )
    async def drop(
        self,
        request: Req,
        token: FromPath[str],
        name: FromPath[str],
        x_share_grant: GrantHeader = None,
        grant: GrantQuery = None,
    ) -> Response[DropResult]:
        visitors = request.runtime.sharing.visitors
        visit = await visitors.visit(token, _grant(x_share_grant, grant))
        result = await visitors.drop(visit, name, request.stream(), _drop_options(request))
        return Response(result, status_code=HTTP_201_CREATED)


__all__ = ["ShareLinksController", "send_link_content"]
