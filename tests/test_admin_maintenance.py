"""The administrators' view of the installation: recorded maintenance runs and storage use.

``GET /api/v1/admin/maintenance`` shows the newest fsck and gc run and the recent ones, as recorded by
the real ``stowage fsck`` / ``stowage gc`` commands (run as processes against the test's database,
as ``test_cli`` runs them) and by the server's ``housekeeping_pass`` (called here with file services
built as ``app.py`` builds them, on the test's own event loop). ``GET /api/v1/admin/storage`` sums
what users are charged for and what the disk holds after deduplication.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from accounts_helpers import auth, database, make_admin
from conftest import make_settings
from files_helpers import (
    TRASH,
    Account,
    assert_problem,
    blob_file,
    flip_byte,
    new_account,
    node_path,
    put_raw,
    set_trashed_at,
    sha256_hex,
    spool_files,
    upload,
)
from stowage.blobs import LocalBlobStore
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.tables import Blob
from stowage.files.services import FileDeps, FileServices
from stowage.maintenance import housekeeping, runs
from stowage.maintenance.fsck_report import FsckReport, Problem
from stowage.maintenance.housekeeping import checked_run, housekeeping_pass
from support.server import clean_environ, stowage_command

MAINTENANCE = "/api/v1/admin/maintenance"
STORAGE = "/api/v1/admin/storage"
ALPHA = b"alpha, stored once and referenced twice\n" * 100  # 4,000 bytes
BRAVO = b"bravo, stored once\n" * 300  # 5,700 bytes
DAY = 24 * 3600.0


# --- helpers -------------------------------------------------------------------------------------


async def admin_headers(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    pair = await make_admin(client, settings, "admin@example.com")
    return auth(pair["access_token"])


async def last_runs(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get(MAINTENANCE, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"fsck", "gc", "recent", "running"}
    return body


async def stowage(settings_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``stowage`` command against the test's installation (its data folder and,
    on PostgreSQL, its schema), as a separate process the way an administrator would."""
    env = clean_environ({**settings_env, "STOWAGE_LOG_LEVEL": "warning"})
    return await asyncio.to_thread(
        subprocess.run,
        [*stowage_command(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_run(run: dict[str, Any] | None, *, kind: str, trigger: str, outcome: str) -> dict[str, Any]:
    """The common shape of a recorded run; returns its report."""
    assert run is not None
    assert (run["kind"], run["trigger"], run["outcome"]) == (kind, trigger, outcome), run
    assert isinstance(run["id"], int)
    started = datetime.fromisoformat(run["started_at"])
    finished = datetime.fromisoformat(run["finished_at"])
    assert started <= finished <= datetime.now(UTC)
    assert run["duration_seconds"] == pytest.approx((finished - started).total_seconds(), abs=0.002)
    report: dict[str, Any] = run["report"]
    return report


def listed(report: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(p["kind"], p["subject"], p["repaired"]) for p in report["problems"]]


@asynccontextmanager
async def file_services(settings: Settings) -> AsyncIterator[FileServices]:
    """File services over the test installation, built as the application's lifespan builds them."""
    async with database(settings) as db:
        store = LocalBlobStore(settings.data_dir.resolve())
        yield FileServices.build(FileDeps(settings=settings, database=db, store=store))


def make_spool(settings: Settings, *, age_seconds: float) -> str:
    """An upload spool as an aborted upload leaves it in ``<data>/tmp``; returns its name."""
    name = f"upload-{secrets.token_hex(16)}.part"
    path = Path(settings.data_dir) / "tmp" / name
    path.write_bytes(b"half an upload")
    past = time.time() - age_seconds
    os.utime(path, (past, past))
    return name


# --- runs recorded by the CLI --------------------------------------------------------------------


async def test_fsck_and_gc_runs_from_the_cli_are_shown(
    client: httpx.AsyncClient, settings: Settings, settings_env: dict[str, str]
) -> None:
    admin = await admin_headers(client, settings)
    assert await last_runs(client, admin) == {"fsck": None, "gc": None, "recent": [], "running": None}  # fresh
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "a.txt", ALPHA)
    await upload(client, alice, alice.root_id, "copy of a.txt", ALPHA)
    bravo = await upload(client, alice, alice.root_id, "b.txt", BRAVO)

    # 1. A clean check: every blob re-hashed.
    clean = await stowage(settings_env, "fsck")
    assert clean.returncode == 0, clean.stderr
    assert "checked 2 blobs, re-hashed 9700 bytes; 0 problems" in clean.stdout
    shown = await last_runs(client, admin)
    report = assert_run(shown["fsck"], kind="fsck", trigger="cli", outcome="clean")
    assert report == {
        "blobs_checked": 2,
        "bytes_hashed": len(ALPHA) + len(BRAVO),
        "problems_found": 0,
        "problems_repaired": 0,
        "problems_remaining": 0,
        "by_kind": {},
        "problems": [],
        "problems_truncated": False,
        "temp_files_removed": 0,
    }
    assert shown["gc"] is None
    assert shown["recent"] == [shown["fsck"]]
    first_fsck = shown["fsck"]

    # 2. Damaged content: found (not repairable), exit status 1, the run shows the hash.
    digest = sha256_hex(BRAVO)
    flip_byte(settings, digest, offset=100)
    damaged = await stowage(settings_env, "fsck")
    assert damaged.returncode == 1, damaged.stdout
    assert f"corrupt_blob\t{digest}" in damaged.stdout
    shown = await last_runs(client, admin)
    report = assert_run(shown["fsck"], kind="fsck", trigger="cli", outcome="problems")
    assert listed(report) == [("corrupt_blob", digest, False)]
    assert report["problems"][0]["detail"]
    assert (report["problems_found"], report["problems_repaired"], report["problems_remaining"]) == (1, 0, 1)
    assert report["by_kind"] == {"corrupt_blob": 1}
    assert shown["fsck"]["id"] > first_fsck["id"]
    assert shown["recent"] == [shown["fsck"], first_fsck]  # newest first

    # 3. Uploading the content again heals it; gc (no re-hash) removes a stale spool.
    healed = await put_raw(client, alice, alice.root_id, "b again.txt", BRAVO)
    assert healed.status_code == 201, healed.text
    assert blob_file(settings, digest).read_bytes() == BRAVO
    stale = make_spool(settings, age_seconds=2 * DAY)
    fresh = make_spool(settings, age_seconds=60)
    gc = await stowage(settings_env, "gc")
    assert gc.returncode == 0, gc.stderr
    shown = await last_runs(client, admin)
    report = assert_run(shown["gc"], kind="gc", trigger="cli", outcome="clean")
    assert (report["blobs_checked"], report["bytes_hashed"], report["temp_files_removed"]) == (2, 0, 1)
    assert spool_files(settings) == {fresh}
    assert stale not in spool_files(settings)
    assert shown["fsck"]["outcome"] == "problems"  # still the newest fsck: gc is shown separately

    # 4. A wrong reference count: reported by fsck, fixed by fsck --repair.
    async with database(settings) as db, db.transaction() as session:
        await session.execute(update(Blob).where(Blob.sha256 == sha256_hex(ALPHA)).values(refcount=7))
    repaired = await stowage(settings_env, "fsck", "--repair", "--yes")
    assert repaired.returncode == 0, repaired.stdout
    assert "(repaired)" in repaired.stdout
    shown = await last_runs(client, admin)
    report = assert_run(shown["fsck"], kind="fsck", trigger="cli", outcome="repaired")
    assert listed(report) == [("wrong_refcount", sha256_hex(ALPHA), True)]
    assert (report["problems_found"], report["problems_repaired"], report["problems_remaining"]) == (1, 1, 0)
    async with database(settings) as db, db.session() as session:
        assert await session.scalar(select(Blob.refcount).where(Blob.sha256 == sha256_hex(ALPHA))) == 2
    assert [(r["kind"], r["outcome"]) for r in shown["recent"]] == [
        ("fsck", "repaired"),
        ("gc", "clean"),
        ("fsck", "problems"),
        ("fsck", "clean"),
    ]
    assert [r["id"] for r in shown["recent"]] == sorted((r["id"] for r in shown["recent"]), reverse=True)
    # The file whose content was damaged in step 2 is whole again.
    response = await client.get(node_path(bravo["id"], "/content"), headers=alice.headers)
    assert response.content == BRAVO


async def test_a_run_that_breaks_is_recorded_as_failed(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await admin_headers(client, settings)

    async def broken(*args: Any, **kwargs: Any) -> FsckReport:
        raise OSError("the disk went away")

    monkeypatch.setattr(housekeeping, "fsck", broken)
    async with database(settings) as db:
        with pytest.raises(OSError, match="disk went away"):
            await checked_run(
                db, LocalBlobStore(settings.data_dir), kind="fsck", rehash=True, repair=False, grace_seconds=0
            )
    async with file_services(settings) as files:
        with pytest.raises(OSError, match="disk went away"):
            await housekeeping_pass(files, settings)

    shown = await last_runs(client, admin)
    assert assert_run(shown["fsck"], kind="fsck", trigger="cli", outcome="failed") == {
        "error": "OSError: the disk went away"
    }
    assert assert_run(shown["gc"], kind="gc", trigger="housekeeping", outcome="failed") == {
        "error": "OSError: the disk went away"
    }


# --- the housekeeping pass -----------------------------------------------------------------------


async def test_housekeeping_pass_is_recorded_with_what_it_did(
    client: httpx.AsyncClient, settings: Settings, settings_env: dict[str, str]
) -> None:
    admin = await admin_headers(client, settings)
    alice = await new_account(client, "alice@example.com")
    # Trash: two sets past the 30-day retention (a file; a folder with a file in it), one recent.
    old = await upload(client, alice, alice.root_id, "old.txt", b"trashed long ago")
    folder = (
        await client.post(node_path(alice.root_id, "/folders"), json={"name": "old folder"}, headers=alice.headers)
    ).json()
    await upload(client, alice, folder["id"], "inside.txt", b"inside the old folder")
    recent = await upload(client, alice, alice.root_id, "recent.txt", b"trashed today")
    for node in (old, folder, recent):
        assert (await client.delete(node_path(node["id"]), headers=alice.headers)).status_code == 200
    await set_trashed_at(settings, [old["id"], folder["id"]], utcnow() - timedelta(days=31))
    # Versions: doc.txt has four (one old one pinned), notes.txt two, single.txt one.
    doc = await upload(client, alice, alice.root_id, "doc.txt", b"doc v1")
    for number in (2, 3, 4):
        response = await put_raw(
            client, alice, alice.root_id, "doc.txt", f"doc v{number}".encode(), on_conflict="replace"
        )
        assert response.status_code == 200, response.text
    notes = await upload(client, alice, alice.root_id, "notes.txt", b"notes v1")
    response = await put_raw(client, alice, alice.root_id, "notes.txt", b"notes v2", on_conflict="replace")
    assert response.status_code == 200, response.text
    await upload(client, alice, alice.root_id, "single.txt", b"only one version")
    versions = (await client.get(node_path(doc["id"], "/versions"), headers=alice.headers)).json()["items"]
    assert len(versions) == 4  # the default policy keeps ten
    pinned = versions[-1]  # the oldest
    response = await client.patch(
        node_path(doc["id"], f"/versions/{pinned['id']}"), json={"pinned": True}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    # Spools: one abandoned two days ago, one from an upload in progress.
    make_spool(settings, age_seconds=2 * DAY)
    fresh = make_spool(settings, age_seconds=60)

    # Keep nothing but the current and pinned versions.
    thinning = make_settings(settings_env, version_keep_last=0, version_thinning="")
    async with file_services(thinning) as files:
        returned = await housekeeping_pass(files, thinning)

    shown = await last_runs(client, admin)
    assert shown["fsck"] is None
    report = assert_run(shown["gc"], kind="gc", trigger="housekeeping", outcome="clean")
    assert report["trash_purged"] == 2  # trash sets: old.txt, and "old folder" with its file
    assert report["versions_thinned"] == 2 + 1  # doc.txt v2 and v3 (v1 is pinned), notes.txt v1
    assert report["temp_files_removed"] == 1
    assert report["blobs_checked"] > 0
    assert report["bytes_hashed"] == 0  # housekeeping checks metadata only
    assert report["problems"] == []
    assert returned.problems == []
    assert shown["recent"] == [shown["gc"]]
    # What the counts say really happened.
    trash = (await client.get(TRASH, headers=alice.headers)).json()["items"]
    assert [item["name"] for item in trash] == ["recent.txt"]
    kept = (await client.get(node_path(doc["id"], "/versions"), headers=alice.headers)).json()["items"]
    assert sorted(v["id"] for v in kept) == sorted([versions[0]["id"], pinned["id"]])
    assert len((await client.get(node_path(notes["id"], "/versions"), headers=alice.headers)).json()["items"]) == 1
    assert spool_files(settings) == {fresh}


# --- the problems list is bounded ----------------------------------------------------------------


def _report(problems: list[Problem], repaired: list[Problem]) -> FsckReport:
    now = datetime.now(UTC)
    return FsckReport(
        started_at=now, finished_at=now, blobs_checked=7, bytes_hashed=0, problems=problems, repaired=repaired
    )


def test_summarise_caps_the_listed_problems() -> None:
    missing = [Problem("missing_blob", f"{n:064x}", "gone", repairable=False) for n in range(95)]
    usage = [Problem("wrong_usage", f"user-{n}", "off by one", repairable=True) for n in range(10)]

    outcome, body = runs.summarise(_report(missing + usage, usage), trash_purged=3)

    assert outcome == "problems"
    assert len(body["problems"]) == runs.MAX_LISTED_PROBLEMS == 100
    assert body["problems_truncated"] is True
    assert (body["problems_found"], body["problems_repaired"], body["problems_remaining"]) == (105, 10, 95)
    assert body["by_kind"] == {"missing_blob": 95, "wrong_usage": 10}  # counted in full
    assert [p["subject"] for p in body["problems"][:95]] == [p.subject for p in missing]
    assert [p["repaired"] for p in body["problems"][95:]] == [True] * 5
    assert body["trash_purged"] == 3


@pytest.mark.parametrize(
    ("found", "repaired", "outcome", "truncated"),
    [(0, 0, "clean", False), (100, 100, "repaired", False), (101, 101, "repaired", True), (101, 100, "problems", True)],
)
def test_summarise_outcomes(found: int, repaired: int, outcome: str, truncated: bool) -> None:
    problems = [Problem("wrong_refcount", f"{n:064x}", "refcount", repairable=True) for n in range(found)]

    result, body = runs.summarise(_report(problems, problems[:repaired]))

    assert result == outcome
    assert body["problems_truncated"] is truncated
    assert len(body["problems"]) == min(found, 100)


async def test_a_run_with_more_than_100_problems_lists_100(client: httpx.AsyncClient, settings: Settings) -> None:
    """101 blob rows whose files are gone: the run records all of them in its counters, lists 100."""
    admin = await admin_headers(client, settings)
    lost = sorted(secrets.token_hex(32) for _ in range(101))
    async with database(settings) as db, db.transaction() as session:
        for digest in lost:
            session.add(Blob(sha256=digest, size=10, refcount=0, created_at=utcnow()))

    async with database(settings) as db:
        report, _ = await checked_run(
            db, LocalBlobStore(settings.data_dir), kind="fsck", rehash=True, repair=False, grace_seconds=3600
        )

    assert len([p for p in report.problems if p.kind == "missing_blob"]) == 101
    body = assert_run((await last_runs(client, admin))["fsck"], kind="fsck", trigger="cli", outcome="problems")
    assert body["problems_truncated"] is True
    assert len(body["problems"]) == 100
    assert body["problems_found"] == len(report.problems)
    assert body["by_kind"]["missing_blob"] == 101
    assert {p["subject"] for p in body["problems"]} <= set(lost)


# --- storage -------------------------------------------------------------------------------------


async def test_storage_usage_charged_referenced_and_stored(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_headers(client, settings)
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    docs = (
        await client.post(node_path(alice.root_id, "/folders"), json={"name": "docs"}, headers=alice.headers)
    ).json()
    await upload(client, alice, docs["id"], "shared.bin", ALPHA)
    await upload(client, bob, bob.root_id, "shared.bin", ALPHA)  # the same content: stored once
    await upload(client, alice, alice.root_id, "unique.bin", BRAVO)
    replaced = await put_raw(client, alice, alice.root_id, "unique.bin", b"x" * 700, on_conflict="replace")
    assert replaced.status_code == 200, replaced.text

    response = await client.get(STORAGE, headers=admin)

    assert response.status_code == 200, response.text
    body = response.json()
    disk = body.pop("disk")
    charged = 2 * len(ALPHA) + len(BRAVO) + 700  # two copies of alpha, and both versions of unique.bin
    stored = len(ALPHA) + len(BRAVO) + 700
    assert body == {
        "users": 3,  # alice, bob and the administrator
        "files": 3,
        "folders": 1,  # root folders are not counted
        "versions": 4,
        "blobs": 3,
        "charged_bytes": charged,
        "referenced_bytes": charged,
        "stored_bytes": stored,
        "dedup_saved_bytes": len(ALPHA),
    }
    assert disk["path"] == str(settings.data_dir.resolve())
    assert disk["total_bytes"] > 0
    assert disk["used_bytes"] > 0
    assert disk["free_bytes"] > 0
    assert disk["used_bytes"] + disk["free_bytes"] <= disk["total_bytes"]
    assert await _usage(client, alice) + await _usage(client, bob) == charged


async def _usage(client: httpx.AsyncClient, account: Account) -> int:
    response = await client.get("/api/v1/me", headers=account.headers)
    assert response.status_code == 200, response.text
    used: int = response.json()["used_bytes"]
    return used


# --- who may look --------------------------------------------------------------------------------


async def test_only_administrators_may_look(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_headers(client, settings)
    alice = await new_account(client, "alice@example.com")

    for path in (MAINTENANCE, STORAGE):
        assert_problem(await client.get(path), 401, "unauthenticated")
        assert_problem(await client.get(path, headers=auth("not-a-token")), 401, "unauthenticated")
        assert_problem(await client.get(path, headers=alice.headers), 403, "permission-denied")
        assert (await client.get(path, headers=admin)).status_code == 200, path
