"""The operator's side of the ``stowage`` command, run as real processes: ``--version``, ``--json``,
``gc --dry-run``, confirmation of destructive commands, fsck naming whose files are damaged, and the
progress bar that appears only on a terminal.

Files are put in place through the application (in-process client), then the command runs against
the same database and data folder, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select as sql_select
from sqlalchemy import update

from accounts_helpers import database, make_admin
from files_helpers import blob_file, flip_byte, mkdir, new_account, sha256_hex, upload
from stowage import __version__
from stowage.config import Settings
from stowage.db.migrate import head_revision
from stowage.db.tables import Blob
from support.server import clean_environ, run_stowage, stowage_command

ALPHA = b"alpha content, in a folder\n" * 200
DAY = 24 * 3600


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command with no terminal anywhere: stdin from /dev/null, output captured."""
    return run_stowage(env, *args)


def test_version_option() -> None:
    result = run({}, "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"stowage {__version__}"


def test_config_json(data_dir: Path) -> None:
    result = run({"STOWAGE_DATA_DIR": str(data_dir)}, "config", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data_dir"] == str(data_dir)


async def test_user_list_json(client: httpx.AsyncClient, settings: Settings, settings_env: dict[str, str]) -> None:
    await make_admin(client, settings, "root@example.com")
    alice = await new_account(client, "alice@example.com")

    result = run(settings_env, "user", "list", "--json")

    assert result.returncode == 0, result.stderr
    users = json.loads(result.stdout)
    assert [(u["email"], u["role"], u["disabled"]) for u in users] == [
        ("alice@example.com", "user", False),
        ("root@example.com", "admin", False),
    ]
    assert users[0]["id"] == alice.user_id


async def test_fsck_names_the_owner_and_path_of_a_damaged_file(
    client: httpx.AsyncClient, settings: Settings, settings_env: dict[str, str]
) -> None:
    alice = await new_account(client, "alice@example.com")
    folder = await mkdir(client, alice, alice.root_id, "Reports")
    await upload(client, alice, folder["id"], "q3.pdf", ALPHA)
    digest = sha256_hex(ALPHA)
    flip_byte(settings, digest, offset=5)

    text = run(settings_env, "fsck")
    as_json = run(settings_env, "fsck", "--json")

    assert text.returncode == 1
    assert f"corrupt_blob\t{digest}\talice@example.com /Reports/q3.pdf\t" in text.stdout
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["problems_found"] == report["problems_remaining"] == 1
    [problem] = report["problems"]
    assert (problem["kind"], problem["subject"], problem["owner"]) == ("corrupt_blob", digest, "alice@example.com")
    assert problem["files"] == [
        {
            "owner": "alice@example.com",
            "path": "/Reports/q3.pdf",
            "node_id": problem["files"][0]["node_id"],
            "trashed": False,
        }
    ]


def _old_orphan(settings: Settings) -> tuple[Path, str]:
    """A blob file no row references, two days old: what gc removes."""
    body = b"an orphan nobody references"
    digest = sha256_hex(body)
    path = blob_file(settings, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    old = time.time() - 2 * DAY
    os.utime(path, (old, old))
    return path, digest


async def test_gc_dry_run_reports_and_removes_nothing(
    client: httpx.AsyncClient, settings: Settings, settings_env: dict[str, str]
) -> None:
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "a.txt", ALPHA)
    orphan, digest = _old_orphan(settings)
    async with database(settings) as db, db.transaction() as session:
        await session.execute(update(Blob).where(Blob.sha256 == sha256_hex(ALPHA)).values(refcount=5))

    dry = run(settings_env, "gc", "--dry-run", "--json")

    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True
    assert {(p["kind"], p["subject"]) for p in report["would_repair"]} == {
        ("orphan_blob", digest),
        ("wrong_refcount", sha256_hex(ALPHA)),
    }
    assert report["problems_repaired"] == 0
    assert orphan.exists()  # nothing removed
    async with database(settings) as db, db.session() as session:
        assert await session.scalar(sql_select(Blob.refcount).where(Blob.sha256 == sha256_hex(ALPHA))) == 5

    real = run(settings_env, "gc", "--json")

    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["problems_repaired"] == 2
    assert not orphan.exists()


@pytest.mark.parametrize(
    "args",
    [("fsck", "--repair"), ("migrate", "--downgrade", "--revision", "base")],
    ids=["fsck-repair", "migrate-downgrade"],
)
async def test_destructive_commands_refuse_without_yes_off_a_terminal(
    args: tuple[str, ...], client: httpx.AsyncClient, settings: Settings, settings_env: dict[str, str]
) -> None:
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "a.txt", ALPHA)
    orphan, _digest = _old_orphan(settings)

    refused = run(settings_env, *args)

    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr
    assert refused.stdout == ""
    assert orphan.exists()  # fsck --repair would have removed it
    check = run(settings_env, "migrate", "--check")  # the schema is still at the newest revision
    assert f"database at revision {head_revision()}" in check.stdout

    done = run(settings_env, *args, "--yes")

    assert done.returncode == 0, done.stderr
    if args[0] == "fsck":
        assert not orphan.exists()


def _run_on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run with stdin and stderr on a pseudo-terminal (stdout captured apart); return the exit code and
    what the terminal showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*stowage_command(), *args],
        env=clean_environ({**env, "STOWAGE_LOG_LEVEL": "warning", "COLUMNS": "100", "TERM": "xterm"}),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    shown = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    os.close(controller)
    assert process.stdout is not None
    with process.stdout:
        process.stdout.read()
    return process.wait(timeout=30), shown.decode(errors="replace")


