"""Pieces every account service shares: the dependencies bundle, email rules, audit, conversions."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.accounts import repository
from stowage.accounts.passwords import PasswordHasher
from stowage.accounts.schemas import UserOut
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.engine import Database
from stowage.db.tables import AuditEvent, User
from stowage.errors import FieldError, InvalidInput
from stowage.mail.mailer import Mailer
from stowage.observability.context import current_request_id
from stowage.observability.logging import get_logger
from stowage.ratelimit import RateLimiter
from stowage.ratelimit import check as rate_check

# No space and no control character (C0, DEL, C1): PostgreSQL refuses NUL in text, and no address has one.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[^@\s\x00-\x1f\x7f-\x9f]{1,255}$")
security_log = get_logger("stowage.security")


class ClientInfo(msgspec.Struct, frozen=True):
    """Where a request came from, for sessions, rate limits and the audit log."""

    ip: str
    user_agent: str


@dataclass(slots=True)
class AccountDeps:
    """What the account services need, built once in the application lifespan."""

    settings: Settings
    database: Database
    secret: str
    hasher: PasswordHasher
    mailer: Mailer
    limiter: RateLimiter

    async def limit(self, key: str, *, per: Literal["ip", "account"], what: str) -> None:
        """Count one attempt under ``key`` against the per-address or per-account limit; 429 when over.

        ``what`` completes the message: "Too many <what>; try again in N seconds."."""
        await rate_check(
            self.limiter,
            key,
            limit=self.settings.rate_limit_auth_per_ip if per == "ip" else self.settings.rate_limit_auth_per_account,
            window_seconds=self.settings.rate_limit_window_seconds,
            what=what,
        )


def normalise_email(raw: str) -> str:
    """NFC, trimmed, lower-cased; rejects what is not shaped like an address."""
    email = unicodedata.normalize("NFC", raw).strip().lower()
    if not _EMAIL.match(email):
        raise InvalidInput(
            "That is not an email address.",
            errors=[FieldError(field="body.email", message="expected an address like name@example.com")],
        )
    return email


def default_display_name(email: str) -> str:
    return email.split("@", 1)[0][:100]


def user_out(user: User, settings: Settings) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        email_verified=user.email_verified_at is not None,
        disabled=user.disabled_at is not None,
        quota_bytes=user.quota_bytes if user.quota_bytes is not None else settings.default_quota_bytes,
        used_bytes=user.used_bytes,
        created_at=user.created_at,
    )


async def record(
    db: AsyncSession,
    action: str,
    *,
    outcome: str = "ok",
    actor_id: str | None = None,
    target_id: str | None = None,
    client: ClientInfo | None = None,
    changes: Mapping[str, str | int | bool | None] | None = None,
    **details: str | int | bool | None,
) -> None:
    """Append an audit event in the caller's transaction and mirror it to the security log."""
    details = {**(changes or {}), **details}
    await repository.add(
        db,
        AuditEvent(
            at=utcnow(),
            action=action,
            outcome=outcome,
            actor_id=actor_id,
            target_id=target_id,
            ip=client.ip if client else None,
            request_id=current_request_id(),
            details=json.dumps(details, sort_keys=True),
        ),
    )
    security_log.info("audit", action=action, outcome=outcome, actor_id=actor_id, target_id=target_id)
