"""The user's tree: look-ups by id and path, folders, listings, rename, move and copy.

Every method asks the policy first (another user's node answers 404). Mutations run in one unit of
work and append to the change log. ``load`` is the one choke point through which every file service
reaches a node.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.base import utcnow
from stowage.db.tables import Node, Version
from stowage.errors import Conflict, FieldError, InvalidInput, NotFound
from stowage.files import direct_repository, listing_repository, repository
from stowage.files.direct_repository import NodeRow
from stowage.files.media_types import has_image_facts
from stowage.files.metadata import apply_patch as apply_metadata_patch
from stowage.files.names import normalise_name, split_path
from stowage.files.schemas import ConflictPolicy, FolderOut, ImageOut, NodeOut, NodePage, SortKey
from stowage.files.services._common import (
    MAX_PAGE,
    FileDeps,
    ItemOutcome,
    charge_or_fail,
    decode_cursor,
    encode_cursor,
    ensure_root,
    listing_key,
    node_access,
    node_out,
    path_of,
    run_item,
    trash_node,
    unique_name,
)
from stowage.files.services._facts import FactsService
from stowage.policy import Action, Owned, Principal, authorize


class TreeService:
    def __init__(self, deps: FileDeps, facts: FactsService) -> None:
        self.deps = deps
        self.db = deps.database
        self.facts = facts

    # --- look-ups -------------------------------------------------------------------------------

    async def root(self, principal: Principal | None) -> NodeOut:
        caller = authorize(principal, Action.FILE_READ)
        async with self.db.transaction() as db:
            return node_out(await ensure_root(db, caller.user_id))

    async def load(
        self,
        db: AsyncSession,
        principal: Principal | None,
        node_id: str,
        action: Action,
        *,
        trashed: bool = False,
        detaches: bool = False,
    ) -> Node:
        """The node, if the caller may act on it; 404 for unknown, foreign or (unless asked) trashed ones.

        Someone else's node is reached through a share on it or an ancestor (the grants are read here,
        on every call); ``detaches`` says the action moves, renames or deletes the node itself."""
        authorize(principal, action)
        node = await repository.get_node(db, node_id)
        if node is None or (node.trashed_at is not None) != trashed:
            raise NotFound("No such file or folder." if not trashed else "No such item in the trash.")
        access = await self.access(principal, node.owner_id, node.id, detaches=detaches)
        if trashed:  # the trash is the owner's alone, whoever deleted the item (see ``policy._granted``)
            access = msgspec.structs.replace(access, in_trash=True)
        authorize(principal, action, access)
        return node

    async def access(
        self, principal: Principal | None, owner_id: str, node_id: str, *, detaches: bool = False
    ) -> Owned:
        """The policy's view of a node for this caller (its owner, and the caller's grants when not theirs)."""
        return await node_access(self.db.direct, principal, owner_id, node_id, detaches=detaches)

    async def load_row(self, principal: Principal | None, node_id: str, action: Action) -> NodeRow:
        """``load`` for the hot paths: the live node as one hand-written read (``direct_repository``)."""
        authorize(principal, action)
        row = await direct_repository.node_by_id(self.db.direct, node_id)
        if row is None or row.trashed_at is not None:
            raise NotFound("No such file or folder.")
        authorize(principal, action, await self.access(principal, row.owner_id, row.id))
        return row

    async def ensure_user_root(self, principal: Principal | None, action: Action) -> None:
        """Make sure the caller's root exists: a cheap read, and a write transaction only the first time."""
        caller = authorize(principal, action)
        async with self.db.session() as db:
            if await repository.get_root(db, caller.user_id) is not None:
                return
        async with self.db.transaction() as db:
            await ensure_root(db, caller.user_id)

    async def get(self, principal: Principal | None, node_id: str) -> NodeOut | FolderOut:
        async with self.db.session() as db:
            node = await self.load(db, principal, node_id, Action.FILE_READ)
        return await self._described(node)

    async def _described(self, node: Node) -> NodeOut | FolderOut:
        """A file as it is; a folder with the totals of its subtree, which may be large: those are counted
        off the event loop."""
        if node.kind != "folder":
            return await self.with_image(node_out(node), node.sha256)
        async with self.db.session(offload=True) as db:
            files, folders, total = await repository.folder_stats(db, node.id)
            path = await path_of(db, node)
        return FolderOut(node=node_out(node), path=path, files=files, folders=folders, bytes=total)

    async def resolve(self, db: AsyncSession, principal: Principal | None, path: str, action: Action) -> Node:
        """Walk ``/a/b/c`` from the caller's root (see ``ensure_user_root``); 404 naming the first missing part."""
        caller = authorize(principal, action)
        root = await repository.get_root(db, caller.user_id)
        if root is None:
            root = await ensure_root(db, caller.user_id)
        node = root
        walked: list[str] = []
        for part in split_path(path):
            if node.kind != "folder":
                raise NotFound(f"/{'/'.join(walked)} is a file, so it has no {part!r} inside.")
            child = await repository.get_live_child(db, node.id, part)
            walked.append(part)
            if child is None:
                raise NotFound(f"Nothing at /{'/'.join(walked)}.")
            node = child
        return node

    async def get_by_path(self, principal: Principal | None, path: str) -> NodeOut | FolderOut:
        await self.ensure_user_root(principal, Action.FILE_READ)
        async with self.db.session() as db:
            node = await self.resolve(db, principal, path, Action.FILE_READ)
        return await self._described(node)

    # --- folders and listings ----------------------------------------------------------------

    async def create_folder(
        self, principal: Principal | None, parent_id: str, name: str, on_conflict: str = "fail"
    ) -> tuple[NodeOut, bool]:
        """Create ``name`` in a folder. Returns (folder, created); ``reuse`` returns an existing one."""
        clean = normalise_name(name)
        async with self.db.transaction() as db:
            parent = await self.load(db, principal, parent_id, Action.FILE_WRITE)
            folder, created = await self._make_folder(db, parent, clean, on_conflict)
            return node_out(folder), created

    async def create_folder_path(self, principal: Principal | None, path: str) -> tuple[NodeOut, bool]:
        """``mkdir -p``: create every missing folder of the path; existing folders are reused."""
        parts = split_path(path, field="body.path")
        if not parts:
            raise InvalidInput("The path names no folder.", errors=[FieldError(field="body.path", message="empty")])
        caller = authorize(principal, Action.FILE_WRITE)
        async with self.db.transaction() as db:
            node = await ensure_root(db, caller.user_id)
            created = False
            for part in parts:
                node, created = await self._make_folder(db, node, part, "reuse")
            return node_out(node), created

    async def _make_folder(self, db: AsyncSession, parent: Node, name: str, on_conflict: str) -> tuple[Node, bool]:
        if parent.kind != "folder":
            raise Conflict(f"{parent.name!r} is a file; folders can only be created inside folders.")
        existing = await repository.get_live_child(db, parent.id, name)
        if existing is not None:
            if on_conflict == "reuse" and existing.kind == "folder":
                return existing, False
            if on_conflict != "rename":
                raise Conflict(f"{name!r} already exists in this folder.", extra={"conflicting_id": existing.id})
            name = await unique_name(await self.db.direct_in(db), parent.id, name)
        now = utcnow()
        folder = Node(
            id=str(uuid.uuid4()),
            owner_id=parent.owner_id,
            parent_id=parent.id,
            kind="folder",
            name=name,
            size=0,
            created_at=now,
            modified_at=now,
        )
        if not await repository.insert_node(db, folder):
            # Another request created the name between our check and our insert.
            winner = await repository.get_live_child(db, parent.id, name)
            if winner is not None and on_conflict == "reuse" and winner.kind == "folder":
                return winner, False
            raise Conflict(
                f"{name!r} was created by someone else at the same moment.",
                extra={"conflicting_id": winner.id if winner else None},
            )
        await repository.log_change(db, parent.owner_id, folder.id, "create", now)
        return folder, True

    async def list_children(
        self,
        principal: Principal | None,
        folder_id: str,
        *,
        sort: SortKey = "name",
        descending: bool = False,
        kind: str | None = None,
        media_type: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> NodePage:
        """One page of a folder's live children (hand-written SQL: apps list folders all the time)."""
        limit = max(1, min(limit, MAX_PAGE))
        key = listing_key(decode_cursor(cursor, 4), sort)
        folder = await self.load_row(principal, folder_id, Action.FILE_READ)
        if folder.kind != "folder":
            raise Conflict(f"{folder.name!r} is a file; only folders have children.")
        reader = self.db.direct
        if key is not None and sort in ("modified", "taken_at"):
            key = (key[0], reader.timestamp(key[1]), key[2], key[3])
        page = await listing_repository.list_children(
            reader,
            folder.id,
            sort=sort,
            descending=descending,
            after=key,
            limit=limit,
            kind=kind,
            media_type_prefix=media_type,
        )
        if page.stale:
            self.facts.schedule(page.stale)
        next_cursor = encode_cursor(page.next_key) if page.next_key is not None else None
        return NodePage(items=page.items, next_cursor=next_cursor)

    async def with_image(self, node: NodeOut, sha256: str | None) -> NodeOut:
        """A file with its ``image`` facts when it is an image (see ``image_for``)."""
        image = await self.image_for(node.media_type, sha256)
        if image is not None:
            node.image = image
        return node

    async def image_for(self, media_type: str | None, sha256: str | None) -> ImageOut | None:
        """The ``image`` facts of one file's content when it is an image: computed now when missing,
        waiting at most ``image_facts_wait_seconds`` (a single file's metadata; listings never wait)."""
        if sha256 is None or not has_image_facts(media_type):
            return None
        return await self.facts.image_of(sha256, wait=self.deps.settings.image_facts_wait_seconds)

    async def with_images(self, nodes: Sequence[tuple[NodeOut, str | None]]) -> None:
        """Give the images among ``(node, content sha256)`` pairs their ``image`` facts, read in one query
        (search results, shared-with-me lists); missing facts are scheduled, never waited for."""
        images = [(node, sha) for node, sha in nodes if sha is not None and has_image_facts(node.media_type)]
        if not images:
            return
        found = await self.facts.images_of(sha for _, sha in images)
        for node, sha in images:
            image = found.get(sha or "")
            if image is not None:
                node.image = image

    # --- rename, move, copy -------------------------------------------------------------------

    async def update(
        self,
        principal: Principal | None,
        node_id: str,
        *,
        name: str | None,
        parent_id: str | None,
        on_conflict: ConflictPolicy,
        starred: bool | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> NodeOut:
        """Rename/move, star and patch metadata in one unit of work: all of it applies, or none."""
        async with self.db.transaction() as db:
            moves = name is not None or parent_id is not None
            node = await self.load(db, principal, node_id, Action.FILE_WRITE, detaches=moves)
            annotated = starred is not None or metadata is not None
            if metadata is not None:
                node.properties = apply_metadata_patch(node.properties, metadata) or None
            if starred is not None:
                node.starred = starred
            place = (node.parent_id, node.name)
            if name is not None or parent_id is not None:
                node = await self._move(db, principal, node, name=name, parent_id=parent_id, on_conflict=on_conflict)
            if annotated and (node.parent_id, node.name) == place:  # a move logs itself; this logs the rest
                await db.flush()
                await repository.log_change(db, node.owner_id, node.id, "update", utcnow())
            return node_out(node)

    async def _move(
        self,
        db: AsyncSession,
        principal: Principal | None,
        node: Node,
        *,
        name: str | None,
        parent_id: str | None,
        on_conflict: ConflictPolicy,
    ) -> Node:
        if node.parent_id is None:
            raise Conflict("The root folder cannot be renamed or moved.")
        target_name = normalise_name(name) if name is not None else node.name
        target_parent = node.parent_id
        if parent_id is not None and parent_id != node.parent_id:
            parent = await self.load(db, principal, parent_id, Action.FILE_WRITE)
            if parent.kind != "folder":
                raise Conflict(f"{parent.name!r} is a file; items can only be moved into folders.")
            if parent.owner_id != node.owner_id:
                raise Conflict(
                    "Items move only within their owner's files (a shared folder's items stay in it); copy instead."
                )
            if node.kind == "folder" and (
                parent.id == node.id or await repository.is_descendant(db, node.id, parent.id)
            ):
                raise Conflict("A folder cannot be moved into itself or one of its subfolders.")
            target_parent = parent.id
        if target_parent == node.parent_id and target_name == node.name:
            return node
        target_name = await self._resolve_conflict(db, target_parent, target_name, on_conflict, moving=node)
        now = utcnow()
        node.parent_id = target_parent
        node.name = target_name
        node.modified_at = now
        await db.flush()
        await repository.log_change(db, node.owner_id, node.id, "move", now)
        return node

    async def _resolve_conflict(
        self, db: AsyncSession, parent_id: str, name: str, on_conflict: ConflictPolicy, *, moving: Node | None
    ) -> str:
        existing = await repository.get_live_child(db, parent_id, name)
        if existing is None or (moving is not None and existing.id == moving.id):
            return name
        if on_conflict == "rename":
            return await unique_name(await self.db.direct_in(db), parent_id, name)
        if on_conflict == "replace":
            if existing.kind == "folder" or (moving is not None and moving.kind == "folder"):
                raise Conflict(
                    f"{name!r} exists; only a file can replace a file.", extra={"conflicting_id": existing.id}
                )
            await trash_node(db, existing)
            return name
        raise Conflict(f"{name!r} already exists in the target folder.", extra={"conflicting_id": existing.id})

    async def copy(
        self,
        principal: Principal | None,
        node_id: str,
        *,
        parent_id: str,
        name: str | None,
        on_conflict: ConflictPolicy,
    ) -> NodeOut:
        """Copy a file or a whole folder. Metadata only: versions share blobs (refcounts go up)."""
        async with self.db.transaction() as db:
            node = await self.load(db, principal, node_id, Action.FILE_READ)
            parent = await self.load(db, principal, parent_id, Action.FILE_WRITE)
            if parent.kind != "folder":
                raise Conflict(f"{parent.name!r} is a file; items can only be copied into folders.")
            if node.kind == "folder" and (
                parent.id == node.id or await repository.is_descendant(db, node.id, parent.id)
            ):
                raise Conflict("A folder cannot be copied into itself or one of its subfolders.")
            target_name = normalise_name(name) if name is not None else node.name
            target_name = await self._resolve_conflict(db, parent.id, target_name, on_conflict, moving=None)
            subtree = await repository.live_subtree_nodes(db, node.id) if node.kind == "folder" else [node]
            added = sum(n.size for n in subtree if n.kind == "file")
            # The copy belongs to the target folder's owner, who pays for it (a recipient copying out of a
            # share into their own folder gets their own copy).
            await charge_or_fail(await self.db.direct_in(db), self.deps.settings, parent.owner_id, added)
            copies = await self._copy_tree(db, subtree, node, parent, target_name)
            return node_out(copies[node.id])

    async def _copy_tree(
        self, db: AsyncSession, subtree: Sequence[Node], top: Node, parent: Node, top_name: str
    ) -> dict[str, Node]:
        parent_id = parent.id
        now = utcnow()
        new_ids = {n.id: str(uuid.uuid4()) for n in subtree}
        by_id = {n.id: n for n in subtree}
        copies: dict[str, Node] = {}
        current_versions = {n.current_version_id for n in subtree if n.current_version_id}
        versions = {
            v.id: v for v in await repository.versions_of_nodes(db, [n.id for n in subtree if n.kind == "file"])
        }

        def depth(n: Node) -> int:
            d = 0
            while n.id != top.id and n.parent_id in by_id:
                n = by_id[n.parent_id]
                d += 1
            return d

        for original in sorted(subtree, key=depth):
            copy = Node(
                id=new_ids[original.id],
                owner_id=parent.owner_id,
                parent_id=parent_id if original.id == top.id else new_ids[original.parent_id or ""],
                kind=original.kind,
                name=top_name if original.id == top.id else original.name,
                size=original.size,
                media_type=original.media_type,
                sha256=original.sha256,
                created_at=now,
                modified_at=original.modified_at,
                properties=original.properties,
                uploaded_at=now if original.kind == "file" else None,
                taken_at=original.taken_at,
            )
            if original.current_version_id and original.current_version_id in current_versions:
                source = versions.get(original.current_version_id)
                if source is not None:
                    version = Version(
                        id=str(uuid.uuid4()),
                        node_id=copy.id,
                        sha256=source.sha256,
                        size=source.size,
                        media_type=source.media_type,
                        author_id=source.author_id,
                        created_at=now,
                    )
                    copy.current_version_id = version.id
                    db.add(copy)
                    await db.flush()
                    db.add(version)
                    await repository.reference_blob(db, source.sha256, source.size, now)
                    copies[original.id] = copy
                    continue
            db.add(copy)
            await db.flush()
            copies[original.id] = copy
        await db.flush()
        await repository.log_change(db, parent.owner_id, copies[top.id].id, "create", now)
        return copies

    async def batch_move(
        self,
        principal: Principal | None,
        ids: Sequence[str],
        parent_id: str,
        on_conflict: ConflictPolicy,
    ) -> list[ItemOutcome]:
        """Move each item in its own unit of work; one failure does not undo the others."""
        authorize(principal, Action.FILE_WRITE)  # the request itself must be allowed at all
        outcomes = []
        for node_id in ids:
            call = self.update(principal, node_id, name=None, parent_id=parent_id, on_conflict=on_conflict)
            outcomes.append(await run_item(node_id, call))
        return outcomes
