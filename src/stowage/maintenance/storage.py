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

from stowage.db.engine import Database
from stowage.maintenance import repository
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
    async with database.session(offload=True) as db:
        users, charged = await repository.user_totals(db)
        files, folders = await repository.node_totals(db)
        versions, referenced = await repository.version_totals(db)
        blobs, stored = await repository.blob_totals(db)
    usage = await asyncio.to_thread(shutil.disk_usage, data_dir)
    return StorageOut(
        users=users,
        files=files,
        folders=folders,
        versions=versions,
        blobs=blobs,
        charged_bytes=charged,
        referenced_bytes=referenced,
        stored_bytes=stored,
        dedup_saved_bytes=max(0, referenced - stored),
        disk=DiskOut(path=str(data_dir), total_bytes=usage.total, used_bytes=usage.used, free_bytes=usage.free),
    )
