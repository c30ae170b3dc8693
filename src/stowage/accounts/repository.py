"""All SQL for accounts, sessions, credentials, invites, email tokens and the audit log.

Functions take the session of the caller's unit of work and only flush; committing belongs to the
request boundary (``Database.transaction``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.tables import ApiKey, AuditEvent, EmailToken, Invite, RefreshToken, Session, User

# --- users -------------------------------------------------------------------------------------


async def get_user(db: AsyncSession, user_id: str) -> User | None:
    return await db.get(User, user_id)


async def get_user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(select(User).where(User.email == email))


async def add(db: AsyncSession, row: object) -> None:
    db.add(row)
    await db.flush()


async def delete(db: AsyncSession, row: object) -> None:
    await db.delete(row)
    await db.flush()


async def list_users(db: AsyncSession, *, query: str | None, after_email: str | None, limit: int) -> Sequence[User]:
    statement = select(User).order_by(User.email).limit(limit)
    if query:
        pattern = f"%{_escape_like(query.lower())}%"
        statement = statement.where(
            or_(User.email.like(pattern, escape="\\"), func.lower(User.display_name).like(pattern, escape="\\"))
        )
    if after_email is not None:
        statement = statement.where(User.email > after_email)
    return (await db.scalars(statement)).all()


async def count_active_admins(db: AsyncSession) -> int:
    count = await db.scalar(
        select(func.count()).select_from(User).where(User.role == "admin", User.disabled_at.is_(None))
    )
    return int(count or 0)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- sessions and refresh tokens -------------------------------------------------------------


async def get_session(db: AsyncSession, session_id: str) -> Session | None:
    return await db.get(Session, session_id)


async def list_active_sessions(db: AsyncSession, user_id: str, now: datetime) -> Sequence[Session]:
    statement = (
        select(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None), Session.expires_at > now)
        .order_by(Session.last_used_at.desc())
    )
    return (await db.scalars(statement)).all()


async def revoke_sessions(
    db: AsyncSession, user_id: str, *, now: datetime, reason: str, except_session_id: str | None = None
) -> int:
    statement = (
        update(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason)
    )
    if except_session_id is not None:
        statement = statement.where(Session.id != except_session_id)
    result = await db.execute(statement)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def get_refresh_token(db: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await db.get(RefreshToken, token_hash)


async def mark_refresh_token_used(db: AsyncSession, token_hash: str, now: datetime) -> bool:
    """Atomically claim a refresh token; False when someone already used it (a concurrent reuse)."""
    result = await db.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- API keys (personal access tokens) ----------------------------------------------------------


async def get_api_key(db: AsyncSession, key_id: str) -> ApiKey | None:
    return await db.get(ApiKey, key_id)


async def get_api_key_by_hash(db: AsyncSession, token_hash: str) -> ApiKey | None:
    return await db.scalar(select(ApiKey).where(ApiKey.token_hash == token_hash))


async def list_api_keys(db: AsyncSession, user_id: str) -> Sequence[ApiKey]:
    statement = (
        select(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return (await db.scalars(statement)).all()


async def revoke_api_keys(db: AsyncSession, user_id: str, *, now: datetime) -> int:
    """Revoke every live API key of a user (personal access tokens and any other kind), for good."""
    result = await db.execute(
        update(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- invites and email tokens -----------------------------------------------------------------


async def get_invite(db: AsyncSession, invite_id: str) -> Invite | None:
    return await db.get(Invite, invite_id)


async def get_invite_by_hash(db: AsyncSession, token_hash: str) -> Invite | None:
    return await db.scalar(select(Invite).where(Invite.token_hash == token_hash))


async def list_open_invites(db: AsyncSession, now: datetime) -> Sequence[Invite]:
    statement = (
        select(Invite).where(Invite.used_at.is_(None), Invite.expires_at > now).order_by(Invite.created_at.desc())
    )
    return (await db.scalars(statement)).all()


async def claim_invite(db: AsyncSession, invite_id: str, now: datetime) -> bool:
    result = await db.execute(
        update(Invite)
        .where(Invite.id == invite_id, Invite.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def set_invite_user(db: AsyncSession, invite_id: str, user_id: str) -> None:
    await db.execute(
        update(Invite)
        .where(Invite.id == invite_id)
        .values(used_by=user_id)
        .execution_options(synchronize_session=False)
    )


async def claim_email_token(db: AsyncSession, token_hash: str, now: datetime) -> bool:
    result = await db.execute(
        update(EmailToken)
        .where(EmailToken.token_hash == token_hash, EmailToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_email_token(db: AsyncSession, token_hash: str) -> EmailToken | None:
    return await db.get(EmailToken, token_hash)


async def expire_email_tokens(db: AsyncSession, user_id: str, purpose: str | None, now: datetime) -> None:
    """A newly mailed link supersedes older ones of the same purpose; ``None`` spends every open link
    (disabling an account)."""
    statement = update(EmailToken).where(EmailToken.user_id == user_id, EmailToken.used_at.is_(None))
    if purpose is not None:
        statement = statement.where(EmailToken.purpose == purpose)
    await db.execute(statement.values(used_at=now))


# --- audit log --------------------------------------------------------------------------------


async def list_audit_events(
    db: AsyncSession, *, before_id: int | None, limit: int, action: str | None, user_id: str | None
) -> Sequence[AuditEvent]:
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(AuditEvent.id < before_id)
    if action:
        statement = statement.where(AuditEvent.action == action)
    if user_id:
        statement = statement.where(or_(AuditEvent.actor_id == user_id, AuditEvent.target_id == user_id))
    return (await db.scalars(statement)).all()


async def session_with_user(db: AsyncSession, session_id: str, user_id: str) -> tuple[Session, User] | None:
    """A session and its user, both as the access token names them (None when either is gone)."""
    row = (
        await db.execute(
            select(Session, User)
            .join(User, User.id == Session.user_id)
            .where(Session.id == session_id, User.id == user_id)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def api_key_with_user(db: AsyncSession, token_hash: str) -> tuple[ApiKey, User] | None:
    """The API key with this token hash, and its user."""
    row = (
        await db.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.token_hash == token_hash)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def api_key_by_id_with_user(db: AsyncSession, key_id: str, user_id: str) -> tuple[ApiKey, User] | None:
    """The API key with this id, and its user, if the key belongs to that user (a presigned URL's signer)."""
    row = (
        await db.execute(
            select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.id == key_id, User.id == user_id)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None
