"""The account read every ``/me`` makes, in hand-written SQL on the raw driver (``db.direct``)."""

from __future__ import annotations

from stowage.accounts.schemas import UserOut
from stowage.db.direct import DirectReader, Query, timestamp

_USER = Query(
    "SELECT id, email, display_name, role, email_verified_at, disabled_at, quota_bytes, used_bytes, created_at "
    "FROM users WHERE id = ?"
)


async def user_out(reader: DirectReader, user_id: str, *, default_quota: int) -> UserOut | None:
    """The account as the API shows it; ``default_quota`` stands in for an account without its own."""
    row = await reader.fetch_one(_USER, (user_id,))
    if row is None:
        return None
    return UserOut(
        id=row[0],
        email=row[1],
        display_name=row[2],
        role=row[3],
        email_verified=row[4] is not None,
        disabled=row[5] is not None,
        quota_bytes=row[6] if row[6] is not None else default_quota,
        used_bytes=row[7],
        created_at=timestamp(row[8]),
    )
