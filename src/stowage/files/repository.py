"""All SQL for the file tree: nodes, versions, blob reference counts, usage and the change log.

Functions flush but never commit. Tree walks use recursive CTEs, which SQLite and PostgreSQL share.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.tables import Blob, Change, Node, User, Version
from stowage.files.schemas import SortKey


async def get_node(db: AsyncSession, node_id: str) -> Node | None:
    return await db.get(Node, node_id)


async def insert_node(db: AsyncSession, node: Node) -> bool:
    """Insert ``node`` in a savepoint. False when a unique index refused it — a concurrent request
    took its name, or created the owner's root, first — with the session left as it was, so the
    caller can look the winner up and apply its conflict policy (one rule for folders, files, roots)."""
    try:
        async with db.begin_nested():
            db.add(node)
            await db.flush()
    except IntegrityError:
        if node in db:
            db.expunge(node)
        return False
    return True


async def get_root(db: AsyncSession, owner_id: str) -> Node | None:
    return await db.scalar(select(Node).where(Node.owner_id == owner_id, Node.parent_id.is_(None)))


async def get_live_child(db: AsyncSession, parent_id: str, name: str) -> Node | None:
    return await db.scalar(
        select(Node).where(Node.parent_id == parent_id, Node.name == name, Node.trashed_at.is_(None))
    )


async def live_child_names(db: AsyncSession, parent_id: str, prefix: str) -> set[str]:
    rows = await db.scalars(
        select(Node.name).where(
            Node.parent_id == parent_id,
            Node.trashed_at.is_(None),
            Node.name.like(f"{escape_like(prefix)}%", escape="\\"),
        )
    )
    return set(rows)


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def add(db: AsyncSession, row: object) -> None:
    db.add(row)
    await db.flush()


# --- listing -------------------------------------------------------------------------------


def sort_columns(sort: SortKey) -> list[Any]:
    """Folders first, then the chosen key, then name and id as tie-breakers (a total order)."""
    key: Any
    if sort == "size":
        key = Node.size
    elif sort == "modified":
        key = Node.modified_at
    elif sort == "taken_at":  # the capture time, else the modification time (as listings sort)
        key = func.coalesce(Node.taken_at, Node.modified_at)
    elif sort == "type":
        key = func.coalesce(Node.media_type, "")
    else:
        key = Node.name
    return [Node.kind.desc(), key, Node.name, Node.id]


async def list_children(
    db: AsyncSession,
    parent_id: str,
    *,
    sort: SortKey,
    descending: bool,
    after: tuple[Any, ...] | None,
    limit: int,
    kind: str | None,
    media_type_prefix: str | None,
) -> Sequence[Node]:
    """One page of live children, keyset-paginated on (kind, sort key, name, id).

    Keyset (not offset) pagination stays correct while rows are inserted or deleted between pages:
    each page starts strictly after the last row the client saw.
    """
    columns = sort_columns(sort)
    statement = select(Node).where(Node.parent_id == parent_id, Node.trashed_at.is_(None))
    if kind is not None:
        statement = statement.where(Node.kind == kind)
    if media_type_prefix is not None:
        statement = statement.where(Node.media_type.like(f"{escape_like(media_type_prefix)}%", escape="\\"))
    # Folders always come first (kind DESC puts 'folder' before 'file'); the user's order applies within.
    kind_col, key_col, name_col, id_col = columns
    if after is not None:
        a_kind, a_key, a_name, a_id = after
        cmp_rest = tuple_after((key_col, name_col, id_col), (a_key, a_name, a_id), descending)
        statement = statement.where(or_(Node.kind < a_kind, and_(Node.kind == a_kind, cmp_rest)))
    order = [kind_col] + [c.desc() if descending else c.asc() for c in (key_col, name_col, id_col)]
    return (await db.scalars(statement.order_by(*order).limit(limit))).all()


def tuple_after(columns: tuple[Any, ...], values: tuple[Any, ...], descending: bool) -> Any:
    """Rows strictly after ``values`` in lexicographic (columns) order, written portably."""
    (first, *rest_cols), (value, *rest_values) = columns, values
    beyond = first < value if descending else first > value
    if not rest_cols:
        return beyond
    return or_(beyond, and_(first == value, tuple_after(tuple(rest_cols), tuple(rest_values), descending)))


async def folder_stats(db: AsyncSession, folder_id: str) -> tuple[int, int, int]:
    """(files, folders, total bytes) of the live subtree below a folder."""
    tree = _live_subtree(folder_id)
    row = (
        await db.execute(
            select(
                func.count().filter(Node.kind == "file"),
                func.count().filter(Node.kind == "folder"),
                func.coalesce(func.sum(Node.size).filter(Node.kind == "file"), 0),
            ).where(Node.id.in_(select(tree.c.id)), Node.id != folder_id)
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def _live_subtree(root_id: str) -> Any:
    tree = select(Node.id).where(Node.id == root_id).cte("tree", recursive=True)
    child = select(Node.id).join(tree, Node.parent_id == tree.c.id).where(Node.trashed_at.is_(None))
    return tree.union_all(child)


def _trash_set(trash_root_id: str) -> Any:
    return select(Node.id).where(Node.trash_root_id == trash_root_id)


async def is_descendant(db: AsyncSession, ancestor_id: str, candidate_id: str) -> bool:
    tree = _live_subtree(ancestor_id)
    found = await db.scalar(select(literal(1)).where(select(tree.c.id).where(tree.c.id == candidate_id).exists()))
    return found is not None


async def live_subtree_nodes(db: AsyncSession, root_id: str) -> Sequence[Node]:
    tree = _live_subtree(root_id)
    return (await db.scalars(select(Node).where(Node.id.in_(select(tree.c.id))))).all()


async def trash_subtree(db: AsyncSession, root_id: str, now: datetime) -> int:
    tree = _live_subtree(root_id)
    result = await db.execute(
        update(Node)
        .where(Node.id.in_(select(tree.c.id)), Node.trashed_at.is_(None))
        .values(trashed_at=now, trash_root_id=root_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def restore_trash_set(db: AsyncSession, trash_root_id: str) -> None:
    await db.execute(
        update(Node)
        .where(Node.trash_root_id == trash_root_id)
        .values(trashed_at=None, trash_root_id=None, trashed_from_id=None)
        .execution_options(synchronize_session=False)
    )


async def list_trash_roots(
    db: AsyncSession, owner_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> Sequence[Node]:
    statement = select(Node).where(Node.owner_id == owner_id, Node.trash_root_id == Node.id)
    if after is not None:
        at, node_id = after
        statement = statement.where(or_(Node.trashed_at < at, and_(Node.trashed_at == at, Node.id < node_id)))
    return (await db.scalars(statement.order_by(Node.trashed_at.desc(), Node.id.desc()).limit(limit))).all()


async def trash_roots_older_than(db: AsyncSession, cutoff: datetime, limit: int) -> Sequence[Node]:
    """Expired trash entries, oldest first (a deterministic batch, whatever the engine's row order)."""
    statement = (
        select(Node)
        .where(Node.trash_root_id == Node.id, Node.trashed_at < cutoff)
        .order_by(Node.trashed_at, Node.id)
        .limit(limit)
    )
    return (await db.scalars(statement)).all()


async def all_trash_roots(db: AsyncSession, owner_id: str) -> Sequence[Node]:
    return (await db.scalars(select(Node).where(Node.owner_id == owner_id, Node.trash_root_id == Node.id))).all()


# --- versions, blobs, usage ------------------------------------------------------------------------


async def reference_blob(db: AsyncSession, sha256: str, size: int, now: datetime) -> None:
    """Insert the blob row or add one reference, in one statement (safe under concurrency)."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(Blob).values(sha256=sha256, size=size, refcount=1, created_at=now)
    statement = statement.on_conflict_do_update(index_elements=[Blob.sha256], set_={"refcount": Blob.refcount + 1})
    await db.execute(statement)


async def release_blobs(db: AsyncSession, hashes: Sequence[str]) -> list[str]:
    """Drop one reference per listed hash (repeats count); return the hashes now unreferenced."""
    counts: dict[str, int] = {}
    for sha in hashes:
        counts[sha] = counts.get(sha, 0) + 1
    for sha, count in counts.items():
        await db.execute(update(Blob).where(Blob.sha256 == sha).values(refcount=Blob.refcount - count))
    if not counts:
        return []
    rows = await db.scalars(select(Blob.sha256).where(Blob.sha256.in_(list(counts)), Blob.refcount <= 0))
    return list(rows)


async def delete_blob_rows(db: AsyncSession, hashes: Sequence[str]) -> None:
    if hashes:
        await db.execute(delete(Blob).where(Blob.sha256.in_(list(hashes)), Blob.refcount <= 0))


async def versions_of_nodes(db: AsyncSession, node_ids: Sequence[str]) -> Sequence[Version]:
    if not node_ids:
        return []
    return (await db.scalars(select(Version).where(Version.node_id.in_(list(node_ids))))).all()


async def versions_of_user(db: AsyncSession, owner_id: str) -> Sequence[Version]:
    nodes = select(Node.id).where(Node.owner_id == owner_id)
    return (await db.scalars(select(Version).where(Version.node_id.in_(nodes)))).all()


async def delete_tree_of(db: AsyncSession, owner_id: str) -> None:
    """Delete every node a user owns (live and trashed) with its versions, versions first: a blob row
    can only go once no version references it, so the users→nodes cascade would come too late."""
    owned = select(Node.id).where(Node.owner_id == owner_id)
    await db.execute(delete(Version).where(Version.node_id.in_(owned)))
    await db.execute(delete(Node).where(Node.owner_id == owner_id))


async def delete_nodes(db: AsyncSession, node_ids: Sequence[str]) -> None:
    if node_ids:
        await db.execute(delete(Version).where(Version.node_id.in_(list(node_ids))))
        # Children before parents is not needed: the FK cascades, and every id is listed anyway.
        await db.execute(delete(Node).where(Node.id.in_(list(node_ids))))


def _purge_set(root_id: str) -> Any:
    """The ids a purge of the trash entry ``root_id`` removes: its whole subtree, except items below it
    that have a trash entry of their own (deleted before their folder) and what is inside those."""
    tree = select(Node.id).where(Node.id == root_id).cte("purge_set", recursive=True)
    own_entry = and_(Node.trash_root_id.is_not(None), Node.trash_root_id == Node.id)
    return tree.union_all(select(Node.id).join(tree, Node.parent_id == tree.c.id).where(~own_entry))


async def purge_set_nodes(db: AsyncSession, root_id: str) -> Sequence[Node]:
    purge_set = _purge_set(root_id)
    return (await db.scalars(select(Node).where(Node.id.in_(select(purge_set.c.id))))).all()


async def detach_trash_entries_below(db: AsyncSession, root_id: str, new_parent_id: str) -> int:
    """Move the separate trash entries found inside ``root_id``'s purge set under ``new_parent_id``,
    so that deleting the set (``parent_id`` cascades) leaves them, and what they hold, in the trash."""
    purge_set = _purge_set(root_id)
    result = await db.execute(
        update(Node)
        .where(Node.parent_id.in_(select(purge_set.c.id)), Node.trash_root_id == Node.id, Node.id != root_id)
        .values(parent_id=new_parent_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def nodes_in_trash_set(db: AsyncSession, trash_root_id: str) -> Sequence[Node]:
    return (await db.scalars(select(Node).where(Node.id.in_(_trash_set(trash_root_id))))).all()


async def charge_usage(db: AsyncSession, user_id: str, delta: int, quota: int) -> bool:
    """Add ``delta`` bytes to the user's usage if it stays within ``quota``; atomic in one UPDATE,
    so two concurrent uploads cannot together exceed the quota."""
    result = await db.execute(
        update(User)
        .where(User.id == user_id, User.used_bytes + delta <= quota)
        .values(used_bytes=User.used_bytes + delta)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_usage(db: AsyncSession, user_id: str, delta: int) -> None:
    await db.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            used_bytes=func.max(User.used_bytes - delta, 0)
            if db.get_bind().dialect.name == "sqlite"
            else func.greatest(User.used_bytes - delta, 0)
        )
        .execution_options(synchronize_session=False)
    )


async def log_change(db: AsyncSession, user_id: str, node_id: str, action: str, now: datetime) -> None:
    db.add(Change(user_id=user_id, node_id=node_id, action=action, at=now))
    await db.flush()


async def list_versions(db: AsyncSession, node_id: str) -> Sequence[Version]:
    statement = select(Version).where(Version.node_id == node_id).order_by(Version.created_at.desc(), Version.id)
    return (await db.scalars(statement)).all()


async def get_version(db: AsyncSession, version_id: str) -> Version | None:
    return await db.get(Version, version_id)


async def is_version_pinned(db: AsyncSession, version_id: str) -> bool:
    return bool(await db.scalar(select(Version.pinned).where(Version.id == version_id)))


async def set_version_pinned(db: AsyncSession, version_id: str, pinned: bool) -> bool:
    """Pin or unpin with a row count, not an ORM flush: False when the version is gone (deleted by
    retention or a delete request meanwhile), so the caller answers 404 rather than a stale-data error."""
    changed = await db.execute(update(Version).where(Version.id == version_id).values(pinned=pinned))
    return bool(changed.rowcount)  # type: ignore[attr-defined]


async def lock_owner_for_usage(db: AsyncSession, owner_id: str) -> None:
    """Take the owner row's key-share lock (PostgreSQL ``FOR NO KEY UPDATE``), the lock a quota update
    takes, so that version deletes and writes of one file lock in the same order (no deadlock)."""
    await db.execute(select(User.id).where(User.id == owner_id).with_for_update(key_share=True))


async def delete_unpinned_version(db: AsyncSession, version_id: str) -> bool:
    """Delete one version unless it is pinned; False when this transaction did not delete it."""
    result = await db.execute(
        delete(Version)
        .where(Version.id == version_id, Version.pinned.is_(False))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def nodes_with_versions_over(db: AsyncSession, keep: int, *, after: str, limit: int) -> Sequence[str]:
    """Ids of files holding more than ``keep`` versions, in id order after ``after`` (for thinning)."""
    statement = (
        select(Version.node_id)
        .where(Version.node_id > after)
        .group_by(Version.node_id)
        .having(func.count() > keep)
        .order_by(Version.node_id)
        .limit(limit)
    )
    return (await db.scalars(statement)).all()
