"""``stowage version`` / ``--version`` and ``stowage config``: what is installed and what it would use."""

from __future__ import annotations

import typer

from stowage import __version__
from stowage.cli._common import ConfigOption, JsonOption, echo_json, load
from stowage.config import redacted


def version() -> None:
    """Print the version."""
    typer.echo(f"stowage {__version__}")


def version_callback(value: bool) -> None:
    """``stowage --version``: print the version and stop before any sub-command runs."""
    if value:
        version()
        raise typer.Exit


def show_config(
    config: ConfigOption = None,
    as_json: JsonOption = True,  # the output is JSON either way; the flag is there for scripts' symmetry
) -> None:
    """Print the effective settings as JSON, with secrets redacted (``--json`` is accepted and changes nothing)."""
    echo_json(redacted(load(config)))
