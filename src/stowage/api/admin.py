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
from stowage.api.deps import BEARER, Req
from stowage.api.openapi import operation

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Page size")]
Cursor = Annotated[str | None, QueryParameter(max_length=200, description="`next_cursor` from the previous page")]


class AdminController(Controller):
    path = "/api/v1/admin"
    tags = ["admin"]
    security = BEARER

    @get("/users", **operation("listUsers"), summary="List or search users (by email or display name)")
    async def list_users(
        self,
        request: Req,
        q: Annotated[str | None, QueryParameter(max_length=200, description="Case-insensitive substring")] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> UserPage:
        return await request.accounts.admin.list_users(request.principal, query=q, cursor=cursor, limit=limit)

    @post("/users", summary="Create a user", **operation("createUser", conflicts=True))
    async def create_user(self, request: Req, data: JSONBody[AdminCreateUserRequest]) -> UserOut:
        return await request.accounts.admin.create_user(request.principal, data, request.client_info)

    @get("/users/{user_id:str}", summary="One user", **operation("getUser"))
    async def get_user(self, request: Req, user_id: FromPath[str]) -> UserOut:
        return await request.accounts.admin.get_user(request.principal, user_id)

    @patch(
        "/users/{user_id:str}",
        **operation("updateUser", conflicts=True),
        summary="Disable/enable, set quota, role, display name or verified flag",
        description="Disabling ends the user's sessions and stops their tokens at once.",
    )
    async def update_user(
        self,
        request: Req,
        user_id: FromPath[str],
        data: JSONBody[AdminUpdateUserRequest],
    ) -> UserOut:
        return await request.accounts.admin.update_user(request.principal, user_id, data, request.client_info)

    @post(
        "/users/{user_id:str}/password",
        status_code=HTTP_204_NO_CONTENT,
        **operation("setUserPassword"),
        summary="Set a user's password (ends their sessions)",
    )
    async def reset_password(
        self,
        request: Req,
        user_id: FromPath[str],
        data: JSONBody[AdminResetPasswordRequest],
    ) -> None:
        await request.accounts.admin.reset_password(request.principal, user_id, data.new_password, request.client_info)

    @delete(
        "/users/{user_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a user and all their data",
        **operation("deleteUser", conflicts=True),
    )
    async def delete_user(self, request: Req, user_id: FromPath[str]) -> None:
        await request.accounts.admin.delete_user(request.principal, user_id, request.client_info)

    @get("/invites", summary="Open invitations", **operation("listInvites"))
    async def list_invites(self, request: Req) -> list[InviteOut]:
        return await request.accounts.admin.list_invites(request.principal)

    @post("/invites", summary="Create a sign-up invitation; the token is shown once", **operation("createInvite"))
    async def create_invite(self, request: Req, data: JSONBody[CreateInviteRequest]) -> CreatedInvite:
        return await request.accounts.admin.create_invite(request.principal, data, request.client_info)

    @delete(
        "/invites/{invite_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Withdraw an invitation",
        **operation("revokeInvite"),
    )
    async def revoke_invite(self, request: Req, invite_id: FromPath[str]) -> None:
        await request.accounts.admin.revoke_invite(request.principal, invite_id, request.client_info)

    @get("/audit", summary="Security audit log, newest first", **operation("listAuditEvents"))
    async def audit(
        self,
        request: Req,
        cursor: Cursor = None,
        limit: Limit = 50,
        action: Annotated[str | None, QueryParameter(max_length=64, description="Only this action")] = None,
        user_id: Annotated[
            str | None, QueryParameter(max_length=36, description="Events by or about this user")
        ] = None,
    ) -> AuditPage:
        return await request.accounts.admin.audit(
            request.principal, cursor=cursor, limit=limit, action=action, user_id=user_id
        )
