"""What a resumable upload is, as the services hand it to front ends."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from stowage.files.schemas import ConflictPolicy

UploadKind = Literal["single", "partial", "final"]


class UploadRow(msgspec.Struct, frozen=True):
    """One row of the ``uploads`` table (see ``db.tables.Upload`` for what each column means)."""

    id: str
    owner_id: str
    kind: UploadKind
    length: int | None
    received_bytes: int
    folder_id: str | None
    name: str | None
    media_type: str | None
    on_conflict: ConflictPolicy
    upload_metadata: str | None
    concat_parts: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None
    node_id: str | None
    sha256: str | None

    @property
    def recorded(self) -> bool:
        """The file is in the tree (the upload's last byte arrived and was recorded)."""
        return self.completed_at is not None


class UploadTarget(msgspec.Struct, frozen=True):
    """Where a finished upload goes, as the client asked (tus: ``Upload-Metadata``).

    ``folder_id`` or ``folder_path`` (created when missing; neither: the caller's root, or a presigned
    URL's folder), the file ``name`` (None: ``upload-<id>``), the media type the client declared (None:
    sniffed), and what to do when the name is taken (None: a presigned URL's policy, else fail)."""

    name: str | None = None
    media_type: str | None = None
    folder_id: str | None = None
    folder_path: str | None = None
    on_conflict: ConflictPolicy | None = None


class NewUpload(msgspec.Struct, frozen=True):
    """A creation request: the length (None: deferred), the kind, the target and the raw metadata to echo.

    A final upload names its partial uploads (``parts``, ids, in order) and has no length of its own."""

    length: int | None
    kind: UploadKind = "single"
    target: UploadTarget = UploadTarget()
    metadata: str | None = None
    parts: tuple[str, ...] = ()


class UploadState(msgspec.Struct, frozen=True):
    """What a client may know about its upload (tus HEAD, and every PATCH answer)."""

    id: str
    kind: UploadKind
    length: int | None
    offset: int
    metadata: str | None
    parts: tuple[str, ...]
    expires_at: datetime | None
    node_id: str | None  # the file, once recorded

    @classmethod
    def of(cls, row: UploadRow) -> UploadState:
        return cls(
            id=row.id,
            kind=row.kind,
            length=row.length,
            offset=row.received_bytes,
            metadata=row.upload_metadata,
            parts=row.concat_parts,
            expires_at=None if row.recorded else row.expires_at,
            node_id=row.node_id,
        )
