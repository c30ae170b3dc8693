"""Finding files: search by name and filters, starred items, recently uploaded files.

Every query is scoped to one owner's live tree and keyset-paginated like folder listings (folders
first, then the chosen key, then name and id), so pages stay correct while the tree changes.

Query plans relied on (checked by ``tests/test_files_search.py`` with EXPLAIN on both engines):

* **Everywhere**: ``ix_nodes_owner_id_trashed_at`` narrows to the caller's live nodes (PostgreSQL may
  pick the smaller ``ix_nodes_owner_id`` instead); the name test is
  ``search_name LIKE '%…%'`` on a stored, pre-folded column (no function call per row). On PostgreSQL
  with ``pg_trgm`` the trigram index ``ix_nodes_search_name_trgm`` can answer the LIKE instead, which
  the planner prefers when the text is selective.
* **In a subtree**: a recursive CTE collects the live *folders* below the start (walking
  ``ix_nodes_parent_id_kind_name``), and matches are the live nodes whose parent is one of them.
* **Recent files**: ``ix_nodes_owner_id_uploaded_at``, read backwards: the newest uploads come
  first without sorting.
* **Starred**: on PostgreSQL the partial index ``ix_nodes_owner_id_starred`` holds only starred rows (the
  filter is the bare column, as in the index predicate). SQLite keeps ``ix_nodes_owner_id_trashed_at``:
  without statistics its planner prefers the index with two equality terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.base import search_key
from stowage.db.tables import Node
from stowage.errors import Conflict, FieldError, InvalidInput
from stowage.files import repository
from stowage.files.schemas import NodePage
from stowage.files.services._tree import (
    MAX_PAGE,
    FileService,
    bad_cursor,
    cursor_timestamp,
    decode_cursor,
    encode_cursor,
    listing_key,
    node_out,
)
from stowage.policy import Action, Principal, authorize

Category = Literal["image", "video", "audio", "text", "document", "archive"]

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
MAX_QUERY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for; every given criterion must hold. ``text`` matches anywhere in the name."""

    text: str | None = None
    folder_id: str | None = None
    kind: Literal["file", "folder"] | None = None
    media_type: str | None = None
    category: Category | None = None
    min_size: int | None = None
    max_size: int | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    starred: bool | None = None
    sort: repository.SortKey = "name"
    descending: bool = False

    def check(self) -> None:
        errors: list[FieldError] = []
        if self.text is not None and len(self.text) > MAX_QUERY_LENGTH:
            errors.append(FieldError(field="query.q", message=f"at most {MAX_QUERY_LENGTH} characters"))
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            errors.append(FieldError(field="query.min_size", message="must not exceed max_size"))
        if (
            self.modified_after is not None
            and self.modified_before is not None
            and self.modified_after > self.modified_before
        ):
            errors.append(FieldError(field="query.modified_after", message="must not be later than modified_before"))
        if errors:
            raise InvalidInput("The search criteria contradict each other or are too long.", errors=errors)


class SearchService:
    def __init__(self, files: FileService) -> None:
        self.files = files
        self.db = files.db

    async def search(
        self, principal: Principal | None, query: SearchQuery, *, cursor: str | None, limit: int
    ) -> NodePage:
        query.check()
        limit = max(1, min(limit, MAX_PAGE))
        after = listing_key(decode_cursor(cursor, 4), query.sort)
        caller = authorize(principal, Action.FILE_READ)
        async with self.db.session() as db:
            owner_id = caller.user_id
            folder = None
            if query.folder_id is not None:
                folder = await self.files.load(db, principal, query.folder_id, Action.FILE_READ)
                if folder.kind != "folder":
                    raise Conflict(f"{folder.name!r} is a file; search inside a folder.")
                owner_id = folder.owner_id
            if folder is not None and folder.parent_id is not None:
                statement = select(Node).where(
                    Node.parent_id.in_(select(_live_folders_below(folder.id).c.id)), Node.trashed_at.is_(None)
                )
            else:  # everywhere, or below a root folder: the same set, without walking the tree
                statement = select(Node).where(
                    Node.owner_id == owner_id, Node.trashed_at.is_(None), Node.parent_id.is_not(None)
                )
            rows = await _page(
                db,
                _filtered(statement, query),
                sort=query.sort,
                descending=query.descending,
                after=after,
                limit=limit + 1,
            )
        return _to_page(rows, limit, lambda node: repository.sort_key_of(node, query.sort))

    async def recent(self, principal: Principal | None, *, cursor: str | None, limit: int) -> NodePage:
        """Files by upload time (server clock), newest first: what was added or changed lately."""
        limit = max(1, min(limit, MAX_PAGE))
        caller = authorize(principal, Action.FILE_READ)
        after = decode_cursor(cursor, 2)
        statement = select(Node).where(
            Node.owner_id == caller.user_id, Node.uploaded_at.is_not(None), Node.trashed_at.is_(None)
        )
        if after is not None:
            moment = cursor_timestamp(after[0])
            if not isinstance(after[1], str):
                raise bad_cursor()
            # The plain bound lets the index range-scan from the cursor instead of skipping newer rows.
            statement = statement.where(
                Node.uploaded_at <= moment,
                or_(Node.uploaded_at < moment, and_(Node.uploaded_at == moment, Node.id < after[1])),
            )
        statement = statement.order_by(Node.uploaded_at.desc(), Node.id.desc()).limit(limit + 1)
        async with self.db.session() as db:
            rows = (await db.scalars(statement)).all()
        return _to_page(rows, limit, lambda node: (node.uploaded_at.isoformat() if node.uploaded_at else "", node.id))


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
    sort: repository.SortKey,
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


def _to_page(rows: Any, limit: int, key_of: Any) -> NodePage:
    items = [node_out(n) for n in rows[:limit]]
    next_cursor = encode_cursor(key_of(rows[limit - 1])) if len(rows) > limit else None
    return NodePage(items=items, next_cursor=next_cursor)
