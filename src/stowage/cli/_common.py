"""What every ``stowage`` sub-command shares: the options, settings loading, JSON output, confirmation.

Every sub-command reads settings the same way the server does (environment, then ``--config``), so
``stowage config`` shows exactly what ``stowage serve`` would use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from stowage.config import ConfigError, Settings, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (also STOWAGE_CONFIG_FILE).", exists=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking (required when not on a terminal).")]


def load(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings, exporting CLI overrides as STOWAGE_* so worker processes see the same values."""
    for name, value in (overrides or {}).items():
        if value is not None:
            os.environ[f"STOWAGE_{name.upper()}"] = str(value)
    if config is not None:
        os.environ["STOWAGE_CONFIG_FILE"] = str(config.resolve())
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(f"stowage: configuration error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


def echo_json(value: Any) -> None:
    """One indented JSON document on stdout (msgspec encodes Structs, datetimes and paths)."""
    typer.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def confirm_destructive(action: str, *, yes: bool) -> None:
    """Ask before ``action`` on a terminal; without one, refuse unless ``--yes`` was given.

    A script that forgot ``--yes`` must fail before changing anything (exit 2, the usage-error
    code), never block on a prompt nobody answers or proceed silently.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        typer.echo(f"stowage: refusing to {action} without confirmation: pass --yes (no terminal to ask on)", err=True)
        raise typer.Exit(code=2)
    if not typer.confirm(f"This will {action}. Continue?", default=False, err=True):
        typer.echo("stowage: cancelled, nothing changed", err=True)
        raise typer.Exit(code=1)
