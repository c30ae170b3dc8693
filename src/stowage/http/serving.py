"""Reading file content: everything decided before the first byte (STYLE 9).

Authorise, stat, evaluate preconditions (304/412), parse the range (206/416) and choose the headers;
the HTTP adapter then only sends. The plan names the blob and byte span, and the local path when the
whole file can be handed to the server (ASGI ``http.response.pathsend``).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from stowage.blobs import BlobNotFound, BlobStore
from stowage.config import VerifyReads
from stowage.db.tables import Node
from stowage.errors import Conflict, PreconditionFailed
from stowage.files.media_types import must_download, safe_serving_headers
from stowage.http.semantics import (
    Preconditions,
    content_disposition,
    content_range,
    evaluate_preconditions,
    http_date,
    if_range_allows_partial,
    make_etag,
    parse_range,
)


class DownloadPlan(msgspec.Struct):
    status: int  # 200, 206 or 304
    headers: dict[str, str]
    sha256: str | None
    start: int = 0
    end: int = 0  # exclusive
    local_path: Path | None = None

    @property
    def length(self) -> int:
        return self.end - self.start


async def ensure_servable(store: BlobStore, sha256: str, verify: VerifyReads) -> None:
    """Fail before any byte is sent if the content is missing (BlobNotFound) or, unless ``verify`` is
    ``off``, no longer hashes to its name (BlobCorrupt): both answer a logged 500, never corrupt bytes.
    ``changed`` re-hashes only content this process has not verified since it last changed on disk;
    ``always`` re-hashes on every read."""
    if verify == "off":
        if not await store.exists(sha256):
            raise BlobNotFound(sha256)
        return
    await store.ensure_intact(sha256, always=verify == "always")


def plan_download(
    node: Node,
    store: BlobStore,
    *,
    method: str,
    preconditions: Preconditions,
    range_header: str | None,
    force_attachment: bool = False,
) -> DownloadPlan:
    if node.kind != "file" or node.sha256 is None:
        raise Conflict(f"{node.name!r} is a folder; download it as a ZIP instead.")
    etag = make_etag(node.sha256)
    size = node.size
    media_type = node.media_type or "application/octet-stream"
    validators = {
        "etag": etag,
        "last-modified": http_date(node.modified_at),
        "cache-control": "private, no-cache",
        "accept-ranges": "bytes",
    }
    outcome = evaluate_preconditions(method, preconditions, etag=etag, last_modified=node.modified_at)
    if outcome == "precondition_failed":
        raise PreconditionFailed("The file does not match the request's preconditions (If-Match/If-Unmodified-Since).")
    if outcome == "not_modified":
        return DownloadPlan(status=304, headers=validators, sha256=None)
    byte_range = None
    if if_range_allows_partial(preconditions.if_range, etag=etag, last_modified=node.modified_at):
        byte_range = parse_range(range_header, size)
    inline = not (force_attachment or must_download(media_type))
    headers = {
        **validators,
        **safe_serving_headers(media_type),
        "content-type": media_type,
        "content-disposition": content_disposition(node.name, inline=inline),
    }
    # PDF gets no sandbox (browsers' viewers refuse it) but may still never be framed elsewhere.
    headers.setdefault("content-security-policy", "frame-ancestors 'none'")
    if byte_range is None:
        headers["content-length"] = str(size)
        return DownloadPlan(
            status=200, headers=headers, sha256=node.sha256, start=0, end=size, local_path=store.local_path(node.sha256)
        )
    headers["content-range"] = content_range(byte_range, size)
    headers["content-length"] = str(byte_range.end - byte_range.start + 1)
    return DownloadPlan(status=206, headers=headers, sha256=node.sha256, start=byte_range.start, end=byte_range.end + 1)
