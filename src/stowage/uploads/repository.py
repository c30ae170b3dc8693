"""All SQL of resumable uploads, including the PATCH lease.

The lease is a row lock that outlives a transaction and works across processes and machines: a
request claims an upload with one conditional UPDATE (``take_lease``: the token is set only when no
live lease exists, so the row count says who won) and every later write of that request names its
token, so a request whose lease ran out can change nothing. On SQLite the writer lock and on
PostgreSQL the row lock make the UPDATE atomic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.direct import DirectTransaction, Query
from stowage.db.tables import Upload
from stowage.uploads.schemas import UploadRow


def _row(upload: Upload) -> UploadRow:
    return UploadRow(
        id=upload.id,
        owner_id=upload.owner_id,
        kind=cast("Any", upload.kind),
        length=upload.length,
        received_bytes=upload.received_bytes,
        folder_id=upload.folder_id,
        name=upload.name,
        media_type=upload.media_type,
        on_conflict=cast("Any", upload.on_conflict),
        upload_metadata=upload.upload_metadata,
        concat_parts=tuple(json.loads(upload.concat_parts)) if upload.concat_parts else (),
        created_at=upload.created_at,
        expires_at=upload.expires_at,
        completed_at=upload.completed_at,
        node_id=upload.node_id,
        sha256=upload.sha256,
    )


def _count(result: Any) -> int:
    return int(cast("CursorResult[Any]", result).rowcount or 0)


async def insert_upload(db: AsyncSession, row: UploadRow) -> None:
    await db.execute(
        insert(Upload).values(
            id=row.id,
            owner_id=row.owner_id,
            kind=row.kind,
            length=row.length,
            received_bytes=row.received_bytes,
            folder_id=row.folder_id,
            name=row.name,
            media_type=row.media_type,
            on_conflict=row.on_conflict,
            upload_metadata=row.upload_metadata,
            concat_parts=json.dumps(list(row.concat_parts)) if row.concat_parts else None,
            created_at=row.created_at,
            expires_at=row.expires_at,
            completed_at=row.completed_at,
            node_id=row.node_id,
            sha256=row.sha256,
        )
    )


async def get(db: AsyncSession, upload_id: str) -> UploadRow | None:
    found = await db.scalar(select(Upload).where(Upload.id == upload_id))
    return None if found is None else _row(found)


async def get_many(db: AsyncSession, upload_ids: Iterable[str]) -> dict[str, UploadRow]:
    ids = list(upload_ids)
    found = (await db.scalars(select(Upload).where(Upload.id.in_(ids)))).all()
    return {upload.id: _row(upload) for upload in found}


async def take_lease(db: AsyncSession, upload_id: str, token: str, *, now: datetime, until: datetime) -> bool:
    """Claim the upload for one request: True when no other live lease holds it (then this one does)."""
    result = await db.execute(
        update(Upload)
        .where(
            Upload.id == upload_id,
            or_(Upload.lock_token.is_(None), Upload.locked_until.is_(None), Upload.locked_until < now),
        )
        .values(lock_token=token, locked_until=until)
    )
    return _count(result) == 1


async def renew_lease(db: AsyncSession, upload_id: str, token: str, *, until: datetime) -> bool:
    """Extend a lease this request holds; False when it was lost (it ran out and another took it)."""
    result = await db.execute(
        update(Upload).where(Upload.id == upload_id, Upload.lock_token == token).values(locked_until=until)
    )
    return _count(result) == 1


async def release_lease(db: AsyncSession, upload_id: str, token: str) -> None:
    await db.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.lock_token == token)
        .values(lock_token=None, locked_until=None)
    )


async def lease_until(db: AsyncSession, upload_id: str) -> datetime | None:
    return await db.scalar(select(Upload.locked_until).where(Upload.id == upload_id))


async def commit_offset(
    db: AsyncSession,
    upload_id: str,
    token: str,
    *,
    offset: int,
    length: int | None,
    expires_at: datetime,
    sha256: str | None = None,
    release: bool = False,
) -> bool:
    """Record a durable offset (and a length the client declared late, and the digest of content just
    published) — only while this request holds the lease; ``release`` gives the lease up in the same
    statement (a chunk that is not the last has nothing more to do)."""
    values: dict[str, object] = {"received_bytes": offset, "length": length, "expires_at": expires_at, "sha256": sha256}
    if release:
        values |= {"lock_token": None, "locked_until": None}
    result = await db.execute(update(Upload).where(Upload.id == upload_id, Upload.lock_token == token).values(**values))
    return _count(result) == 1


_MARK_RECORDED = Query(
    "UPDATE uploads SET completed_at = ?, node_id = ?, received_bytes = ?, length = ?, sha256 = ? "
    "WHERE id = ? AND completed_at IS NULL AND (lock_token = ? OR lock_token IS NULL)"
)


async def mark_recorded(
    tx: DirectTransaction, upload_id: str, token: str | None, *, node_id: str, size: int, sha256: str, now: datetime
) -> bool:
    """In the transaction that records the file: the upload is complete and became ``node_id``.
    False when it was recorded already or the lease was lost (the caller rolls back)."""
    changed = await tx.execute(_MARK_RECORDED, (tx.timestamp(now), node_id, size, size, sha256, upload_id, token))
    return changed == 1


async def delete_upload(db: AsyncSession, upload_id: str) -> bool:
    return _count(await db.execute(delete(Upload).where(Upload.id == upload_id))) == 1


async def delete_uploads(db: AsyncSession, upload_ids: Iterable[str]) -> int:
    ids = list(upload_ids)
    if not ids:
        return 0
    return _count(await db.execute(delete(Upload).where(Upload.id.in_(ids))))


async def expired(db: AsyncSession, now: datetime, limit: int) -> list[str]:
    """Uploads past their expiry whose lease (if any) has run out: the housekeeping removes them."""
    rows = await db.scalars(
        select(Upload.id)
        .where(Upload.expires_at < now, or_(Upload.locked_until.is_(None), Upload.locked_until < now))
        .order_by(Upload.expires_at)
        .limit(limit)
    )
    return list(rows.all())


async def existing(db: AsyncSession, upload_ids: Iterable[str]) -> set[str]:
    ids = list(upload_ids)
    if not ids:
        return set()
    return set((await db.scalars(select(Upload.id).where(Upload.id.in_(ids)))).all())
