"""``stowage gc --dry-run``: what a collection would remove, found without removing anything.

The check runs without repairs; every repairable problem it finds is what ``gc`` would fix (orphan
blob files past the grace period, unreferenced rows, counters), and the upload spools past their age
are counted, not deleted.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable

from stowage.blobs import BlobStore, LocalBlobStore
from stowage.blobs.local_removal import TEMP_PREFIX, TEMP_SUFFIX
from stowage.db.engine import Database
from stowage.maintenance.fsck import fsck
from stowage.maintenance.fsck_report import FsckReport
from stowage.maintenance.housekeeping import STALE_TEMP_SECONDS


async def preview(
    database: Database, store: BlobStore, *, grace_seconds: float, on_blob: Callable[[], None] | None = None
) -> tuple[FsckReport, int]:
    """The report of a check without repairs, and how many stale spools ``gc`` would delete."""
    report = await fsck(database, store, rehash=False, repair=False, grace_seconds=grace_seconds, on_blob=on_blob)
    stale = await asyncio.to_thread(_count_stale_temp, store, time.time() - STALE_TEMP_SECONDS)
    return report, stale


def _count_stale_temp(store: BlobStore, cutoff: float) -> int:
    if not isinstance(store, LocalBlobStore):
        return 0  # other stores keep no local spools
    count = 0
    try:
        with os.scandir(store.temp_dir) as entries:
            for entry in entries:
                if not (entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_mtime <= cutoff:
                    count += 1
    except FileNotFoundError:
        return 0
    return count
