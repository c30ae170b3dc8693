"""Answering a GET or HEAD for file content the read service opened: plan, check, then send; and
streaming a planned ZIP archive.

Shared by the Litestar routes (``api.files``, ``api.shares``) and the hot-read lane
(``api.hot_reads``), so that all answer a download the same way; each passes the request's method and
a header lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from litestar import Request

from stowage.files.schemas import FileContent
from stowage.files.services import ContentSource
from stowage.files.zipstream import ZipEntry, stream_zip, zip_size_if_known
from stowage.http.responses import BlobResponse, StreamResponse
from stowage.http.semantics import Preconditions, content_disposition
from stowage.http.serving import plan_download, plan_redirect

HeaderLookup = Callable[[str], str | None]


async def answer_download(
    opened: tuple[FileContent, ContentSource], *, method: str, header: HeaderLookup, attachment: bool
) -> BlobResponse:
    """The response to a GET or HEAD of ``opened``; precondition and range errors raise before anything
    is sent, as does lost or damaged content (a logged 500, never a cut-off or corrupt 200). A whole-file
    GET becomes a 307 to the object store when the source offers a presigned URL (``offsite_url``)."""
    content, source = opened
    plan = plan_download(
        content,
        method=method,
        preconditions=Preconditions(
            if_match=header("if-match"),
            if_none_match=header("if-none-match"),
            if_modified_since=header("if-modified-since"),
            if_unmodified_since=header("if-unmodified-since"),
            if_range=header("if-range"),
        ),
        range_header=header("range"),
        force_attachment=attachment,
    )
    if plan.status == 200 and method == "GET" and plan.has_body:
        location = await source.offsite_url(
            content_type=plan.headers["content-type"], content_disposition=plan.headers["content-disposition"]
        )
        if location is not None:  # the object store sends the bytes (s3_redirect_downloads)
            await source.ensure_servable(sends_bytes=False)
            return BlobResponse(plan_redirect(plan, location), source, head=False)
    if plan.status != 304:
        # Responses without a body only need the content to exist.
        await source.ensure_servable(sends_bytes=method != "HEAD" and plan.has_body)
    return BlobResponse(plan, source, head=method == "HEAD")


async def send_content(
    request: Request[Any, Any, Any], opened: tuple[FileContent, ContentSource], *, attachment: bool
) -> BlobResponse:
    """``answer_download`` for a Litestar route's request."""
    return await answer_download(opened, method=request.method, header=request.headers.get, attachment=attachment)


def zip_response(entries: Sequence[ZipEntry], name: str | None) -> StreamResponse:
    """Stream a planned archive as ``name`` (``download.zip`` by default), with its length when known."""
    total = zip_size_if_known(list(entries))
    archive = name or "download.zip"
    if not archive.lower().endswith(".zip"):
        archive += ".zip"

    async def entry_source() -> AsyncIterator[ZipEntry]:
        for entry in entries:
            yield entry

    headers = {
        "content-type": "application/zip",
        "content-disposition": content_disposition(archive, inline=False),
        "cache-control": "private, no-store",
    }
    if total is not None:
        headers["content-length"] = str(total)
    return StreamResponse(stream_zip(entry_source()), headers=headers, head=False)
