"""REST endpoints for files and folders. HTTP only: headers and bodies in, one service call, out.

Uploads stream the request body (no size limit from the framework: the service enforces the upload
limit and the quota while streaming). Downloads get a ``FileContent`` and its byte source from the
read service, are planned by ``http.serving.plan_download`` and sent by ``http.responses.BlobResponse``
(pathsend when the server offers it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, route
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from stowage.api.deps import BEARER, Cursor, Limit, Req
from stowage.api.downloads import send_content, zip_response
from stowage.api.openapi import operation
from stowage.api.presign import url_base, with_thumbnail_urls
from stowage.api.problems import status_for
from stowage.errors import FieldError, InvalidInput
from stowage.files.schemas import (
    BatchDeleteRequest,
    BatchMoveRequest,
    ConflictPolicy,
    CopyRequest,
    CreateFolderPathRequest,
    CreateFolderRequest,
    FileContent,
    FolderOut,
    NodeOut,
    NodePage,
    UpdateNodeRequest,
    UploadResult,
    ZipRequest,
)
from stowage.files.services import ContentSource, FileServices, ItemOutcome, UploadOptions
from stowage.http.multipart import MultipartStream, read_field
from stowage.http.responses import BlobResponse, StreamResponse
from stowage.http.semantics import (
    parse_content_digest,
    parse_if_match,
    parse_sha256_header,
)
from stowage.policy import Principal

AnyRequest = Request[Any, Any, State]


class BatchItemResult(msgspec.Struct):
    """One item's outcome: ``status`` is the HTTP status it would have had on its own."""

    id: str
    status: int
    node: NodeOut | None = None
    error: str | None = None
    detail: str | None = None


class BatchResult(msgspec.Struct):
    results: list[BatchItemResult]


OnConflict = Annotated[ConflictPolicy, QueryParameter(description="What to do when the name is taken")]
Sort = Annotated[
    Literal["name", "size", "modified", "type", "taken_at"],
    QueryParameter(
        description="taken_at: by capture time (EXIF DateTimeOriginal of images), falling back to the "
        "modification time for folders, non-images and photos without one"
    ),
]
Order = Annotated[Literal["asc", "desc"], QueryParameter()]
ANY_PATH = "{path:path}"


def _upload_options(request: AnyRequest, on_conflict: ConflictPolicy) -> UploadOptions:
    h = request.headers
    digests = parse_content_digest(h.get("content-digest"))
    expected = digests.get("sha-256") or parse_sha256_header(h.get("x-content-sha256"))
    if_none_match = h.get("if-none-match")
    if if_none_match is not None and if_none_match.strip() != "*":
        raise InvalidInput(
            "For uploads If-None-Match only accepts * (create only).",
            errors=[FieldError(field="header.if-none-match", message="expected *")],
        )
    length = h.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    modified = None
    raw_mtime = h.get("x-modified-at")
    if raw_mtime is not None:
        try:
            modified = datetime.fromisoformat(raw_mtime.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                "X-Modified-At must be an ISO 8601 timestamp.",
                errors=[FieldError(field="header.x-modified-at", message="not ISO 8601")],
            ) from None
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=UTC)
    strip = h.get("x-strip-gps")
    if strip is not None and strip.strip().lower() not in ("true", "false"):
        raise InvalidInput(
            "X-Strip-GPS must be true or false.", errors=[FieldError("header.x-strip-gps", "not a boolean")]
        )
    return UploadOptions(
        strip_gps=None if strip is None else strip.strip().lower() == "true",
        on_conflict=on_conflict,
        expected_etags=parse_if_match(h.get("if-match")),
        if_none_match_any=if_none_match is not None,
        sha256=expected,
        declared_length=declared,
        modified_at=modified,
    )


async def _send(request: AnyRequest, opened: tuple[FileContent, ContentSource], *, attachment: bool) -> BlobResponse:
    """Answer a GET or HEAD for content the read service opened (the hot-read lane answers the same way)."""
    return await send_content(request, opened, attachment=attachment)


def _batch_result(outcomes: list[ItemOutcome]) -> BatchResult:
    """Each item with the status it would have had as a request of its own."""
    return BatchResult(
        results=[
            BatchItemResult(id=o.id, status=200, node=o.node)
            if o.error is None
            else BatchItemResult(id=o.id, status=status_for(o.error), error=o.error.code, detail=o.error.detail)
            for o in outcomes
        ]
    )


