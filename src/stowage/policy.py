"""The one authorisation policy: (principal, action, resource) → allow, or a domain error.

Every protected operation, whatever protocol it arrives by (REST, tus, S3, WebDAV, share links),
asks ``authorize`` before it touches data. Rules:

- no principal → ``Unauthenticated`` (401);
- the credential's scopes must include the scope the action needs (a read-only token cannot
  write) → ``PermissionDenied`` (403);
- admin actions need the admin role *and* the admin scope → ``PermissionDenied``;
- a resource owned by someone else is reported as ``NotFound`` (404), never 403, so an id does
  not reveal whether it exists — unless the caller is an admin acting with the admin scope.

This module imports no web framework and does no I/O: callers load the resource, then ask.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from stowage.errors import NotFound, PermissionDenied, Unauthenticated


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


class Principal(msgspec.Struct, frozen=True):
    """Who is calling, with what credential and which scopes."""

    user_id: str
    role: Role
    scopes: frozenset[Scope]
    kind: CredentialKind
    credential_id: str

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

    @property
    def scope(self) -> Scope:
        return Scope(self.value.split(":", 1)[0])


# Managing credentials is powerful: a token that could mint tokens or end sessions could outlive
# its own revocation, so these need an interactive session (a password login), not a PAT.
SESSION_ONLY = frozenset({Action.TOKEN_WRITE, Action.SESSION_REVOKE, Action.ACCOUNT_WRITE})


class Owned(msgspec.Struct, frozen=True):
    """Anything with an owner: the policy needs nothing more to decide ownership."""

    owner_id: str


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
    needed = action.scope
    if needed is Scope.ADMIN:
        if not principal.is_admin:
            raise PermissionDenied("This needs an administrator.")
        return principal
    if needed not in principal.scopes:
        raise PermissionDenied(f"This token lacks the '{needed.value}' scope needed for this.")
    if action in SESSION_ONLY and principal.kind is not CredentialKind.SESSION:
        raise PermissionDenied("Managing sessions, tokens and the account needs a signed-in session, not a token.")
    if resource is not None and resource.owner_id != principal.user_id and not principal.is_admin:
        raise NotFound("No such resource.")
    return principal
