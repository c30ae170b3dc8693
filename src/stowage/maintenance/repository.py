"""SQL of the maintenance endpoints: recorded runs and installation-wide totals.

``fsck.py`` keeps its own queries: they are the consistency rules it checks (each compares two tables
the way only that check needs), so moving them would only put the rules' text in another file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.tables import Blob, MaintenanceRun, Node, User, Version


async def add_run(db: AsyncSession, run: MaintenanceRun) -> None:
    db.add(run)
    await db.flush()


async def last_run(db: AsyncSession, kind: str) -> MaintenanceRun | None:
    return await db.scalar(
        select(MaintenanceRun).where(MaintenanceRun.kind == kind).order_by(MaintenanceRun.id.desc()).limit(1)
    )


async def recent_runs(db: AsyncSession, limit: int) -> Sequence[MaintenanceRun]:
    return (await db.scalars(select(MaintenanceRun).order_by(MaintenanceRun.id.desc()).limit(limit))).all()


async def user_totals(db: AsyncSession) -> tuple[int, int]:
    """How many users, and the bytes they are charged for in all."""
    users, charged = (await db.execute(select(func.count(), func.coalesce(func.sum(User.used_bytes), 0)))).one()
    return int(users), int(charged)


async def node_totals(db: AsyncSession) -> tuple[int, int]:
    """How many files and folders (root folders not counted)."""
    files, folders = (
        await db.execute(
            select(
                func.count().filter(Node.kind == "file"),
                func.count().filter(Node.kind == "folder", Node.parent_id.is_not(None)),
            )
        )
    ).one()
    return int(files), int(folders)


async def version_totals(db: AsyncSession) -> tuple[int, int]:
    """How many versions, and the sum of their sizes."""
    versions, referenced = (await db.execute(select(func.count(), func.coalesce(func.sum(Version.size), 0)))).one()
    return int(versions), int(referenced)


async def blob_totals(db: AsyncSession) -> tuple[int, int]:
    """How many distinct contents are stored, and their bytes."""
    blobs, stored = (await db.execute(select(func.count(), func.coalesce(func.sum(Blob.size), 0)))).one()
    return int(blobs), int(stored)


def true_refcount() -> Any:
    """The number of versions naming a blob (a correlated subquery on ``blobs``)."""
    return select(func.count()).select_from(Version).where(Version.sha256 == Blob.sha256).scalar_subquery()


def true_usage() -> Any:
    """The bytes of every version of a user's nodes, live and trashed (a correlated subquery on ``users``)."""
    return (
        select(func.coalesce(func.sum(Version.size), 0))
        .select_from(Version)
        .join(Node, Node.id == Version.node_id)
        .where(Node.owner_id == User.id)
        .scalar_subquery()
    )


async def blob_row_exists(db: AsyncSession, sha: str) -> bool:
    return await db.scalar(select(Blob.sha256).where(Blob.sha256 == sha)) is not None


async def lock_blob(db: AsyncSession, sha: str) -> int | None:
    """Lock a blob row (``FOR UPDATE``) and return its refcount, or None when there is no row."""
    refcount: int | None = await db.scalar(select(Blob.refcount).where(Blob.sha256 == sha).with_for_update())
    return refcount


async def count_blob_rows(db: AsyncSession) -> int:
    """How many blob rows there are: the length of fsck's blob pass (its progress bar's total)."""
    return int(await db.scalar(select(func.count()).select_from(Blob)) or 0)
