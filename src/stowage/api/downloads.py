"""Answering a GET or HEAD for file content the read service opened: plan, check, then send.

Shared by the Litestar routes (``api.files``) and the hot-read lane (``api.hot_reads``), so that both
answer a download the same way; each passes the request's method and a header lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request

from stowage.files.schemas import FileContent
from stowage.files.services import ContentSource
from stowage.http.responses import BlobResponse
from stowage.http.semantics import Preconditions
from stowage.http.serving import plan_download

HeaderLookup = Callable[[str], str | None]


async def answer_download(
    opened: tuple[FileContent, ContentSource], *, method: str, header: HeaderLookup, attachment: bool
) -> BlobResponse:
    """The response to a GET or HEAD of ``opened``; precondition and range errors raise before anything
    is sent, as does lost or damaged content (a logged 500, never a cut-off or corrupt 200)."""
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
    if plan.status != 304:
        # Responses without a body only need the content to exist.
        await source.ensure_servable(sends_bytes=method != "HEAD" and plan.has_body)
    return BlobResponse(plan, source, head=method == "HEAD")


async def send_content(
    request: Request[Any, Any, Any], opened: tuple[FileContent, ContentSource], *, attachment: bool
) -> BlobResponse:
    """``answer_download`` for a Litestar route's request."""
    return await answer_download(opened, method=request.method, header=request.headers.get, attachment=attachment)
