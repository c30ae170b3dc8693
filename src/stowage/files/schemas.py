"""Request and response bodies of the file endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

ConflictPolicy = Literal["fail", "rename", "replace"]
NodeKind = Literal["file", "folder"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class NodeOut(msgspec.Struct):
    """A file or folder. ``etag`` (files only) is the strong validator of the current content."""

    id: str
    name: str
    kind: NodeKind
    parent_id: str | None
    size: int
    media_type: str | None
    etag: str | None
    created_at: datetime
    modified_at: datetime
    trashed_at: datetime | None = None
    starred: bool = False
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class FolderOut(msgspec.Struct):
    """A folder with totals of its live subtree."""

    node: NodeOut
    path: str
    files: int
    folders: int
    bytes: int


class NodePage(msgspec.Struct):
    items: list[NodeOut]
    next_cursor: str | None


class CreateFolderRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    on_conflict: Literal["fail", "rename", "reuse"] = "fail"


class CreateFolderPathRequest(msgspec.Struct, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]
    create_parents: bool = True


class UpdateNodeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Rename (``name``), move (``parent_id``), star, and patch custom metadata, in any combination.

    ``metadata`` is a merge patch: a string sets a key, ``null`` removes it, other keys stay.
    """

    name: Name | None = None
    parent_id: NodeId | None = None
    on_conflict: ConflictPolicy = "fail"
    starred: bool | None = None
    metadata: Annotated[dict[str, str | None], msgspec.Meta(max_length=256)] | None = None


class CopyRequest(msgspec.Struct, forbid_unknown_fields=True):
    parent_id: NodeId
    name: Name | None = None
    on_conflict: ConflictPolicy = "fail"


class RestoreRequest(msgspec.Struct, forbid_unknown_fields=True):
    parent_id: NodeId | None = None
    on_conflict: Literal["fail", "rename"] = "fail"


class BatchDeleteRequest(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[NodeId], msgspec.Meta(min_length=1, max_length=1000)]


class BatchMoveRequest(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[NodeId], msgspec.Meta(min_length=1, max_length=1000)]
    parent_id: NodeId
    on_conflict: ConflictPolicy = "fail"


class BatchItemResult(msgspec.Struct):
    """One item's outcome: ``status`` is the HTTP status it would have had on its own."""

    id: str
    status: int
    node: NodeOut | None = None
    error: str | None = None
    detail: str | None = None


class BatchResult(msgspec.Struct):
    results: list[BatchItemResult]


class ZipRequest(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[NodeId], msgspec.Meta(min_length=1, max_length=1000)]
    name: Name = "download.zip"


class UploadResult(msgspec.Struct):
    items: list[NodeOut]


class VersionOut(msgspec.Struct):
    """One kept content of a file; ``current`` marks the one the file shows now."""

    id: str
    size: int
    media_type: str
    sha256: str
    etag: str
    author_id: str | None
    created_at: datetime
    current: bool
    pinned: bool


class UpdateVersionRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``pinned: true`` keeps the version out of retention thinning."""

    pinned: bool


class VersionList(msgspec.Struct):
    items: list[VersionOut]
