"""Request and response bodies of the file endpoints, and the values the file services hand to every
front end (``FileContent``, ``etag_of``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from stowage.errors import FieldError, InvalidInput

ConflictPolicy = Literal["fail", "rename", "replace"]
NodeKind = Literal["file", "folder"]
SortKey = Literal["name", "size", "modified", "type", "taken_at"]
Category = Literal["image", "video", "audio", "text", "document", "archive"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
PresignedFileUrl = Annotated[
    str,
    msgspec.Meta(
        description="A presigned GET URL of the file's content (listings with presign=true): it works without "
        "an Authorization header until its X-Stowage-Expires, for <Image source={{uri}}> and video players."
    ),
]
PresignedThumbnailUrl = Annotated[
    str,
    msgspec.Meta(
        description="A presigned GET URL of the image's square thumbnail (listings with thumbnail=<size>): it "
        "works without an Authorization header until its X-Stowage-Expires."
    ),
]


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def etag_of(sha256_hex: str) -> str:
    """The strong entity tag of content with this SHA-256: the lowercase hex digest in quotes.

    Every front end sends it as is (HTTP's ETag, S3's ETag, WebDAV's getetag); comparing it with
    what a client sent is the front end's job (``http.semantics``), so the domain only names it."""
    digest = sha256_hex.lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise ValueError("etag_of needs a SHA-256 digest as 64 hex characters")
    return f'"{digest}"'


class FileContent(msgspec.Struct, frozen=True):
    """One file's content as the read path hands it to a front end: what to send and its validators.

    For a version download it describes that version (its size, type, digest, and its creation time
    as the modification time). The bytes come from the ``ContentSource`` returned beside it."""

    node_id: str
    name: str
    size: int
    media_type: str
    sha256: str
    modified_at: datetime
    etag: str


class ImageOut(msgspec.Struct):
    """What a grid needs to lay out and preview an image before fetching it: its displayed size (EXIF
    orientation applied), its capture time (EXIF DateTimeOriginal, null when absent) and a BlurHash."""

    width: int
    height: int
    taken_at: datetime | None
    placeholder: Annotated[
        str | None, msgspec.Meta(description="A BlurHash (blurha.sh) of the image: decode it to draw a blurred preview")
    ] = None


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
    # Only in listings asked with presign=true, and only for files: absent otherwise (not null).
    url: PresignedFileUrl | msgspec.UnsetType = msgspec.UNSET
    # Only for images whose facts are known (computed after the upload, or on first need): absent otherwise.
    image: ImageOut | msgspec.UnsetType = msgspec.UNSET
    # Only in listings asked with thumbnail=<size>, and only for image files: absent otherwise.
    thumbnail_url: PresignedThumbnailUrl | msgspec.UnsetType = msgspec.UNSET


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


MAX_QUERY_LENGTH = 255


SearchScope = Literal["own", "shared", "all"]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for; every given criterion must hold. ``text`` matches anywhere in the name."""

    text: str | None = None
    folder_id: str | None = None
    kind: Literal["file", "folder"] | None = None
    media_type: str | None = None
    category: Category | None = None
    min_size: int | None = None
    max_size: int | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    starred: bool | None = None
    sort: SortKey = "name"
    descending: bool = False
    # Without ``folder_id``: the caller's own tree, what other users share with them, or both.
    scope: SearchScope | None = None

    def check(self) -> None:
        errors: list[FieldError] = []
        if self.folder_id is not None and self.scope is not None:
            errors.append(FieldError(field="query.scope", message="not with folder_id (a folder is its own scope)"))
        if self.text is not None and len(self.text) > MAX_QUERY_LENGTH:
            errors.append(FieldError(field="query.q", message=f"at most {MAX_QUERY_LENGTH} characters"))
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            errors.append(FieldError(field="query.min_size", message="must not exceed max_size"))
        if (
            self.modified_after is not None
            and self.modified_before is not None
            and self.modified_after > self.modified_before
        ):
            errors.append(FieldError(field="query.modified_after", message="must not be later than modified_before"))
        if errors:
            raise InvalidInput("The search criteria contradict each other or are too long.", errors=errors)
