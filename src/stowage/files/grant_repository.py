"""The grants a caller holds on a node: the one read every access to someone else's node makes.

A node is reached by someone other than its owner only through a share on it or on one of its
ancestors (``stowage.policy.Grant``). This walk reads the ``shares`` table that ``stowage.sharing``
manages; it lives here because ``TreeService.load`` — the choke point of every file service — needs
it, and the file services must not depend on the sharing services built on top of them. Hand-written
SQL on the raw driver (``db.direct``), read fresh on every request: nothing is cached, so a revoked,
expired or trashed share, or a node moved out of a shared folder, stops granting at once.
"""

from __future__ import annotations

from datetime import datetime

from stowage.db.direct import Query
from stowage.files.direct_repository import Fetcher
from stowage.policy import Grant, Permission

# Up the parent chain (a few rows by primary key), then each ancestor's shares by the node index; a
# share counts while it is neither revoked nor expired and its node is not in the trash.
_GRANTS = Query(
    "WITH RECURSIVE up(id, parent_id) AS ("
    " SELECT id, parent_id FROM nodes WHERE id = ?"
    " UNION ALL SELECT n.id, n.parent_id FROM nodes n JOIN up ON n.id = up.parent_id)"
    " SELECT s.id, s.node_id, s.permission FROM up"
    " JOIN shares s ON s.node_id = up.id"
    " JOIN nodes r ON r.id = s.node_id"
    " WHERE s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > ?) AND r.trashed_at IS NULL"
    " AND (s.grantee_user_id = ? OR s.id = ?)"
)


async def grants_covering(
    fetcher: Fetcher, node_id: str, *, user_id: str | None, share_id: str | None, now: datetime
) -> tuple[Grant, ...]:
    """The live grants of a user (``user_id``) or of one link (``share_id``) on ``node_id`` or its ancestors."""
    rows = await fetcher.fetch_all(_GRANTS, (node_id, fetcher.timestamp(now), user_id, share_id))
    return tuple(Grant(share_id=row[0], root_id=row[1], permission=Permission(row[2])) for row in rows)
