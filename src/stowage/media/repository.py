"""All SQL of the derivative cache (``image_derivatives``), as hand-written statements on the raw driver:
a cached thumbnail is looked up on every grid tile, so the hit costs one indexed read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from stowage.db.direct import Query, Row, timestamp


class Fetcher(Protocol):
    """A ``DirectReader`` or a ``DirectTransaction``."""

    def timestamp(self, moment: datetime) -> Any: ...

    async def fetch_one(self, query: Query, params: Sequence[Any] = ()) -> Row | None: ...

    async def fetch_all(self, query: Query, params: Sequence[Any] = ()) -> list[Row]: ...


class Executor(Fetcher, Protocol):
    async def execute(self, query: Query, params: Sequence[Any] = ()) -> int: ...


class DerivativeRow(msgspec.Struct, frozen=True):
    source_sha256: str
    params: str
    sha256: str
    size: int
    media_type: str
    width: int
    height: int
    last_used_at: datetime


_COLUMNS = "source_sha256, params, sha256, size, media_type, width, height, last_used_at"
_FIND = Query(f"SELECT {_COLUMNS} FROM image_derivatives WHERE source_sha256 = ? AND params = ?")  # noqa: S608
_UPSERT = Query(
    "INSERT INTO image_derivatives (source_sha256, params, sha256, size, media_type, width, height, created_at,"
    " last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source_sha256, params) DO UPDATE SET"
    " sha256 = excluded.sha256, size = excluded.size, media_type = excluded.media_type, width = excluded.width,"
    " height = excluded.height, last_used_at = excluded.last_used_at"
)
_TOUCH = Query("UPDATE image_derivatives SET last_used_at = ? WHERE source_sha256 = ? AND params = ?")
_TOTAL = Query("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM image_derivatives")
_OLDEST = Query(
    "SELECT source_sha256, params, size FROM image_derivatives ORDER BY last_used_at, source_sha256, params LIMIT ?"
)
_DELETE = Query("DELETE FROM image_derivatives WHERE source_sha256 = ? AND params = ?")


def _row(row: Row) -> DerivativeRow:
    return DerivativeRow(
        source_sha256=row[0],
        params=row[1],
        sha256=row[2],
        size=int(row[3]),
        media_type=row[4],
        width=int(row[5]),
        height=int(row[6]),
        last_used_at=timestamp(row[7]),
    )


async def find(fetcher: Fetcher, source_sha256: str, params: str) -> DerivativeRow | None:
    row = await fetcher.fetch_one(_FIND, (source_sha256, params))
    return _row(row) if row is not None else None


async def record(db: Executor, row: DerivativeRow, now: datetime) -> None:
    """Add a derivative (or replace the row of one a concurrent request recorded first)."""
    stamp = db.timestamp(now)
    await db.execute(
        _UPSERT,
        (row.source_sha256, row.params, row.sha256, row.size, row.media_type, row.width, row.height, stamp, stamp),
    )


async def touch(db: Executor, source_sha256: str, params: str, now: datetime) -> None:
    await db.execute(_TOUCH, (db.timestamp(now), source_sha256, params))


async def totals(fetcher: Fetcher) -> tuple[int, int]:
    """(derivatives, bytes) in the cache."""
    row = await fetcher.fetch_one(_TOTAL)
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


async def least_recently_used(fetcher: Fetcher, limit: int) -> list[tuple[str, str, int]]:
    """(source, params, size) of the ``limit`` least recently used derivatives, oldest first."""
    return [(r[0], r[1], int(r[2])) for r in await fetcher.fetch_all(_OLDEST, (limit,))]


async def delete(db: Executor, keys: Sequence[tuple[str, str]]) -> int:
    removed = 0
    for source_sha256, params in keys:
        removed += await db.execute(_DELETE, (source_sha256, params))
    return removed
