"""A signed-in user's own account: profile, password, sessions, personal tokens, email flows, deletion."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from stowage.accounts import direct_repository, repository, tokens
from stowage.accounts.passwords import check_password_policy
from stowage.accounts.schemas import (
    CreatedToken,
    CreateTokenRequest,
    SessionOut,
    TokenOut,
    UserOut,
)
from stowage.accounts.services._common import AccountDeps, ClientInfo, normalise_email, record, security_log, user_out
from stowage.db.base import utcnow
from stowage.db.tables import ApiKey, EmailToken, User
from stowage.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    Unauthenticated,
)
from stowage.files.services import release_user_content
from stowage.mail.templates import link_for, password_reset_email, verification_email
from stowage.policy import Action, Owned, Principal, Role, authorize

VERIFY = "verify"
RESET = "reset"


def token_out(key: ApiKey) -> TokenOut:
    return TokenOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=[s for s in key.scopes.split(",") if s],
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
    )


class ProfileService:
    def __init__(self, deps: AccountDeps) -> None:
        self.deps = deps
        self.settings = deps.settings

    async def _user(self, principal: Principal) -> User:
        async with self.deps.database.session() as db:
            user = await repository.get_user(db, principal.user_id)
        if user is None:
            raise Unauthenticated("This account no longer exists.")
        return user

    # --- profile ---------------------------------------------------------------------------------

    async def me(self, principal: Principal | None) -> UserOut:
        """The caller's account: one indexed read on the raw driver (every app asks this often)."""
        principal = authorize(principal, Action.ACCOUNT_READ)
        found = await direct_repository.user_out(
            self.deps.database.direct, principal.user_id, default_quota=self.settings.default_quota_bytes
        )
        if found is None:
            raise Unauthenticated("This account no longer exists.")
        return found

    async def update_me(self, principal: Principal | None, display_name: str) -> UserOut:
        principal = authorize(principal, Action.ACCOUNT_WRITE)
        name = display_name.strip()
        if not name:
            raise InvalidInput(
                "The display name cannot be blank.",
                errors=[FieldError(field="body.display_name", message="must contain a visible character")],
            )
        async with self.deps.database.transaction() as db:
            user = await repository.get_user(db, principal.user_id)
            if user is None:
                raise Unauthenticated("This account no longer exists.")
            user.display_name = name
            user.updated_at = utcnow()
            return user_out(user, self.settings)

    async def _require_password(self, user: User, password: str, client: ClientInfo, action: str) -> None:
        await self.deps.limit(
            f"password-check:account:{user.id}", per="account", what="password attempts for this account"
        )
        if not await self.deps.hasher.verify(user.password_hash, password):
            async with self.deps.database.transaction() as db:
                await record(db, action, outcome="failure", actor_id=user.id, target_id=user.id, client=client)
            raise PermissionDenied("The current password is wrong.")

    async def change_password(self, principal: Principal | None, current: str, new: str, client: ClientInfo) -> None:
        principal = authorize(principal, Action.ACCOUNT_WRITE)
        user = await self._user(principal)
        await self._require_password(user, current, client, "account.password_change")
        check_password_policy(new, email=user.email, display_name=user.display_name, field="body.new_password")
        new_hash = await self.deps.hasher.hash(new)
        async with self.deps.database.transaction() as db:
            fresh = await repository.get_user(db, user.id)
            if fresh is None:
                raise Unauthenticated("This account no longer exists.")
            fresh.password_hash = new_hash
            fresh.updated_at = utcnow()
            revoked = await repository.revoke_sessions(
                db, user.id, now=utcnow(), reason="password_change", except_session_id=principal.credential_id
            )
            await record(
                db,
                "account.password_change",
                actor_id=user.id,
                target_id=user.id,
                client=client,
                sessions_revoked=revoked,
            )

    async def delete_account(self, principal: Principal | None, password: str, client: ClientInfo) -> None:
        principal = authorize(principal, Action.ACCOUNT_WRITE)
        user = await self._user(principal)
        await self._require_password(user, password, client, "account.delete")
        async with self.deps.database.transaction() as db:
            fresh = await repository.get_user(db, user.id)
            if fresh is None:
                return
            if (
                fresh.role == Role.ADMIN.value
                and fresh.disabled_at is None
                and await repository.count_active_admins(db) <= 1
            ):
                raise Conflict("You are the last administrator; make someone else an administrator first.")
            await release_user_content(db, fresh.id)
            await repository.delete(db, fresh)
            await record(db, "account.delete", actor_id=user.id, target_id=user.id, client=client, email=user.email)

    # --- sessions --------------------------------------------------------------------------------

    async def list_sessions(self, principal: Principal | None) -> list[SessionOut]:
        principal = authorize(principal, Action.SESSION_READ)
        async with self.deps.database.session() as db:
            rows = await repository.list_active_sessions(db, principal.user_id, utcnow())
        return [
            SessionOut(
                id=s.id,
                device=s.user_agent,
                ip=s.ip,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
                current=s.id == principal.credential_id,
            )
            for s in rows
        ]

    async def revoke_session(self, principal: Principal | None, session_id: str, client: ClientInfo) -> None:
        async with self.deps.database.transaction() as db:
            session = await repository.get_session(db, session_id)
            if session is None or session.revoked_at is not None:
                authorize(principal, Action.SESSION_REVOKE)
                raise NotFound("No such session.")
            principal = authorize(principal, Action.SESSION_REVOKE, Owned(owner_id=session.user_id))
            session.revoked_at = utcnow()
            session.revoke_reason = "revoked"
            await record(
                db,
                "auth.session_revoke",
                actor_id=principal.user_id,
                target_id=session.user_id,
                client=client,
                session_id=session.id,
            )

    # --- personal access tokens -----------------------------------------------------------------

    async def list_tokens(self, principal: Principal | None) -> list[TokenOut]:
        principal = authorize(principal, Action.TOKEN_READ)
        async with self.deps.database.session() as db:
            return [token_out(k) for k in await repository.list_api_keys(db, principal.user_id)]

    async def create_token(
        self, principal: Principal | None, request: CreateTokenRequest, client: ClientInfo
    ) -> CreatedToken:
        principal = authorize(principal, Action.TOKEN_WRITE)
        scopes = sorted(set(request.scopes))
        if "admin" in scopes and principal.role is not Role.ADMIN:
            raise InvalidInput(
                "Only administrators can create tokens with the admin scope.",
                errors=[FieldError(field="body.scopes", message="'admin' needs the admin role")],
            )
        name = request.name.strip()
        if not name:
            raise InvalidInput(
                "The token name cannot be blank.", errors=[FieldError(field="body.name", message="must not be blank")]
            )
        secret = tokens.new_opaque_token(tokens.PAT_PREFIX)
        now = utcnow()
        key = ApiKey(
            id=str(uuid.uuid4()),
            user_id=principal.user_id,
            kind="pat",
            name=name,
            prefix=secret[:12],
            token_hash=tokens.hash_token(secret),
            scopes=",".join(scopes),
            created_at=now,
            expires_at=now + timedelta(days=request.expires_in_days) if request.expires_in_days else None,
        )
        async with self.deps.database.transaction() as db:
            await repository.add(db, key)
            await record(
                db,
                "token.create",
                actor_id=principal.user_id,
                target_id=principal.user_id,
                client=client,
                token_id=key.id,
                scopes=key.scopes,
            )
        return CreatedToken(token=secret, details=token_out(key))

    async def revoke_token(self, principal: Principal | None, token_id: str, client: ClientInfo) -> None:
        async with self.deps.database.transaction() as db:
            key = await repository.get_api_key(db, token_id)
            if key is None or key.revoked_at is not None:
                authorize(principal, Action.TOKEN_WRITE)
                raise NotFound("No such token.")
            principal = authorize(principal, Action.TOKEN_WRITE, Owned(owner_id=key.user_id))
            key.revoked_at = utcnow()
            await record(
                db, "token.revoke", actor_id=principal.user_id, target_id=key.user_id, client=client, token_id=key.id
            )

    # --- email flows -----------------------------------------------------------------------------

    def _require_mail(self) -> None:
        if not self.deps.mailer.enabled:
            raise ServiceUnavailable(
                "Email is not configured on this server (an administrator sets STOWAGE_SMTP_HOST).", retry_after=3600
            )

    async def _mail_token(self, user: User, purpose: str) -> str:
        secret = tokens.new_opaque_token(tokens.EMAIL_PREFIX)
        now = utcnow()
        async with self.deps.database.transaction() as db:
            await repository.expire_email_tokens(db, user.id, purpose, now)
            await repository.add(
                db,
                EmailToken(
                    token_hash=tokens.hash_token(secret),
                    user_id=user.id,
                    purpose=purpose,
                    email=user.email,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.settings.email_token_ttl),
                ),
            )
        return secret

    async def request_verification(self, principal: Principal | None, client: ClientInfo) -> None:
        principal = authorize(principal, Action.ACCOUNT_WRITE)
        self._require_mail()
        user = await self._user(principal)
        if user.email_verified_at is not None:
            raise Conflict(f"{user.email} is already verified.")
        await self.deps.limit(
            f"verify-mail:account:{user.id}", per="account", what="verification emails for this account"
        )
        secret = await self._mail_token(user, VERIFY)
        minutes = self.settings.email_token_ttl // 60
        link = link_for(self.settings, "/verify-email", secret)
        await self.deps.mailer.send(verification_email(user.email, user.display_name, link, minutes))

    async def confirm_verification(self, token: str, client: ClientInfo) -> None:
        async with self.deps.database.transaction() as db:
            stored = await self._spend_email_token(db, token, VERIFY)
            user = await repository.get_user(db, stored.user_id)
            if user is None or user.email != stored.email:
                raise InvalidInput("This link is no longer valid; request a new one.")
            user.email_verified_at = utcnow()
            await record(db, "account.email_verified", actor_id=user.id, target_id=user.id, client=client)

    async def forgot_password(self, email_raw: str, client: ClientInfo) -> None:
        """Always looks the same to the caller, whether or not the account exists."""
        self._require_mail()
        await self.deps.limit(f"reset:ip:{client.ip}", per="ip", what="password reset requests from your address")
        email = normalise_email(email_raw)
        await self.deps.limit(f"reset:account:{email}", per="account", what="password reset requests for this account")
        async with self.deps.database.session() as db:
            user = await repository.get_user_by_email(db, email)
        if user is None or user.disabled_at is not None:
            security_log.info("password_reset_for_unknown_or_disabled_account")
            return
        secret = await self._mail_token(user, RESET)
        minutes = self.settings.email_token_ttl // 60
        link = link_for(self.settings, "/reset-password", secret)
        try:
            await self.deps.mailer.send(password_reset_email(user.email, user.display_name, link, minutes))
        except ServiceUnavailable:
            # Answered like an unknown address: an error here, and only here, would tell the caller that
            # the account exists. The failure is logged for the operator; the user can ask again.
            security_log.warning("password_reset_mail_failed", user_id=user.id)
            return
        async with self.deps.database.transaction() as db:
            await record(db, "account.password_reset_requested", target_id=user.id, client=client)

    async def reset_password(self, token: str, new_password: str, client: ClientInfo) -> None:
        await self.deps.limit(
            f"reset-confirm:ip:{client.ip}", per="ip", what="password reset attempts from your address"
        )
        async with self.deps.database.session() as db:
            stored = await repository.get_email_token(db, tokens.hash_token(token))
            user = await repository.get_user(db, stored.user_id) if stored else None
        if user is not None:
            check_password_policy(
                new_password, email=user.email, display_name=user.display_name, field="body.new_password"
            )
        new_hash = await self.deps.hasher.hash(new_password)
        async with self.deps.database.transaction() as db:
            spent = await self._spend_email_token(db, token, RESET)
            fresh = await repository.get_user(db, spent.user_id)
            if fresh is None or fresh.disabled_at is not None:
                raise InvalidInput("This link is no longer valid; request a new one.")
            fresh.password_hash = new_hash
            fresh.updated_at = utcnow()
            revoked = await repository.revoke_sessions(db, fresh.id, now=utcnow(), reason="password_reset")
            await record(
                db,
                "account.password_reset",
                actor_id=fresh.id,
                target_id=fresh.id,
                client=client,
                sessions_revoked=revoked,
            )

    async def _spend_email_token(self, db: AsyncSession, token: str, purpose: str) -> EmailToken:
        token_hash = tokens.hash_token(token)
        stored = await repository.get_email_token(db, token_hash)
        now = utcnow()
        # Claim with a conditional UPDATE: of two concurrent uses, exactly one changes the row.
        if (
            stored is None
            or stored.purpose != purpose
            or stored.expires_at <= now
            or not await repository.claim_email_token(db, token_hash, now)
        ):
            raise InvalidInput(
                "This link is not valid: it is unknown, already used or expired. Request a new one.",
                errors=[FieldError(field="body.token", message="unknown, used or expired")],
            )
        return stored
