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
from stowage.api.deps import BEARER, Accounts, Caller, Client


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/signup", summary="Create an account and sign in", description="Needs `invite_token` in invite mode.")
    async def signup(self, data: JSONBody[SignupRequest], accounts: Accounts, client: Client) -> TokenPair:
        return await accounts.auth.signup(data, client)

    @post("/login", status_code=HTTP_200_OK, summary="Sign in with email and password")
    async def login(self, data: JSONBody[LoginRequest], accounts: Accounts, client: Client) -> TokenPair:
        return await accounts.auth.login(data, client)

    @post(
        "/refresh",
        status_code=HTTP_200_OK,
        summary="Exchange a refresh token for a new pair",
        description="The presented token is spent. Presenting a spent token again ends the whole session.",
    )
    async def refresh(self, data: JSONBody[RefreshRequest], accounts: Accounts, client: Client) -> TokenPair:
        return await accounts.auth.refresh(data.refresh_token, client)

    @post("/logout", status_code=HTTP_204_NO_CONTENT, summary="End this session", security=BEARER)
    async def logout(self, accounts: Accounts, principal: Caller, client: Client) -> None:
        await accounts.auth.logout(principal, client)

    @post("/logout-all", status_code=HTTP_204_NO_CONTENT, summary="End every session of this account", security=BEARER)
    async def logout_all(self, accounts: Accounts, principal: Caller, client: Client) -> None:
        await accounts.auth.logout_everywhere(principal, client)

    @post("/email/verify", status_code=HTTP_204_NO_CONTENT, summary="Confirm an email address with the mailed token")
    async def verify_email(self, data: JSONBody[TokenRequest], accounts: Accounts, client: Client) -> None:
        await accounts.profile.confirm_verification(data.token, client)

    @post(
        "/password/forgot",
        status_code=HTTP_202_ACCEPTED,
        summary="Mail a password-reset link",
        description="Answers the same whether or not the account exists.",
    )
    async def forgot_password(self, data: JSONBody[EmailRequest], accounts: Accounts, client: Client) -> Accepted:
        await accounts.profile.forgot_password(data.email, client)
        return Accepted(status="accepted", detail="If an account uses that address, a reset link is on its way.")

    @post("/password/reset", status_code=HTTP_204_NO_CONTENT, summary="Set a new password with a mailed token")
    async def reset_password(self, data: JSONBody[ResetPasswordRequest], accounts: Accounts, client: Client) -> None:
        await accounts.profile.reset_password(data.token, data.new_password, client)


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["account"]
    security = BEARER

    @get("/", summary="The signed-in user")
    async def me(self, accounts: Accounts, principal: Caller) -> UserOut:
        return await accounts.profile.me(principal)

    @patch("/", summary="Update the display name")
    async def update_me(self, data: JSONBody[UpdateMeRequest], accounts: Accounts, principal: Caller) -> UserOut:
        return await accounts.profile.update_me(principal, data.display_name)

    @delete(
        "/",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete this account and all its data",
        description="Needs the password in the body.",
    )
    async def delete_me(
        self, data: JSONBody[DeleteAccountRequest], accounts: Accounts, principal: Caller, client: Client
    ) -> None:
        await accounts.profile.delete_account(principal, data.password, client)

    @post(
        "/password",
        status_code=HTTP_204_NO_CONTENT,
        summary="Change the password",
        description="Needs the current password; ends every other session.",
    )
    async def change_password(
        self, data: JSONBody[ChangePasswordRequest], accounts: Accounts, principal: Caller, client: Client
    ) -> None:
        await accounts.profile.change_password(principal, data.current_password, data.new_password, client)

    @post("/email/verify-request", status_code=HTTP_202_ACCEPTED, summary="Mail a verification link")
    async def request_verification(self, accounts: Accounts, principal: Caller, client: Client) -> Accepted:
        await accounts.profile.request_verification(principal, client)
        return Accepted(status="accepted", detail="A verification link is on its way.")

    @get("/sessions", summary="Active sessions (devices) of this account")
    async def sessions(self, accounts: Accounts, principal: Caller) -> list[SessionOut]:
        return await accounts.profile.list_sessions(principal)

    @delete("/sessions/{session_id:str}", status_code=HTTP_204_NO_CONTENT, summary="End one session")
    async def revoke_session(
        self, session_id: FromPath[str], accounts: Accounts, principal: Caller, client: Client
    ) -> None:
        await accounts.profile.revoke_session(principal, session_id, client)

    @get("/tokens", summary="Personal access tokens (without their secrets)")
    async def tokens(self, accounts: Accounts, principal: Caller) -> list[TokenOut]:
        return await accounts.profile.list_tokens(principal)

    @post("/tokens", summary="Create a personal access token; the secret is shown once")
    async def create_token(
        self, data: JSONBody[CreateTokenRequest], accounts: Accounts, principal: Caller, client: Client
    ) -> CreatedToken:
        return await accounts.profile.create_token(principal, data, client)

    @delete("/tokens/{token_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Revoke a personal access token")
    async def revoke_token(
        self, token_id: FromPath[str], accounts: Accounts, principal: Caller, client: Client
    ) -> None:
        await accounts.profile.revoke_token(principal, token_id, client)
