"""The trash: deleting moves an item (with its subtree) there as one entry; entries are listed,
restored, purged one by one, emptied, and purged automatically after ``trash_retention_days``.

An item deleted before its folder keeps its own entry: purging the folder leaves it (see
``purge_trash_set``), restoring the folder does not revive it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from stowage.db.base import utcnow
from stowage.errors import Conflict
from stowage.files import repository
from stowage.files.schemas import NodeOut, NodePage
from stowage.files.services._common import (
    MAX_PAGE,
    ItemOutcome,
    decode_cursor,
    encode_cursor,
    node_out,
    purge_trash_set,
    run_item,
    trash_node,
    unique_name,
)
from stowage.files.services._tree import TreeService
from stowage.policy import Action, Principal, authorize


class TrashService:
    def __init__(self, tree: TreeService) -> None:
        self.tree = tree
        self.db = tree.db

    async def trash(self, principal: Principal | None, node_id: str) -> NodeOut:
        async with self.db.transaction() as db:
            node = await self.tree.load(db, principal, node_id, Action.FILE_WRITE, detaches=True)
            if node.parent_id is None:
                raise Conflict("The root folder cannot be deleted.")
            await trash_node(db, node)
            return node_out(node)

    async def list_trash(self, principal: Principal | None, *, cursor: str | None, limit: int) -> NodePage:
        caller = authorize(principal, Action.FILE_READ)
        limit = max(1, min(limit, MAX_PAGE))
        after_raw = decode_cursor(cursor, 2)
        after = (datetime.fromisoformat(after_raw[0]), str(after_raw[1])) if after_raw else None
        async with self.db.session() as db:
            rows = await repository.list_trash_roots(db, caller.user_id, after=after, limit=limit + 1)
        items = [node_out(n) for n in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            assert last.trashed_at is not None
            next_cursor = encode_cursor([last.trashed_at.isoformat(), last.id])
        return NodePage(items=items, next_cursor=next_cursor)

    async def restore(
        self, principal: Principal | None, node_id: str, *, parent_id: str | None, on_conflict: str
    ) -> NodeOut:
        async with self.db.transaction() as db:
            node = await self.tree.load(db, principal, node_id, Action.FILE_WRITE, trashed=True)
            if node.trash_root_id != node.id:
                raise Conflict("This item was deleted with its folder; restore the folder instead.")
            target_id = parent_id or node.trashed_from_id
            target = await repository.get_node(db, target_id) if target_id else None
            if parent_id is not None:
                target = await self.tree.load(db, principal, parent_id, Action.FILE_WRITE)
            if target is None or target.trashed_at is not None:
                raise Conflict(
                    "The original folder is gone or in the trash; choose a folder to restore into (parent_id)."
                )
            if target.kind != "folder":
                raise Conflict(f"{target.name!r} is a file; items can only be restored into folders.")
            existing = await repository.get_live_child(db, target.id, node.name)
            name = node.name
            if existing is not None:
                if on_conflict != "rename":
                    raise Conflict(
                        f"{node.name!r} already exists in the target folder; restore with on_conflict=rename.",
                        extra={"conflicting_id": existing.id},
                    )
                name = await unique_name(await self.db.direct_in(db), target.id, node.name)
            # Place the item first (still trashed, so the live-name index ignores it), then revive it.
            node.parent_id = target.id
            node.name = name
            node.modified_at = utcnow()
            await db.flush()
            await repository.restore_trash_set(db, node.id)
            await db.refresh(node)
            await repository.log_change(db, node.owner_id, node.id, "restore", utcnow())
            return node_out(node)

    async def purge(self, principal: Principal | None, node_id: str) -> None:
        async with self.db.transaction() as db:
            node = await self.tree.load(db, principal, node_id, Action.FILE_WRITE, trashed=True)
            if node.trash_root_id != node.id:
                raise Conflict("This item was deleted with its folder; purge the folder instead.")
            await purge_trash_set(db, node)

    async def empty_trash(self, principal: Principal | None) -> int:
        caller = authorize(principal, Action.FILE_WRITE)
        async with self.db.transaction() as db:
            roots = await repository.all_trash_roots(db, caller.user_id)
            for root in roots:
                await purge_trash_set(db, root)
        return len(roots)

    async def purge_expired(self, retention: timedelta, *, batch: int = 100) -> int:
        """Purge trash older than ``retention`` (never younger). Called periodically by the server."""
        cutoff = utcnow() - retention
        purged = 0
        while True:
            async with self.db.transaction() as db:
                roots = await repository.trash_roots_older_than(db, cutoff, batch)
                for root in roots:
                    await purge_trash_set(db, root)
            purged += len(roots)
            if len(roots) < batch:
                return purged

    async def batch_delete(self, principal: Principal | None, ids: Sequence[str]) -> list[ItemOutcome]:
        """Trash each item in its own unit of work; one failure does not undo the others."""
        authorize(principal, Action.FILE_WRITE)  # the request itself must be allowed at all
        return [await run_item(node_id, self.trash(principal, node_id)) for node_id in ids]
