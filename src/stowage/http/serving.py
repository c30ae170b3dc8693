"""Planning a download: everything decided before the first byte (STYLE 9).

Given the content to serve (its name, size, type, validators), evaluate the preconditions (304/412),
parse the range (206/416) and choose the headers; the response then only sends. The plan is the same
for every front end that serves stored content over HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import msgspec

from stowage.errors import PreconditionFailed
from stowage.http.content_safety import must_download, safe_serving_headers
from stowage.http.semantics import (
    Preconditions,
    content_disposition,
    content_range,
    evaluate_preconditions,
    http_date,
    if_range_allows_partial,
    parse_range,
)


class Servable(Protocol):
    """What a download plan needs to know about the content (``files.schemas.FileContent`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def media_type(self) -> str: ...
    @property
    def modified_at(self) -> datetime: ...
    @property
    def etag(self) -> str: ...


class DownloadPlan(msgspec.Struct):
    status: int  # 200, 206, 304, or 307 (the bytes are elsewhere: ``plan_redirect``)
    headers: dict[str, str]
    start: int = 0
    end: int = 0  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def has_body(self) -> bool:
        """Whether the answer carries content bytes (not a 304, not an empty file)."""
        return self.status != 304 and self.length > 0


def plan_download(
    content: Servable,
    *,
    method: str,
    preconditions: Preconditions,
    range_header: str | None,
    force_attachment: bool = False,
) -> DownloadPlan:
    etag = content.etag
    size = content.size
    media_type = content.media_type
    validators = {
        "etag": etag,
        "last-modified": http_date(content.modified_at),
        "cache-control": "private, no-cache",
        "accept-ranges": "bytes",
    }
    outcome = evaluate_preconditions(method, preconditions, etag=etag, last_modified=content.modified_at)
    if outcome == "precondition_failed":
        raise PreconditionFailed("The file does not match the request's preconditions (If-Match/If-Unmodified-Since).")
    if outcome == "not_modified":
        return DownloadPlan(status=304, headers=validators)
    byte_range = None
    if if_range_allows_partial(preconditions.if_range, etag=etag, last_modified=content.modified_at):
        byte_range = parse_range(range_header, size)
    inline = not (force_attachment or must_download(media_type))
    headers = {
        **validators,
        **safe_serving_headers(media_type),
        "content-type": media_type,
        "content-disposition": content_disposition(content.name, inline=inline),
    }
    # PDF gets no sandbox (browsers' viewers refuse it) but may still never be framed elsewhere.
    headers.setdefault("content-security-policy", "frame-ancestors 'none'")
    if byte_range is None:
        headers["content-length"] = str(size)
        return DownloadPlan(status=200, headers=headers, start=0, end=size)
    headers["content-range"] = content_range(byte_range, size)
    headers["content-length"] = str(byte_range.end - byte_range.start + 1)
    return DownloadPlan(status=206, headers=headers, start=byte_range.start, end=byte_range.end + 1)


REDIRECT_STATUS = 307


def plan_redirect(plan: DownloadPlan, location: str) -> DownloadPlan:
    """The same whole-file download, answered by sending the client to ``location`` (a presigned URL of
    the object store, which serves the bytes with the plan's Content-Type and Content-Disposition).

    307 keeps the method; ``no-store`` because the URL expires soon and is the caller's own (it carries a
    signature); the validators stay, so a client can still revalidate with the next request here."""
    headers = {
        "location": location,
        "cache-control": "private, no-store",
        "content-length": "0",
        "etag": plan.headers["etag"],
        "last-modified": plan.headers["last-modified"],
    }
    return DownloadPlan(status=REDIRECT_STATUS, headers=headers)
