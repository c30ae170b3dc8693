"""All SQL of image facts (``image_facts``, and the copy of the capture time in ``nodes.taken_at``).

Facts are keyed by the content's SHA-256, so every file showing that content shares them. The capture
time is also copied into each node showing it (``nodes.taken_at``), because the listing sort
``taken_at`` must be one range of one index (``ix_nodes_live_children_taken``) — an index cannot span
two tables. Two writers keep the copy in step: recording an upload copies what is known then
(``copy_taken_at``), and storing newly computed facts fills every node of that content (``store``,
through ``ix_nodes_sha256``). A listing that finds a node whose copy lags its facts (an upload recorded
while its facts were being stored, on PostgreSQL) schedules the content again, and the fill repairs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.direct import DirectTransaction, Query, Row, optional_timestamp
from stowage.db.tables import ImageFacts, Node
from stowage.files.direct_repository import Fetcher
from stowage.files.media_types import IMAGE_FACT_TYPES
from stowage.files.schemas import ImageOut

FACTS_COLUMNS = "width, height, taken_at, placeholder, failure"


class FactsRow(msgspec.Struct, frozen=True):
    """The stored facts of one content; ``failure`` set means it is not a readable image (no size)."""

    width: int | None
    height: int | None
    taken_at: datetime | None
    placeholder: str | None
    failure: str | None

    def image(self) -> ImageOut | None:
        """The API's ``image`` member, or None for content that is not a readable image."""
        if self.failure is not None or self.width is None or self.height is None:
            return None
        return ImageOut(width=self.width, height=self.height, taken_at=self.taken_at, placeholder=self.placeholder)


def facts_row(row: Row, start: int = 0) -> FactsRow:
    """Facts from ``FACTS_COLUMNS`` found at ``start`` in a row."""
    return FactsRow(
        width=row[start],
        height=row[start + 1],
        taken_at=optional_timestamp(row[start + 2]),
        placeholder=row[start + 3],
        failure=row[start + 4],
    )


@lru_cache(maxsize=32)
def _facts_of(count: int) -> Query:
    marks = ", ".join("?" * count)
    return Query(f"SELECT sha256, {FACTS_COLUMNS} FROM image_facts WHERE sha256 IN ({marks})")  # noqa: S608


# Stored only while the content is (its blob row: purged content takes its facts with it, and facts of
# content purged while they were computed are not stored at all). A row already there wins.
_BLOB_EXISTS = Query("SELECT 1 FROM blobs WHERE sha256 = ?")
_STORE = Query(
    "INSERT INTO image_facts (sha256, width, height, taken_at, placeholder, computed_at, failure) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING"
)
_FILL_TAKEN_AT = Query("UPDATE nodes SET taken_at = ? WHERE sha256 = ? AND (taken_at IS NULL OR taken_at <> ?)")
_COPY_TAKEN_AT = Query("UPDATE nodes SET taken_at = (SELECT taken_at FROM image_facts WHERE sha256 = ?) WHERE id = ?")
_SET_TAKEN_AT = Query("UPDATE nodes SET taken_at = ? WHERE id = ?")

# Bound per statement, well under SQLite's and PostgreSQL's parameter limits.
MAX_BATCH = 500


async def facts_of(fetcher: Fetcher, hashes: Sequence[str]) -> dict[str, FactsRow]:
    """The stored facts of these contents (one statement per ``MAX_BATCH``); missing ones are absent."""
    unique = list(dict.fromkeys(hashes))
    found: dict[str, FactsRow] = {}
    for start in range(0, len(unique), MAX_BATCH):
        batch = unique[start : start + MAX_BATCH]
        for row in await fetcher.fetch_all(_facts_of(len(batch)), batch):
            found[row[0]] = facts_row(row, 1)
    return found


async def store(tx: DirectTransaction, sha256: str, facts: FactsRow, now: datetime) -> bool:
    """Record the facts of a content, and copy its capture time into every node showing it. False when
    nothing was stored: the content is gone, or another worker stored its facts first."""
    if await tx.fetch_one(_BLOB_EXISTS, (sha256,)) is None:
        return False
    taken = tx.timestamp(facts.taken_at) if facts.taken_at is not None else None
    params = (sha256, facts.width, facts.height, taken, facts.placeholder, tx.timestamp(now), facts.failure)
    stored = await tx.execute(_STORE, params) == 1
    if taken is not None:
        await tx.execute(_FILL_TAKEN_AT, (taken, sha256, taken))
    return stored


async def fill_taken_at(tx: DirectTransaction, sha256: str, taken_at: datetime) -> None:
    """Copy a known capture time into the nodes of that content that lack it (a repair)."""
    taken = tx.timestamp(taken_at)
    await tx.execute(_FILL_TAKEN_AT, (taken, sha256, taken))


async def set_taken_at(tx: DirectTransaction, node_id: str, taken_at: datetime) -> None:
    """Give a node the capture time of its content (recording an upload of content with known facts)."""
    await tx.execute(_SET_TAKEN_AT, (tx.timestamp(taken_at), node_id))


async def copy_taken_at(tx: DirectTransaction, node_id: str, sha256: str) -> None:
    """Give a node the capture time of its (new) content, or NULL when none is known: run in the
    transaction that points the node at that content."""
    await tx.execute(_COPY_TAKEN_AT, (sha256, node_id))


async def without_facts(db: AsyncSession, limit: int) -> list[str]:
    """Contents of live image files that have no facts yet, at most ``limit`` (the hourly backfill: work
    a restart lost, or content stored before facts existed, in folders nobody listed since). A scan of
    the live files: run it in an offloaded session."""
    statement = (
        select(Node.sha256)
        .outerjoin(ImageFacts, ImageFacts.sha256 == Node.sha256)
        .where(
            Node.kind == "file",
            Node.trashed_at.is_(None),
            Node.media_type.in_(IMAGE_FACT_TYPES),
            ImageFacts.sha256.is_(None),
        )
        .distinct()
        .limit(limit)
    )
    return [sha for sha in (await db.scalars(statement)).all() if sha is not None]
