"""REST endpoints for sharing, signed-in side: an owner's links and user shares, and what others
shared with the caller. HTTP only: one service call per route (``stowage.sharing.services``).

Recipients use shared nodes through the ordinary file endpoints with the ids listed here; the
visitor's side of a link (no account) is ``api.share_links``.
"""

from __future__ import annotations

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from stowage.api.deps import BEARER, Req
from stowage.api.openapi import operation
from stowage.sharing.schemas import (
    LinkCreated,
    LinkCreateRequest,
    LinkList,
    LinkOut,
    LinkUpdateRequest,
    SharedWithMeList,
    UserShareList,
    UserShareOut,
    UserShareRequest,
)


class SharesController(Controller):
    path = "/api/v1"
    tags = ["shares"]
    security = BEARER

    # --- links ------------------------------------------------------------------------------------

    @post(
        "/nodes/{node_id:str}/links",
        status_code=HTTP_201_CREATED,
        summary="Create a share link to your file or folder",
        description="Optional password (argon2-hashed; visitors unlock it), expiry, download limit, and for "
        "folders drop mode (visitors add files and see nothing). The token is in this answer only.",
        **operation("createLink", conflicts=True),
    )
    async def create_link(self, request: Req, node_id: FromPath[str], data: JSONBody[LinkCreateRequest]) -> LinkCreated:
        return await request.runtime.sharing.links.create(request.principal, node_id, data)

    @get("/nodes/{node_id:str}/links", summary="The live links to your file or folder", **operation("listNodeLinks"))
    async def node_links(self, request: Req, node_id: FromPath[str]) -> LinkList:
        return await request.runtime.sharing.links.list_for_node(request.principal, node_id)

    @get("/links", summary="All your live share links", **operation("listLinks"))
    async def links(self, request: Req) -> LinkList:
        return await request.runtime.sharing.links.list_mine(request.principal)

    @patch(
        "/links/{link_id:str}",
        summary="Change a link's password, expiry or download limit",
        **operation("updateLink"),
    )
    async def update_link(self, request: Req, link_id: FromPath[str], data: JSONBody[LinkUpdateRequest]) -> LinkOut:
        return await request.runtime.sharing.links.update(request.principal, link_id, data)

    @delete(
        "/links/{link_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a link (its next request answers 404)",
        **operation("revokeLink"),
    )
    async def revoke_link(self, request: Req, link_id: FromPath[str]) -> None:
        await request.runtime.sharing.links.revoke(request.principal, link_id)

    # --- shares with users ------------------------------------------------------------------------

    @post(
        "/nodes/{node_id:str}/shares",
        summary="Share your file or folder with a user (by email), read or read_write",
        description="201 for a new share; 200 when the user already had one (its permission and expiry change).",
        **operation("shareWithUser", conflicts=True, created_or_existing=True),
    )
    async def share(
        self, request: Req, node_id: FromPath[str], data: JSONBody[UserShareRequest]
    ) -> Response[UserShareOut]:
        share, created = await request.runtime.sharing.users.share(request.principal, node_id, data)
        return Response(share, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get("/nodes/{node_id:str}/shares", summary="Who your file or folder is shared with", **operation("listNodeShares"))
    async def node_shares(self, request: Req, node_id: FromPath[str]) -> UserShareList:
        return await request.runtime.sharing.users.list_for_node(request.principal, node_id)

    @get("/shares", summary="All your live shares with other users", **operation("listShares"))
    async def shares(self, request: Req) -> UserShareList:
        return await request.runtime.sharing.users.list_mine(request.principal)

    @delete(
        "/shares/{share_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a share (the recipient's next request no longer reaches the item)",
        **operation("revokeShare"),
    )
    async def revoke_share(self, request: Req, share_id: FromPath[str]) -> None:
        await request.runtime.sharing.users.revoke(request.principal, share_id)

    # --- the recipient ----------------------------------------------------------------------------

    @get(
        "/shared-with-me",
        summary="What others share with you",
        description="Use each node's id with the file endpoints (listing, content, versions, ZIP, search with "
        "folder_id), with exactly the granted permission.",
        **operation("listSharedWithMe"),
    )
    async def shared_with_me(self, request: Req) -> SharedWithMeList:
        return await request.runtime.sharing.users.shared_with_me(request.principal)

    @delete(
        "/shared-with-me/{share_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Leave a share someone made with you",
        **operation("leaveShare"),
    )
    async def leave(self, request: Req, share_id: FromPath[str]) -> None:
        await request.runtime.sharing.users.leave(request.principal, share_id)


__all__ = ["SharesController"]
