"""A file's history: every overwrite keeps the previous content as a version.

List, download, pin, restore (the chosen content becomes a new current version, so history is never
rewritten) and delete old versions. Versions count toward the owner's quota; deleting one releases
its bytes and its blob reference (the blob file goes to the garbage collector).

Retention (``rules.retention``) runs in the transaction that adds a version, so a file never holds
more than the policy allows after a write, and hourly from housekeeping for every file with more
versions than ``version_keep_last`` (thinning depends on age, which changes without writes).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.direct import DirectTransaction
from stowage.db.tables import Node, Version
from stowage.errors import Conflict, NotFound, ServiceUnavailable
from stowage.files import direct_repository, facts_repository, repository
from stowage.files.direct_repository import VersionRow
from stowage.files.schemas import NodeOut, VersionList, VersionOut, etag_of
from stowage.files.services._common import charge_or_fail, node_out
from stowage.files.services._tree import TreeService
from stowage.observability.logging import get_logger
from stowage.policy import Action, Principal
from stowage.rules.retention import Candidate, RetentionPolicy, parse_schedule, versions_to_drop

log = get_logger("stowage.files.versions")
RETENTION_PAGE = 500


def version_out(version: Version, node: Node) -> VersionOut:
    return VersionOut(
        id=version.id,
        size=version.size,
        media_type=version.media_type,
        sha256=version.sha256,
        etag=etag_of(version.sha256),
        author_id=version.author_id,
        created_at=version.created_at,
        current=version.id == node.current_version_id,
        pinned=version.pinned,
    )


def retention_policy(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(keep_last=settings.version_keep_last, stages=parse_schedule(settings.version_thinning))


async def drop_versions(
    tx: DirectTransaction, node_id: str, owner_id: str, versions: Sequence[VersionRow], now: datetime
) -> int:
    """Delete old versions of one file, releasing their blob references and their bytes of quota.

    Concurrency (PostgreSQL): the owner's row is locked first (``FOR NO KEY UPDATE``, the lock the
    quota update takes), the order uploads and restores take (they charge the quota before thinning),
    so a delete and a thinning write of the same file cannot deadlock. Only rows this transaction
    really deletes are released — a concurrent request may have deleted one first, and releasing it
    again would count its blob reference and bytes twice — and a version pinned meanwhile is left
    alone. Returns how many went."""
    if not versions:
        return 0
    await direct_repository.lock_owner_for_usage(tx, owner_id)
    gone = [version for version in versions if await direct_repository.delete_unpinned_version(tx, version.id)]
    if not gone:
        return 0
    await direct_repository.release_blobs(tx, [v.sha256 for v in gone])
    await direct_repository.release_usage(tx, owner_id, sum(v.size for v in gone))
    await direct_repository.log_change(tx, owner_id, node_id, "update", now)
    return len(gone)


async def apply_retention(
    tx: DirectTransaction,
    node_id: str,
    *,
    owner_id: str,
    current_version_id: str | None,
    policy: RetentionPolicy,
    now: datetime,
) -> int:
    """Thin one file's history by the policy; returns how many versions went."""
    versions = await direct_repository.versions_of(tx, node_id)
    if len(versions) <= policy.keep_last + 1:
        return 0
    candidates = [Candidate(id=v.id, created_at=v.created_at, pinned=v.pinned) for v in versions]
    doomed = set(versions_to_drop(candidates, current_id=current_version_id, policy=policy, now=now))
    return await drop_versions(tx, node_id, owner_id, [v for v in versions if v.id in doomed], now)


