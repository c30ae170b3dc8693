"""Request and response bodies of the account endpoints (msgspec validates them on the way in)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from stowage.files.schemas import Name, NodeId

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320, description="An email address")]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
OpaqueToken = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
ScopeName = Literal["read", "write", "admin"]


class SignupRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    display_name: DisplayName | None = None
    invite_token: OpaqueToken | None = None
    device_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    device_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: OpaqueToken


class UserOut(msgspec.Struct):
    id: str
    email: str
    display_name: str
    role: str
    email_verified: bool
    disabled: bool
    quota_bytes: int
    used_bytes: int
    created_at: datetime


class TokenPair(msgspec.Struct):
    """What a successful sign-up, login or refresh returns. Keep the refresh token secret."""

    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    session_id: str
    user: UserOut


class SessionOut(msgspec.Struct):
    id: str
    device: str
    ip: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


class UpdateMeRequest(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName


class ChangePasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


class DeleteAccountRequest(msgspec.Struct, forbid_unknown_fields=True):
    password: Password


class CreateTokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: TokenName
    scopes: Annotated[list[ScopeName], msgspec.Meta(min_length=1, max_length=3)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None


class TokenOut(msgspec.Struct):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class CreatedToken(msgspec.Struct):
    """The new token's secret is in ``token``; it is shown this once and never again."""

    token: str
    details: TokenOut


class EmailRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: OpaqueToken


class ResetPasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: OpaqueToken
    new_password: Password


class Accepted(msgspec.Struct):
    status: str
    detail: str


# --- admin ------------------------------------------------------------------------------------


class UserPage(msgspec.Struct):
    items: list[UserOut]
    next_cursor: str | None


class AdminCreateUserRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    display_name: DisplayName | None = None
    role: Literal["user", "admin"] = "user"


class AdminUpdateUserRequest(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName | None = None
    role: Literal["user", "admin"] | None = None
    disabled: bool | None = None
    quota_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    email_verified: bool | None = None


class AdminResetPasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    new_password: Password


class CreateInviteRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email | None = None
    expires_in_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 90)] = 72


class InviteOut(msgspec.Struct):
    id: str
    email: str | None
    created_at: datetime
    expires_at: datetime


class CreatedInvite(msgspec.Struct):
    """The invite's secret is in ``token``; it is shown this once and never again."""

    token: str
    details: InviteOut


class AuditEventOut(msgspec.Struct):
    id: int
    at: datetime
    action: str
    outcome: str
    actor_id: str | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, str | int | bool | None]


class AuditPage(msgspec.Struct):
    items: list[AuditEventOut]
    next_cursor: str | None


# --- presigned URLs ---------------------------------------------------------------------------------

ExpiresIn = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=30 * 86400,
        description="Seconds the URL stays valid; default presign_default_seconds, at most presign_max_seconds "
        "(a longer lifetime is refused with 400 naming the maximum).",
    ),
]
MediaTypePattern = Annotated[
    str,
    msgspec.Meta(
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/(\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*)$",
        description="Only content of this type (type/subtype, or type/* for any subtype), as sniffed from the "
        "bytes and as the request's Content-Type says when it sends one; anything else is refused with 415.",
    ),
]


class PresignDownloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    expires_in: ExpiresIn | None = None


class PresignUploadRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Where the one file goes: ``folder_id`` and ``name``, or ``path`` (its folder must exist)."""

    folder_id: NodeId | None = None
    name: Name | None = None
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)] | None = None
    max_size: Annotated[int, msgspec.Meta(ge=1, description="Largest body accepted, in bytes (413 above).")] | None = (
        None
    )
    media_type: MediaTypePattern | None = None
    on_conflict: Literal["fail", "rename", "replace"] = "fail"
    expires_in: ExpiresIn | None = None


class PresignThumbnailRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The thumbnail a URL may fetch (the parameters of ``GET /api/v1/nodes/{id}/thumbnail``), signed in."""

    w: Annotated[int, msgspec.Meta(ge=1, le=16384)] | None = None
    h: Annotated[int, msgspec.Meta(ge=1, le=16384)] | None = None
    fit: Literal["cover", "contain", "inside"] | None = None
    q: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    format: Literal["jpeg", "png", "webp", "avif", "auto"] | None = None
    expires_in: ExpiresIn | None = None


class PresignTusRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The folder a tus creation URL uploads into (``folder_id`` or ``path``), and its limits per upload."""

    folder_id: NodeId | None = None
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)] | None = None
    max_size: Annotated[int, msgspec.Meta(ge=1, description="Largest upload, in bytes (413 above).")] | None = None
    media_type: MediaTypePattern | None = None
    on_conflict: Literal["fail", "rename", "replace"] = "fail"
    expires_in: ExpiresIn | None = None


class PresignedUrl(msgspec.Struct):
    """A URL that makes one request without a token, until ``expires_at`` (a tus creation URL: POST
    creates uploads, each continued at the presigned ``Location`` it answers)."""

    url: str
    method: Literal["GET", "PUT", "POST"]
    expires_at: datetime
