"""A folder's listing, hand-written on the raw driver (``db.direct``): apps list folders all the time.

One page is at most two statements — the folders, then the files — each a range of one index
(``ix_nodes_live_children_<order>``, read in either direction with a row-value comparison, which both
engines seek on). The files' statement also joins each file's image facts by its content's hash (a
primary-key look-up per row, in the same statement: never one query per file), so a photo grid draws
from one listing request; it reports the images whose facts are missing or whose capture-time copy
lags, for the caller to schedule.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec

from stowage.db.direct import Query, Row, optional_timestamp, timestamp
from stowage.files.direct_repository import Fetcher, properties_of
from stowage.files.facts_repository import FACTS_COLUMNS
from stowage.files.media_types import IMAGE_FACT_TYPES
from stowage.files.schemas import ImageOut, NodeOut, SortKey

# A listing reads live children only (no trash time) in ``NodeOut``'s field order: what the page sends,
# then the node's copy of the capture time (the ``taken_at`` sort key).
_LISTED = "n.id, n.name, n.kind, n.parent_id, n.size, n.media_type, n.sha256, n.created_at, n.modified_at, "
_LISTED += "n.starred, n.properties, n.taken_at"
_FACTS = ", ".join(f"f.{column}" for column in FACTS_COLUMNS.split(", ")) + ", f.sha256 IS NOT NULL"
_TAKEN = "coalesce(n.taken_at, n.modified_at)"  # the expression of ``ix_nodes_live_children_taken``

# The sort key per order. Within folders size and type are constant (0 and no media type), so they
# order by name; files always have a media type. Each is served by ``ix_nodes_live_children_<order>``.
_SORT_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "folder": {
        "name": ("n.name", "n.id"),
        "size": ("n.name", "n.id"),
        "modified": ("n.modified_at", "n.name", "n.id"),
        "type": ("n.name", "n.id"),
        "taken_at": (_TAKEN, "n.name", "n.id"),
    },
    "file": {
        "name": ("n.name", "n.id"),
        "size": ("n.size", "n.name", "n.id"),
        "modified": ("n.modified_at", "n.name", "n.id"),
        "type": ("n.media_type", "n.name", "n.id"),
        "taken_at": (_TAKEN, "n.name", "n.id"),
    },
}


class ChildrenPage(msgspec.Struct, frozen=True):
    """One page of a folder; ``next_key`` is the cursor of its last item when more follow, and ``stale``
    the contents of listed images whose facts are missing or whose capture-time copy lags them."""

    items: list[NodeOut]
    next_key: tuple[Any, ...] | None
    stale: list[str]


@lru_cache(maxsize=160)
def children_query(kind: str, sort: SortKey, descending: bool, *, after: bool, media_type: bool) -> Query:
    """One page of a folder's live children of one kind, after a cursor (the query plan tests read it)."""
    columns = _SORT_COLUMNS[kind][sort]
    direction = "DESC" if descending else "ASC"
    conditions = ["n.parent_id = ?", f"n.kind = '{kind}'", "n.trashed_at IS NULL"]
    if media_type:
        conditions.append("n.media_type LIKE ? ESCAPE '\\'")
    if after:
        if sort == "taken_at":  # SQLite seeks on an indexed expression by a plain bound, not a row value
            conditions.append(f"{_TAKEN} {'<=' if descending else '>='} ?")
        marks = ", ".join("?" * len(columns))
        conditions.append(f"({', '.join(columns)}) {'<' if descending else '>'} ({marks})")
    order = ", ".join(f"{column} {direction}" for column in columns)
    if kind == "file":
        source = f"{_LISTED}, {_FACTS} FROM nodes n LEFT JOIN image_facts f ON f.sha256 = n.sha256"
    else:
        source = f"{_LISTED} FROM nodes n"
    return Query(f"SELECT {source} WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT ?")


