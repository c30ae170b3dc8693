"""The `stowage user …` commands, run as real subprocesses against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from accounts_helpers import ME, assert_problem, auth, create_pat, login, me_status, refresh, signup

PASSWORD = "correct horse battery staple"


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env, "STOWAGE_LOG_LEVEL": "warning"}
    return subprocess.run(
        [sys.executable, "-m", "stowage", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def test_user_lifecycle(settings_env: dict[str, str]) -> None:
    created = run_cli(settings_env, "user", "create", "Root@Example.com", "--admin", "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    assert "created admin root@example.com" in created.stdout
    assert PASSWORD not in created.stdout + created.stderr

    second = run_cli(settings_env, "user", "create", "bob@example.com", "--password-stdin", stdin=PASSWORD + " two")
    assert second.returncode == 0, second.stderr

    listing = run_cli(settings_env, "user", "list")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split("\t") for line in listing.stdout.strip().splitlines()]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("bob@example.com", "user", "active"),
        ("root@example.com", "admin", "active"),
    ]

    disabled = run_cli(settings_env, "user", "disable", "bob@example.com")
    assert disabled.returncode == 0, disabled.stderr
    listing = run_cli(settings_env, "user", "list")
    assert "bob@example.com\tuser\tdisabled" in listing.stdout

    enabled = run_cli(settings_env, "user", "enable", "bob@example.com")
    assert enabled.returncode == 0, enabled.stderr
    assert "bob@example.com\tuser\tactive" in run_cli(settings_env, "user", "list").stdout

    passwd = run_cli(
        settings_env, "user", "passwd", "bob@example.com", "--password-stdin", stdin="a brand new passphrase"
    )
    assert passwd.returncode == 0, passwd.stderr
    assert "password changed" in passwd.stdout


async def test_disable_then_enable_revokes_every_credential(
    client: httpx.AsyncClient, settings_env: dict[str, str]
) -> None:
    """``stowage user disable`` ends sessions, refresh tokens and personal tokens for good: after
    ``enable`` only a fresh login works (the same rule as the admin API)."""
    pair = await signup(client, "dora@example.com")
    pat = await create_pat(client, pair["access_token"], ["read"])
    assert await me_status(client, pat["token"]) == 200

    for command in ("disable", "enable"):
        result = await asyncio.to_thread(run_cli, settings_env, "user", command, "dora@example.com")
        assert result.returncode == 0, result.stderr

    for credential in (pair["access_token"], pat["token"]):
        assert_problem(await client.get(ME, headers=auth(credential)), 401, "unauthenticated")
    assert_problem(await refresh(client, pair["refresh_token"]), 401, "unauthenticated")
    fresh = await login(client, "dora@example.com")
    assert await me_status(client, fresh["access_token"]) == 200


def test_user_errors_are_clear_and_change_nothing(settings_env: dict[str, str]) -> None:
    weak = run_cli(settings_env, "user", "create", "weak@example.com", "--password-stdin", stdin="short")
    assert weak.returncode == 1
    assert "at least 8 characters" in weak.stderr
    assert run_cli(settings_env, "user", "list").stdout.strip() == ""

    assert (
        run_cli(
            settings_env, "user", "create", "a@example.com", "--admin", "--password-stdin", stdin=PASSWORD
        ).returncode
        == 0
    )
    duplicate = run_cli(settings_env, "user", "create", "A@example.com", "--password-stdin", stdin=PASSWORD)
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr

    unknown = run_cli(settings_env, "user", "disable", "nobody@example.com")
    assert unknown.returncode == 1
    assert "No user with the email nobody@example.com" in unknown.stderr

    last_admin = run_cli(settings_env, "user", "disable", "a@example.com")
    assert last_admin.returncode == 1
    assert "last active administrator" in last_admin.stderr
    assert "a@example.com\tadmin\tactive" in run_cli(settings_env, "user", "list").stdout


def test_bad_email_is_refused(settings_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(settings_env, "user", "create", "not-an-email", "--password-stdin", stdin=PASSWORD)
    assert result.returncode == 1
    assert "not an email address" in result.stderr


@pytest.mark.parametrize("command", [["user", "list"], ["user", "disable", "x@example.com"]])
def test_bad_configuration_exits_2(command: list[str], tmp_path: Path) -> None:
    result = run_cli({"STOWAGE_DATA_DIR": str(tmp_path), "STOWAGE_SIGNUP_MODE": "sometimes"}, *command)
    assert result.returncode == 2
    assert "STOWAGE_SIGNUP_MODE" in result.stderr
