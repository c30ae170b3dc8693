"""How much space the installation uses: what users are charged for, and what the disk really holds.

Users are charged for every version they keep, even when its content is shared (deduplicated) with
other versions or other users; the disk holds each distinct content once. The difference is what
deduplication saves.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import msgspec
from sqlalchemy import func, select

from stowage.db.engine import Database
from stowage.db.tables import Blob, Node, User, Version
from stowage.policy import Action, Principal, authorize


class DiskOut(msgspec.Struct):
    """The filesystem holding the data folder (as ``df`` reports it)."""

    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int


class StorageOut(msgspec.Struct):
    users: int
    files: int
    folders: int
    versions: int
    blobs: int
    charged_bytes: int  # sum of every user's usage: current files, kept versions and trash
    referenced_bytes: int  # sum of the sizes of all versions (equals charged_bytes when consistent)
    stored_bytes: int  # sum of distinct blob sizes: what the blob store really holds
    dedup_saved_bytes: int
    disk: DiskOut


async def storage_usage(database: Database, data_dir: Path, principal: Principal | None) -> StorageOut:
    """Installation-wide totals (administrators only)."""
    authorize(principal, Action.ADMIN_SYSTEM_READ)
    async with database.session() as db:
        users, charged = (await db.execute(select(func.count(), func.coalesce(func.sum(User.used_bytes), 0)))).one()
        files, folders = (
            await db.execute(
                select(
                    func.count().filter(Node.kind == "file"),
                    func.count().filter(Node.kind == "folder", Node.parent_id.is_not(None)),
                )
            )
        ).one()
        versions, referenced = (await db.execute(select(func.count(), func.coalesce(func.sum(Version.size), 0)))).one()
        blobs, stored = (await db.execute(select(func.count(), func.coalesce(func.sum(Blob.size), 0)))).one()
    usage = await asyncio.to_thread(shutil.disk_usage, data_dir)
    return StorageOut(
        users=int(users),
        files=int(files),
        folders=int(folders),
        versions=int(versions),
        blobs=int(blobs),
        charged_bytes=int(charged),
        referenced_bytes=int(referenced),
        stored_bytes=int(stored),
        dedup_saved_bytes=max(0, int(referenced) - int(stored)),
        disk=DiskOut(path=str(data_dir), total_bytes=usage.total, used_bytes=usage.used, free_bytes=usage.free),
    )
