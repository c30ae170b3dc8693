"""Request and response bodies of the sharing endpoints: links (owner and visitor side) and user shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from stowage.files.schemas import ImageOut, NodeKind, NodeOut

LinkMode = Literal["read", "drop"]
UserPermission = Literal["read", "read_write"]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Downloads = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]


class LinkCreateRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A new link to a node. ``drop`` (folders only): visitors may add files and see nothing."""

    password: Password | None = None
    expires_at: datetime | None = None
    max_downloads: Downloads | None = None
    drop: bool = False


class LinkUpdateRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Change a link: a field left out stays as it is; the ``remove_*`` flags clear one."""

    password: Password | None = None
    remove_password: bool = False
    expires_at: datetime | None = None
    remove_expiry: bool = False
    max_downloads: Downloads | None = None
    remove_download_limit: bool = False


class LinkOut(msgspec.Struct):
    """A link as its owner sees it (the token itself is shown only once, when it is created)."""

    id: str
    node_id: str
    node_name: str
    node_kind: NodeKind
    mode: LinkMode
    password_protected: bool
    expires_at: datetime | None
    max_downloads: int | None
    download_count: int
    created_at: datetime
    updated_at: datetime


class LinkCreated(msgspec.Struct):
    """The new link, its token (keep it: only a hash is stored) and the path visitors open."""

    link: LinkOut
    token: str
    path: str


class LinkList(msgspec.Struct):
    items: list[LinkOut]


class UserShareRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Share a node with the account that has this email address (sharing again changes the share)."""

    email: Email
    permission: UserPermission = "read"
    expires_at: datetime | None = None


class PersonOut(msgspec.Struct):
    id: str
    email: str
    display_name: str


class UserShareOut(msgspec.Struct):
    id: str
    node_id: str
    node_name: str
    node_kind: NodeKind
    permission: UserPermission
    grantee: PersonOut
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UserShareList(msgspec.Struct):
    items: list[UserShareOut]


class SharedWithMeItem(msgspec.Struct):
    """A share someone made with the caller: the node (use its id with every file endpoint), the rights."""

    share_id: str
    node: NodeOut
    permission: UserPermission
    owner: PersonOut
    expires_at: datetime | None
    shared_at: datetime


class SharedWithMeList(msgspec.Struct):
    items: list[SharedWithMeItem]


# --- the visitor's side ------------------------------------------------------------------------


class SharedNodeOut(msgspec.Struct):
    """A node as a link's visitor sees it: no owner, place in the owner's tree, stars or metadata."""

    id: str
    name: str
    kind: NodeKind
    size: int
    media_type: str | None
    etag: str | None
    modified_at: datetime
    # Only for images whose facts are known: absent otherwise (see NodeOut).
    image: ImageOut | msgspec.UnsetType = msgspec.UNSET


class SharedNodePage(msgspec.Struct):
    items: list[SharedNodeOut]
    next_cursor: str | None = None


class LinkInfo(msgspec.Struct):
    """What a link leads to. Without the password (when one is set) only ``password_required`` is shown."""

    mode: LinkMode
    password_required: bool
    node: SharedNodeOut | None
    expires_at: datetime | None
    downloads_left: int | None


class UnlockRequest(msgspec.Struct, forbid_unknown_fields=True):
    password: Password


class UnlockGrant(msgspec.Struct):
    """Send ``grant`` as the ``X-Share-Grant`` header (or the ``grant`` query parameter) until it expires."""

    grant: str
    expires_at: datetime


class DropResult(msgspec.Struct):
    """A file a visitor added through a drop link: its stored name (renamed when the name was taken)."""

    name: str
    size: int