def _listed_node(row: Row, image: ImageOut | None) -> NodeOut:
    """A listing row straight into the shape the API sends: a page builds a hundred of them, and going
    through an intermediate row first cost a tenth of the page's time. Positional, in ``NodeOut``'s
    field order (the same values ``files.services.node_out`` gives)."""
    digest = row[6]
    node = NodeOut(
        row[0],
        row[1],
        "file" if row[2] == "file" else "folder",
        row[3],
        row[4],
        row[5],
        f'"{digest}"' if digest else None,
        timestamp(row[7]),
        timestamp(row[8]),
        None,
        bool(row[9]),
        properties_of(row[10]) or {},
    )
    if image is not None:
        node.image = image
    return node


def _image(row: Row, stale: list[str]) -> ImageOut | None:
    """A file row's image facts (columns 12 on: ``FACTS_COLUMNS``, then whether there is a facts row);
    notes in ``stale`` an image without facts, or whose node lacks the capture time its facts have."""
    width, height, taken_raw, placeholder, failure, known = row[12:18]
    if not known:
        if row[5] in IMAGE_FACT_TYPES:
            stale.append(row[6])
        return None
    if failure is not None:
        return None
    taken = optional_timestamp(taken_raw)
    if taken is not None and row[11] is None:
        stale.append(row[6])
    return ImageOut(width=width, height=height, taken_at=taken, placeholder=placeholder)


def _sort_key(row: Row, sort: SortKey) -> tuple[Any, ...]:
    """The cursor of a listing row: (kind, key, name, id), JSON-friendly."""
    key: Any
    if sort == "size":
        key = row[4]
    elif sort == "modified":
        key = timestamp(row[8]).isoformat()
    elif sort == "taken_at":
        moment: datetime = optional_timestamp(row[11]) or timestamp(row[8])
        key = moment.isoformat()
    elif sort == "type":
        key = row[5] or ""
    else:
        key = row[1]
    return (row[2], key, row[1], row[0])


async def list_children(
    fetcher: Fetcher,
    parent_id: str,
    *,
    sort: SortKey,
    descending: bool,
    after: tuple[Any, ...] | None,
    limit: int,
    kind: str | None,
    media_type_prefix: str | None,
) -> ChildrenPage:
    """One page of at most ``limit`` live children (in the API's shape): folders first, then files, each in
    the chosen order, after the ``(kind, key, name, id)`` cursor ``after`` (a modification or capture time
    in the engine's form: ``Fetcher.timestamp``). ``taken_at`` orders by capture time, falling back to
    the modification time (folders, and files without one).

    Keyset (not offset) pagination stays correct while rows are inserted or deleted between pages: each
    page starts strictly after the last row the client saw. A page costs the same at the start of a
    10,000-file folder as at its end."""
    like: list[Any] = []
    if media_type_prefix is not None:
        escaped = media_type_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like.append(f"{escaped}%")
    rows: list[Row] = []
    for part in ("folder", "file"):
        if kind is not None and kind != part:
            continue
        if after is not None and after[0] == "file" and part == "folder":
            continue  # the cursor is already among the files
        cursor: list[Any] = []
        if after is not None and after[0] == part:
            a_key, a_name, a_id = after[1], after[2], after[3]
            cursor = [a_key, a_name, a_id] if len(_SORT_COLUMNS[part][sort]) == 3 else [a_name, a_id]
            if sort == "taken_at":
                cursor.insert(0, a_key)
        query = children_query(part, sort, descending, after=bool(cursor), media_type=bool(like))
        rows += await fetcher.fetch_all(query, [parent_id, *like, *cursor, limit + 1 - len(rows)])
        if len(rows) > limit:
            break
    stale: list[str] = []
    items = [_listed_node(row, _image(row, stale) if len(row) > 12 else None) for row in rows[:limit]]
    next_key = _sort_key(rows[limit - 1], sort) if len(rows) > limit else None
    return ChildrenPage(items=items, next_key=next_key, stale=stale)
