"""The server's hourly upkeep, and the recorded runs of ``stowage fsck`` / ``stowage gc``.

Each housekeeping pass purges trash past its retention (never earlier), thins old versions by the
retention policy, removes upload spools abandoned for a day and resumable uploads past their expiry
(with their staged bytes), schedules image facts that are missing (``FactsService.backfill``), and
collects garbage: blob files without
a row, older than the grace period, with a metadata-only consistency pass that repairs what is safe to
repair. The pass is recorded as a ``gc`` run (trigger ``housekeeping``, with the node that ran it) for the
admin endpoint.

**Once at a time, once per interval, in the whole installation.** Every worker of every node wakes up
about once per lease lifetime (``maintenance_lease_seconds``, with jitter) and asks whether a pass is due
(the newest recorded housekeeping run started more than ``housekeeping_interval_seconds`` ago). If so it
tries the ``maintenance`` lease (``maintenance.lease``); the one that gets it checks again (another may
have just finished) and runs the pass while renewing the lease. ``stowage gc`` and ``stowage fsck``
(``checked_run``) wait for the same lease, so they never run beside a pass either. A node that dies
mid-pass records nothing: once its lease lapses, the next worker to wake up finds the pass still due and
runs it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from stowage.blobs import BlobStore
from stowage.config import Settings
from stowage.db.engine import Database
from stowage.files.services import FileServices
from stowage.maintenance import repository, runs
from stowage.maintenance.fsck import fsck
from stowage.maintenance.fsck_report import FsckReport
from stowage.maintenance.lease import MAINTENANCE_LEASE, Lease, run_holding
from stowage.observability.logging import get_logger

log = get_logger("stowage.maintenance")

# Removes expired resumable uploads and returns how many (``uploads.sessions.remove_expired``); passed in
# by the application so this package does not depend on the uploads domain.
ExpireUploads = Callable[[], Awaitable[int]]

STALE_TEMP_SECONDS = 24 * 3600
CLI_NODE_SUFFIX = "/cli"


def maintenance_lease(database: Database, settings: Settings, *, cli: bool = False) -> Lease:
    """This process's handle on the installation's maintenance lease."""
    node = settings.effective_node_name + (CLI_NODE_SUFFIX if cli else "")
    return Lease(database, MAINTENANCE_LEASE, node=node, seconds=settings.maintenance_lease_seconds)


async def housekeeping_pass(
    files: FileServices, settings: Settings, *, expire_uploads: ExpireUploads | None = None, node: str | None = None
) -> FsckReport:
    """One pass, unconditionally (callers hold the maintenance lease: see ``housekeeping_if_due``)."""
    database = files.deps.database
    log.info("housekeeping_started", node=node)

    async def work() -> tuple[FsckReport, dict[str, int]]:
        counts = {
            "trash_purged": await files.trash.purge_expired(timedelta(days=settings.trash_retention_days)),
            "versions_thinned": await files.versions.apply_retention_everywhere(),
            "temp_files_removed": await files.deps.store.remove_stale_temp(STALE_TEMP_SECONDS),
            "uploads_expired": await expire_uploads() if expire_uploads is not None else 0,
            "image_facts_scheduled": await files.facts.backfill(),
        }
        return await fsck(database, files.deps.store, rehash=False, repair=True), counts

    report, counts = await _recorded(database, "gc", "housekeeping", work, node=node)
    log.info("housekeeping", node=node, **counts, problems=len(report.problems), repaired=len(report.repaired))
    return report


async def _pass_due(database: Database, settings: Settings) -> bool:
    """No recorded housekeeping run started within the interval (a pass that died recorded nothing)."""
    async with database.session() as db:
        last = await repository.last_started(db, "gc", "housekeeping")
    return last is None or last <= datetime.now(UTC) - timedelta(seconds=settings.housekeeping_interval_seconds)


async def housekeeping_if_due(
    files: FileServices, settings: Settings, lease: Lease, *, expire_uploads: ExpireUploads | None = None
) -> FsckReport | None:
    """Run a pass if one is due and this process gets the lease; None when it ran none."""
    database = files.deps.database
    if not await _pass_due(database, settings) or not await lease.acquire():
        return None

    async def work() -> FsckReport | None:
        if not await _pass_due(database, settings):  # another node finished one just before
            return None
        return await housekeeping_pass(files, settings, expire_uploads=expire_uploads, node=lease.node)

    return await run_holding(lease, work)


async def housekeeping_loop(
    files: FileServices, settings: Settings, *, expire_uploads: ExpireUploads | None = None
) -> None:
    """Wake about once per lease lifetime (jittered, so workers do not ask together) and run a pass if one
    is due and this process wins the lease. The first check comes one period after start."""
    lease = maintenance_lease(files.deps.database, settings)
    period = min(settings.housekeeping_interval_seconds, settings.maintenance_lease_seconds)
    while True:
        await asyncio.sleep(period * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not security
        try:
            await housekeeping_if_due(files, settings, lease, expire_uploads=expire_uploads)
        except Exception:
            log.exception("housekeeping_failed", node=lease.node)


async def checked_run(
    database: Database,
    store: BlobStore,
    *,
    kind: runs.RunKind,
    rehash: bool,
    repair: bool,
    grace_seconds: float,
    exclusive: bool = True,
    on_blob: Callable[[], None] | None = None,
) -> tuple[FsckReport, int]:
    """``stowage fsck`` / ``stowage gc``: the check (gc also removes stale spools), recorded either way.

    ``exclusive`` (the default): first wait until no housekeeping pass or other check runs anywhere in
    the installation — saying in the log whom it waits for — and hold the maintenance lease while it
    runs, so a command started beside running servers never races their housekeeping."""
    lease = maintenance_lease(database, database.settings, cli=True) if exclusive else None

    async def work() -> tuple[FsckReport, dict[str, int]]:
        removed = await store.remove_stale_temp(STALE_TEMP_SECONDS) if repair else 0
        report = await fsck(database, store, rehash=rehash, repair=repair, grace_seconds=grace_seconds, on_blob=on_blob)
        return report, {"temp_files_removed": removed}

    async def recorded() -> tuple[FsckReport, dict[str, int]]:
        return await _recorded(database, kind, "cli", work, node=lease.node if lease is not None else None)

    if lease is None:
        report, counts = await recorded()
    else:
        await lease.wait_and_acquire()
        report, counts = await run_holding(lease, recorded)
    return report, counts["temp_files_removed"]


async def _recorded(
    database: Database,
    kind: runs.RunKind,
    trigger: runs.Trigger,
    work: Callable[[], Awaitable[tuple[FsckReport, dict[str, int]]]],
    *,
    node: str | None = None,
) -> tuple[FsckReport, dict[str, int]]:
    """Run one maintenance job and record its outcome (a failure too, then re-raised)."""
    started = datetime.now(UTC)
    try:
        report, counts = await work()
    except Exception as exc:
        await _record_failure(database, kind, trigger, started, exc, node=node)
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
        node=node,
    )
    return report, counts


async def _record_failure(
    database: Database,
    kind: runs.RunKind,
    trigger: runs.Trigger,
    started: datetime,
    exc: Exception,
    *,
    node: str | None,
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
            node=node,
        )
    except Exception:
        log.exception("maintenance_run_not_recorded", kind=kind)
