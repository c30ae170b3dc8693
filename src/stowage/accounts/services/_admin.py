"""Administration of accounts: search, create, disable/enable, quota, role, password reset, delete,
invitations and the audit log. Every method asks the policy for an admin action first."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from stowage.accounts import repository, tokens
from stowage.accounts.passwords import check_password_policy
from stowage.accounts.schemas import (
    AdminCreateUserRequest,
    AdminUpdateUserRequest,
    AuditEventOut,
    AuditPage,
    CreatedInvite,
    CreateInviteRequest,
    InviteOut,
    UserOut,
    UserPage,
)
from stowage.accounts.services._common import (
    AccountDeps,
    ClientInfo,
    default_display_name,
    normalise_email,
    record,
    user_out,
)
from stowage.db.base import utcnow
from stowage.db.tables import Invite, User
from stowage.errors import Conflict, FieldError, InvalidInput, NotFound
from stowage.files.services import release_user_content
from stowage.policy import Action, Principal, Role, authorize

MAX_PAGE = 200


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        decoded = base64.b64decode(
            (cursor + "=" * (-len(cursor) % 4)).encode("ascii"), altchars=b"-_", validate=True
        ).decode()
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidInput(
            "The cursor is not one this server issued.",
            errors=[FieldError(field="query.cursor", message="malformed cursor")],
        ) from exc
    if not decoded:
        raise InvalidInput(
            "The cursor is not one this server issued.",
            errors=[FieldError(field="query.cursor", message="malformed cursor")],
        )
    return decoded


async def revoke_every_credential(db: AsyncSession, user_id: str, now: datetime) -> dict[str, str | int | bool | None]:
    """Disabling ends every credential of the account for good: its sessions (with their access and
    refresh tokens), its personal access tokens and other API keys, and its open email links.
    Enabling it again restores none of them — the user logs in afresh and makes new tokens — so a
    credential that leaked before the account was disabled stays dead. Returns counts for the audit."""
    sessions = await repository.revoke_sessions(db, user_id, now=now, reason="disabled")
    keys = await repository.revoke_api_keys(db, user_id, now=now)
    await repository.expire_email_tokens(db, user_id, None, now)
    return {"sessions_revoked": sessions, "tokens_revoked": keys}


def invite_out(invite: Invite) -> InviteOut:
    return InviteOut(id=invite.id, email=invite.email, created_at=invite.created_at, expires_at=invite.expires_at)


class AdminService:
    def __init__(self, deps: AccountDeps) -> None:
        self.deps = deps
        self.settings = deps.settings

    async def list_users(
        self, principal: Principal | None, *, query: str | None, cursor: str | None, limit: int
    ) -> UserPage:
        authorize(principal, Action.ADMIN_USERS_READ)
        limit = max(1, min(limit, MAX_PAGE))
        after = decode_cursor(cursor)
        async with self.deps.database.session() as db:
            rows = await repository.list_users(db, query=query, after_email=after, limit=limit + 1)
        items = [user_out(u, self.settings) for u in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1].email) if len(rows) > limit else None
        return UserPage(items=items, next_cursor=next_cursor)

    async def get_user(self, principal: Principal | None, user_id: str) -> UserOut:
        authorize(principal, Action.ADMIN_USERS_READ)
        async with self.deps.database.session() as db:
            user = await repository.get_user(db, user_id)
        if user is None:
            raise NotFound("No user with that id.")
        return user_out(user, self.settings)

    async def create_user(
        self, principal: Principal | None, request: AdminCreateUserRequest, client: ClientInfo | None
    ) -> UserOut:
        actor = authorize(principal, Action.ADMIN_USERS_WRITE)
        return await self._create(request, actor.user_id, client)

    async def create_user_unchecked(self, request: AdminCreateUserRequest) -> UserOut:
        """For the ``stowage user create`` command: whoever runs it already controls the server."""
        return await self._create(request, None, None)

    async def _create(
        self, request: AdminCreateUserRequest, actor_id: str | None, client: ClientInfo | None
    ) -> UserOut:
        email = normalise_email(request.email)
        display_name = (request.display_name or "").strip() or default_display_name(email)
        check_password_policy(request.password, email=email, display_name=display_name)
        password_hash = await self.deps.hasher.hash(request.password)
        now = utcnow()
        async with self.deps.database.transaction() as db:
            if await repository.get_user_by_email(db, email) is not None:
                raise Conflict(f"An account with the email {email} already exists.")
            user = User(
                id=str(uuid.uuid4()),
                email=email,
                display_name=display_name,
                password_hash=password_hash,
                role=request.role,
                created_at=now,
                updated_at=now,
            )
            await repository.add(db, user)
            await record(
                db, "admin.user_create", actor_id=actor_id, target_id=user.id, client=client, role=request.role
            )
            return user_out(user, self.settings)

    async def update_user(
        self, principal: Principal | None, user_id: str, request: AdminUpdateUserRequest, client: ClientInfo | None
    ) -> UserOut:
        actor = authorize(principal, Action.ADMIN_USERS_WRITE)
        async with self.deps.database.transaction() as db:
            user = await self._load(db, user_id)
            changes: dict[str, str | int | bool | None] = {}
            now = utcnow()
            active_admin = user.role == Role.ADMIN.value and user.disabled_at is None
            demoting = request.role == Role.USER.value
            disabling = request.disabled is True
            if active_admin and (demoting or disabling):
                await self._ensure_not_last_admin(db)
            if request.display_name is not None:
                user.display_name = request.display_name.strip() or user.display_name
                changes["display_name"] = user.display_name
            if request.role is not None and request.role != user.role:
                user.role = request.role
                changes["role"] = request.role
            if request.quota_bytes is not None:
                user.quota_bytes = request.quota_bytes
                changes["quota_bytes"] = request.quota_bytes
            if request.email_verified is not None:
                user.email_verified_at = now if request.email_verified else None
                changes["email_verified"] = request.email_verified
            if request.disabled is not None and request.disabled != (user.disabled_at is not None):
                user.disabled_at = now if request.disabled else None
                changes["disabled"] = request.disabled
                if request.disabled:
                    changes.update(await revoke_every_credential(db, user.id, now))
            user.updated_at = now
            await record(
                db, "admin.user_update", actor_id=actor.user_id, target_id=user.id, client=client, changes=changes
            )
            return user_out(user, self.settings)

    async def set_disabled(self, user_id: str, *, disabled: bool) -> UserOut:
        """For the CLI (``stowage user disable/enable``)."""
        async with self.deps.database.session() as db:
            user = await repository.get_user(db, user_id)
        if user is None:
            raise NotFound("No such user.")
        return await self._update_as_system(user_id, AdminUpdateUserRequest(disabled=disabled))

    async def _update_as_system(self, user_id: str, request: AdminUpdateUserRequest) -> UserOut:
        async with self.deps.database.transaction() as db:
            user = await self._load(db, user_id)
            now = utcnow()
            revoked: dict[str, str | int | bool | None] = {}
            if request.disabled is not None:
                if request.disabled and user.role == Role.ADMIN.value and user.disabled_at is None:
                    await self._ensure_not_last_admin(db)
                user.disabled_at = now if request.disabled else None
                if request.disabled:
                    revoked = await revoke_every_credential(db, user.id, now)
            user.updated_at = now
            await record(
                db, "admin.user_update", target_id=user.id, changes=revoked, via="cli", disabled=request.disabled
            )
            return user_out(user, self.settings)

    async def reset_password(
        self, principal: Principal | None, user_id: str, new_password: str, client: ClientInfo | None
    ) -> None:
        actor = authorize(principal, Action.ADMIN_USERS_WRITE)
        await self._set_password(user_id, new_password, actor_id=actor.user_id, client=client)

    async def reset_password_unchecked(self, user_id: str, new_password: str) -> None:
        """For ``stowage user passwd``: whoever runs it already controls the server."""
        await self._set_password(user_id, new_password, actor_id=None, client=None)

    async def _set_password(
        self, user_id: str, new_password: str, *, actor_id: str | None, client: ClientInfo | None
    ) -> None:
        async with self.deps.database.session() as db:
            user = await repository.get_user(db, user_id)
        if user is None:
            raise NotFound("No user with that id.")
        check_password_policy(new_password, email=user.email, display_name=user.display_name, field="body.new_password")
        new_hash = await self.deps.hasher.hash(new_password)
        async with self.deps.database.transaction() as db:
            fresh = await self._load(db, user_id)
            fresh.password_hash = new_hash
            fresh.updated_at = utcnow()
            revoked = await repository.revoke_sessions(db, fresh.id, now=utcnow(), reason="admin_password_reset")
            await record(
                db,
                "admin.password_reset",
                actor_id=actor_id,
                target_id=fresh.id,
                client=client,
                sessions_revoked=revoked,
            )

    async def delete_user(self, principal: Principal | None, user_id: str, client: ClientInfo | None) -> None:
        actor = authorize(principal, Action.ADMIN_USERS_WRITE)
        async with self.deps.database.transaction() as db:
            user = await self._load(db, user_id)
            if user.role == Role.ADMIN.value and user.disabled_at is None:
                await self._ensure_not_last_admin(db)
            await release_user_content(db, user.id)
            await repository.delete(db, user)
            await record(
                db, "admin.user_delete", actor_id=actor.user_id, target_id=user_id, client=client, email=user.email
            )

    async def _load(self, db: AsyncSession, user_id: str) -> User:
        user = await repository.get_user(db, user_id)
        if user is None:
            raise NotFound("No user with that id.")
        return user

    async def _ensure_not_last_admin(self, db: AsyncSession) -> None:
        if await repository.count_active_admins(db) <= 1:
            raise Conflict("This is the last active administrator; make someone else an administrator first.")

    # --- invites -----------------------------------------------------------------------------

    async def create_invite(
        self, principal: Principal | None, request: CreateInviteRequest, client: ClientInfo | None
    ) -> CreatedInvite:
        actor = authorize(principal, Action.ADMIN_INVITES)
        secret = tokens.new_opaque_token(tokens.INVITE_PREFIX)
        now = utcnow()
        invite = Invite(
            id=str(uuid.uuid4()),
            token_hash=tokens.hash_token(secret),
            email=normalise_email(request.email) if request.email else None,
            created_by=actor.user_id,
            created_at=now,
            expires_at=now + timedelta(hours=request.expires_in_hours),
        )
        async with self.deps.database.transaction() as db:
            await repository.add(db, invite)
            await record(db, "admin.invite_create", actor_id=actor.user_id, client=client, invite_id=invite.id)
        return CreatedInvite(token=secret, details=invite_out(invite))

    async def list_invites(self, principal: Principal | None) -> list[InviteOut]:
        authorize(principal, Action.ADMIN_INVITES)
        async with self.deps.database.session() as db:
            return [invite_out(i) for i in await repository.list_open_invites(db, utcnow())]

    async def revoke_invite(self, principal: Principal | None, invite_id: str, client: ClientInfo | None) -> None:
        actor = authorize(principal, Action.ADMIN_INVITES)
        async with self.deps.database.transaction() as db:
            invite = await repository.get_invite(db, invite_id)
            if invite is None:
                raise NotFound("No invitation with that id.")
            await repository.delete(db, invite)
            await record(db, "admin.invite_revoke", actor_id=actor.user_id, client=client, invite_id=invite_id)

    # --- audit -------------------------------------------------------------------------------

    async def audit(
        self,
        principal: Principal | None,
        *,
        cursor: str | None,
        limit: int,
        action: str | None,
        user_id: str | None,
    ) -> AuditPage:
        authorize(principal, Action.ADMIN_AUDIT_READ)
        limit = max(1, min(limit, MAX_PAGE))
        before: int | None = None
        raw = decode_cursor(cursor)
        if raw is not None:
            if not raw.isdigit():
                raise InvalidInput("The cursor is not one this server issued.")
            before = int(raw)
        async with self.deps.database.session() as db:
            rows = await repository.list_audit_events(
                db, before_id=before, limit=limit + 1, action=action, user_id=user_id
            )
        items = [
            AuditEventOut(
                id=e.id,
                at=e.at,
                action=e.action,
                outcome=e.outcome,
                actor_id=e.actor_id,
                target_id=e.target_id,
                ip=e.ip,
                request_id=e.request_id,
                details=json.loads(e.details),
            )
            for e in rows[:limit]
        ]
        next_cursor = encode_cursor(str(rows[limit - 1].id)) if len(rows) > limit else None
        return AuditPage(items=items, next_cursor=next_cursor)

    async def find_user_id(self, email: str) -> str:
        """For the CLI: resolve an email to a user id."""
        async with self.deps.database.session() as db:
            user = await repository.get_user_by_email(db, normalise_email(email))
        if user is None:
            raise NotFound(f"No user with the email {email}.")
        return user.id

    async def all_users(self) -> list[UserOut]:
        """For the CLI listing: every user, ordered by email."""
        result: list[UserOut] = []
        after: str | None = None
        while True:
            async with self.deps.database.session() as db:
                rows = await repository.list_users(db, query=None, after_email=after, limit=MAX_PAGE)
            result.extend(user_out(u, self.settings) for u in rows)
            if len(rows) < MAX_PAGE:
                return result
            after = rows[-1].email
