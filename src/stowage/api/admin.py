"""REST endpoints for administrators: users, invitations and the audit log."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from stowage.accounts.schemas import (
    AdminCreateUserRequest,
    AdminResetPasswordRequest,
    AdminUpdateUserRequest,
    AuditPage,
    CreatedInvite,
    CreateInviteRequest,
    InviteOut,
    UserOut,
    UserPage,
)
from stowage.api.deps import BEARER, Accounts, Caller, Client

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Page size")]
Cursor = Annotated[str | None, QueryParameter(max_length=200, description="`next_cursor` from the previous page")]


class AdminController(Controller):
    path = "/api/v1/admin"
    tags = ["admin"]
    security = BEARER

    @get("/users", summary="List or search users (by email or display name)")
    async def list_users(
        self,
        accounts: Accounts,
        principal: Caller,
        q: Annotated[str | None, QueryParameter(max_length=200, description="Case-insensitive substring")] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> UserPage:
        return await accounts.admin.list_users(principal, query=q, cursor=cursor, limit=limit)

    @post("/users", summary="Create a user")
    async def create_user(
        self, data: JSONBody[AdminCreateUserRequest], accounts: Accounts, principal: Caller, client: Client
    ) -> UserOut:
        return await accounts.admin.create_user(principal, data, client)

    @get("/users/{user_id:str}", summary="One user")
    async def get_user(self, user_id: FromPath[str], accounts: Accounts, principal: Caller) -> UserOut:
        return await accounts.admin.get_user(principal, user_id)

    @patch(
        "/users/{user_id:str}",
        summary="Disable/enable, set quota, role, display name or verified flag",
        description="Disabling ends the user's sessions and stops their tokens at once.",
    )
    async def update_user(
        self,
        user_id: FromPath[str],
        data: JSONBody[AdminUpdateUserRequest],
        accounts: Accounts,
        principal: Caller,
        client: Client,
    ) -> UserOut:
        return await accounts.admin.update_user(principal, user_id, data, client)

    @post(
        "/users/{user_id:str}/password",
        status_code=HTTP_204_NO_CONTENT,
        summary="Set a user's password (ends their sessions)",
    )
    async def reset_password(
        self,
        user_id: FromPath[str],
        data: JSONBody[AdminResetPasswordRequest],
        accounts: Accounts,
        principal: Caller,
        client: Client,
    ) -> None:
        await accounts.admin.reset_password(principal, user_id, data.new_password, client)

    @delete("/users/{user_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a user and all their data")
    async def delete_user(self, user_id: FromPath[str], accounts: Accounts, principal: Caller, client: Client) -> None:
        await accounts.admin.delete_user(principal, user_id, client)

    @get("/invites", summary="Open invitations")
    async def list_invites(self, accounts: Accounts, principal: Caller) -> list[InviteOut]:
        return await accounts.admin.list_invites(principal)

    @post("/invites", summary="Create a sign-up invitation; the token is shown once")
    async def create_invite(
        self, data: JSONBody[CreateInviteRequest], accounts: Accounts, principal: Caller, client: Client
    ) -> CreatedInvite:
        return await accounts.admin.create_invite(principal, data, client)

    @delete("/invites/{invite_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Withdraw an invitation")
    async def revoke_invite(
        self, invite_id: FromPath[str], accounts: Accounts, principal: Caller, client: Client
    ) -> None:
        await accounts.admin.revoke_invite(principal, invite_id, client)

    @get("/audit", summary="Security audit log, newest first")
    async def audit(
        self,
        accounts: Accounts,
        principal: Caller,
        cursor: Cursor = None,
        limit: Limit = 50,
        action: Annotated[str | None, QueryParameter(max_length=64, description="Only this action")] = None,
        user_id: Annotated[
            str | None, QueryParameter(max_length=36, description="Events by or about this user")
        ] = None,
    ) -> AuditPage:
        return await accounts.admin.audit(principal, cursor=cursor, limit=limit, action=action, user_id=user_id)