class VersionService:
    def __init__(self, tree: TreeService) -> None:
        self.tree = tree
        self.db = tree.db

    async def _file(self, db: AsyncSession, principal: Principal | None, node_id: str, action: Action) -> Node:
        node = await self.tree.load(db, principal, node_id, action)
        if node.kind != "file":
            raise Conflict(f"{node.name!r} is a folder; only files have versions.")
        return node

    async def _version(self, db: AsyncSession, node: Node, version_id: str) -> Version:
        version = await repository.get_version(db, version_id)
        if version is None or version.node_id != node.id:
            raise NotFound("This file has no such version.")
        return version

    async def list(self, principal: Principal | None, node_id: str) -> VersionList:
        async with self.db.session() as db:
            node = await self._file(db, principal, node_id, Action.FILE_READ)
            versions = await repository.list_versions(db, node.id)
            return VersionList(items=[version_out(v, node) for v in versions])

    async def restore(self, principal: Principal | None, node_id: str, version_id: str) -> NodeOut:
        """Make an old version current again, as a new version (the history keeps growing)."""
        async with self.db.transaction() as db:
            node = await self._file(db, principal, node_id, Action.FILE_WRITE)
            source = await self._version(db, node, version_id)
            now = utcnow()
            await charge_or_fail(await self.db.direct_in(db), self.tree.deps.settings, node.owner_id, source.size)
            await repository.reference_blob(db, source.sha256, source.size, now)
            caller_id = principal.user_id if principal is not None else None
            version = Version(
                id=str(uuid.uuid4()),
                node_id=node.id,
                sha256=source.sha256,
                size=source.size,
                media_type=source.media_type,
                author_id=caller_id,
                created_at=now,
            )
            db.add(version)
            await db.flush()
            node.current_version_id = version.id
            node.sha256 = source.sha256
            node.size = source.size
            node.media_type = source.media_type
            node.modified_at = now
            node.uploaded_at = now
            known = (await facts_repository.facts_of(await self.db.direct_in(db), [source.sha256])).get(source.sha256)
            node.taken_at = known.taken_at if known is not None else None  # the capture time of that content
            await db.flush()
            await repository.log_change(db, node.owner_id, node.id, "update", now)
            await apply_retention(
                await self.db.direct_in(db),
                node.id,
                owner_id=node.owner_id,
                current_version_id=node.current_version_id,
                policy=retention_policy(self.tree.deps.settings),
                now=now,
            )
            return node_out(node)

    async def set_pinned(self, principal: Principal | None, node_id: str, version_id: str, pinned: bool) -> VersionOut:
        """Pin (never thinned by retention) or unpin a version. An unpinned version becomes subject to
        retention again at the next write or housekeeping run, not in this request."""
        async with self.db.transaction() as db:
            node = await self._file(db, principal, node_id, Action.FILE_WRITE)
            version = await self._version(db, node, version_id)
            if not await repository.set_version_pinned(db, version.id, pinned):
                raise NotFound("This file has no such version.")
            await repository.log_change(db, node.owner_id, node.id, "update", utcnow())
            return version_out(version, node)

    async def delete(self, principal: Principal | None, node_id: str, version_id: str) -> None:
        async with self.db.transaction() as db:
            node = await self._file(db, principal, node_id, Action.FILE_WRITE)
            version = await self._version(db, node, version_id)
            if version.id == node.current_version_id:
                raise Conflict("This is the file's current version; restore another one first or delete the file.")
            if version.pinned:
                raise Conflict("This version is pinned; unpin it first (PATCH with pinned: false).")
            doomed = VersionRow(
                id=version.id,
                sha256=version.sha256,
                size=version.size,
                created_at=version.created_at,
                pinned=version.pinned,
            )
            if not await drop_versions(await self.db.direct_in(db), node.id, node.owner_id, [doomed], utcnow()):
                # Another request deleted or pinned it after it was read here.
                if await repository.is_version_pinned(db, version.id):
                    raise Conflict("This version is pinned; unpin it first (PATCH with pinned: false).")
                raise NotFound("This file has no such version.")

    async def apply_retention_everywhere(self, *, now: datetime | None = None) -> int:
        """Thin every file with more versions than ``version_keep_last`` (housekeeping); one short
        transaction per file so the server keeps serving. Returns how many versions went."""
        policy = retention_policy(self.tree.deps.settings)
        moment = now or utcnow()
        dropped = 0
        after = ""
        while True:
            async with self.db.session(offload=True) as db:
                node_ids = await repository.nodes_with_versions_over(
                    db, policy.keep_last + 1, after=after, limit=RETENTION_PAGE
                )
            if not node_ids:
                return dropped
            for node_id in node_ids:
                try:
                    async with self.db.direct_transaction() as tx:
                        node = await direct_repository.node_by_id(tx, node_id)
                        if node is not None:
                            dropped += await apply_retention(
                                tx,
                                node.id,
                                owner_id=node.owner_id,
                                current_version_id=node.current_version_id,
                                policy=policy,
                                now=moment,
                            )
                except ServiceUnavailable:
                    raise  # the database is gone: the next pass retries everything
                except Exception:
                    # One file's failure (logged with its id) must not stop the thinning of all the others.
                    log.exception("retention_failed", node_id=node_id)
            after = node_ids[-1]
