"""Consistency check of the metadata database against the blob store, with optional repairs.

What is checked (``Problem.kind``):

* ``missing_blob`` — a blob row whose file is not in the store (not repairable: the bytes are gone).
* ``corrupt_blob`` — a blob file whose size differs from its row or (with ``rehash``) whose content does
  not hash to its name (not repairable).
* ``wrong_refcount`` — a blob row whose refcount is not the number of versions referencing it
  (repair: set it to the true count).
* ``unreferenced_blob_row`` — a blob row no version references (repair: delete the row, and its file
  once that is older than the grace period).
* ``dangling_version`` / ``version_size_mismatch`` — a version naming a blob that has no row, or whose
  size differs from that blob's (not repairable).
* ``node_version_mismatch`` — a file whose ``current_version_id`` is not one of its versions, or whose
  sha256/size differ from that version's (repair: reset the node from the version, or point it at its
  newest version).
* ``wrong_usage`` — a user's ``used_bytes`` differs from the sizes of all versions of the nodes they own,
  live and trashed (repair: set it to that sum).
* ``duplicate_root`` — a user with more than one root folder (files under all but one are unreachable by
  path; not repairable automatically).
* ``orphan_blob`` — a blob file without a row (neither ``blobs`` nor a cached image derivative in
  ``image_derivatives`` names it), last touched longer ago than ``grace_seconds`` (repair: delete the
  file; this is also how evicted derivatives leave the disk). Younger ones are not reported: they belong
  to uploads in flight (the write path publishes the file before the transaction that records it) or to
  killed uploads that ``gc`` collects.

Everything is read in keyset pages of ``PAGE_SIZE`` rows, each page in its own short read session and
with one statement, so the check runs in bounded memory and sees a consistent snapshot of each page
while the server keeps serving. A repair runs in its own short write transaction that locks the row it
fixes (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write transactions are exclusive anyway) and
re-checks the condition with a subquery inside the UPDATE or DELETE, so a write that raced with the
check is never undone.

Blob files are deleted only when older than the grace period, through the store's ``remove_if_old``
(the local store's quarantine rename closes the race with a deduplicating upload; the S3 store re-stamps
a blob a deduplicating upload is about to reference). The checks' queries
stay here rather than in ``repository.py``: they are the rules being checked.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from sqlalchemy import CursorResult, delete, exists, func, select, update
from sqlalchemy.orm import aliased

from stowage.blobs import BlobNotFound, BlobStore
from stowage.db.engine import Database
from stowage.db.tables import Blob, Node, User, Version
from stowage.maintenance import repository
from stowage.maintenance.fsck_report import (
    CORRUPT_BLOB,
    DANGLING_VERSION,
    DUPLICATE_ROOT,
    MISSING_BLOB,
    NODE_VERSION_MISMATCH,
    ORPHAN_BLOB,
    UNREFERENCED_BLOB_ROW,
    VERSION_SIZE_MISMATCH,
    WRONG_REFCOUNT,
    WRONG_USAGE,
    FsckReport,
    Problem,
)

PAGE_SIZE = 1000


async def fsck(
    database: Database,
    store: BlobStore,
    *,
    rehash: bool = True,
    repair: bool = False,
    grace_seconds: float = 3600,
    on_blob: Callable[[], None] | None = None,  # called per blob row checked: the CLI's progress bar
) -> FsckReport:
    """Check the whole installation; with ``repair`` fix what is repairable (see the module docstring)."""
    if grace_seconds < 0:
        raise ValueError(f"grace_seconds must be 0 or more, got {grace_seconds}")
    checker = _Checker(database, store, rehash=rehash, repair=repair, grace_seconds=grace_seconds)
    checker.on_blob = on_blob
    started = datetime.now(UTC)
    await checker.check_blobs()
    await checker.check_versions()
    await checker.check_nodes()
    await checker.check_usage()
    await checker.check_roots()
    await checker.check_orphans()
    return FsckReport(
        started_at=started,
        finished_at=datetime.now(UTC),
        blobs_checked=checker.blobs_checked,
        bytes_hashed=checker.bytes_hashed,
        problems=checker.problems,
        repaired=checker.repaired,
    )


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


class _Checker:
    def __init__(
        self, database: Database, store: BlobStore, *, rehash: bool, repair: bool, grace_seconds: float
    ) -> None:
        self.db = database
        self.store = store
        self.rehash = rehash
        self.repair = repair
        self.grace_seconds = grace_seconds
        self.blobs_checked = 0
        self.bytes_hashed = 0
        self.problems: list[Problem] = []
        self.repaired: list[Problem] = []
        self.on_blob: Callable[[], None] | None = None

    def _cutoff(self) -> float:
        """Files last modified at or before this (epoch seconds) are past the grace period."""
        return time.time() - self.grace_seconds

    async def _report(self, problem: Problem, fix: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Record ``problem``; with repairs on, run ``fix`` (True if it repaired, False if nothing was left to do)."""
        self.problems.append(problem)
        if fix is not None and self.repair and problem.repairable and await fix():
            self.repaired.append(problem)

    async def _pages(self, statement_for: Any) -> AsyncIterator[Sequence[Any]]:
        """Keyset pages: ``statement_for(after)`` selects rows whose first column is after ``after``."""
        after = ""
        while True:
            async with self.db.session(offload=True) as db:
                rows = (await db.execute(statement_for(after))).all()
            if rows:
                yield rows
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    # --- blob rows ---------------------------------------------------------------------------------

    async def check_blobs(self) -> None:
        def page(after: str) -> Any:
            return (
                select(Blob.sha256, Blob.size, Blob.refcount, repository.true_refcount().label("actual"))
                .where(Blob.sha256 > after)
                .order_by(Blob.sha256)
                .limit(PAGE_SIZE)
            )

        async for rows in self._pages(page):
            for sha, size, refcount, actual in rows:
                self.blobs_checked += 1
                await self._check_blob_file(sha, int(size))
                if refcount != actual:
                    await self._report(
                        Problem(
                            kind=WRONG_REFCOUNT,
                            subject=sha,
                            detail=f"refcount is {refcount} but {actual} versions reference the blob",
                            repairable=True,
                        ),
                        partial(self._fix_refcount, sha),
                    )
                if actual == 0:
                    await self._report(
                        Problem(
                            kind=UNREFERENCED_BLOB_ROW,
                            subject=sha,
                            detail=f"no version references the blob (refcount {refcount})",
                            repairable=True,
                        ),
                        partial(self._drop_unreferenced_row, sha),
                    )
                if self.on_blob is not None:
                    self.on_blob()

    async def _check_blob_file(self, sha: str, size: int) -> None:
        try:
            stored = await self.store.size(sha)
        except BlobNotFound:
            if await self._row_exists(sha):  # not just purged, with its file, while we looked
                await self._report(
                    Problem(kind=MISSING_BLOB, subject=sha, detail="the blob file is missing", repairable=False)
                )
            return
        if stored != size:
            await self._report(
                Problem(
                    kind=CORRUPT_BLOB,
                    subject=sha,
                    detail=f"the file has {stored} bytes, the blob row says {size}",
                    repairable=False,
                )
            )
            return
        if not self.rehash:
            return
        try:
            intact = await self.store.verify(sha)
        except BlobNotFound:
            if await self._row_exists(sha):
                await self._report(
                    Problem(kind=MISSING_BLOB, subject=sha, detail="the blob file is missing", repairable=False)
                )
            return
        self.bytes_hashed += stored
        if not intact:
            await self._report(
                Problem(
                    kind=CORRUPT_BLOB,
                    subject=sha,
                    detail="the content does not hash to its name",
                    repairable=False,
                )
            )

    async def _row_exists(self, sha: str) -> bool:
        async with self.db.session(offload=True) as db:
            return await repository.blob_row_exists(db, sha)

    async def _fix_refcount(self, sha: str) -> bool:
        async with self.db.transaction() as db:
            # The lock makes the count below see every committed version: each write that adds or
            # removes a version of this blob also updates (so locks) this row in the same transaction.
            if await repository.lock_blob(db, sha) is None:
                return False
            actual = repository.true_refcount()
            result = await db.execute(
                update(Blob)
                .where(Blob.sha256 == sha, Blob.refcount != actual)
                .values(refcount=actual)
                .execution_options(synchronize_session=False)
            )
            return _rowcount(result) > 0

    async def _drop_unreferenced_row(self, sha: str) -> bool:
        async with self.db.transaction() as db:
            if await repository.lock_blob(db, sha) is None:
                return False
            result = await db.execute(
                delete(Blob)
                .where(Blob.sha256 == sha, ~exists().where(Version.sha256 == Blob.sha256))
                .execution_options(synchronize_session=False)
            )
            if _rowcount(result) == 0:
                return False
        # The file goes once it is past the grace period (now, or as an orphan on a later run).
        await self._remove_blob_file(sha)
        return True

    # --- versions ------------------------------------------------------------------------------------

    async def check_versions(self) -> None:
        def page(after: str) -> Any:
            return (
                select(Version.id, Version.sha256, Version.size, Blob.size)
                .outerjoin(Blob, Blob.sha256 == Version.sha256)
                .where(Version.id > after)
                .order_by(Version.id)
                .limit(PAGE_SIZE)
            )

        async for rows in self._pages(page):
            for version_id, sha, size, blob_size in rows:
                if blob_size is None:
                    await self._report(
                        Problem(
                            kind=DANGLING_VERSION,
                            subject=version_id,
                            detail=f"the version names blob {sha}, which has no row",
                            repairable=False,
                        )
                    )
                elif blob_size != size:
                    await self._report(
                        Problem(
                            kind=VERSION_SIZE_MISMATCH,
                            subject=version_id,
                            detail=f"the version says {size} bytes, its blob {sha} has {blob_size}",
                            repairable=False,
                        )
                    )

    # --- file nodes ----------------------------------------------------------------------------------

    async def check_nodes(self) -> None:
        current = aliased(Version)

        def page(after: str) -> Any:
            return (
                select(
                    Node.id,
                    Node.sha256,
                    Node.size,
                    Node.current_version_id,
                    current.node_id,
                    current.sha256,
                    current.size,
                )
                .outerjoin(current, current.id == Node.current_version_id)
                .where(Node.kind == "file", Node.id > after)
                .order_by(Node.id)
                .limit(PAGE_SIZE)
            )

        async for rows in self._pages(page):
            for node_id, sha, size, version_id, version_node, version_sha, version_size in rows:
                if version_id is None or version_node != node_id:
                    has_versions = await self._has_versions(node_id)
                    detail = (
                        "the file has no current version"
                        if version_id is None
                        else f"the current version {version_id} is not one of the file's versions"
                    )
                    await self._report(
                        Problem(
                            kind=NODE_VERSION_MISMATCH,
                            subject=node_id,
                            detail=detail + ("" if has_versions else ", and it has none"),
                            repairable=has_versions,
                        ),
                        partial(self._fix_node, node_id),
                    )
                elif sha != version_sha or size != version_size:
                    await self._report(
                        Problem(
                            kind=NODE_VERSION_MISMATCH,
                            subject=node_id,
                            detail=(
                                f"the file says sha256 {sha} and {size} bytes, its current version "
                                f"{version_id} says {version_sha} and {version_size} bytes"
                            ),
                            repairable=True,
                        ),
                        partial(self._fix_node, node_id),
                    )

    async def _has_versions(self, node_id: str) -> bool:
        async with self.db.session(offload=True) as db:
            found = await db.scalar(select(Version.id).where(Version.node_id == node_id).limit(1))
            return found is not None

    async def _fix_node(self, node_id: str) -> bool:
        async with self.db.transaction() as db:
            row = (
                await db.execute(
                    select(Node.current_version_id, Node.sha256, Node.size)
                    .where(Node.id == node_id, Node.kind == "file")
                    .with_for_update()
                )
            ).first()
            if row is None:
                return False
            current_id, sha, size = row
            versions = (
                await db.execute(
                    select(Version.id, Version.sha256, Version.size, Version.media_type)
                    .where(Version.node_id == node_id)
                    .order_by(Version.created_at.desc(), Version.id.desc())
                )
            ).all()
            if not versions:
                return False
            target = next((v for v in versions if v[0] == current_id), None)
            values: dict[str, Any]
            if target is None:
                target = versions[0]
                values = {"current_version_id": target[0], "sha256": target[1], "size": target[2]}
                values["media_type"] = target[3]
            elif (sha, size) != (target[1], target[2]):
                values = {"sha256": target[1], "size": target[2]}
            else:
                return False
            await db.execute(
                update(Node).where(Node.id == node_id).values(**values).execution_options(synchronize_session=False)
            )
            return True

    # --- usage ---------------------------------------------------------------------------------------

    async def check_usage(self) -> None:
        def page(after: str) -> Any:
            return (
                select(User.id, User.used_bytes, repository.true_usage().label("actual"))
                .where(User.id > after)
                .order_by(User.id)
                .limit(PAGE_SIZE)
            )

        async for rows in self._pages(page):
            for user_id, used, actual in rows:
                if int(used) != int(actual):
                    await self._report(
                        Problem(
                            kind=WRONG_USAGE,
                            subject=user_id,
                            detail=f"used_bytes is {used} but the user's versions take {actual} bytes",
                            repairable=True,
                        ),
                        partial(self._fix_usage, user_id),
                    )

    async def _fix_usage(self, user_id: str) -> bool:
        async with self.db.transaction() as db:
            # Every write that adds or removes versions also charges or releases (so locks) this row.
            locked = await db.scalar(select(User.id).where(User.id == user_id).with_for_update())
            if locked is None:
                return False
            actual = repository.true_usage()
            result = await db.execute(
                update(User)
                .where(User.id == user_id, User.used_bytes != actual)
                .values(used_bytes=actual)
                .execution_options(synchronize_session=False)
            )
            return _rowcount(result) > 0

    # --- tree ------------------------------------------------------------------------------------------

    async def check_roots(self) -> None:
        def page(after: str) -> Any:
            return (
                select(Node.owner_id, func.count())
                .where(Node.parent_id.is_(None), Node.owner_id > after)
                .group_by(Node.owner_id)
                .order_by(Node.owner_id)
                .limit(PAGE_SIZE)
            )

        async for rows in self._pages(page):
            for user_id, roots in rows:
                if roots > 1:
                    await self._report(
                        Problem(
                            kind=DUPLICATE_ROOT,
                            subject=user_id,
                            detail=f"the user has {roots} root folders; only one is reachable by path",
                            repairable=False,
                        )
                    )

    # --- orphan files --------------------------------------------------------------------------------

    async def check_orphans(self) -> None:
        """Blob files without a row, past the grace period. Needs a store that knows ages (``modified_at``)."""
        batch: list[str] = []
        async for sha in self.store.iter_hashes():
            batch.append(sha)
            if len(batch) >= PAGE_SIZE:
                await self._check_orphan_batch(batch)
                batch = []
        if batch:
            await self._check_orphan_batch(batch)

    async def _check_orphan_batch(self, hashes: list[str]) -> None:
        async with self.db.session(offload=True) as db:
            known = await repository.named_blobs(db, hashes)
        cutoff = self._cutoff()
        for sha in hashes:
            if sha in known:
                continue
            mtime = await self.store.modified_at(sha)
            if mtime is None or mtime > cutoff:  # None: gone, or a store without ages (nothing to tell)
                continue
            age = time.time() - mtime
            await self._report(
                Problem(
                    kind=ORPHAN_BLOB,
                    subject=sha,
                    detail=f"the blob file has no row and was last touched {age:.0f}s ago",
                    repairable=True,
                ),
                partial(self._remove_orphan, sha),
            )

    async def _remove_orphan(self, sha: str) -> bool:
        if await self._row_exists(sha):
            return False
        return await self._remove_blob_file(sha)

    async def _remove_blob_file(self, sha: str) -> bool:
        """Delete the blob file if it is past the grace period and (still) has no row; True if deleted."""
        return await self.store.remove_if_old(sha, self._cutoff(), still_unreferenced=partial(self._row_missing, sha))

    async def _row_missing(self, sha: str) -> bool:
        return not await self._row_exists(sha)
