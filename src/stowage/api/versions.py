"""REST endpoints of a file's versions: list, download, restore, pin and delete old versions."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post, route
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from stowage.api.deps import BEARER, Req
from stowage.api.downloads import send_content
from stowage.api.openapi import operation
from stowage.files.schemas import NodeOut, UpdateVersionRequest, VersionList, VersionOut
from stowage.http.responses import BlobResponse


class VersionsController(Controller):
    path = "/api/v1"
    tags = ["versions"]
    security = BEARER

    # --- versions --------------------------------------------------------------------------------

    @get(
        "/nodes/{node_id:str}/versions",
        summary="A file's versions, newest first",
        **operation("listVersions", tag="versions", conflicts=True),
    )
    async def versions(self, request: Req, node_id: FromPath[str]) -> VersionList:
        return await request.files.versions.list(request.principal, node_id)

    @route(
        "/nodes/{node_id:str}/versions/{version_id:str}/content",
        http_method=["GET", "HEAD"],
        summary="Download one version (Range, ETag and conditional requests as for the file)",
        **operation(
            {"GET": "downloadVersion", "HEAD": "headVersion"}, tag="versions", success="download", conflicts=True
        ),
    )
    async def version_content(
        self,
        request: Req,
        node_id: FromPath[str],
        version_id: FromPath[str],
        download: Annotated[bool, QueryParameter()] = False,
    ) -> BlobResponse:
        opened = await request.files.reading.open_version(request.principal, node_id, version_id)
        return await send_content(request, opened, attachment=download)

    @post(
        "/nodes/{node_id:str}/versions/{version_id:str}/restore",
        status_code=HTTP_200_OK,
        summary="Make this version current again (as a new version)",
        **operation("restoreVersion", tag="versions", conflicts=True),
    )
    async def restore_version(self, request: Req, node_id: FromPath[str], version_id: FromPath[str]) -> NodeOut:
        return await request.files.versions.restore(request.principal, node_id, version_id)

    @patch(
        "/nodes/{node_id:str}/versions/{version_id:str}",
        summary="Pin or unpin a version",
        **operation("updateVersion", tag="versions", conflicts=True),
    )
    async def update_version(
        self,
        request: Req,
        node_id: FromPath[str],
        version_id: FromPath[str],
        data: JSONBody[UpdateVersionRequest],
    ) -> VersionOut:
        return await request.files.versions.set_pinned(request.principal, node_id, version_id, data.pinned)

    @delete(
        "/nodes/{node_id:str}/versions/{version_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete an old version (not the current one)",
        **operation("deleteVersion", tag="versions", conflicts=True),
    )
    async def delete_version(self, request: Req, node_id: FromPath[str], version_id: FromPath[str]) -> None:
        await request.files.versions.delete(request.principal, node_id, version_id)


__all__ = ["VersionsController"]
