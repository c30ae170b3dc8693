"""REST endpoints for signing up and in, and for a user's own account. HTTP only: each handler
translates the request into one service call and the result back."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from stowage.accounts.schemas import (
    Accepted,
    ChangePasswordRequest,
    CreatedToken,
    CreateTokenRequest,
    DeleteAccountRequest,
    EmailRequest,
    LoginRequest,
    RefreshRequest,
    ResetPasswordRequest,
    SessionOut,
    SignupRequest,
    TokenOut,
    TokenPair,
    TokenRequest,
    UpdateMeRequest,
    UserOut,
)
from stowage.api.deps import BEARER, SESSION_ONLY, Req
from stowage.api.openapi import operation


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post(
        "/signup",
        **operation("signup", conflicts=True, rate_limited=True, errors=(403,)),
        summary="Create an account and sign in",
        description="Needs `invite_token` in invite mode.",
    )
    async def signup(self, request: Req, data: JSONBody[SignupRequest]) -> TokenPair:
        return await request.accounts.auth.signup(data, request.client_info)

    @post(
        "/login",
        status_code=HTTP_200_OK,
        **operation("login", rate_limited=True, errors=(401, 403)),
        summary="Sign in with email and password",
    )
    async def login(self, request: Req, data: JSONBody[LoginRequest]) -> TokenPair:
        return await request.accounts.auth.login(data, request.client_info)

    @post(
        "/refresh",
        status_code=HTTP_200_OK,
        **operation("refresh", rate_limited=True, errors=(401,)),
        summary="Exchange a refresh token for a new pair",
        description="The presented token is spent. Presenting a spent token again ends the whole session.",
    )
    async def refresh(self, request: Req, data: JSONBody[RefreshRequest]) -> TokenPair:
        return await request.accounts.auth.refresh(data.refresh_token, request.client_info)

    @post(
        "/logout", status_code=HTTP_204_NO_CONTENT, summary="End this session", security=BEARER, **operation("logout")
    )
    async def logout(self, request: Req) -> None:
        await request.accounts.auth.logout(request.principal, request.client_info)

    @post(
        "/logout-all",
        status_code=HTTP_204_NO_CONTENT,
        summary="End every session of this account",
        security=SESSION_ONLY,
        **operation("logoutAll"),
    )
    async def logout_all(self, request: Req) -> None:
        await request.accounts.auth.logout_everywhere(request.principal, request.client_info)

    @post(
        "/email/verify",
        status_code=HTTP_204_NO_CONTENT,
        **operation("verifyEmail", rate_limited=True),
        summary="Confirm an email address with the mailed token",
    )
    async def verify_email(self, request: Req, data: JSONBody[TokenRequest]) -> None:
        await request.accounts.profile.confirm_verification(data.token, request.client_info)

    @post(
        "/password/forgot",
        status_code=HTTP_202_ACCEPTED,
        **operation("forgotPassword", rate_limited=True),
        summary="Mail a password-reset link",
        description="Answers the same whether or not the account exists.",
    )
    async def forgot_password(self, request: Req, data: JSONBody[EmailRequest]) -> Accepted:
        await request.accounts.profile.forgot_password(data.email, request.client_info)
        return Accepted(status="accepted", detail="If an account uses that address, a reset link is on its way.")

    @post(
        "/password/reset",
        status_code=HTTP_204_NO_CONTENT,
        **operation("resetPassword", rate_limited=True),
        summary="Set a new password with a mailed token",
    )
    async def reset_password(self, request: Req, data: JSONBody[ResetPasswordRequest]) -> None:
        await request.accounts.profile.reset_password(data.token, data.new_password, request.client_info)


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["account"]

    @get("/", summary="The signed-in user", security=BEARER, **operation("getMe"))
    async def me(self, request: Req) -> UserOut:
        return await request.accounts.profile.me(request.principal)

    @patch("/", summary="Update the display name", security=SESSION_ONLY, **operation("updateMe"))
    async def update_me(self, request: Req, data: JSONBody[UpdateMeRequest]) -> UserOut:
        return await request.accounts.profile.update_me(request.principal, data.display_name)

    @delete(
        "/",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete this account and all its data",
        security=SESSION_ONLY,
        **operation("deleteMe", conflicts=True, rate_limited=True),
        description="Needs the password in the body.",
    )
    async def delete_me(self, request: Req, data: JSONBody[DeleteAccountRequest]) -> None:
        await request.accounts.profile.delete_account(request.principal, data.password, request.client_info)

    @post(
        "/password",
        status_code=HTTP_204_NO_CONTENT,
        summary="Change the password",
        security=SESSION_ONLY,
        **operation("changePassword", rate_limited=True),
        description="Needs the current password; ends every other session.",
    )
    async def change_password(self, request: Req, data: JSONBody[ChangePasswordRequest]) -> None:
        await request.accounts.profile.change_password(
            request.principal, data.current_password, data.new_password, request.client_info
        )

    @post(
        "/email/verify-request",
        status_code=HTTP_202_ACCEPTED,
        summary="Mail a verification link",
        security=SESSION_ONLY,
        **operation("requestEmailVerification", conflicts=True, rate_limited=True),
    )
    async def request_verification(self, request: Req) -> Accepted:
        await request.accounts.profile.request_verification(request.principal, request.client_info)
        return Accepted(status="accepted", detail="A verification link is on its way.")

    @get("/sessions", summary="Active sessions (devices) of this account", security=BEARER, **operation("listSessions"))
    async def sessions(self, request: Req) -> list[SessionOut]:
        return await request.accounts.profile.list_sessions(request.principal)

    @delete(
        "/sessions/{session_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="End one session",
        security=SESSION_ONLY,
        **operation("revokeSession"),
    )
    async def revoke_session(self, request: Req, session_id: FromPath[str]) -> None:
        await request.accounts.profile.revoke_session(request.principal, session_id, request.client_info)

    @get(
        "/tokens", summary="Personal access tokens (without their secrets)", security=BEARER, **operation("listTokens")
    )
    async def tokens(self, request: Req) -> list[TokenOut]:
        return await request.accounts.profile.list_tokens(request.principal)

    @post(
        "/tokens",
        summary="Create a personal access token; the secret is shown once",
        security=SESSION_ONLY,
        **operation("createToken"),
    )
    async def create_token(self, request: Req, data: JSONBody[CreateTokenRequest]) -> CreatedToken:
        return await request.accounts.profile.create_token(request.principal, data, request.client_info)

    @delete(
        "/tokens/{token_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a personal access token",
        security=SESSION_ONLY,
        **operation("revokeToken"),
    )
    async def revoke_token(self, request: Req, token_id: FromPath[str]) -> None:
        await request.accounts.profile.revoke_token(request.principal, token_id, request.client_info)
