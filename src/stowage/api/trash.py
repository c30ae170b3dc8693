"""REST endpoints of the trash: list what was deleted, restore an item, purge one or all for good."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from stowage.api.deps import BEARER, Cursor, Limit, Req
from stowage.api.openapi import operation
from stowage.files.schemas import NodeOut, NodePage, RestoreRequest


class TrashController(Controller):
    path = "/api/v1/trash"
    tags = ["trash"]
    security = BEARER

    @get("/", summary="Items in the trash (what was deleted, newest first)", **operation("listTrash"))
    async def list_trash(self, request: Req, cursor: Cursor = None, limit: Limit = 100) -> NodePage:
        return await request.files.trash.list_trash(request.principal, cursor=cursor, limit=limit)

    @delete(
        "/", status_code=HTTP_204_NO_CONTENT, summary="Empty the trash (purges for good)", **operation("emptyTrash")
    )
    async def empty(self, request: Req) -> None:
        await request.files.trash.empty_trash(request.principal)

    @post(
        "/{node_id:str}/restore",
        status_code=HTTP_200_OK,
        summary="Restore to the original or a chosen folder",
        **operation("restoreFromTrash", conflicts=True),
    )
    async def restore(self, request: Req, node_id: FromPath[str], data: JSONBody[RestoreRequest]) -> NodeOut:
        return await request.files.trash.restore(
            request.principal, node_id, parent_id=data.parent_id, on_conflict=data.on_conflict
        )

    @delete(
        "/{node_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Purge one item for good",
        **operation("purgeFromTrash", conflicts=True),
    )
    async def purge(self, request: Req, node_id: FromPath[str]) -> None:
        await request.files.trash.purge(request.principal, node_id)


__all__ = ["TrashController"]
