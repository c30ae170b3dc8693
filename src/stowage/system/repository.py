"""SQL for the instance row (its identity, and the fingerprint of the nodes' secret)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.base import utcnow
from stowage.db.tables import Instance


async def get_instance(session: AsyncSession) -> Instance | None:
    return await session.scalar(select(Instance).where(Instance.id == 1))


async def create_instance_if_missing(session: AsyncSession) -> Instance:
    """Insert the identity row once; concurrent starters agree on whichever row won."""
    existing = await get_instance(session)
    if existing is not None:
        return existing
    row = Instance(id=1, instance_id=str(uuid.uuid4()), created_at=utcnow())
    session.add(row)
    await session.flush()
    return row


async def lock_instance(session: AsyncSession) -> Instance | None:
    """The instance row, locked until the end of the write transaction (``FOR UPDATE``; SQLite's writer
    holds the whole database already)."""
    return await session.scalar(select(Instance).where(Instance.id == 1).with_for_update())


async def set_secret_check(session: AsyncSession, fingerprint: str) -> None:
    await session.execute(update(Instance).where(Instance.id == 1).values(secret_check=fingerprint))
