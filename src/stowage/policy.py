"""The one authorisation policy: (principal, action, resource) → allow, or a domain error.

Every protected operation, whatever protocol it arrives by (REST, tus, S3, WebDAV, share links),
asks ``authorize`` before it touches data. Rules:

- no principal → ``Unauthenticated`` (401);
- the credential's scopes must include the scope the action needs (a read-only token cannot
  write) → ``PermissionDenied`` (403);
- admin actions need the admin role *and* the admin scope → ``PermissionDenied``;
- a resource owned by someone else is reported as ``NotFound`` (404), never 403, so an id does
  not reveal whether it exists — unless the caller is an admin acting with the admin scope, or
  holds a *grant* (a share) on the node or one of its ancestors (``Owned.grants``, see ``_granted``);
- a share-link bearer (``Principal.share_id``) has no account: it reaches nothing but the subtree
  of its own link's node;
- a trashed node is its owner's alone: grants do not reach into the trash (``Owned.in_trash``);
- a presigned URL's holder (``Principal.restriction``) acts as the URL's signer, for the one signed
  action on the one signed node only (403 for anything else), checked before everything above; a tus
  URL's holder, on the signed folder and only the uploads its creation URL created (``Owned.upload_id``).

This module imports no web framework and does no I/O: callers load the resource, then ask.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

import msgspec

from stowage.errors import NotFound, PayloadTooLarge, PermissionDenied, Unauthenticated


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class CredentialKind(StrEnum):
    SESSION = "session"
    PERSONAL_TOKEN = "personal_token"
    SHARE_LINK = "share_link"
    PRESIGNED = "presigned"  # a signed URL: the signer's rights, confined to one operation (``Restriction``)


class Restriction(msgspec.Struct, frozen=True):
    """The one operation a presigned URL allows: ``action`` on the node ``node_id`` (the file to read,
    or the folder to upload into) and, for an upload, only the file ``name`` there, at most ``max_size``
    bytes of content of ``media_type`` (``type/subtype`` or ``type/*``). The signer's own rights still
    apply on top (``authorize`` checks them as for the signer).

    A tus URL (``resumable``) writes into the folder ``node_id`` too: a creation URL (``"create"``)
    creates single uploads there (any name, unless ``on_conflict`` says how a taken one is handled), an
    upload URL (``"upload"``) acts on the one upload ``upload_id`` and records it into that folder.
    ``expires`` and ``signer_kind`` (how the signer signed) let a creation hand out its upload's URL
    signed exactly like itself."""

    action: Action
    node_id: str
    name: str | None = None
    max_size: int | None = None
    media_type: str | None = None
    on_conflict: str | None = None  # an upload's signed conflict policy: only "replace" may replace
    resumable: Literal["create", "upload"] | None = None
    upload_id: str | None = None
    expires: int | None = None
    signer_kind: CredentialKind | None = None

    def check(self, action: Action, resource: Owned | None) -> None:
        """Refuse anything but the signed action on the signed node or upload (a resource must name it)."""
        if action is not self.action:
            raise PermissionDenied(f"This presigned URL allows only {self.action.value}, not {action.value}.")
        if resource is None:
            return
        if resource.upload_id is not None:
            if resource.upload_id != self.upload_id:
                raise PermissionDenied("This presigned URL is for another upload.")
        elif resource.node_id != self.node_id:
            raise PermissionDenied("This presigned URL is for another file or folder.")

    def check_new_upload(self, kind: str, length: int | None, server_limit: int, *, folder_path: bool) -> None:
        """A resumable upload created through this URL: only a tus creation URL creates one, a single
        upload (joining partial uploads would reach uploads this URL did not create) into the signed
        folder (a folder path would create folders before anything else is decided), of a length within
        the signed maximum."""
        if self.resumable != "create":
            raise PermissionDenied("This presigned URL does not create resumable uploads.")
        if kind != "single":
            raise PermissionDenied(
                "A presigned tus URL creates single uploads; concatenation (Upload-Concat) needs a token."
            )
        if folder_path:
            raise PermissionDenied(
                "A presigned tus URL uploads into its own folder: name no path in Upload-Metadata "
                "(folder may name that same folder)."
            )
        if length is not None and length > self.size_limit(server_limit):
            limit = self.size_limit(server_limit)
            raise PayloadTooLarge(
                f"This presigned URL accepts uploads of at most {limit} bytes; this one has {length}.",
                extra={"max_size": limit},
            )

    def size_limit(self, server_limit: int) -> int:
        """The largest upload this URL allows: the signed maximum within the server's."""
        return server_limit if self.max_size is None else min(server_limit, self.max_size)

    def for_upload(self, upload_id: str) -> Restriction:
        """A tus creation URL's restriction narrowed to the one upload it just created (what its
        ``Location`` allows): the same folder, limits, expiry and signer."""
        if self.resumable != "create":
            raise PermissionDenied("Only a presigned tus creation URL hands out an upload URL.")
        return msgspec.structs.replace(self, resumable="upload", upload_id=upload_id)

    def check_name(self, name: str) -> None:
        """An upload's file name must be the signed one."""
        if self.name is not None and name != self.name:
            raise PermissionDenied(f"This presigned URL uploads only {self.name!r}.")

    def check_conflict_policy(self, on_conflict: str, *, replaces_version: bool) -> None:
        """An upload follows the signed conflict policy; replacing a file by its version (If-Match) needs
        a URL signed with ``on_conflict=replace``, whatever the request says."""
        if self.on_conflict is not None and on_conflict != self.on_conflict:
            raise PermissionDenied(f"This presigned URL uploads with on_conflict={self.on_conflict} only.")
        if replaces_version and self.on_conflict != "replace":
            raise PermissionDenied("This presigned URL stores a new file; it does not replace one (If-Match).")


class Principal(msgspec.Struct, frozen=True):
    """Who is calling, with what credential and which scopes."""

    user_id: str
    role: Role
    scopes: frozenset[Scope]
    kind: CredentialKind
    credential_id: str
    # A share-link bearer: the link's share id. Its ``user_id`` is empty (it owns nothing), and it
    # reaches only nodes that come with a grant of this very link.
    share_id: str | None = None
    # A presigned URL's holder: the signer's user and credential, allowed only the signed operation.
    restriction: Restriction | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN and Scope.ADMIN in self.scopes


class Action(StrEnum):
    """Everything a caller can ask to do. The value names the scope it needs first."""

    ACCOUNT_READ = "read:account"
    ACCOUNT_WRITE = "write:account"
    SESSION_READ = "read:session"
    SESSION_REVOKE = "write:session"
    TOKEN_READ = "read:token"
    TOKEN_WRITE = "write:token"
    FILE_READ = "read:file"
    FILE_WRITE = "write:file"
    ADMIN_USERS_READ = "admin:users.read"
    ADMIN_USERS_WRITE = "admin:users.write"
    ADMIN_INVITES = "admin:invites"
    ADMIN_AUDIT_READ = "admin:audit.read"
    ADMIN_SYSTEM_READ = "admin:system.read"
    SHARE_READ = "read:share"
    SHARE_WRITE = "write:share"

    @property
    def scope(self) -> Scope:
        return Scope(self.value.split(":", 1)[0])


# Managing credentials is powerful: a token that could mint tokens or end sessions could outlive
# its own revocation, so these need an interactive session (a password login), not a PAT.
SESSION_ONLY = frozenset({Action.TOKEN_WRITE, Action.SESSION_REVOKE, Action.ACCOUNT_WRITE})


# Seeing and managing a node's shares is for its owner (and administrators): a grant never allows
# re-sharing, so what a recipient can reach is always what the owner chose.
OWNER_ONLY = frozenset({Action.SHARE_READ, Action.SHARE_WRITE})


class Permission(StrEnum):
    """What a share allows in its subtree."""

    READ = "read"
    READ_WRITE = "read_write"
    DROP = "drop"  # links to folders: add files to the shared folder itself, see nothing


class Grant(msgspec.Struct, frozen=True):
    """A live share covering a node: on the node itself (``root_id == node``) or on an ancestor."""

    share_id: str
    root_id: str
    permission: Permission


class Owned(msgspec.Struct, frozen=True):
    """Anything with an owner; for a node also the caller's grants covering it (loaded by the caller:
    this module does no I/O), and whether the action takes the node away from where it is."""

    owner_id: str
    node_id: str | None = None
    grants: tuple[Grant, ...] = ()
    detaches: bool = False  # moving, renaming or deleting the node itself
    upload_id: str | None = None  # a resumable upload (not a node): its id, for a presigned URL's check
    in_trash: bool = False  # a trashed node: its owner's alone (grants do not reach into the trash)


# The credentials a presigned URL may be signed with: a URL signed by another URL or by a share link
# would lend rights its holder was only lent, and could outlive what it came from.
SIGNING_KINDS = frozenset({CredentialKind.SESSION, CredentialKind.PERSONAL_TOKEN})


def authorize_signing(principal: Principal | None, action: Action) -> Principal:
    """``authorize(principal, action)``, for minting a presigned URL that allows ``action``: only a
    session or a personal token may lend itself to one (403 for a presigned URL or a share link)."""
    principal = require_principal(principal)
    if principal.kind not in SIGNING_KINDS:
        raise PermissionDenied("Presigned URLs are minted with a session or a personal access token.")
    return authorize(principal, action)


def confined_to_upload(principal: Principal, upload_id: str) -> Principal:
    """The caller, for the upload it has just created: unchanged, or — for a presigned tus creation URL
    — narrowed to that one upload (``Restriction.for_upload``), as its upload URL will be."""
    if principal.restriction is None:
        return principal
    return msgspec.structs.replace(principal, restriction=principal.restriction.for_upload(upload_id))


def require_principal(principal: Principal | None) -> Principal:
    """The caller, or the 401 every protected operation answers when there is none.

    ``authorize`` starts with it; front ends also ask it before reading a request body, so an
    anonymous request to a protected route is told to sign in whatever its body holds."""
    if principal is None:
        raise Unauthenticated("Sign in first: send Authorization: Bearer <access token or personal token>.")
    return principal


def authorize(principal: Principal | None, action: Action, resource: Owned | None = None) -> Principal:
    """Allow, or raise the error the caller should see. Returns the principal for convenience."""
    principal = require_principal(principal)
    if principal.restriction is not None:  # a presigned URL: its one operation, and nothing else
        principal.restriction.check(action, resource)
    needed = action.scope
    if needed is Scope.ADMIN:
        if not principal.is_admin:
            raise PermissionDenied("This needs an administrator.")
        return principal
    if needed not in principal.scopes:
        raise PermissionDenied(f"This token lacks the '{needed.value}' scope needed for this.")
    if action in SESSION_ONLY and principal.kind is not CredentialKind.SESSION:
        raise PermissionDenied("Managing sessions, tokens and the account needs a signed-in session, not a token.")
    if resource is None or principal.is_admin:
        return principal
    if resource.owner_id != principal.user_id or principal.share_id is not None:
        _granted(principal, action, resource)
    return principal


def _granted(principal: Principal, action: Action, resource: Owned) -> None:
    """Allow ``action`` on someone else's node through the caller's grants, or raise.

    Reading needs a read or read-write grant (a drop link's visitor sees nothing: 404). Writing needs
    read-write, or a drop grant on this very folder. Nobody but the owner moves or deletes a shared
    node itself (only what is inside it), or manages its shares. Without any grant the node does not
    exist for the caller (404); with one, a refusal says why (403). What a read-write recipient deletes
    goes to the owner's trash, as what the owner deletes: only the owner sees, restores or purges it
    there (as in Nextcloud), so for everyone else a trashed node does not exist (404)."""
    grants = [g for g in resource.grants if principal.share_id is None or g.share_id == principal.share_id]
    if not grants or resource.in_trash:
        raise NotFound("No such resource.")
    if action in OWNER_ONLY:
        raise PermissionDenied("Only the owner can see and change how this is shared.")
    if action.scope is Scope.READ:
        if any(g.permission is not Permission.DROP for g in grants):
            return
        raise NotFound("No such resource.")
    writable = [
        g
        for g in grants
        if g.permission is Permission.READ_WRITE or (g.permission is Permission.DROP and g.root_id == resource.node_id)
    ]
    if not writable:
        if all(g.permission is Permission.DROP for g in grants):
            raise NotFound("No such resource.")
        raise PermissionDenied("This is shared with you read-only.")
    if resource.detaches and all(g.root_id == resource.node_id for g in writable):
        raise PermissionDenied("Only the owner can move, rename or delete the shared item itself.")
