"""The ``stowage`` command: serve, migrate, config, version.

Every sub-command reads settings the same way the server does (environment, then ``--config``), so
``stowage config`` shows exactly what ``stowage serve`` would use.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import typer

from stowage import __version__
from stowage.config import (
    ConfigError,
    Settings,
    ensure_data_dir,
    load_or_create_secret,
    load_settings,
    redacted,
)

if TYPE_CHECKING:
    from stowage.accounts.services import AccountServices

app = typer.Typer(
    name="stowage",
    help="Stowage: a self-hosted storage backend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (also STOWAGE_CONFIG_FILE).", exists=False),
]


HTTP1_READ_BUFFER_BYTES = 1024 * 1024


def _settings(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
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


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"stowage {__version__}")


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective settings as JSON, with secrets redacted."""
    settings = _settings(config)
    typer.echo(msgspec.json.format(msgspec.json.encode(redacted(settings)), indent=2).decode())


@app.command()
def migrate(
    config: ConfigOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the tables in code differ from the migrated schema.")
    ] = False,
    revision: Annotated[str, typer.Option(help="Target revision (default: the newest).")] = "head",
    downgrade: Annotated[bool, typer.Option("--downgrade", help="Move down to --revision instead of up.")] = False,
) -> None:
    """Apply database migrations (or check that models and migrations agree)."""
    from stowage.db import migrate as migrations
    from stowage.db.engine import Database
    from stowage.observability.logging import configure_logging

    settings = _settings(config)
    configure_logging(settings)
    ensure_data_dir(settings)

    async def run() -> int:
        database = Database(settings)
        try:
            if downgrade:
                await migrations.downgrade(database, revision)
            else:
                await migrations.upgrade(database, revision)
            current = await migrations.current_revision(database)
            typer.echo(f"database at revision {current}")
            if check:
                diffs = await migrations.pending_model_changes(database)
                if diffs:
                    typer.echo("models and migrations differ:", err=True)
                    for diff in diffs:
                        typer.echo(f"  {diff}", err=True)
                    return 1
                typer.echo("models and migrations agree")
            return 0
        finally:
            await database.dispose()

    code = asyncio.run(run())
    raise typer.Exit(code=code)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    migrate_first: Annotated[
        bool | None, typer.Option("--migrate/--no-migrate", help="Apply migrations before serving.")
    ] = None,
) -> None:
    """Run the HTTP server (Granian) until SIGINT or SIGTERM."""
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings, HTTP2Settings
    from granian.server import MPServer

    from stowage.observability.logging import configure_logging, logging_dict_config
    from stowage.observability.metrics import MULTIPROC_ENV

    overrides = {"host": host, "port": port, "workers": workers}
    if migrate_first is not None:
        overrides["auto_migrate"] = "true" if migrate_first else "false"
    settings = _settings(config, overrides)
    configure_logging(settings)
    data_dir = ensure_data_dir(settings)
    load_or_create_secret(settings)
    if settings.auto_migrate:
        _migrate_before_serving(settings)

    if settings.workers > 1:
        # Shared metric files so /metrics reports every worker; stale files from a previous run
        # would double-count, so the folder starts empty.
        metrics_dir = data_dir / "run" / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(metrics_dir)

    server = MPServer(
        target="stowage.app:create_app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        # uvloop: the event loop in C (the pure-Python loop showed in the profile of every small request).
        loop=Loops.uvloop,
        workers=settings.workers,
        # The read buffer bounds both the header section and each body piece handed to the app: a
        # larger one brings an 8 MiB upload in ~25 pieces instead of 128 (a fifth less CPU per upload).
        # The header limit itself is checked by the outermost middleware (431).
        http1_settings=HTTP1Settings(max_buffer_size=max(HTTP1_READ_BUFFER_BYTES, settings.max_request_header_bytes)),
        http2_settings=HTTP2Settings(max_headers_size=settings.max_request_header_bytes),
        log_dictconfig=logging_dict_config(settings),
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=settings.shutdown_timeout,
        websockets=False,
    )
    server.serve()


def _migrate_before_serving(settings: Settings) -> None:
    from stowage.db import migrate as migrations
    from stowage.db.engine import Database

    async def run() -> None:
        database = Database(settings)
        try:
            await migrations.upgrade(database)
        finally:
            await database.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:
        typer.echo(f"stowage: cannot prepare the database: {exc}", err=True)
        raise typer.Exit(code=1) from exc


@app.command("fsck")
def fsck_command(
    config: ConfigOption = None,
    repair: Annotated[bool, typer.Option("--repair", help="Repair what is safely repairable.")] = False,
    rehash: Annotated[bool, typer.Option("--rehash/--no-rehash", help="Re-hash every blob (slow).")] = True,
) -> None:
    """Check blobs, versions, reference counts and usage; exit 1 when problems remain."""
    raise typer.Exit(code=_run_maintenance(config, "fsck", repair=repair, rehash=rehash, grace_seconds=3600))


@app.command("gc")
def gc_command(
    config: ConfigOption = None,
    grace: Annotated[float, typer.Option(help="Only remove files untouched for this many seconds.")] = 3600,
) -> None:
    """Remove blob files no version references and repair metadata drift (no re-hashing)."""
    raise typer.Exit(code=_run_maintenance(config, "gc", repair=True, rehash=False, grace_seconds=grace))


