"""``stowage fsck`` and ``stowage gc``: the consistency check and garbage collection, from the shell.

Text output is one line per problem (kind, subject, the owner and path of each damaged file, detail)
and a summary; ``--json`` prints the same as one document for scripts and monitoring.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from stowage.blobs.local import MIN_GC_GRACE_SECONDS
from stowage.cli._common import ConfigOption, JsonOption, YesOption, confirm_destructive, echo_json, load
from stowage.cli._progress import Tracker, progress
from stowage.config import ensure_data_dir


def fsck_command(
    config: ConfigOption = None,
    repair: Annotated[bool, typer.Option("--repair", help="Repair what is safely repairable.")] = False,
    rehash: Annotated[bool, typer.Option("--rehash/--no-rehash", help="Re-hash every blob (slow).")] = True,
    as_json: JsonOption = False,
    yes: YesOption = False,
) -> None:
    """Check blobs, versions, reference counts and usage; exit 1 when problems remain."""
    if repair:
        confirm_destructive("repair the database and delete orphaned blob files", yes=yes)
    code = _run(config, "fsck", repair=repair, rehash=rehash, grace_seconds=3600, dry_run=False, as_json=as_json)
    raise typer.Exit(code=code)


def gc_command(
    config: ConfigOption = None,
    grace: Annotated[
        float,
        typer.Option(
            min=MIN_GC_GRACE_SECONDS,
            help="Only remove files untouched for this many seconds (at least 120: an upload that reuses a "
            "stored blob refreshes its age only once a minute).",
        ),
    ] = 3600,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be removed or repaired; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove blob files no version references and repair metadata drift (no re-hashing)."""
    code = _run(config, "gc", repair=True, rehash=False, grace_seconds=grace, dry_run=dry_run, as_json=as_json)
    raise typer.Exit(code=code)


def _run(
    config: Path | None,
    kind: Literal["fsck", "gc"],
    *,
    repair: bool,
    rehash: bool,
    grace_seconds: float,
    dry_run: bool,
    as_json: bool,
) -> int:
    """Run the check against the configured installation (recorded for the admin endpoint unless a dry run)."""
    from stowage.blobs import create_blob_store
    from stowage.db import migrate as migrations
    from stowage.db.engine import Database
    from stowage.maintenance import repository
    from stowage.maintenance.fsck_locate import locate
    from stowage.maintenance.gc_preview import preview
    from stowage.maintenance.housekeeping import checked_run
    from stowage.observability.logging import configure_logging

    settings = load(config)
    configure_logging(settings)
    ensure_data_dir(settings)

    async def run(tracker: Tracker) -> int:
        database = Database(settings)
        try:
            await migrations.upgrade(database)
            store = create_blob_store(settings)
            async with database.session() as db:
                tracker.start(f"{kind}: blobs", await repository.count_blob_rows(db))
            tick = tracker.advance
            try:
                await store.start()
                if dry_run:
                    report, temp_files = await preview(database, store, grace_seconds=grace_seconds, on_blob=tick)
                else:
                    report, temp_files = await checked_run(
                        database,
                        store,
                        kind=kind,
                        rehash=rehash,
                        repair=repair,
                        grace_seconds=grace_seconds,
                        on_blob=tick,
                    )
            finally:
                await store.close()
            problems = await locate(database, report.problems, report.repaired)
        finally:
            await database.dispose()
        remaining = [p for p in problems if not p.repaired]
        summary: dict[str, Any] = {
            "kind": kind,
            "dry_run": dry_run,
            "blobs_checked": report.blobs_checked,
            "bytes_hashed": report.bytes_hashed,
            "problems_found": len(problems),
            "problems_repaired": len(problems) - len(remaining),
            "problems_remaining": len(remaining),
            # A dry run lists what gc would remove or fix; a real run what it removed or fixed.
            ("stale_temp_files" if dry_run else "temp_files_removed"): temp_files,
            "problems": problems,
        }
        if dry_run:
            summary["would_repair"] = [p for p in problems if p.repairable]
        if as_json:
            echo_json(summary)
        else:
            _print_text(summary, problems, dry_run=dry_run)
        # A dry run's problems are what gc is for: it succeeds unless something gc cannot fix is there.
        blocking = [p for p in remaining if not (dry_run and p.repairable)]
        return 1 if blocking else 0

    with progress() as tracker:
        return asyncio.run(run(tracker))


def _print_text(summary: dict[str, Any], problems: list[Any], *, dry_run: bool) -> None:
    for problem in problems:
        fixed = " (repaired)" if problem.repaired else (" (would repair)" if dry_run and problem.repairable else "")
        where = "; ".join(f"{f.owner} {f.path}{' (in trash)' if f.trashed else ''}" for f in problem.files)
        if not where and problem.owner:
            where = problem.owner
        typer.echo(f"{problem.kind}\t{problem.subject}\t{where or '-'}\t{problem.detail}{fixed}")
    temp_label = "stale temp files would be removed" if dry_run else "stale temp files removed"
    temp_count = summary.get("stale_temp_files", summary.get("temp_files_removed", 0))
    typer.echo(
        f"checked {summary['blobs_checked']} blobs, re-hashed {summary['bytes_hashed']} bytes; "
        f"{summary['problems_found']} problems, {summary['problems_repaired']} repaired; {temp_count} {temp_label}"
        + ("; dry run: nothing was changed" if dry_run else "")
    )
