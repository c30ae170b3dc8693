"""The bundle of account services an application instance shares."""

from __future__ import annotations

from dataclasses import dataclass

from stowage.accounts.services._admin import AdminService
from stowage.accounts.services._auth import AuthService
from stowage.accounts.services._common import AccountDeps
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
