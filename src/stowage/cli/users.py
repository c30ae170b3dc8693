"""``stowage user …``: manage accounts against the configured database, without a running server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stowage.cli._common import ConfigOption, JsonOption, echo_json, load
from stowage.config import ensure_data_dir, load_or_create_secret

if TYPE_CHECKING:
    from stowage.accounts.services import AccountServices

user_app = typer.Typer(help="Manage user accounts (runs against the configured database).", no_args_is_help=True)


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

    settings = load(config)
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
def user_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List accounts: email, role, state, id (``--json``: every field of each account)."""

    async def action(accounts: AccountServices) -> int:
        users = await accounts.admin.all_users()
        if as_json:
            echo_json(users)
            return 0
        for user in users:
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