class NodesController(Controller):
    path = "/api/v1"
    tags = ["files"]
    security = BEARER

    @get("/files/root", summary="The caller's root folder", **operation("getRoot"))
    async def root(self, request: Req) -> NodeOut:
        return await request.files.tree.root(request.principal)

    @get(
        "/nodes/{node_id:str}",
        summary="A file, or a folder with the totals of its subtree",
        description="A file answers a NodeOut (`kind: file`); a folder answers a FolderOut (its `node`, `path` "
        "and subtree totals). Tell them apart by the `node` member.",
        **operation("getNode"),
    )
    async def get_node(self, request: Req, node_id: FromPath[str]) -> NodeOut | FolderOut:
        return await request.files.tree.get(request.principal, node_id)

    @patch(
        "/nodes/{node_id:str}",
        summary="Rename, move, star, and patch custom metadata",
        **operation("updateNode", conflicts=True),
    )
    async def update_node(self, request: Req, node_id: FromPath[str], data: JSONBody[UpdateNodeRequest]) -> NodeOut:
        return await request.files.tree.update(
            request.principal,
            node_id,
            name=data.name,
            parent_id=data.parent_id,
            on_conflict=data.on_conflict,
            starred=data.starred,
            metadata=data.metadata,
        )

    @delete(
        "/nodes/{node_id:str}",
        status_code=HTTP_200_OK,
        summary="Move to the trash (folders recursively)",
        **operation("deleteNode", conflicts=True),
    )
    async def delete_node(self, request: Req, node_id: FromPath[str]) -> NodeOut:
        return await request.files.trash.trash(request.principal, node_id)

    @get(
        "/nodes/{node_id:str}/children",
        summary="List a folder (keyset-paginated)",
        description="With presign=true each file also carries `url`: a presigned GET URL of its content that "
        "works without an Authorization header (for <Image source={{uri}}> and video players) for "
        "presign_expires_in seconds (default presign_default_seconds). Without it, items have no `url`. "
        "Images whose facts are known carry `image` (width, height, taken_at, placeholder); facts missing "
        "from a listing are computed in the background and appear in a later one. With thumbnail=<size>, "
        "every image file also carries `thumbnail_url`: a presigned URL of its size x size cover thumbnail "
        "(format chosen from the Accept header it is fetched with), living presign_expires_in seconds.",
        **operation("listChildren", conflicts=True),
    )
    async def children(
        self,
        request: Req,
        node_id: FromPath[str],
        sort: Sort = "name",
        order: Order = "asc",
        kind: Annotated[Literal["file", "folder"] | None, QueryParameter()] = None,
        media_type: Annotated[str | None, QueryParameter(max_length=255, description="Prefix, e.g. image/")] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
        presign: Annotated[bool, QueryParameter(description="Add a presigned GET `url` to every file")] = False,
        presign_expires_in: Annotated[
            int | None, QueryParameter(ge=1, le=30 * 86400, description="Lifetime of those URLs, in seconds")
        ] = None,
        thumbnail: Annotated[
            int | None,
            QueryParameter(ge=1, le=16384, description="Add `thumbnail_url` (a presigned square thumbnail) to images"),
        ] = None,
    ) -> NodePage:
        page = await request.files.tree.list_children(
            request.principal,
            node_id,
            sort=sort,
            descending=order == "desc",
            kind=kind,
            media_type=media_type,
            cursor=cursor,
            limit=limit,
        )
        items = page.items
        if presign:
            items = await request.runtime.presign.listing(
                request.principal, items, presign_expires_in, url_base(request)
            )
        if thumbnail is not None:
            items = with_thumbnail_urls(request, items, thumbnail, presign_expires_in)
        return NodePage(items=items, next_cursor=page.next_cursor)

    @post(
        "/nodes/{node_id:str}/folders",
        summary="Create a folder inside this one",
        description="201 when created; 200 with the existing folder when on_conflict=reuse found one.",
        **operation("createFolder", conflicts=True, created_or_existing=True),
    )
    async def create_folder(
        self, request: Req, node_id: FromPath[str], data: JSONBody[CreateFolderRequest]
    ) -> Response[NodeOut]:
        folder, created = await request.files.tree.create_folder(
            request.principal, node_id, data.name, data.on_conflict
        )
        return Response(folder, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @post(
        "/folders",
        summary="Create a folder by path, with missing parents (mkdir -p)",
        description="201 when the last folder was created; 200 when it already existed.",
        **operation("createFolderByPath", conflicts=True, created_or_existing=True),
    )
    async def create_folder_path(self, request: Req, data: JSONBody[CreateFolderPathRequest]) -> Response[NodeOut]:
        folder, created = await request.files.tree.create_folder_path(request.principal, data.path)
        return Response(folder, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @post(
        "/nodes/{node_id:str}/copy",
        summary="Copy a file or folder (metadata only; content is shared)",
        **operation("copyNode", conflicts=True),
    )
    async def copy_node(self, request: Req, node_id: FromPath[str], data: JSONBody[CopyRequest]) -> NodeOut:
        return await request.files.tree.copy(
            request.principal, node_id, parent_id=data.parent_id, name=data.name, on_conflict=data.on_conflict
        )

    # --- content ----------------------------------------------------------------------------

    @route(
        "/nodes/{node_id:str}/content",
        http_method=["GET", "HEAD"],
        summary="Download (HEAD, Range, ETag, If-None-Match, If-Modified-Since, If-Range)",
        **operation(
            {"GET": "downloadFile", "HEAD": "headFile"},
            tag="content",
            success="download",
            conflicts=True,
            presigned=True,
        ),
    )
    async def download(
        self,
        request: Req,
        node_id: FromPath[str],
        download: Annotated[bool, QueryParameter(description="Force Content-Disposition: attachment")] = False,
    ) -> BlobResponse:
        return await _send(
            request, await request.files.reading.open_file(request.principal, node_id), attachment=download
        )

    @route(
        "/nodes/{node_id:str}/content",
        http_method=["PUT", "POST"],
        status_code=HTTP_200_OK,
        summary="Replace a file's content (a new version); honours If-Match",
        description="POST does the same as PUT (Expo's uploadAsync sends POST by default).",
        request_max_body_size=None,
        **operation(
            {"PUT": "replaceFileContent", "POST": "replaceFileContentViaPost"}, tag="content", success="replace"
        ),
    )
    async def replace_content(self, request: Req, node_id: FromPath[str]) -> Response[NodeOut]:
        options = _upload_options(request, "replace")
        node = await request.files.uploads.replace_content(request.principal, node_id, request.stream(), options)
        return Response(node, status_code=HTTP_200_OK, headers=_etag(node))

    @route(
        "/nodes/{node_id:str}/children/{name:str}",
        http_method=["PUT", "POST"],
        summary="Upload the raw body as `name` in this folder",
        description="Headers: If-None-Match: * (create only), If-Match (replace that version), Content-Digest "
        "(sha-256) or X-Content-SHA256, X-Modified-At. 201 when created, 200 when replaced. POST does the same "
        "as PUT (Expo's uploadAsync sends POST by default).",
        request_max_body_size=None,
        **operation(
            {"PUT": "uploadToFolder", "POST": "uploadToFolderViaPost"}, tag="content", success="upload", presigned=True
        ),
    )
    async def upload_raw(
        self,
        request: Req,
        node_id: FromPath[str],
        name: FromPath[str],
        on_conflict: OnConflict = "fail",
    ) -> Response[NodeOut]:
        options = _upload_options(request, on_conflict)
        node, created = await request.files.uploads.upload_to_folder(
            request.principal, node_id, name, request.stream(), options
        )
        return Response(node, status_code=HTTP_201_CREATED if created else HTTP_200_OK, headers=_stored(node, created))

    @post(
        "/nodes/{node_id:str}/upload",
        summary="Upload one or many files with multipart/form-data",
        description="Every part with a filename is stored in this folder, in order. A field named on_conflict "
        "overrides the query parameter for the files after it: send it before the files. An on_conflict that "
        "arrives after a file part is refused with 400 (the files before it are kept as stored), never ignored.",
        request_max_body_size=None,
        **operation("uploadMultipart", tag="content", success="multipart"),
    )
    async def upload_multipart(
        self,
        request: Req,
        node_id: FromPath[str],
        on_conflict: OnConflict = "fail",
    ) -> UploadResult:
        stream = MultipartStream(request.headers.get("content-type"), request.stream())
        stored: list[NodeOut] = []
        policy: ConflictPolicy = on_conflict
        async for part in stream.parts():
            if part.filename is None:
                value = await read_field(part)
                if part.name == "on_conflict":
                    policy = _form_conflict_policy(value, stored)
                continue  # other fields change nothing
            options = UploadOptions(on_conflict=policy)
            node, _ = await request.files.uploads.upload_to_folder(
                request.principal, node_id, part.filename, part.body, options
            )
            stored.append(node)
        if not stored:
            raise InvalidInput("The form contained no file (a part with a filename).")
        return UploadResult(items=stored)

    # --- by path ---------------------------------------------------------------------------------

    @get(
        "/paths/" + ANY_PATH,
        summary="Metadata of the file or folder at a path",
        description="A file answers a NodeOut, a folder a FolderOut (see getNode).",
        **operation("getNodeByPath", conflicts=True),
    )
    async def by_path(self, request: Req, path: FromPath[str]) -> NodeOut | FolderOut:
        return await request.files.tree.get_by_path(request.principal, path)

    @route(
        "/content/" + ANY_PATH,
        http_method=["GET", "HEAD"],
        summary="Download the file at a path (GET or HEAD)",
        **operation(
            {"GET": "downloadFileByPath", "HEAD": "headFileByPath"}, tag="content", success="download", conflicts=True
        ),
    )
    async def download_path(
        self,
        request: Req,
        path: FromPath[str],
        download: Annotated[bool, QueryParameter()] = False,
    ) -> BlobResponse:
        return await _send(request, await request.files.reading.open_path(request.principal, path), attachment=download)

    @route(
        "/content/" + ANY_PATH,
        http_method=["PUT", "POST"],
        summary="Upload the raw body to a path (missing folders are created)",
        description="The same headers as uploadToFolder. 201 when created, 200 when replaced. POST does the same "
        "as PUT (Expo's uploadAsync sends POST by default).",
        request_max_body_size=None,
        **operation({"PUT": "uploadFileByPath", "POST": "uploadFileByPathViaPost"}, tag="content", success="upload"),
    )
    async def upload_path(
        self,
        request: Req,
        path: FromPath[str],
        on_conflict: OnConflict = "fail",
        create_parents: Annotated[bool, QueryParameter()] = True,
    ) -> Response[NodeOut]:
        options = _upload_options(request, on_conflict)
        node, created = await request.files.uploads.upload_to_path(
            request.principal, path, request.stream(), options, create_parents=create_parents
        )
        return Response(node, status_code=HTTP_201_CREATED if created else HTTP_200_OK, headers=_stored(node, created))

    # --- zip, batch -----------------------------------------------------------------------------

    @get(
        "/nodes/{node_id:str}/zip",
        summary="Download a folder (or file) as a ZIP archive, streamed",
        **operation("downloadZip", tag="content", success="zip"),
    )
    async def zip_node(self, request: Req, node_id: FromPath[str]) -> StreamResponse:
        return await _zip(request.files, request.principal, [node_id], None)

    @post(
        "/zip",
        status_code=HTTP_200_OK,
        summary="Download a selection as one ZIP archive, streamed",
        **operation("downloadZipOfSelection", tag="content", success="zip", writes=False, errors=(404,)),
    )
    async def zip_selection(self, request: Req, data: JSONBody[ZipRequest]) -> StreamResponse:
        return await _zip(request.files, request.principal, data.ids, data.name)

    @post(
        "/batch/delete",
        status_code=HTTP_200_OK,
        summary="Trash many items; one result per item",
        **operation("batchDelete"),
    )
    async def batch_delete(self, request: Req, data: JSONBody[BatchDeleteRequest]) -> BatchResult:
        return _batch_result(await request.files.trash.batch_delete(request.principal, data.ids))

    @post(
        "/batch/move",
        status_code=HTTP_200_OK,
        summary="Move many items; one result per item",
        **operation("batchMove"),
    )
    async def batch_move(self, request: Req, data: JSONBody[BatchMoveRequest]) -> BatchResult:
        return _batch_result(
            await request.files.tree.batch_move(request.principal, data.ids, data.parent_id, data.on_conflict)
        )


def _form_conflict_policy(value: str, stored: list[NodeOut]) -> ConflictPolicy:
    """The on_conflict form field; it must come before the files it applies to (it is never ignored)."""
    if stored:
        names = ", ".join(repr(node.name) for node in stored)
        raise InvalidInput(
            f"The form field on_conflict came after a file part; send form fields before the files. "
            f"The files before it were stored as sent ({names}); nothing after it was.",
            errors=[FieldError(field="body.on_conflict", message="must come before the file parts")],
        )
    if value not in {"fail", "rename", "replace"}:
        raise InvalidInput(
            f"on_conflict must be fail, rename or replace, not {value[:40]!r}.",
            errors=[FieldError(field="body.on_conflict", message="expected fail, rename or replace")],
        )
    return value  # type: ignore[return-value]  # one of the ConflictPolicy literals, checked above


def _etag(node: NodeOut) -> dict[str, str]:
    return {"etag": node.etag} if node.etag else {}


def _stored(node: NodeOut, created: bool) -> dict[str, str]:
    """The headers of an upload's answer: its ETag, and where a created file lives."""
    headers = _etag(node)
    if created:
        headers["location"] = f"/api/v1/nodes/{node.id}"
    return headers


async def _zip(files: FileServices, principal: Principal | None, ids: list[str], name: str | None) -> StreamResponse:
    return zip_response(await files.reading.zip_entries(principal, ids), name)


__all__ = ["NodesController"]
