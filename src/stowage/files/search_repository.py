"""All SQL of search, starred and recent files (the query half of ``services/_search.py``).

Query plans relied on (checked by ``tests/test_files_search.py`` with EXPLAIN on both engines):

* **Everywhere**: ``ix_nodes_owner_id_trashed_at`` narrows to the caller's live nodes (PostgreSQL may
  pick the smaller ``ix_nodes_owner_id`` instead); the name test is
  ``search_name LIKE '%…%'`` on a stored, pre-folded column (no function call per row). On PostgreSQL
  with ``pg_trgm`` the trigram index ``ix_nodes_search_name_trgm`` can answer the LIKE instead, which
  the planner prefers when the text is selective.
* **In a subtree**: a recursive CTE collects the live *folders* below the start (walking an index on
  ``(parent_id, kind, …)``), and matches are the live nodes whose parent is one of them.
* **Shared with the caller** (``scope=shared`` or ``all``): the live user shares granted to the caller
  (``ix_shares_grantee_user_id``), then a recursive CTE over the live folders below them as above; a
  match is a shared node itself or a live node whose parent is in that set (or, for ``all``, one of the
  caller's own nodes).
* **Recent files**: ``ix_nodes_owner_id_uploaded_at``, read backwards: the newest uploads come
  first without sorting.
* **Starred**: on PostgreSQL the partial index ``ix_nodes_owner_id_starred`` holds only starred rows (the
  filter is the bare column, as in the index predicate). SQLite keeps ``ix_nodes_owner_id_trashed_at``:
  without statistics its planner prefers the index with two equality terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from stowage.db.base import search_key
from stowage.db.tables import Node, Share
from stowage.files import repository
from stowage.files.schemas import Category, SearchQuery, SortKey

# Media types behind each category (beyond the top-level type for image/video/audio/text).
_DOCUMENT_TYPES = (
    "application/pdf",
    "application/msword",
    "application/rtf",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/epub+zip",
)
_DOCUMENT_PREFIXES = ("application/vnd.openxmlformats-officedocument.", "application/vnd.oasis.opendocument.")
_ARCHIVE_TYPES = (
    "application/zip",
    "application/gzip",
    "application/x-tar",
    "application/x-7z-compressed",
    "application/x-rar-compressed",
    "application/vnd.rar",
    "application/x-bzip2",
    "application/x-xz",
    "application/zstd",
)


async def search(
    db: AsyncSession,
    query: SearchQuery,
    *,
    owner_id: str,
    below_folder_id: str | None,
    after: tuple[Any, ...] | None,
    limit: int,
    shared_with: str | None = None,
    own: bool = True,
    now: datetime | None = None,
) -> list[Node]:
    """One page of the owner's live nodes matching ``query``: below a folder (not a root), or everywhere;
    with ``shared_with`` (a user id) also — or, without ``own``, only — every live node shared with that
    user (``_shared_with``), ordered and paged as one set."""
    if below_folder_id is not None:
        statement = select(Node).where(
            Node.parent_id.in_(select(_live_folders_below(below_folder_id).c.id)), Node.trashed_at.is_(None)
        )
    elif shared_with is not None:
        assert now is not None
        shared = _shared_with(shared_with, now)
        mine = and_(Node.owner_id == owner_id, Node.parent_id.is_not(None))
        statement = select(Node).where(Node.trashed_at.is_(None), or_(mine, shared) if own else shared)
    else:  # everywhere, or below a root folder: the same set, without walking the tree
        statement = select(Node).where(
            Node.owner_id == owner_id, Node.trashed_at.is_(None), Node.parent_id.is_not(None)
        )
    return await _page(
        db, _filtered(statement, query), sort=query.sort, descending=query.descending, after=after, limit=limit
    )


async def recent_files(
    db: AsyncSession, owner_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> Sequence[Node]:
    """The owner's live files by upload time, newest first, after the ``(uploaded_at, id)`` cursor."""
    statement = select(Node).where(Node.owner_id == owner_id, Node.uploaded_at.is_not(None), Node.trashed_at.is_(None))
    if after is not None:
        moment, node_id = after
        # The plain bound lets the index range-scan from the cursor instead of skipping newer rows.
        statement = statement.where(
            Node.uploaded_at <= moment,
            or_(Node.uploaded_at < moment, and_(Node.uploaded_at == moment, Node.id < node_id)),
        )
    statement = statement.order_by(Node.uploaded_at.desc(), Node.id.desc()).limit(limit)
    return (await db.scalars(statement)).all()


