"""``stowage backup DEST`` and ``stowage restore SRC`` (the work is in ``maintenance/backup``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stowage.cli._common import ConfigOption, JsonOption, YesOption, confirm_destructive, echo_json, load
from stowage.cli._progress import Tracker, progress

if TYPE_CHECKING:
    from stowage.maintenance.backup import Manifest


def backup_command(
    destination: Annotated[Path, typer.Argument(help="A new or empty folder to write the backup into.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Back up the database, the local blobs and the secret key (safe while the server runs)."""
    from stowage.maintenance.backup import backup

    settings = load(config)
    manifest = _with_progress("backup", lambda tracker: backup(settings, destination, tracker))
    if as_json:
        echo_json(manifest)
        return
    typer.echo(
        f"backed up the {manifest.database.engine} database (revision {manifest.database.revision}), "
        f"{manifest.blobs.count} blobs ({manifest.blobs.bytes} bytes)"
        f"{' and the secret key' if manifest.secret else ''} to {destination}"
    )
    if manifest.secret is None:
        typer.echo(
            "note: the secret key is set in the settings, not the data folder: keep it with the backup", err=True
        )


def restore_command(
    source: Annotated[Path, typer.Argument(help="A folder written by `stowage backup`.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
    yes: YesOption = False,
) -> None:
    """Restore a backup into an empty data folder (and empty database), verifying every hash."""
    from stowage.maintenance.backup import restore

    settings = load(config)
    confirm_destructive(f"restore {source} into the data folder {settings.data_dir}", yes=yes)
    manifest = _with_progress("restore", lambda tracker: restore(settings, source, tracker))
    if as_json:
        echo_json(manifest)
        return
    typer.echo(
        f"restored the {manifest.database.engine} database (revision {manifest.database.revision}) and "
        f"{manifest.blobs.count} blobs from {source}; every hash verified. "
        "Run `stowage migrate` (or start the server) to bring the schema up to date."
    )


def _with_progress(verb: str, work: Callable[[Tracker], Coroutine[Any, Any, Manifest]]) -> Manifest:
    """Run a backup or restore with a progress bar on a terminal; its refusal is a message and exit code 1."""
    from stowage.maintenance.backup import BackupError

    try:
        with progress() as tracker:
            return asyncio.run(work(tracker))
    except BackupError as exc:
        typer.echo(f"stowage: {verb} failed: {exc}", err=True)
        raise typer.Exit(code=1) from exc
