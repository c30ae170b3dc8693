"""The file reads every download makes, in hand-written SQL on the raw driver (``db.direct``).

A path resolves in **one** statement whatever its depth: the owner's root, then one self-join per
component, each answered by the live-name index ``uq_nodes_parent_id_name_live`` (the joins repeat
its ``trashed_at IS NULL`` predicate so both engines use the partial index). The statement text for
each depth is built once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

import msgspec

from stowage.db.direct import DirectReader, Query, Row, optional_timestamp, timestamp

MAX_DEPTH = 64  # names.split_path allows no deeper path

_COLUMNS = "id, owner_id, parent_id, kind, name, size, media_type, sha256, modified_at, trashed_at"


class NodeRow(msgspec.Struct, frozen=True):
    """The columns of a node that reading needs (authorisation, ``FileContent``)."""

    id: str
    owner_id: str
    parent_id: str | None
    kind: str
    name: str
    size: int
    media_type: str | None
    sha256: str | None
    modified_at: datetime
    trashed_at: datetime | None


def _node_row(row: Row) -> NodeRow:
    return NodeRow(
        id=row[0],
        owner_id=row[1],
        parent_id=row[2],
        kind=row[3],
        name=row[4],
        size=row[5],
        media_type=row[6],
        sha256=row[7],
        modified_at=timestamp(row[8]),
        trashed_at=optional_timestamp(row[9]),
    )


# The statements are assembled from constant column and table names only; values are always bound.
_NODE_BY_ID = Query(f"SELECT {_COLUMNS} FROM nodes WHERE id = ?")  # noqa: S608


@lru_cache(maxsize=MAX_DEPTH + 1)
def _path_query(depth: int) -> Query:
    """The root of ``owner_id``, then ``depth`` live children by name, in one statement."""
    last = f"n{depth}"
    columns = ", ".join(f"{last}.{column.strip()}" for column in _COLUMNS.split(","))
    joins = "".join(
        f" JOIN nodes n{level} ON n{level}.parent_id = n{level - 1}.id AND n{level}.name = ?"
        f" AND n{level}.trashed_at IS NULL"
        for level in range(1, depth + 1)
    )
    return Query(f"SELECT {columns} FROM nodes n0{joins} WHERE n0.owner_id = ? AND n0.parent_id IS NULL")  # noqa: S608


async def node_by_id(reader: DirectReader, node_id: str) -> NodeRow | None:
    row = await reader.fetch_one(_NODE_BY_ID, (node_id,))
    return _node_row(row) if row is not None else None


async def live_node_at(reader: DirectReader, owner_id: str, parts: Sequence[str]) -> NodeRow | None:
    """The live node at ``/parts…`` in the owner's tree (the root for no parts); None when any step is
    missing (or the owner has no root yet)."""
    if len(parts) > MAX_DEPTH:
        return None
    row = await reader.fetch_one(_path_query(len(parts)), (*parts, owner_id))
    return _node_row(row) if row is not None else None
