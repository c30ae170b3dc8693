"""The bundle of account services an application instance shares."""

from __future__ import annotations

from dataclasses import dataclass

from stowage.accounts.admin_service import AdminService
from stowage.accounts.auth_service import AuthService
from stowage.accounts.common import AccountDeps
from stowage.accounts.profile_service import ProfileService


@dataclass(slots=True)
class AccountServices:
    deps: AccountDeps
    auth: AuthService
    profile: ProfileService
    admin: AdminService

    @classmethod
    def build(cls, deps: AccountDeps) -> AccountServices:
        return cls(deps=deps, auth=AuthService(deps), profile=ProfileService(deps), admin=AdminService(deps))