async def test_progress_bar_only_on_a_terminal(
    client: httpx.AsyncClient, settings_env: dict[str, str], tmp_path: Path
) -> None:
    alice = await new_account(client, "alice@example.com")
    for index in range(3):
        await upload(client, alice, alice.root_id, f"{index}.txt", ALPHA + bytes([index]))

    plain = run(settings_env, "fsck")
    code, terminal = _run_on_a_terminal(settings_env, "fsck")

    assert plain.returncode == 0, plain.stderr
    assert plain.stderr == ""  # no bar, no escape codes in logs
    assert code == 0, terminal
    assert "fsck: blobs" in terminal
    assert "3/3" in terminal


def test_restore_asks_on_a_terminal_and_no_means_nothing_changes(data_dir: Path, tmp_path: Path) -> None:
    env = {"STOWAGE_DATA_DIR": str(data_dir)}
    assert run(env, "migrate").returncode == 0
    backup = run(env, "backup", str(tmp_path / "backup"))
    assert backup.returncode == 0, backup.stderr
    target = tmp_path / "target"
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*stowage_command(), "restore", str(tmp_path / "backup")],
        env=clean_environ({"STOWAGE_DATA_DIR": str(target), "STOWAGE_LOG_LEVEL": "warning"}),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    prompt = b""
    while b"Continue?" not in prompt:
        ready, _, _ = select.select([controller], [], [], 30)
        assert ready, prompt
        prompt += os.read(controller, 4096)
    os.write(controller, b"n\n")
    assert process.stdout is not None
    with process.stdout:
        assert process.stdout.read().strip() == b""  # click may echo a space after the prompt
    assert process.wait(timeout=30) == 1
    os.close(controller)
    assert not target.exists()


async def test_backup_and_restore_draw_a_progress_bar_on_a_terminal(
    client: httpx.AsyncClient, settings_env: dict[str, str], backend: str, tmp_path: Path
) -> None:
    alice = await new_account(client, "alice@example.com")
    for index in range(2):
        await upload(client, alice, alice.root_id, f"{index}.txt", ALPHA + bytes([index]))

    code, terminal = _run_on_a_terminal(settings_env, "backup", str(tmp_path / "backup"))

    assert code == 0, terminal
    assert "backup: blobs" in terminal
    assert "2/2" in terminal
    if backend == "sqlite":  # restoring needs an empty database: a fresh SQLite folder is one
        code, terminal = _run_on_a_terminal(
            {"STOWAGE_DATA_DIR": str(tmp_path / "restored")}, "restore", str(tmp_path / "backup"), "--yes"
        )
        assert code == 0, terminal
        assert "restore: blobs" in terminal


def test_gc_refuses_a_grace_period_shorter_than_the_blob_age_refresh(settings_env: dict[str, str]) -> None:
    """An upload that reuses a stored blob refreshes its age at most once a minute, so a grace period under
    two minutes could let gc remove a blob a reference is about to be recorded for."""
    refused = run(settings_env, "gc", "--grace", "30")
    assert refused.returncode == 2
    assert "--grace" in refused.stderr
    accepted = run(settings_env, "gc", "--grace", "120", "--dry-run", "--json")
    assert accepted.returncode == 0, accepted.stderr
