"""All SQL of resumable uploads, including the PATCH lease.

The lease is a row lock that outlives a transaction and works across processes and machines: a
request claims an upload with one conditional UPDATE (``take_lease``: the token is set only when no
live lease exists, and the row it returns says who won) and every later write of that request names
its token, so a request whose lease ran out can change nothing. On SQLite the writer lock and on
PostgreSQL the row lock make the UPDATE atomic. The statements a chunk makes are hand-written
(``db.direct``); creating, finishing and cleaning up uploads use the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.direct import DirectTransaction, Query, Row, optional_timestamp, timestamp
from stowage.db.tables import Upload
from stowage.files.direct_repository import Fetcher
from stowage.uploads.schemas import UploadRow


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


# --- the PATCH path, in hand-written SQL (``db.direct``): a chunk makes two write transactions and no
# ORM round trip, which cost more CPU than the rest of an 8 MiB chunk's bookkeeping together.

_COLUMNS = (
    "id, owner_id, kind, length, received_bytes, folder_id, name, media_type, on_conflict, upload_metadata, "
    "concat_parts, created_at, expires_at, completed_at, node_id, sha256"
)
_BY_ID = Query(f"SELECT {_COLUMNS} FROM uploads WHERE id = ?")  # noqa: S608
_LEASE_FREE = "(lock_token IS NULL OR locked_until IS NULL OR locked_until < ?)"
_TAKE_LEASE = Query(
    f"UPDATE uploads SET lock_token = ?, locked_until = ? WHERE id = ? AND {_LEASE_FREE} RETURNING {_COLUMNS}"  # noqa: S608
)
_LEASE_UNTIL = Query("SELECT locked_until FROM uploads WHERE id = ?")
_RENEW_LEASE = Query("UPDATE uploads SET locked_until = ? WHERE id = ? AND lock_token = ?")
_RELEASE_LEASE = Query("UPDATE uploads SET lock_token = NULL, locked_until = NULL WHERE id = ? AND lock_token = ?")
_OFFSET = "received_bytes = ?, length = ?, expires_at = ?, sha256 = ?"
_MINE = f"WHERE id = ? AND lock_token = ? RETURNING {_COLUMNS}"
_COMMIT_OFFSET = Query(f"UPDATE uploads SET {_OFFSET} {_MINE}")  # noqa: S608
_COMMIT_OFFSET_RELEASE = Query(f"UPDATE uploads SET {_OFFSET}, lock_token = NULL, locked_until = NULL {_MINE}")  # noqa: S608


def _from_columns(r: Row) -> UploadRow:
    return UploadRow(
        id=r[0],
        owner_id=r[1],
        kind=r[2],
        length=r[3],
        received_bytes=r[4],
        folder_id=r[5],
        name=r[6],
        media_type=r[7],
        on_conflict=r[8],
        upload_metadata=r[9],
        concat_parts=tuple(json.loads(r[10])) if r[10] else (),
        created_at=timestamp(r[11]),
        expires_at=timestamp(r[12]),
        completed_at=optional_timestamp(r[13]),
        node_id=r[14],
        sha256=r[15],
    )


async def read(fetcher: Fetcher, upload_id: str) -> UploadRow | None:
    """The upload, read without the ORM (the PATCH and HEAD paths)."""
    found = await fetcher.fetch_one(_BY_ID, (upload_id,))
    return None if found is None else _from_columns(found)


async def take_lease(
    tx: DirectTransaction, upload_id: str, token: str, *, now: datetime, until: datetime
) -> UploadRow | None:
    """Claim the upload for one request: the row as it is now when no other live lease held it (then
    this one does), else None."""
    found = await tx.fetch_all(_TAKE_LEASE, (token, tx.timestamp(until), upload_id, tx.timestamp(now)))
    return _from_columns(found[0]) if found else None


async def renew_lease(tx: DirectTransaction, upload_id: str, token: str, *, until: datetime) -> bool:
    """Extend a lease this request holds; False when it was lost (it ran out and another took it)."""
    return await tx.execute(_RENEW_LEASE, (tx.timestamp(until), upload_id, token)) == 1


async def release_lease(tx: DirectTransaction, upload_id: str, token: str) -> None:
    await tx.execute(_RELEASE_LEASE, (upload_id, token))


async def lease_until(tx: DirectTransaction, upload_id: str) -> datetime | None:
    found = await tx.fetch_one(_LEASE_UNTIL, (upload_id,))
    return None if found is None else optional_timestamp(found[0])


async def commit_offset(
    tx: DirectTransaction,
    upload_id: str,
    token: str,
    *,
    offset: int,
    length: int | None,
    expires_at: datetime,
    sha256: str | None = None,
    release: bool = False,
) -> UploadRow | None:
    """Record a durable offset (and a length the client declared late, and the digest of content just
    published) — only while this request holds the lease; ``release`` gives the lease up in the same
    statement (a chunk that is not the last has nothing more to do). The row after it, or None when the
    lease was lost."""
    query = _COMMIT_OFFSET_RELEASE if release else _COMMIT_OFFSET
    # fetch_all: an UPDATE ... RETURNING is read to its end, so no statement stays open in the transaction.
    found = await tx.fetch_all(query, (offset, length, tx.timestamp(expires_at), sha256, upload_id, token))
    return _from_columns(found[0]) if found else None


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