def _run_maintenance(
    config: Path | None, kind: Literal["fsck", "gc"], *, repair: bool, rehash: bool, grace_seconds: float
) -> int:
    """Run the check against the configured installation and record it for the admin endpoint."""
    from stowage.blobs import create_blob_store
    from stowage.db import migrate as migrations
    from stowage.db.engine import Database
    from stowage.maintenance.housekeeping import checked_run
    from stowage.observability.logging import configure_logging

    settings = _settings(config)
    configure_logging(settings)
    ensure_data_dir(settings)

    async def run() -> int:
        database = Database(settings)
        try:
            await migrations.upgrade(database)
            store = create_blob_store(settings)
            try:
                await store.start()
                report, removed = await checked_run(
                    database, store, kind=kind, rehash=rehash, repair=repair, grace_seconds=grace_seconds
                )
            finally:
                await store.close()
        finally:
            await database.dispose()
        for problem in report.problems:
            fixed = " (repaired)" if problem in report.repaired else ""
            typer.echo(f"{problem.kind}\t{problem.subject}\t{problem.detail}{fixed}")
        typer.echo(
            f"checked {report.blobs_checked} blobs, re-hashed {report.bytes_hashed} bytes; "
            f"{len(report.problems)} problems, {len(report.repaired)} repaired; {removed} stale temp files removed"
        )
        remaining = [p for p in report.problems if p not in report.repaired]
        return 1 if remaining else 0

    return asyncio.run(run())


user_app = typer.Typer(help="Manage user accounts (runs against the configured database).", no_args_is_help=True)
app.add_typer(user_app, name="user")


def _read_password(from_stdin: bool) -> str:
    """Read a new password from standard input (scripts) or an interactive prompt, never argv."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _run_accounts(config: Path | None, action: Callable[[AccountServices], Awaitable[int]]) -> None:
    """Build the account services against the configured database, run ``action``, clean up."""
    from stowage.accounts.passwords import PasswordHasher
    from stowage.accounts.services import AccountDeps, AccountServices
    from stowage.db import migrate as migrations
    from stowage.db.engine import Database
    from stowage.errors import StowageError
    from stowage.mail.mailer import create_mailer
    from stowage.observability.logging import configure_logging
    from stowage.ratelimit import MemoryRateLimiter

    settings = _settings(config)
    configure_logging(settings)
    ensure_data_dir(settings)

    async def run() -> int:
        database = Database(settings)
        limiter = MemoryRateLimiter()
        try:
            await migrations.upgrade(database)
            deps = AccountDeps(
                settings=settings,
                database=database,
                secret=load_or_create_secret(settings),
                hasher=PasswordHasher(),
                mailer=create_mailer(settings),
                limiter=limiter,
            )
            return await action(AccountServices.build(deps))
        except StowageError as exc:
            typer.echo(f"stowage: {exc.detail}", err=True)
            return 1
        finally:
            await limiter.close()
            await database.dispose()

    raise typer.Exit(code=asyncio.run(run()))


@user_app.command("create")
def user_create(
    email: str,
    config: ConfigOption = None,
    admin: Annotated[bool, typer.Option("--admin", help="Give the account the admin role.")] = False,
    display_name: Annotated[str | None, typer.Option(help="Name shown in the apps.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Create an account (the first administrator is made this way)."""
    from stowage.accounts.schemas import AdminCreateUserRequest

    password = _read_password(password_stdin)

    async def action(accounts: AccountServices) -> int:
        request = AdminCreateUserRequest(
            email=email, password=password, display_name=display_name, role="admin" if admin else "user"
        )
        user = await accounts.admin.create_user_unchecked(request)
        typer.echo(f"created {user.role} {user.email} ({user.id})")
        return 0

    _run_accounts(config, action)


@user_app.command("list")
def user_list(config: ConfigOption = None) -> None:
    """List accounts: email, role, state, id."""

    async def action(accounts: AccountServices) -> int:
        for user in await accounts.admin.all_users():
            state = "disabled" if user.disabled else "active"
            typer.echo(f"{user.email}\t{user.role}\t{state}\t{user.id}")
        return 0

    _run_accounts(config, action)


@user_app.command("passwd")
def user_passwd(
    email: str,
    config: ConfigOption = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Set an account's password (ends its sessions)."""
    password = _read_password(password_stdin)

    async def action(accounts: AccountServices) -> int:
        user_id = await accounts.admin.find_user_id(email)
        await accounts.admin.reset_password_unchecked(user_id, password)
        typer.echo(f"password changed for {email}; its sessions were ended")
        return 0

    _run_accounts(config, action)


def _set_disabled(email: str, config: Path | None, *, disabled: bool) -> None:
    async def action(accounts: AccountServices) -> int:
        user_id = await accounts.admin.find_user_id(email)
        await accounts.admin.set_disabled(user_id, disabled=disabled)
        typer.echo(f"{email} {'disabled' if disabled else 'enabled'}")
        return 0

    _run_accounts(config, action)


@user_app.command("disable")
def user_disable(email: str, config: ConfigOption = None) -> None:
    """Disable an account: its sessions end and its tokens stop working at once."""
    _set_disabled(email, config, disabled=True)


@user_app.command("enable")
def user_enable(email: str, config: ConfigOption = None) -> None:
    """Enable a disabled account."""
    _set_disabled(email, config, disabled=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
