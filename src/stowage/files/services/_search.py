"""Finding files: search by name and filters, starred items, recently uploaded files.

Every query is scoped to one owner's live tree — or, with ``scope=shared``/``all``, to what other users
share with the caller (user shares only, read on every request) and, for ``all``, the caller's own
tree as well — and keyset-paginated like folder listings (folders
first, then the chosen key, then name and id), so pages stay correct while the tree changes. The SQL
and the index plans it relies on are in ``files/search_repository.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stowage.db.base import utcnow
from stowage.db.tables import Node
from stowage.errors import Conflict
from stowage.files import direct_repository, search_repository
from stowage.files.schemas import NodePage, SearchQuery
from stowage.files.services._common import (
    MAX_PAGE,
    bad_cursor,
    cursor_timestamp,
    decode_cursor,
    encode_cursor,
    listing_key,
    node_out,
)
from stowage.files.services._tree import TreeService
from stowage.policy import Action, Principal, authorize


class SearchService:
    def __init__(self, tree: TreeService) -> None:
        self.tree = tree
        self.db = tree.db

    async def search(
        self, principal: Principal | None, query: SearchQuery, *, cursor: str | None, limit: int
    ) -> NodePage:
        query.check()
        limit = max(1, min(limit, MAX_PAGE))
        after = listing_key(decode_cursor(cursor, 4), query.sort)
        caller = authorize(principal, Action.FILE_READ)
        async with self.db.session(offload=True) as db:
            owner_id = caller.user_id
            folder = None
            if query.folder_id is not None:
                folder = await self.tree.load(db, principal, query.folder_id, Action.FILE_READ)
                if folder.kind != "folder":
                    raise Conflict(f"{folder.name!r} is a file; search inside a folder.")
                owner_id = folder.owner_id
            below = folder.id if folder is not None and folder.parent_id is not None else None
            scope = query.scope or "own"
            rows = await search_repository.search(
                db,
                query,
                owner_id=owner_id,
                below_folder_id=below,
                after=after,
                limit=limit + 1,
                # What others share with the caller: the grants the policy weighs, read in the same query.
                shared_with=caller.user_id if scope != "own" and not caller.share_id else None,
                own=scope != "shared",
                now=utcnow(),
            )
        return await self._imaged(
            _to_page(rows, limit, lambda node: direct_repository.sort_key_of(node, query.sort)), rows
        )

    async def recent(self, principal: Principal | None, *, cursor: str | None, limit: int) -> NodePage:
        """Files by upload time (server clock), newest first: what was added or changed lately."""
        limit = max(1, min(limit, MAX_PAGE))
        caller = authorize(principal, Action.FILE_READ)
        raw = decode_cursor(cursor, 2)
        after = None
        if raw is not None:
            if not isinstance(raw[1], str):
                raise bad_cursor()
            after = (cursor_timestamp(raw[0]), raw[1])
        async with self.db.session() as db:
            rows = await search_repository.recent_files(db, caller.user_id, after=after, limit=limit + 1)
        page = _to_page(rows, limit, lambda node: (node.uploaded_at.isoformat() if node.uploaded_at else "", node.id))
        return await self._imaged(page, rows)

    async def _imaged(self, page: NodePage, rows: Sequence[Node]) -> NodePage:
        """The page with the images' facts (one query for the page)."""
        await self.tree.with_images([(item, row.sha256) for item, row in zip(page.items, rows, strict=False)])
        return page


def _to_page(rows: Sequence[Node], limit: int, key_of: Callable[[Node], Sequence[Any]]) -> NodePage:
    items = [node_out(n) for n in rows[:limit]]
    next_cursor = encode_cursor(key_of(rows[limit - 1])) if len(rows) > limit else None
    return NodePage(items=items, next_cursor=next_cursor)
