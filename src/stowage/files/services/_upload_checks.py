"""The checks of an upload that decide before anything is recorded: its conditions (If-Match,
If-None-Match, the conflict policy) against the place it writes to, the body's limits while it
spools, a presigned upload's media type, and the client's length and digest."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

import msgspec

from stowage.blobs import BlobWriter
from stowage.errors import Conflict, FieldError, InvalidInput, PayloadTooLarge, PreconditionFailed, UnsupportedMediaType
from stowage.files.direct_repository import NodeRow
from stowage.files.media_types import media_type_allows
from stowage.files.schemas import ConflictPolicy, etag_of
from stowage.files.services._common import quota_exceeded

SNIFF_BYTES = 4096
AnyEtag = Literal["*"]


class QuotaRoom(msgspec.Struct, frozen=True):
    used: int
    limit: int

    @property
    def free(self) -> int:
        return max(self.limit - self.used, 0)


class UploadOptions(msgspec.Struct, frozen=True):
    """Everything about an upload that is known before its body: decided before the first byte.

    Conditions arrive parsed, whatever protocol sent them: ``expected_etags`` is the set of entity
    tags the current file must have (HTTP ``If-Match``, S3 ``x-amz-copy-source-if-match``, WebDAV
    ``If:``), or ``"*"`` for "must exist"; ``if_none_match_any`` means "must not exist"."""

    on_conflict: ConflictPolicy = "fail"
    expected_etags: frozenset[str] | AnyEtag | None = None  # replace only this version (its ETag)
    if_none_match_any: bool = False  # create only
    sha256: bytes | None = None  # expected digest from Content-Digest / X-Content-SHA256
    declared_length: int | None = None
    modified_at: datetime | None = None
    strip_gps: bool | None = None  # store images without their GPS position (None: the server's setting)


def check_if_match(node: NodeRow, options: UploadOptions) -> None:
    expected = options.expected_etags
    if expected is None or expected == "*":
        return
    if node.sha256 is None or etag_of(node.sha256) not in expected:
        raise PreconditionFailed("The file has changed since that version (If-Match does not match its ETag).")


def check_target(
    parent: NodeRow,
    name: str,
    existing: NodeRow | None,
    options: UploadOptions,
    *,
    expected_id: str | None,
    recheck: bool = False,
) -> None:
    """What an upload's conditions require of the place it writes to: checked before the first byte, and
    again (``recheck``) in the recording transaction, where ``expected_id`` is the file seen first — a
    different one there means another writer won meanwhile."""
    if parent.kind != "folder":
        raise Conflict(f"{parent.name!r} is a file; uploads go into folders.")
    if options.if_none_match_any and existing is not None:
        if recheck:
            raise PreconditionFailed(f"{name!r} was created by someone else meanwhile (If-None-Match: *).")
        raise PreconditionFailed(f"{name!r} already exists (If-None-Match: *).")
    if options.expected_etags is not None:
        if existing is None:
            if recheck:
                raise PreconditionFailed(f"{name!r} no longer exists.")
            raise PreconditionFailed(f"{name!r} does not exist, so it cannot match If-Match.")
        check_if_match(existing, options)
    if existing is not None and existing.kind == "folder":
        raise Conflict(f"{name!r} is a folder in this place; a file cannot replace it.")
    if existing is None or options.on_conflict != "fail":
        return
    if not recheck and options.expected_etags is None:
        raise Conflict(
            f"{name!r} already exists; upload with on_conflict=replace or rename.",
            extra={"conflicting_id": existing.id},
        )
    if recheck and existing.id != expected_id:
        raise Conflict(f"{name!r} was created by someone else meanwhile.", extra={"conflicting_id": existing.id})


async def spool(writer: BlobWriter, body: AsyncIterator[bytes], *, limit: int, room: QuotaRoom) -> bytes:
    """Feed the body to the writer; return its first bytes for type sniffing. Limits apply per chunk."""
    head = bytearray()
    async for chunk in body:
        if not chunk:
            continue
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        try:
            await writer.write(chunk)
        except PayloadTooLarge:
            if room.free < limit:
                raise quota_exceeded(
                    needed=writer.bytes_written + len(chunk), used=room.used, limit=room.limit
                ) from None
            raise PayloadTooLarge(f"Files are limited to {limit} bytes.") from None
    return bytes(head)


def check_media_type(allowed: str, media_type: str) -> None:
    """A presigned upload's content must be of the signed type, as sniffed from its bytes (what is stored
    and served), whatever the request declared."""
    if not media_type_allows(allowed, media_type):
        raise UnsupportedMediaType(
            f"This upload accepts only {allowed}; the content is {media_type}. Nothing was stored.",
            extra={"accepted": allowed, "media_type": media_type},
        )


def verify(writer: BlobWriter, options: UploadOptions) -> None:
    """Length and client digest must match before anything is published."""
    if options.declared_length is not None and writer.bytes_written != options.declared_length:
        raise InvalidInput(
            f"The body had {writer.bytes_written} bytes but Content-Length said {options.declared_length}."
        )
    if options.sha256 is not None and not hmac.compare_digest(writer.digest(), options.sha256):
        raise InvalidInput(
            "The content does not match the digest you sent (Content-Digest / X-Content-SHA256); nothing was stored.",
            errors=[FieldError(field="header.content-digest", message="sha-256 mismatch")],
        )