def _shared_with(user_id: str, now: datetime) -> Any:
    """The condition "shared with ``user_id``": the node of a live share with the user (not revoked, not
    expired, the node not in the trash — the conditions ``files.grant_repository`` grants by), or a node
    whose parent is that node or a live folder below it. Links are not the user's: they are not counted.
    Read on every search, so a revoked share stops matching at once."""
    root = aliased(Node)
    roots = (
        select(Share.node_id)
        .join(root, root.id == Share.node_id)
        .where(
            Share.kind == "user",
            Share.grantee_user_id == user_id,
            Share.revoked_at.is_(None),
            or_(Share.expires_at.is_(None), Share.expires_at > now),
            root.trashed_at.is_(None),
            root.owner_id != user_id,
        )
    )
    tree = roots.cte("shared_folders", recursive=True)
    folder = aliased(Node)
    tree = tree.union(
        select(folder.id)
        .join(tree, folder.parent_id == tree.c.node_id)
        .where(folder.kind == "folder", folder.trashed_at.is_(None))
    )
    return or_(Node.id.in_(roots), Node.parent_id.in_(select(tree.c.node_id)))


def _live_folders_below(root_id: str) -> Any:
    """The start folder and every live folder below it (only folders are walked, not their files)."""
    tree = select(Node.id).where(Node.id == root_id).cte("folders", recursive=True)
    child = (
        select(Node.id).join(tree, Node.parent_id == tree.c.id).where(Node.kind == "folder", Node.trashed_at.is_(None))
    )
    return tree.union_all(child)


def _filtered(statement: Select[Any], query: SearchQuery) -> Select[Any]:
    if query.text:
        folded = search_key(query.text)
        statement = statement.where(Node.search_name.like(f"%{repository.escape_like(folded)}%", escape="\\"))
    if query.kind is not None:
        statement = statement.where(Node.kind == query.kind)
    if query.media_type is not None:
        if query.media_type.endswith("/"):
            statement = statement.where(
                Node.media_type.like(f"{repository.escape_like(query.media_type.lower())}%", escape="\\")
            )
        else:
            statement = statement.where(Node.media_type == query.media_type.lower())
    if query.category is not None:
        statement = statement.where(_category_condition(query.category))
    if query.min_size is not None or query.max_size is not None:
        statement = statement.where(Node.kind == "file")
        if query.min_size is not None:
            statement = statement.where(Node.size >= query.min_size)
        if query.max_size is not None:
            statement = statement.where(Node.size <= query.max_size)
    if query.modified_after is not None:
        statement = statement.where(Node.modified_at >= query.modified_after)
    if query.modified_before is not None:
        statement = statement.where(Node.modified_at < query.modified_before)
    if query.starred is not None:
        # The bare column, as in the partial index's predicate: PostgreSQL cannot match ``starred IS true``
        # to ``WHERE starred`` and would not use ``ix_nodes_owner_id_starred``.
        statement = statement.where(Node.starred if query.starred else ~Node.starred)
    return statement


def _category_condition(category: Category) -> Any:
    if category in ("image", "video", "audio", "text"):
        return Node.media_type.like(f"{category}/%")
    if category == "document":
        return or_(
            Node.media_type.in_(_DOCUMENT_TYPES), *(Node.media_type.like(f"{prefix}%") for prefix in _DOCUMENT_PREFIXES)
        )
    return Node.media_type.in_(_ARCHIVE_TYPES)


async def _page(
    db: AsyncSession,
    statement: Select[Any],
    *,
    sort: SortKey,
    descending: bool,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[Node]:
    kind_col, key_col, name_col, id_col = repository.sort_columns(sort)
    if after is not None:
        a_kind, a_key, a_name, a_id = after
        rest = repository.tuple_after((key_col, name_col, id_col), (a_key, a_name, a_id), descending)
        statement = statement.where(or_(Node.kind < a_kind, and_(Node.kind == a_kind, rest)))
    order = [kind_col] + [c.desc() if descending else c.asc() for c in (key_col, name_col, id_col)]
    return list((await db.scalars(statement.order_by(*order).limit(limit))).all())
