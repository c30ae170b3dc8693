"""The server's hourly upkeep, and the recorded runs of ``stowage fsck`` / ``stowage gc``.

Each housekeeping pass purges trash past its retention (never earlier), thins old versions by the
retention policy, removes upload spools abandoned for a day and resumable uploads past their expiry
(with their staged bytes), and collects garbage: blob files without
a row, older than the grace period, with a metadata-only consistency pass that repairs what is safe to
repair. The pass is recorded as a ``gc`` run (trigger ``housekeeping``) for the admin endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from stowage.blobs import BlobStore
from stowage.config import Settings
from stowage.db.engine import Database
from stowage.files.services import FileServices
from stowage.maintenance import runs
from stowage.maintenance.fsck import fsck
from stowage.maintenance.fsck_report import FsckReport
from stowage.observability.logging import get_logger

log = get_logger("stowage.maintenance")

# Removes expired resumable uploads and returns how many (``uploads.sessions.remove_expired``); passed in
# by the application so this package does not depend on the uploads domain.
ExpireUploads = Callable[[], Awaitable[int]]

HOUSEKEEPING_INTERVAL_SECONDS = 3600
STALE_TEMP_SECONDS = 24 * 3600


async def housekeeping_pass(
    files: FileServices, settings: Settings, *, expire_uploads: ExpireUploads | None = None
) -> FsckReport:
    database = files.deps.database

    async def work() -> tuple[FsckReport, dict[str, int]]:
        counts = {
            "trash_purged": await files.trash.purge_expired(timedelta(days=settings.trash_retention_days)),
            "versions_thinned": await files.versions.apply_retention_everywhere(),
            "temp_files_removed": await files.deps.store.remove_stale_temp(STALE_TEMP_SECONDS),
            "uploads_expired": await expire_uploads() if expire_uploads is not None else 0,
        }
        return await fsck(database, files.deps.store, rehash=False, repair=True), counts

    report, counts = await _recorded(database, "gc", "housekeeping", work)
    log.info("housekeeping", **counts, problems=len(report.problems), repaired=len(report.repaired))
    return report


async def housekeeping_loop(
    files: FileServices, settings: Settings, *, expire_uploads: ExpireUploads | None = None
) -> None:
    """Hourly, the first pass an hour after start (a restart loop must not hammer the store)."""
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_SECONDS)
        try:
            await housekeeping_pass(files, settings, expire_uploads=expire_uploads)
        except Exception:
            log.exception("housekeeping_failed")


async def checked_run(
    database: Database,
    store: BlobStore,
    *,
    kind: runs.RunKind,
    rehash: bool,
    repair: bool,
    grace_seconds: float,
    on_blob: Callable[[], None] | None = None,
) -> tuple[FsckReport, int]:
    """``stowage fsck`` / ``stowage gc``: the check (gc also removes stale spools), recorded either way."""

    async def work() -> tuple[FsckReport, dict[str, int]]:
        removed = await store.remove_stale_temp(STALE_TEMP_SECONDS) if repair else 0
        report = await fsck(database, store, rehash=rehash, repair=repair, grace_seconds=grace_seconds, on_blob=on_blob)
        return report, {"temp_files_removed": removed}

    report, counts = await _recorded(database, kind, "cli", work)
    return report, counts["temp_files_removed"]


async def _recorded(
    database: Database,
    kind: runs.RunKind,
    trigger: runs.Trigger,
    work: Callable[[], Awaitable[tuple[FsckReport, dict[str, int]]]],
) -> tuple[FsckReport, dict[str, int]]:
    """Run one maintenance job and record its outcome (a failure too, then re-raised)."""
    started = datetime.now(UTC)
    try:
        report, counts = await work()
    except Exception as exc:
        await _record_failure(database, kind, trigger, started, exc)
        raise
    outcome, body = runs.summarise(report, **counts)
    await runs.record(
        database,
        kind=kind,
        trigger=trigger,
        started_at=started,
        finished_at=datetime.now(UTC),
        outcome=outcome,
        report=body,
    )
    return report, counts


async def _record_failure(
    database: Database, kind: runs.RunKind, trigger: runs.Trigger, started: datetime, exc: Exception
) -> None:
    try:
        await runs.record(
            database,
            kind=kind,
            trigger=trigger,
            started_at=started,
            finished_at=datetime.now(UTC),
            outcome="failed",
            report={"error": f"{type(exc).__name__}: {exc}"},
        )
    except Exception:
        log.exception("maintenance_run_not_recorded", kind=kind)
