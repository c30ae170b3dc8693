"""The ``stowage`` command: one Typer application, one module per command group.

``info`` (version, config), ``server`` (serve, migrate), ``maintenance`` (fsck, gc), ``backup``
(backup, restore) and ``users`` (the ``user`` group). Heavy imports happen inside the commands so
``stowage --version`` stays instant. The entry point is ``stowage.cli:main`` (pyproject.toml).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from stowage.cli import backup, info, maintenance, server, users

app = typer.Typer(
    name="stowage",
    help="Stowage: a self-hosted storage backend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=info.version_callback),
    ] = False,
) -> None:
    """Stowage: a self-hosted storage backend."""


app.command("version")(info.version)
app.command("config")(info.show_config)
app.command("serve")(server.serve)
app.command("migrate")(server.migrate)
app.command("fsck")(maintenance.fsck_command)
app.command("gc")(maintenance.gc_command)
app.command("backup")(backup.backup_command)
app.command("restore")(backup.restore_command)
app.add_typer(users.user_app, name="user")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
