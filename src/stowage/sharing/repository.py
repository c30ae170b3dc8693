"""All SQL for shares: the link a visitor's token names and its download count (hand-written, on the
raw driver), and the rows the sharing services manage (SQLAlchemy). The grant walk every access to
someone else's node makes is ``files.grant_repository`` (the file services' choke point needs it).

Functions flush but never commit. Nothing here is cached: a grant is read from the database on every
request that needs one, so a revocation, an expiry, a trashed node or a node moved out of a shared
folder takes effect on the very next request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.direct import DirectTransaction, Query, optional_timestamp, timestamp
from stowage.db.tables import Node, Share, User
from stowage.files.direct_repository import Fetcher, FileRow

# Count one download of a link unless its limit is reached: one statement, so concurrent downloads
# can never exceed the limit.
_COUNT_DOWNLOAD = Query(
    "UPDATE shares SET download_count = download_count + 1"
    " WHERE id = ? AND revoked_at IS NULL AND (max_downloads IS NULL OR download_count < max_downloads)"
)


class LinkRow(msgspec.Struct, frozen=True):
    """A link and the node it shares, as a visitor's every request needs them (one indexed read)."""

    id: str
    node_id: str
    owner_id: str
    permission: str
    password_hash: str | None
    expires_at: datetime | None
    max_downloads: int | None
    download_count: int
    revoked_at: datetime | None
    # The shared node, in ``direct_repository.FileRow``'s terms.
    kind: str
    name: str
    size: int
    media_type: str | None
    sha256: str | None
    modified_at: datetime
    trashed_at: datetime | None

    def file_row(self) -> FileRow:
        """The shared node as the read path takes it."""
        return FileRow(
            id=self.node_id,
            owner_id=self.owner_id,
            kind=self.kind,
            name=self.name,
            size=self.size,
            media_type=self.media_type,
            sha256=self.sha256,
            modified_at=self.modified_at,
        )


_LINK_BY_TOKEN = Query(
    "SELECT s.id, s.node_id, s.owner_id, s.permission, s.password_hash, s.expires_at, s.max_downloads,"
    " s.download_count, s.revoked_at, n.kind, n.name, n.size, n.media_type, n.sha256, n.modified_at, n.trashed_at"
    " FROM shares s JOIN nodes n ON n.id = s.node_id WHERE s.token_hash = ? AND s.kind = 'link'"
)


async def link_by_token_hash(fetcher: Fetcher, token_hash: str) -> LinkRow | None:
    row = await fetcher.fetch_one(_LINK_BY_TOKEN, (token_hash,))
    if row is None:
        return None
    return LinkRow(
        id=row[0],
        node_id=row[1],
        owner_id=row[2],
        permission=row[3],
        password_hash=row[4],
        expires_at=optional_timestamp(row[5]),
        max_downloads=row[6],
        download_count=row[7],
        revoked_at=optional_timestamp(row[8]),
        kind=row[9],
        name=row[10],
        size=row[11],
        media_type=row[12],
        sha256=row[13],
        modified_at=timestamp(row[14]),
        trashed_at=optional_timestamp(row[15]),
    )


async def count_download(tx: DirectTransaction, share_id: str) -> bool:
    """Count one download; False when the link's download limit is already reached (nothing counted)."""
    return await tx.execute(_COUNT_DOWNLOAD, (share_id,)) == 1


# --- rows the services manage --------------------------------------------------------------------


async def add(db: AsyncSession, share: Share) -> None:
    db.add(share)
    await db.flush()


async def get(db: AsyncSession, share_id: str) -> Share | None:
    return await db.get(Share, share_id)


async def by_token_hash(db: AsyncSession, token_hash: str) -> Share | None:
    return await db.scalar(select(Share).where(Share.token_hash == token_hash))


async def live_of_node(db: AsyncSession, node_id: str, kind: str | None = None) -> Sequence[Share]:
    statement = select(Share).where(Share.node_id == node_id, Share.revoked_at.is_(None))
    if kind is not None:
        statement = statement.where(Share.kind == kind)
    return (await db.scalars(statement.order_by(Share.created_at, Share.id))).all()


async def live_of_owner(db: AsyncSession, owner_id: str, kind: str) -> Sequence[Share]:
    statement = select(Share).where(Share.owner_id == owner_id, Share.kind == kind, Share.revoked_at.is_(None))
    return (await db.scalars(statement.order_by(Share.created_at, Share.id))).all()


async def live_user_share(db: AsyncSession, node_id: str, grantee_id: str) -> Share | None:
    return await db.scalar(
        select(Share).where(
            Share.node_id == node_id,
            Share.grantee_user_id == grantee_id,
            Share.kind == "user",
            Share.revoked_at.is_(None),
        )
    )


async def shared_with(db: AsyncSession, grantee_id: str, now: datetime) -> Sequence[tuple[Share, Node, User]]:
    """The live shares a user received, with their nodes (live only) and owners."""
    statement = (
        select(Share, Node, User)
        .join(Node, Node.id == Share.node_id)
        .join(User, User.id == Share.owner_id)
        .where(
            Share.grantee_user_id == grantee_id,
            Share.revoked_at.is_(None),
            or_(Share.expires_at.is_(None), Share.expires_at > now),
            Node.trashed_at.is_(None),
        )
        .order_by(Share.created_at, Share.id)
    )
    return [(row[0], row[1], row[2]) for row in (await db.execute(statement)).all()]


async def user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(select(User).where(User.email == email))


async def revoke(db: AsyncSession, share_id: str, now: datetime) -> bool:
    result = await db.execute(
        update(Share)
        .where(Share.id == share_id, Share.revoked_at.is_(None))
        .values(revoked_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]


async def with_nodes(db: AsyncSession, shares: Sequence[Share]) -> list[tuple[Share, Node]]:
    """Each share with its node (shares of purged nodes are gone with them: the foreign key cascades)."""
    if not shares:
        return []
    nodes = {n.id: n for n in (await db.scalars(select(Node).where(Node.id.in_({s.node_id for s in shares})))).all()}
    return [(share, nodes[share.node_id]) for share in shares if share.node_id in nodes]


async def users_by_id(db: AsyncSession, user_ids: Sequence[str]) -> dict[str, User]:
    if not user_ids:
        return {}
    return {u.id: u for u in (await db.scalars(select(User).where(User.id.in_(set(user_ids))))).all()}
