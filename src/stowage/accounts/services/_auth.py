"""Signing up, logging in, refreshing, logging out — and turning a bearer token into a Principal.

Timing and answers are uniform where they must be: an unknown email and a wrong password get the
same error after the same Argon2 work (``PasswordHasher.burn``). Security failures that must be
remembered even though the request fails (a failed login, a reused refresh token) are written in
their own transaction before the error is raised.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from stowage.accounts import repository, tokens
from stowage.accounts.passwords import check_password_policy
from stowage.accounts.presign import Signer
from stowage.accounts.schemas import LoginRequest, SignupRequest, TokenPair
from stowage.accounts.services._common import (
    AccountDeps,
    ClientInfo,
    default_display_name,
    normalise_email,
    record,
    user_out,
)
from stowage.accounts.services._credential_cache import CredentialCache, credentials_epoch
from stowage.db.base import utcnow
from stowage.db.tables import ApiKey, Invite, RefreshToken, Session, User
from stowage.errors import Conflict, PermissionDenied, Unauthenticated
from stowage.policy import Action, CredentialKind, Principal, Role, Scope, authorize

BAD_CREDENTIALS = "Email or password is wrong."
SESSION_SCOPES = frozenset({Scope.READ, Scope.WRITE})
PAT_TOUCH_INTERVAL = timedelta(minutes=1)
# The changes that can end a credential, whichever service commits them (see CredentialCache): a user
# disabled, demoted, deleted or given a new password; a session or a token revoked, shortened or deleted.
REVOKING_CHANGES = {
    "users": frozenset({"disabled_at", "role", "password_hash"}),
    "sessions": frozenset({"revoked_at", "expires_at"}),
    "api_keys": frozenset({"revoked_at", "expires_at", "scopes"}),
}
REVOKING_BULK_UPDATES = frozenset({"sessions", "api_keys"})


class AuthService:
    def __init__(self, deps: AccountDeps) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.credentials = CredentialCache(credentials_epoch(deps.settings), deps.settings.principal_cache_seconds)
        deps.database.watch(REVOKING_CHANGES, self.credentials.revoked, bulk_updates=REVOKING_BULK_UPDATES)

    # --- rate limits --------------------------------------------------------------------------

    async def _limit_ip(self, what: str, client: ClientInfo) -> None:
        await self.deps.limit(f"{what}:ip:{client.ip}", per="ip", what=f"{what} attempts from your address")

    async def _limit_account(self, what: str, email: str) -> None:
        await self.deps.limit(f"{what}:account:{email}", per="account", what=f"{what} attempts for this account")

    # --- sign-up ------------------------------------------------------------------------------

    async def signup(self, request: SignupRequest, client: ClientInfo) -> TokenPair:
        await self._limit_ip("signup", client)
        mode = self.settings.signup_mode
        if mode == "closed":
            raise PermissionDenied("Sign-up is closed on this server; ask an administrator for an account.")
        email = normalise_email(request.email)
        display_name = (request.display_name or default_display_name(email)).strip() or default_display_name(email)
        check_password_policy(request.password, email=email, display_name=display_name)
        password_hash = await self.deps.hasher.hash(request.password)
        now = utcnow()
        async with self.deps.database.transaction() as db:
            invite: Invite | None = None
            if mode == "invite":
                invite = await self._claim_invite(db, request.invite_token, email)
            if await repository.get_user_by_email(db, email) is not None:
                raise Conflict(f"An account with the email {email} already exists; log in instead.")
            user = User(
                id=str(uuid.uuid4()),
                email=email,
                display_name=display_name,
                password_hash=password_hash,
                role=Role.USER.value,
                created_at=now,
                updated_at=now,
            )
            await repository.add(db, user)
            if invite is not None:
                await repository.set_invite_user(db, invite.id, user.id)
            pair = await self._start_session(db, user, client, request.device_name)
            await record(db, "account.signup", actor_id=user.id, target_id=user.id, client=client, mode=mode)
        return pair

    async def _claim_invite(self, db: AsyncSession, token: str | None, email: str) -> Invite:
        if not token:
            raise PermissionDenied("Sign-up needs an invitation on this server: send invite_token.")
        invite = await repository.get_invite_by_hash(db, tokens.hash_token(token))
        now = utcnow()
        if invite is None or invite.used_at is not None or invite.expires_at <= now:
            raise PermissionDenied("This invitation is not valid: it is unknown, used or expired.")
        if invite.email is not None and invite.email != email:
            raise PermissionDenied("This invitation was issued for a different email address.")
        # Claim with a conditional UPDATE: of two concurrent sign-ups, exactly one changes the row.
        if not await repository.claim_invite(db, invite.id, now):
            raise PermissionDenied("This invitation is not valid: it is unknown, used or expired.")
        return invite

    # --- login / refresh / logout --------------------------------------------------------------

    async def login(self, request: LoginRequest, client: ClientInfo) -> TokenPair:
        await self._limit_ip("login", client)
        email = normalise_email(request.email)
        await self._limit_account("login", email)
        async with self.deps.database.session() as db:
            user = await repository.get_user_by_email(db, email)
        if user is None:
            await self.deps.hasher.burn(request.password)
            await self._record_failure("auth.login", None, client, reason="unknown_email")
            raise Unauthenticated(BAD_CREDENTIALS)
        if not await self.deps.hasher.verify(user.password_hash, request.password):
            await self._record_failure("auth.login", user.id, client, reason="wrong_password")
            raise Unauthenticated(BAD_CREDENTIALS)
        if user.disabled_at is not None:
            await self._record_failure("auth.login", user.id, client, reason="disabled")
            raise PermissionDenied("This account is disabled; contact an administrator.")
        new_hash = None
        if self.deps.hasher.needs_rehash(user.password_hash):
            new_hash = await self.deps.hasher.hash(request.password)
        async with self.deps.database.transaction() as db:
            fresh = await repository.get_user(db, user.id)
            if fresh is None:
                raise Unauthenticated(BAD_CREDENTIALS)
            if new_hash is not None:
                fresh.password_hash = new_hash
                fresh.updated_at = utcnow()
            pair = await self._start_session(db, fresh, client, request.device_name)
            await record(
                db, "auth.login", actor_id=fresh.id, target_id=fresh.id, client=client, rehashed=bool(new_hash)
            )
        await self.deps.limiter.reset(f"login:account:{email}")
        return pair

    async def _record_failure(self, action: str, user_id: str | None, client: ClientInfo, reason: str) -> None:
        async with self.deps.database.transaction() as db:
            await record(
                db, action, outcome="failure", actor_id=user_id, target_id=user_id, client=client, reason=reason
            )

    async def _start_session(
        self, db: AsyncSession, user: User, client: ClientInfo, device_name: str | None
    ) -> TokenPair:
        now = utcnow()
        session = Session(
            id=str(uuid.uuid4()),
            user_id=user.id,
            user_agent=(device_name or client.user_agent or "unknown")[:512],
            ip=client.ip,
            created_at=now,
            last_used_at=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl),
        )
        await repository.add(db, session)
        return await self._issue_pair(db, session, user)

    async def _issue_pair(self, db: AsyncSession, session: Session, user: User) -> TokenPair:
        now = utcnow()
        refresh = tokens.new_opaque_token(tokens.REFRESH_PREFIX)
        await repository.add(
            db, RefreshToken(token_hash=tokens.hash_token(refresh), session_id=session.id, created_at=now)
        )
        access = tokens.issue_access_token(
            secret=self.deps.secret,
            user_id=user.id,
            session_id=session.id,
            now=now,
            ttl_seconds=self.settings.access_token_ttl,
        )
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            token_type="Bearer",
            expires_in=self.settings.access_token_ttl,
            session_id=session.id,
            user=user_out(user, self.settings),
        )

    async def refresh(self, refresh_token: str, client: ClientInfo) -> TokenPair:
        """Rotate: the presented token is spent and a new pair issued. A spent token presented
        again means it was copied — the whole session (token family) is revoked."""
        await self._limit_ip("refresh", client)
        token_hash = tokens.hash_token(refresh_token)
        now = utcnow()
        reuse_of: Session | None = None
        async with self.deps.database.transaction() as db:
            stored = await repository.get_refresh_token(db, token_hash)
            if stored is None:
                raise Unauthenticated("This refresh token is not valid; log in again.")
            session = await repository.get_session(db, stored.session_id)
            if session is None or session.revoked_at is not None or session.expires_at <= now:
                raise Unauthenticated("This session has ended; log in again.")
            claimed = await repository.mark_refresh_token_used(db, token_hash, now)
            if not claimed:
                reuse_of = session
            else:
                user = await repository.get_user(db, session.user_id)
                if user is None or user.disabled_at is not None:
                    raise Unauthenticated("This account is not active; log in again.")
                session.last_used_at = now
                session.ip = client.ip
                return await self._issue_pair(db, session, user)
        async with self.deps.database.transaction() as db:
            session = await repository.get_session(db, reuse_of.id)
            if session is not None and session.revoked_at is None:
                session.revoked_at = now
                session.revoke_reason = "refresh_reuse"
            await record(
                db,
                "auth.refresh_reuse",
                outcome="failure",
                actor_id=reuse_of.user_id,
                target_id=reuse_of.user_id,
                client=client,
                session_id=reuse_of.id,
            )
        raise Unauthenticated("This refresh token was already used; the session has been ended for safety.")

    async def logout(self, principal: Principal | None, client: ClientInfo) -> None:
        """End the calling session. Any signed-in caller may; with a personal token it ends nothing."""
        principal = authorize(principal, Action.SESSION_READ)
        async with self.deps.database.transaction() as db:
            if principal.kind is CredentialKind.SESSION:
                session = await repository.get_session(db, principal.credential_id)
                if session is not None and session.revoked_at is None:
                    session.revoked_at = utcnow()
                    session.revoke_reason = "logout"
            await record(db, "auth.logout", actor_id=principal.user_id, target_id=principal.user_id, client=client)

    async def logout_everywhere(self, principal: Principal | None, client: ClientInfo) -> int:
        principal = authorize(principal, Action.SESSION_REVOKE)
        async with self.deps.database.transaction() as db:
            count = await repository.revoke_sessions(db, principal.user_id, now=utcnow(), reason="logout_all")
            await record(
                db,
                "auth.logout_all",
                actor_id=principal.user_id,
                target_id=principal.user_id,
                client=client,
                count=count,
            )
        return count

    # --- bearer tokens → principal -------------------------------------------------------------

    async def authenticate(self, bearer: str) -> Principal:
        """Check a bearer credential: against the database, or this worker's recent check of it.

        A check is reused for at most ``principal_cache_seconds`` and never after a revocation committed
        on this machine (``CredentialCache``), so revoking, disabling and deleting still take effect on
        the next request here and within that lifetime on other machines."""
        personal = bearer.startswith(tokens.PAT_PREFIX)
        key = tokens.hash_token(bearer) if personal else bearer
        cached = self.credentials.get(key)
        if cached is not None:
            return cached
        if personal:
            return await self.credentials.check_and_remember(key, lambda: self._authenticate_pat(bearer))
        return await self.credentials.check_and_remember(key, lambda: self._authenticate_session(bearer))

    async def _authenticate_session(self, bearer: str) -> tuple[Principal, float]:
        if not tokens.looks_like_jwt(bearer):
            raise Unauthenticated("The bearer token is not one this server issued.")
        try:
            claims = tokens.decode_access_token(bearer, secret=self.deps.secret)
        except tokens.InvalidToken as exc:
            raise Unauthenticated(f"The access token is not valid ({exc}); refresh it or log in again.") from exc
        now = utcnow()
        async with self.deps.database.session() as db:
            row = await repository.session_with_user(db, claims.session_id, claims.user_id)
        if row is None:
            raise Unauthenticated("This session no longer exists; log in again.")
        session, user = row
        principal = _session_principal(session, user, now)
        return principal, min(float(claims.expires_at), session.expires_at.timestamp())

    async def _authenticate_pat(self, token: str) -> tuple[Principal, float]:
        now = utcnow()
        token_hash = tokens.hash_token(token)
        async with self.deps.database.session() as db:
            row = await repository.api_key_with_user(db, token_hash)
        if row is None:
            raise Unauthenticated("This personal access token is not valid.")
        key, user = row
        principal = _key_principal(key, user, now)
        if key.last_used_at is None or now - key.last_used_at > PAT_TOUCH_INTERVAL:
            async with self.deps.database.transaction() as db:
                stored = await repository.get_api_key(db, key.id)
                if stored is not None:
                    stored.last_used_at = now
        return principal, key.expires_at.timestamp() if key.expires_at is not None else math.inf

    # --- the signer of a presigned URL ----------------------------------------------------------

    async def authenticate_signer(self, signer: Signer) -> Principal:
        """The signer of a presigned URL as they are now: their credential (session or personal token)
        must still be live and their account enabled, exactly as for a bearer request with it. Checked
        through the same cache (keyed by the credential, so every URL it signed shares one check), so a
        revocation ends its URLs on the next request here."""
        key = f"signer:{signer.encode()}"
        cached = self.credentials.get(key)
        if cached is not None:
            return cached
        return await self.credentials.check_and_remember(key, lambda: self._check_signer(signer))

    async def _check_signer(self, signer: Signer) -> tuple[Principal, float]:
        now = utcnow()
        async with self.deps.database.session() as db:
            if signer.code == "s":
                session_row = await repository.session_with_user(db, signer.credential_id, signer.user_id)
                if session_row is None:
                    raise Unauthenticated("The session no longer exists.")
                session, user = session_row
                return _session_principal(session, user, now), session.expires_at.timestamp()
            key_row = await repository.api_key_by_id_with_user(db, signer.credential_id, signer.user_id)
        if key_row is None:
            raise Unauthenticated("The personal access token no longer exists.")
        key, user = key_row
        principal = _key_principal(key, user, now)
        return principal, key.expires_at.timestamp() if key.expires_at is not None else math.inf


def _session_principal(session: Session, user: User, now: datetime) -> Principal:
    """The caller of a live session of an enabled account; 401 otherwise."""
    if session.revoked_at is not None or session.expires_at <= now:
        raise Unauthenticated("This session has been ended; log in again.")
    if user.disabled_at is not None:
        raise Unauthenticated("This account is disabled.")
    scopes = SESSION_SCOPES | ({Scope.ADMIN} if user.role == Role.ADMIN.value else set())
    return Principal(
        user_id=user.id,
        role=Role(user.role),
        scopes=frozenset(scopes),
        kind=CredentialKind.SESSION,
        credential_id=session.id,
    )


def _key_principal(key: ApiKey, user: User, now: datetime) -> Principal:
    """The caller of a live personal access token of an enabled account; 401 otherwise."""
    if key.revoked_at is not None:
        raise Unauthenticated("This personal access token has been revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthenticated("This personal access token has expired.")
    if user.disabled_at is not None:
        raise Unauthenticated("This account is disabled.")
    scopes = {Scope(s) for s in key.scopes.split(",") if s}
    if user.role != Role.ADMIN.value:
        scopes.discard(Scope.ADMIN)
    return Principal(
        user_id=user.id,
        role=Role(user.role),
        scopes=frozenset(scopes),
        kind=CredentialKind.PERSONAL_TOKEN,
        credential_id=key.id,
    )
