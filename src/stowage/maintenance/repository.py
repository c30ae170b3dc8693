"""SQL of the maintenance endpoints: recorded runs and installation-wide totals.

``fsck.py`` keeps its own queries: they are the consistency rules it checks (each compares two tables
the way only that check needs), so moving them would only put the rules' text in another file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.tables import Blob, ImageDerivative, Lease, MaintenanceRun, Node, User, Version


async def add_run(db: AsyncSession, run: MaintenanceRun) -> None:
    db.add(run)
    await db.flush()


async def last_run(db: AsyncSession, kind: str) -> MaintenanceRun | None:
    return await db.scalar(
        select(MaintenanceRun).where(MaintenanceRun.kind == kind).order_by(MaintenanceRun.id.desc()).limit(1)
    )


async def last_started(db: AsyncSession, kind: str, trigger: str) -> datetime | None:
    """When the newest run of this kind and trigger started (the housekeeping schedule counts from it).
    Walks the (kind, id) index from the newest row, so the table's age does not matter."""
    return await db.scalar(
        select(MaintenanceRun.started_at)
        .where(MaintenanceRun.kind == kind, MaintenanceRun.trigger == trigger)
        .order_by(MaintenanceRun.id.desc())
        .limit(1)
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
    """Whether a row names this blob file: a ``blobs`` row, or a cached image derivative's."""
    if await db.scalar(select(Blob.sha256).where(Blob.sha256 == sha)) is not None:
        return True
    return await db.scalar(select(ImageDerivative.sha256).where(ImageDerivative.sha256 == sha).limit(1)) is not None


async def named_blobs(db: AsyncSession, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` a row names (``blobs``, or a cached image derivative): the files gc must keep."""
    known = set((await db.scalars(select(Blob.sha256).where(Blob.sha256.in_(hashes)))).all())
    known.update((await db.scalars(select(ImageDerivative.sha256).where(ImageDerivative.sha256.in_(hashes)))).all())
    return known


async def lock_blob(db: AsyncSession, sha: str) -> int | None:
    """Lock a blob row (``FOR UPDATE``) and return its refcount, or None when there is no row."""
    refcount: int | None = await db.scalar(select(Blob.refcount).where(Blob.sha256 == sha).with_for_update())
    return refcount


# --- leases (``maintenance.lease``) ----------------------------------------------------------------


def _count(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


async def take_lease(
    db: AsyncSession, name: str, holder: str, node: str, *, now: datetime, until: datetime, dialect: str
) -> bool:
    """Take ``name`` for ``holder`` if it is free, expired or already ``holder``'s; True when taken.

    One conditional UPDATE decides between processes racing for a lease that exists (PostgreSQL locks the
    row and re-checks the condition for the second one; SQLite writers are serialised); a lease never
    taken before is created by an INSERT that does nothing when another process created it first."""
    result = await db.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.expires_at <= now, Lease.holder == holder))
        .values(holder=holder, node=node, acquired_at=now, expires_at=until)
    )
    if _count(result) == 1:
        return True
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    created = await db.execute(
        insert(Lease)
        .values(name=name, holder=holder, node=node, acquired_at=now, expires_at=until)
        .on_conflict_do_nothing(index_elements=[Lease.name])
    )
    return _count(created) == 1


async def renew_lease(db: AsyncSession, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
    """Extend ``holder``'s lease; False when it is no longer theirs (it expired and another took it, or
    it expired and nobody did: a lapsed lease is not silently revived)."""
    result = await db.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder, Lease.expires_at > now).values(expires_at=until)
    )
    return _count(result) == 1


async def release_lease(db: AsyncSession, name: str, holder: str, *, now: datetime) -> None:
    """Mark ``holder``'s lease free (expired now); the row keeps who held it last."""
    await db.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder, Lease.expires_at > now).values(expires_at=now)
    )


async def get_lease(db: AsyncSession, name: str) -> Lease | None:
    return await db.scalar(select(Lease).where(Lease.name == name))


async def count_blob_rows(db: AsyncSession) -> int:
    """How many blob rows there are: the length of fsck's blob pass (its progress bar's total)."""
    return int(await db.scalar(select(func.count()).select_from(Blob)) or 0)
