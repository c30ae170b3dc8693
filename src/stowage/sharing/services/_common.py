"""What the sharing services share: their dependencies, conversions to API shapes, the link visitor's
principal, and the signed grant a link's password unlocks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stowage.accounts.passwords import PasswordHasher
from stowage.config import Settings
from stowage.db.engine import Database
from stowage.db.tables import Node, Share, User
from stowage.errors import FieldError, InvalidInput
from stowage.files.services import FileServices
from stowage.policy import CredentialKind, Principal, Role, Scope
from stowage.ratelimit import RateLimiter
from stowage.sharing.schemas import LinkOut, PersonOut, SharedNodeOut, UserShareOut

LINK_TOKEN_PREFIX = "shl_"  # noqa: S105 - a prefix, not a secret
# How long the grant a link's password unlocks stays valid. Short: it is a bearer credential in URLs
# and headers; the visitor unlocks again with the password after it.
GRANT_TTL_SECONDS = 3600
_GRANT_VERSION = "g1"


@dataclass(slots=True)
class SharingDeps:
    """What the sharing services need, built once in the application lifespan."""

    settings: Settings
    database: Database
    files: FileServices
    hasher: PasswordHasher
    limiter: RateLimiter
    secret: str


def link_principal(share_id: str) -> Principal:
    """The caller a link's visitor is: no account (``user_id`` empty), confined to the link's subtree by
    the policy. It has both scopes; what it may do is decided by the link's permission, per node."""
    return Principal(
        user_id="",
        role=Role.USER,
        scopes=frozenset({Scope.READ, Scope.WRITE}),
        kind=CredentialKind.SHARE_LINK,
        credential_id=share_id,
        share_id=share_id,
    )


def link_out(share: Share, node: Node) -> LinkOut:
    return LinkOut(
        id=share.id,
        node_id=node.id,
        node_name=node.name,
        node_kind="file" if node.kind == "file" else "folder",
        mode="drop" if share.permission == "drop" else "read",
        password_protected=share.password_hash is not None,
        expires_at=share.expires_at,
        max_downloads=share.max_downloads,
        download_count=share.download_count,
        created_at=share.created_at,
        updated_at=share.updated_at,
    )


def person_out(user: User) -> PersonOut:
    return PersonOut(id=user.id, email=user.email, display_name=user.display_name)


def user_share_out(share: Share, node: Node, grantee: User) -> UserShareOut:
    return UserShareOut(
        id=share.id,
        node_id=node.id,
        node_name=node.name,
        node_kind="file" if node.kind == "file" else "folder",
        permission="read_write" if share.permission == "read_write" else "read",
        grantee=person_out(grantee),
        expires_at=share.expires_at,
        created_at=share.created_at,
        updated_at=share.updated_at,
    )


class _VisibleNode(Protocol):
    """Anything with the fields a visitor may see (``NodeRow``, ``FileRow``)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def media_type(self) -> str | None: ...
    @property
    def modified_at(self) -> datetime: ...


def shared_node_out(node: _VisibleNode, sha256: str | None) -> SharedNodeOut:
    return SharedNodeOut(
        id=node.id,
        name=node.name,
        kind="file" if node.kind == "file" else "folder",
        size=node.size,
        media_type=node.media_type,
        etag=f'"{sha256}"' if sha256 else None,
        modified_at=node.modified_at,
    )


def in_future(moment: datetime | None, now: datetime, field: str) -> datetime | None:
    """An expiry must be an aware time still to come (a past one would make a dead share)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidInput(
            "Give the expiry with its offset (e.g. 2027-01-01T12:00:00Z).",
            errors=[FieldError(field=field, message="no UTC offset")],
        )
    if moment <= now:
        raise InvalidInput("The expiry is in the past.", errors=[FieldError(field=field, message="in the past")])
    return moment


# --- the grant a link's password unlocks ---------------------------------------------------------


def _mac(secret: str, share_id: str, expires: int, password_hash: str) -> str:
    message = f"share-grant|{share_id}|{expires}|{password_hash}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_grant(secret: str, share_id: str, password_hash: str, expires_at: datetime) -> str:
    """A grant for one link, valid until ``expires_at`` and only while the link keeps this password
    (the MAC covers the password's hash: setting a new one or removing it ends every grant)."""
    expires = int(expires_at.timestamp())
    return f"{_GRANT_VERSION}.{share_id}.{expires}.{_mac(secret, share_id, expires, password_hash)}"


def grant_is_valid(secret: str, grant: str | None, share_id: str, password_hash: str, now: datetime) -> bool:
    if not grant:
        return False
    parts = grant.split(".")
    if len(parts) != 4 or parts[0] != _GRANT_VERSION or parts[1] != share_id or not parts[2].isdigit():
        return False
    expires = int(parts[2])
    if expires <= now.timestamp():
        return False
    return hmac.compare_digest(parts[3], _mac(secret, share_id, expires, password_hash))
