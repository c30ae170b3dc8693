"""A record of every fsck, gc and housekeeping run, so administrators can see the last result.

The CLI commands and the server's hourly housekeeping write a row when they finish (or fail); the
admin endpoint reads the newest per kind. Reports keep counters and at most ``MAX_LISTED_PROBLEMS``
problems, so one run over a badly damaged store cannot produce an unbounded row.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from stowage.db.engine import Database
from stowage.db.tables import MaintenanceRun
from stowage.maintenance import repository
from stowage.maintenance.fsck_report import FsckReport
from stowage.maintenance.lease import MAINTENANCE_LEASE
from stowage.policy import Action, Principal, authorize

RunKind = Literal["fsck", "gc"]
Trigger = Literal["cli", "housekeeping"]
Outcome = Literal["clean", "repaired", "problems", "failed"]
MAX_LISTED_PROBLEMS = 100
KINDS: tuple[RunKind, ...] = ("fsck", "gc")


class RunOut(msgspec.Struct):
    """One finished run. ``outcome``: clean (nothing found), repaired (everything found was fixed),
    problems (some remain: see ``report.problems``) or failed (the run itself broke: ``report.error``)."""

    id: int
    kind: str
    trigger: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    outcome: str
    report: dict[str, Any]
    # The node that ran it (its ``node_name``; ``/cli`` for a command); null for runs recorded before.
    node: str | None = None


class RunningOut(msgspec.Struct):
    """The maintenance job running now somewhere in the installation: the holder of the maintenance lease."""

    node: str
    since: datetime
    lease_expires_at: datetime  # renewed while the job runs; a dead holder's lease lapses here


class LastRuns(msgspec.Struct):
    fsck: RunOut | None
    gc: RunOut | None
    recent: list[RunOut]
    # A housekeeping pass, gc or fsck running now (on which node, since when), or null.
    running: RunningOut | None = None


def summarise(report: FsckReport, **extra: int) -> tuple[Outcome, dict[str, Any]]:
    """The outcome and the JSON report of a (possibly repairing) consistency check."""
    repaired = set(report.repaired)
    remaining = [p for p in report.problems if p not in repaired]
    listed = [
        {"kind": p.kind, "subject": p.subject, "detail": p.detail, "repaired": p in repaired}
        for p in report.problems[:MAX_LISTED_PROBLEMS]
    ]
    body: dict[str, Any] = {
        "blobs_checked": report.blobs_checked,
        "bytes_hashed": report.bytes_hashed,
        "problems_found": len(report.problems),
        "problems_repaired": len(repaired),
        "problems_remaining": len(remaining),
        "by_kind": dict(Counter(p.kind for p in report.problems)),
        "problems": listed,
        "problems_truncated": len(report.problems) > MAX_LISTED_PROBLEMS,
        **extra,
    }
    outcome: Outcome = "clean" if not report.problems else ("problems" if remaining else "repaired")
    return outcome, body


async def record(
    database: Database,
    *,
    kind: RunKind,
    trigger: Trigger,
    started_at: datetime,
    finished_at: datetime,
    outcome: Outcome,
    report: dict[str, Any],
    node: str | None = None,
) -> None:
    async with database.transaction() as db:
        await repository.add_run(
            db,
            MaintenanceRun(
                kind=kind,
                trigger=trigger,
                started_at=started_at,
                finished_at=finished_at,
                outcome=outcome,
                report=msgspec.json.encode(report).decode(),
                node=node,
            ),
        )


def _out(row: MaintenanceRun) -> RunOut:
    return RunOut(
        id=row.id,
        kind=row.kind,
        trigger=row.trigger,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_seconds=round((row.finished_at - row.started_at).total_seconds(), 3),
        outcome=row.outcome,
        report=msgspec.json.decode(row.report),
        node=row.node,
    )


async def last_runs(database: Database, principal: Principal | None, *, recent: int = 20) -> LastRuns:
    """The newest run of each kind, the newest ``recent`` runs of any kind, and what runs now (administrators
    only)."""
    authorize(principal, Action.ADMIN_SYSTEM_READ)
    async with database.session() as db:
        newest: dict[str, RunOut | None] = {}
        for kind in KINDS:
            row = await repository.last_run(db, kind)
            newest[kind] = _out(row) if row is not None else None
        rows = await repository.recent_runs(db, recent)
        lease = await repository.get_lease(db, MAINTENANCE_LEASE)
    running = None
    if lease is not None and lease.expires_at > datetime.now(UTC):
        running = RunningOut(node=lease.node, since=lease.acquired_at, lease_expires_at=lease.expires_at)
    return LastRuns(fsck=newest["fsck"], gc=newest["gc"], recent=[_out(r) for r in rows], running=running)
