"""The account services an application instance shares, one per use-case group.

``auth`` (sign-up, login, tokens, sessions, bearer credentials → principal), ``profile`` (the
caller's own account: profile, password, email flows, personal tokens, deletion) and ``admin``
(users, invitations, the audit log). ``PresignService`` (presigned URLs) needs the file tree too, so
the application builds it beside these (``Runtime.presign``). Each private module holds one group;
this package re-exports what front ends, the CLI and tests use.
"""

from __future__ import annotations

from dataclasses import dataclass

from stowage.accounts.services._admin import AdminService
from stowage.accounts.services._auth import AuthService
from stowage.accounts.services._common import AccountDeps, ClientInfo, normalise_email
from stowage.accounts.services._credential_cache import credentials_epoch
from stowage.accounts.services._presign import PresignService
from stowage.accounts.services._profile import ProfileService


@dataclass(slots=True)
class AccountServices:
    deps: AccountDeps
    auth: AuthService
    profile: ProfileService
    admin: AdminService

    @classmethod
    def build(cls, deps: AccountDeps) -> AccountServices:
        return cls(deps=deps, auth=AuthService(deps), profile=ProfileService(deps), admin=AdminService(deps))


__all__ = [
    "AccountDeps",
    "AccountServices",
    "AdminService",
    "AuthService",
    "ClientInfo",
    "PresignService",
    "ProfileService",
    "credentials_epoch",
    "normalise_email",
]
