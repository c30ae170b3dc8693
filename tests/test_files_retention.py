"""Version retention end to end, on both databases: keep-last, thinning by age (after a write and from
housekeeping), pinning over REST, restore under retention, and the settings that configure it.

Histories are built by an application with a generous policy, then (where age matters) backdated in
the database, then thinned by an application or service with the policy under test — the same
database and data folder, as after an operator changes the settings.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import update

from accounts_helpers import concurrent_client, database, db_transaction, lock_held, open_client
from conftest import make_settings
from files_helpers import (
    Account,
    assert_problem,
    assert_unchanged,
    collect_garbage,
    mkdir,
    new_account,
    node_path,
    put_raw,
    sha256_hex,
    storage,
    upload,
)
from stowage.blobs import LocalBlobStore
from stowage.config import ConfigError, Settings, load_settings
from stowage.db.tables import Version
from stowage.files.services import FileDeps, FileServices
from stowage.files.services import _versions as versions_module

GENEROUS = {"version_keep_last": 100, "version_thinning": ""}


# --- helpers --------------------------------------------------------------------------------------


def contents(prefix: str, count: int) -> list[bytes]:
    """Distinct contents of distinct sizes, so sums and blob rows tell them apart."""
    return [f"{prefix} version {i} ".encode() + b"x" * i for i in range(count)]


async def write_history(client: httpx.AsyncClient, account: Account, name: str, datas: list[bytes]) -> str:
    """Upload ``datas[0]`` as a new file and overwrite it with each following one; returns the node id."""
    node = await upload(client, account, account.root_id, name, datas[0])
    for data in datas[1:]:
        await overwrite(client, account, name, data)
    node_id: str = node["id"]
    return node_id


async def overwrite(client: httpx.AsyncClient, account: Account, name: str, data: bytes) -> None:
    response = await put_raw(client, account, account.root_id, name, data, on_conflict="replace")
    assert response.status_code == 200, response.text


async def listed(client: httpx.AsyncClient, account: Account, node_id: str) -> list[dict[str, Any]]:
    response = await client.get(node_path(node_id, "/versions"), headers=account.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def kept(client: httpx.AsyncClient, account: Account, node_id: str) -> list[str]:
    """The SHA-256 of each listed version, newest first."""
    return [item["sha256"] for item in await listed(client, account, node_id)]


async def version_ids(client: httpx.AsyncClient, account: Account, node_id: str, datas: list[bytes]) -> list[str]:
    """The id of the version holding each of ``datas`` (all distinct)."""
    by_hash = {item["sha256"]: item["id"] for item in await listed(client, account, node_id)}
    return [by_hash[sha256_hex(data)] for data in datas]


def hashes(*datas: bytes) -> list[str]:
    return [sha256_hex(data) for data in datas]


async def backdate(settings: Settings, when: Mapping[str, datetime]) -> None:
    async with db_transaction(settings) as session:
        for version_id, created_at in when.items():
            await session.execute(update(Version).where(Version.id == version_id).values(created_at=created_at))


async def refcounts(settings: Settings) -> dict[str, int]:
    return {sha: refcount for sha, _size, refcount in (await storage(settings)).blobs}


async def thin_everywhere(settings: Settings, now: datetime) -> int:
    """What housekeeping runs: ``VersionService.apply_retention_everywhere``, built as the app builds it."""
    async with database(settings) as db:
        services = FileServices.build(
            FileDeps(settings=settings, database=db, store=LocalBlobStore(settings.data_dir.resolve()))
        )
        return await services.versions.apply_retention_everywhere(now=now)


async def pin(
    client: httpx.AsyncClient, account: Account, node_id: str, version_id: str, pinned: bool
) -> dict[str, Any]:
    response = await client.patch(
        node_path(node_id, f"/versions/{version_id}"), json={"pinned": pinned}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def version_row_locked(
    settings: Settings, version_id: str
) -> AbstractAsyncContextManager[Callable[[int], Awaitable[None]]]:
    """Make every write touching one version row wait (see ``lock_held``; on SQLite every write waits);
    on PostgreSQL ``wait_for`` counts statements on ``versions`` or ``users`` waiting for the lock."""
    return lock_held(
        settings,
        postgres_lock="SELECT 1 FROM versions WHERE id = $1 FOR UPDATE",
        args=[version_id],
        waiting=["%versions%", "%users%"],
    )


async def lined_up(settings: Settings, version_id: str, calls: list[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """Run requests concurrently, all waiting on one version row before any goes on; each starts once the
    one before it waits, so they get the lock in the order given (on SQLite, by the time the first one
    counts as waiting, it or the batch it joined has found the database busy: it holds the writer
    connection the later ones queue for)."""
    async with version_row_locked(settings, version_id) as wait_for:
        tasks = []
        for call in calls:
            tasks.append(asyncio.ensure_future(call))
            await wait_for(len(tasks))
    return list(await asyncio.gather(*tasks))


# --- keep the newest N ----------------------------------------------------------------------------


async def test_keep_last_bounds_history_and_releases_bytes_and_blobs(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, version_keep_last=2, version_thinning="")
    datas = contents("report", 6)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "report.txt", datas[0])
        for count, data in enumerate(datas[1:], start=1):
            await overwrite(client, alice, "report.txt", data)
            assert len(await listed(client, alice, node["id"])) == min(count, 2) + 1

        items = await listed(client, alice, node["id"])
        assert [i["sha256"] for i in items] == hashes(datas[5], datas[4], datas[3])
        assert [i["current"] for i in items] == [True, False, False]
        old = await client.get(node_path(node["id"], f"/versions/{items[2]['id']}/content"), headers=alice.headers)
        assert old.content == datas[3]

    state = await storage(settings)
    assert state.usage[alice.user_id] == sum(len(d) for d in datas[3:])
    assert await refcounts(settings) == dict.fromkeys(hashes(*datas[3:]), 1)
    assert state.blob_files >= set(hashes(*datas))  # files go only with the garbage collector

    await collect_garbage(settings)

    files = (await storage(settings)).blob_files
    assert files & set(hashes(*datas[:3])) == set()
    assert files >= set(hashes(*datas[3:]))


async def test_dropping_a_version_that_shares_its_blob_keeps_the_blob(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, version_keep_last=1, version_thinning="")
    a, b = b"same content again", b"something else"
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "doc.txt", [a, b, a])

        assert await kept(client, alice, node_id) == hashes(a, b)

    assert await refcounts(settings) == {sha256_hex(a): 1, sha256_hex(b): 1}
    assert (await storage(settings)).usage[alice.user_id] == len(a) + len(b)
    await collect_garbage(settings)
    assert (await storage(settings)).blob_files >= set(hashes(a, b))


# --- thinning by age ------------------------------------------------------------------------------


async def test_an_overwrite_thins_old_history_by_age(settings_env: dict[str, str]) -> None:
    datas = contents("log", 8)
    async with open_client(make_settings(settings_env, **GENEROUS)) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "log.txt", datas[:7])
        ids = await version_ids(client, alice, node_id, datas[:7])

    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)  # 2 to 4 hours old: hourly
    day = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)  # 2 to 4 days old: daily
    settings = make_settings(settings_env, version_keep_last=1, version_thinning="1h:1d,1d:30d")
    await backdate(
        settings,
        {
            ids[0]: day - timedelta(days=37),  # past the last limit (30 d): dropped
            ids[1]: day - timedelta(days=7) + timedelta(hours=1),  # alone in its day: kept
            ids[2]: day + timedelta(hours=2),  # same day as ids[3], older: dropped
            ids[3]: day + timedelta(hours=5),
            ids[4]: hour + timedelta(minutes=10),  # same hour as ids[5], older: dropped
            ids[5]: hour + timedelta(minutes=40),
            # ids[6] is current and recent: after the next write it fills the one keep_last slot
        },
    )

    async with open_client(settings) as client:
        await overwrite(client, alice, "log.txt", datas[7])

        assert await kept(client, alice, node_id) == hashes(datas[7], datas[6], datas[5], datas[3], datas[1])

    survivors = [datas[i] for i in (1, 3, 5, 6, 7)]
    assert (await storage(settings)).usage[alice.user_id] == sum(len(d) for d in survivors)
    assert await refcounts(settings) == dict.fromkeys(hashes(*survivors), 1)


async def test_housekeeping_thins_every_file_by_age(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions_module, "RETENTION_PAGE", 1)  # one file per page: the paging is exercised too
    a, b, c, d = contents("a", 7), contents("b", 4), contents("c", 2), contents("d", 3)
    async with open_client(make_settings(settings_env, **GENEROUS)) as client:
        alice = await new_account(client, "alice@example.com")
        bob = await new_account(client, "bob@example.com")
        a_id = await write_history(client, alice, "a.txt", a)
        b_id = await write_history(client, bob, "b.txt", b)
        c_id = await write_history(client, alice, "c.txt", c)
        d_id = await write_history(client, alice, "d.txt", d)
        a_ids = await version_ids(client, alice, a_id, a)
        b_ids = await version_ids(client, bob, b_id, b)
        c_ids = await version_ids(client, alice, c_id, c)
        d_ids = await version_ids(client, alice, d_id, d)
        await pin(client, alice, a_id, a_ids[0], True)

    def at(text: str) -> datetime:
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)

    now = at("2024-06-15 12:30")
    moments = {
        "a": [
            "2024-01-01 00:00",
            "2024-06-10 08:00",
            "2024-06-10 20:00",
            "2024-06-15 12:05",
            "2024-06-15 12:10",
            "2024-06-15 12:20",
            "2024-06-15 12:25",
        ],
        "b": ["2024-02-01 00:00", "2024-03-01 00:00", "2024-06-01 00:00", "2024-06-15 12:00"],
        "c": ["2020-01-01 00:00", "2020-02-01 00:00"],
        "d": ["2024-06-15 11:10", "2024-06-15 11:20", "2024-06-15 11:30"],
    }
    settings = make_settings(settings_env, version_keep_last=1, version_thinning="1h:1d,1d:30d")
    await backdate(
        settings,
        {
            version_id: at(moment)
            for ids, key in ((a_ids, "a"), (b_ids, "b"), (c_ids, "c"), (d_ids, "d"))
            for version_id, moment in zip(ids, moments[key], strict=True)
        },
    )
    before = await storage(settings)

    dropped = await thin_everywhere(settings, now)

    # a: a6 current, a5 the keep_last slot, a4 hour 12, a3 same hour (dropped), a2 day 06-10,
    #    a1 same day (dropped), a0 past 30 d but pinned. b: b2 in the slot, b1 and b0 past 30 d.
    #    c: no more than keep_last + 1 versions, untouched. d: d0 alone in hour 11, kept.
    assert dropped == 4
    async with open_client(settings) as client:
        assert await kept(client, alice, a_id) == hashes(a[6], a[5], a[4], a[2], a[0])
        assert [i["pinned"] for i in await listed(client, alice, a_id)] == [False, False, False, False, True]
        assert await kept(client, bob, b_id) == hashes(b[3], b[2])
        assert await kept(client, alice, c_id) == hashes(c[1], c[0])
        assert await kept(client, alice, d_id) == hashes(d[2], d[1], d[0])
    after = await storage(settings)
    gone = [a[3], a[1], b[1], b[0]]
    assert after.usage[alice.user_id] == before.usage[alice.user_id] - len(a[3]) - len(a[1])
    assert after.usage[bob.user_id] == before.usage[bob.user_id] - len(b[1]) - len(b[0])
    assert set(await refcounts(settings)) == set(hashes(*a, *b, *c, *d)) - set(hashes(*gone))

    assert await thin_everywhere(settings, now) == 0  # nothing more to do at the same moment
    assert (await storage(settings)).versions == after.versions


async def test_one_failing_file_does_not_stop_housekeeping_thinning(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose thinning fails is logged and skipped; every other file is still thinned."""
    monkeypatch.setattr(versions_module, "RETENTION_PAGE", 1)
    a, b = contents("a", 3), contents("b", 3)
    async with open_client(make_settings(settings_env, **GENEROUS)) as client:
        alice = await new_account(client, "alice@example.com")
        a_id = await write_history(client, alice, "a.txt", a)
        b_id = await write_history(client, alice, "b.txt", b)
    settings = make_settings(settings_env, version_keep_last=0, version_thinning="")
    real = versions_module.apply_retention

    async def failing_for_a(tx: Any, node_id: str, **kwargs: Any) -> int:
        if node_id == a_id:
            raise RuntimeError("simulated failure")
        return await real(tx, node_id, **kwargs)

    monkeypatch.setattr(versions_module, "apply_retention", failing_for_a)
    with structlog.testing.capture_logs() as logs:
        dropped = await thin_everywhere(settings, datetime.now(UTC))

    assert dropped == 2
    async with open_client(settings) as client:
        assert await kept(client, alice, a_id) == hashes(*reversed(a))
        assert await kept(client, alice, b_id) == hashes(b[2])
    failures = [entry for entry in logs if entry["event"] == "retention_failed"]
    assert [entry["node_id"] for entry in failures] == [a_id]


# --- pinning --------------------------------------------------------------------------------------


async def test_pinned_version_survives_retention_until_unpinned(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, version_keep_last=1, version_thinning="")
    v = contents("plan", 5)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "plan.txt", v[:2])
        first = (await listed(client, alice, node_id))[1]

        pinned = await pin(client, alice, node_id, first["id"], True)

        assert pinned == {**first, "pinned": True}
        assert [i["pinned"] for i in await listed(client, alice, node_id)] == [False, True]

        await overwrite(client, alice, "plan.txt", v[2])
        await overwrite(client, alice, "plan.txt", v[3])
        # v1 went; v0 stays although older, and takes no keep_last slot (v2 has it).
        assert await kept(client, alice, node_id) == hashes(v[3], v[2], v[0])

        before = await storage(settings)
        refused = await client.delete(node_path(node_id, f"/versions/{first['id']}"), headers=alice.headers)
        assert_problem(refused, 409, "conflict", detail_contains="pinned")
        assert_unchanged(before, await storage(settings))
        assert [i["pinned"] for i in await listed(client, alice, node_id)] == [False, False, True]

        unpinned = await pin(client, alice, node_id, first["id"], False)
        assert unpinned["pinned"] is False
        assert await kept(client, alice, node_id) == hashes(v[3], v[2], v[0])  # not thinned by the PATCH itself

        await overwrite(client, alice, "plan.txt", v[4])

        assert await kept(client, alice, node_id) == hashes(v[4], v[3])
    assert (await storage(settings)).usage[alice.user_id] == len(v[4]) + len(v[3])


async def test_an_unpinned_version_can_be_deleted(settings_env: dict[str, str]) -> None:
    async with open_client(make_settings(settings_env)) as client:
        alice = await new_account(client, "alice@example.com")
        v = contents("memo", 3)
        node_id = await write_history(client, alice, "memo.txt", v)
        old = (await listed(client, alice, node_id))[2]
        await pin(client, alice, node_id, old["id"], True)
        await pin(client, alice, node_id, old["id"], False)

        deleted = await client.delete(node_path(node_id, f"/versions/{old['id']}"), headers=alice.headers)

        assert deleted.status_code == 204, deleted.text
        assert await kept(client, alice, node_id) == hashes(v[2], v[1])


async def test_the_current_version_can_be_pinned_and_stays_pinned_in_history(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, version_keep_last=0, version_thinning="")
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        v = contents("cv", 3)
        node_id = await write_history(client, alice, "cv.txt", v[:1])
        current = (await listed(client, alice, node_id))[0]
        assert (await pin(client, alice, node_id, current["id"], True))["current"] is True

        await overwrite(client, alice, "cv.txt", v[1])
        await overwrite(client, alice, "cv.txt", v[2])

        assert await kept(client, alice, node_id) == hashes(v[2], v[0])


BAD_BODIES: list[Any] = [
    {},
    {"pinned": "yes"},
    {"pinned": None},
    {"pinned": 2},
    {"pinned": [True]},
    {"pinned": True, "note": "keep"},
    ["pinned"],
    "pinned",
]
# (Litestar decodes bodies leniently, like msgspec's strict=False: 0/1 and "true"/"false" pass as booleans.)


async def test_patch_version_with_a_bad_body_is_refused(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "x.txt", contents("x", 2))
        old = (await listed(client, alice, node_id))[1]
        url = node_path(node_id, f"/versions/{old['id']}")
        before = await storage(settings)

        for body in BAD_BODIES:
            assert_problem(await client.patch(url, json=body, headers=alice.headers), 400, "invalid-input")
        not_json = await client.patch(
            url, content=b"{pinned: true", headers={**alice.headers, "content-type": "application/json"}
        )
        no_body = await client.patch(url, headers=alice.headers)

        assert_problem(not_json, 400, "invalid-input")
        assert_problem(no_body, 400, "invalid-input")
        assert_unchanged(before, await storage(settings))
        assert [i["pinned"] for i in await listed(client, alice, node_id)] == [False, False]


async def test_patch_version_errors_change_nothing(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        bob = await new_account(client, "bob@example.com")
        node_id = await write_history(client, alice, "x.txt", contents("x", 2))
        other_id = await write_history(client, alice, "y.txt", contents("y", 2))
        old = (await listed(client, alice, node_id))[1]
        foreign_version = (await listed(client, alice, other_id))[1]
        folder = await mkdir(client, alice, alice.root_id, "Folder")
        before = await storage(settings)

        def patch(node: str, version: str, headers: dict[str, str]) -> Any:
            return client.patch(node_path(node, f"/versions/{version}"), json={"pinned": True}, headers=headers)

        unknown = await patch(node_id, "00000000-0000-0000-0000-000000000000", alice.headers)
        of_other_file = await patch(node_id, foreign_version["id"], alice.headers)
        unknown_node = await patch("00000000-0000-0000-0000-000000000000", old["id"], alice.headers)
        by_bob = await patch(node_id, old["id"], bob.headers)
        on_folder = await patch(folder["id"], old["id"], alice.headers)
        anonymous = await client.patch(node_path(node_id, f"/versions/{old['id']}"), json={"pinned": True})

        assert_problem(unknown, 404, "not-found")
        assert_problem(of_other_file, 404, "not-found")
        assert_problem(unknown_node, 404, "not-found")
        assert_problem(by_bob, 404, "not-found")
        assert_problem(on_folder, 409, "conflict")
        assert anonymous.status_code == 401, anonymous.text
        assert_unchanged(before, await storage(settings))
        assert not any(
            i["pinned"] for i in await listed(client, alice, node_id) + await listed(client, alice, other_id)
        )


# --- restore under retention ----------------------------------------------------------------------


async def test_restores_keep_history_bounded(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, version_keep_last=1, version_thinning="")
    v = contents("draft", 3)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "draft.txt", v)
        assert await kept(client, alice, node_id) == hashes(v[2], v[1])

        for expected_current, expected_old in ((v[1], v[2]), (v[2], v[1]), (v[1], v[2])):
            previous = (await listed(client, alice, node_id))[1]
            restored = await client.post(
                node_path(node_id, f"/versions/{previous['id']}/restore"), headers=alice.headers
            )
            assert restored.status_code == 200, restored.text
            assert restored.json()["etag"] == f'"{sha256_hex(expected_current)}"'
            assert await kept(client, alice, node_id) == hashes(expected_current, expected_old)

        content = await client.get(node_path(node_id, "/content"), headers=alice.headers)
        assert content.content == v[1]

    assert (await storage(settings)).usage[alice.user_id] == len(v[1]) + len(v[2])
    assert await refcounts(settings) == {sha256_hex(v[1]): 1, sha256_hex(v[2]): 1}


async def test_restore_after_thinning_by_age(settings_env: dict[str, str]) -> None:
    v = contents("notes", 4)
    async with open_client(make_settings(settings_env, **GENEROUS)) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "notes.txt", v)
        ids = await version_ids(client, alice, node_id, v)

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    settings = make_settings(settings_env, version_keep_last=0, version_thinning="1d:30d")
    await backdate(
        settings, {ids[0]: day + timedelta(hours=1), ids[1]: day + timedelta(hours=2), ids[2]: day - timedelta(days=60)}
    )

    async with open_client(settings) as client:
        restored = await client.post(node_path(node_id, f"/versions/{ids[0]}/restore"), headers=alice.headers)
        assert restored.status_code == 200, restored.text

        # The new current has v0's content; v3 (now the newest old one) has today; v1 represents its
        # day (v0, older in the same day, goes, its content living on in the current); v2 was too old.
        assert await kept(client, alice, node_id) == hashes(v[0], v[3], v[1])

    assert (await storage(settings)).usage[alice.user_id] == len(v[0]) + len(v[3]) + len(v[1])
    assert await refcounts(settings) == dict.fromkeys(hashes(v[0], v[3], v[1]), 1)


async def test_restore_a_pinned_version(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, version_keep_last=1, version_thinning="")
    v = contents("song", 4)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "song.txt", v[:2])
        first = (await listed(client, alice, node_id))[1]
        await pin(client, alice, node_id, first["id"], True)
        await overwrite(client, alice, "song.txt", v[2])
        await overwrite(client, alice, "song.txt", v[3])
        assert await kept(client, alice, node_id) == hashes(v[3], v[2], v[0])

        restored = await client.post(node_path(node_id, f"/versions/{first['id']}/restore"), headers=alice.headers)

        assert restored.status_code == 200, restored.text
        assert restored.json()["etag"] == f'"{sha256_hex(v[0])}"'
        items = await listed(client, alice, node_id)
        assert [i["sha256"] for i in items] == hashes(v[0], v[3], v[0])
        assert [(i["current"], i["pinned"]) for i in items] == [(True, False), (False, False), (False, True)]
        assert items[2]["id"] == first["id"]
        assert (await client.get(node_path(node_id, "/content"), headers=alice.headers)).content == v[0]

    assert await refcounts(settings) == {sha256_hex(v[0]): 2, sha256_hex(v[3]): 1}
    assert (await storage(settings)).usage[alice.user_id] == 2 * len(v[0]) + len(v[3])


# --- concurrent requests --------------------------------------------------------------------------


async def test_concurrent_deletes_of_one_version_release_it_once(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env)
    v = contents("race", 3)
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "race.txt", v)
        old = (await listed(client, alice, node_id))[2]
        url = node_path(node_id, f"/versions/{old['id']}")

        first, second = await lined_up(
            settings, old["id"], [client.delete(url, headers=alice.headers), client.delete(url, headers=alice.headers)]
        )

        assert sorted([first.status_code, second.status_code]) == [204, 404], (first.text, second.text)
        assert_problem(first if first.status_code == 404 else second, 404, "not-found")
        assert await kept(client, alice, node_id) == hashes(v[2], v[1])
    assert (await storage(settings)).usage[alice.user_id] == len(v[2]) + len(v[1])
    assert await refcounts(settings) == {sha256_hex(v[2]): 1, sha256_hex(v[1]): 1}


@pytest.mark.parametrize(
    ("first", "new_content"),
    [("delete", b"a longer third version"), ("write", b"a longer third version"), ("delete", b"")],
    ids=["delete-first", "write-first", "delete-first-empty-write"],
)
async def test_a_delete_racing_a_thinning_write_releases_once(
    settings_env: dict[str, str], first: str, new_content: bytes
) -> None:
    settings = make_settings(settings_env, version_keep_last=1, version_thinning="")
    v = [b"first", b"second!", new_content]
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "race.txt", v[:2])
        old = (await listed(client, alice, node_id))[1]  # the version the write's retention drops
        delete = client.delete(node_path(node_id, f"/versions/{old['id']}"), headers=alice.headers)
        write = put_raw(client, alice, alice.root_id, "race.txt", v[2], on_conflict="replace")

        if first == "delete":
            deleted, written = await lined_up(settings, old["id"], [delete, write])
        else:
            written, deleted = await lined_up(settings, old["id"], [write, delete])

        assert written.status_code == 200, written.text
        if first == "delete":
            assert deleted.status_code == 204, deleted.text
        else:  # the write's retention took it first
            assert_problem(deleted, 404, "not-found")
        assert await kept(client, alice, node_id) == hashes(v[2], v[1])
    assert (await storage(settings)).usage[alice.user_id] == len(v[2]) + len(v[1])
    assert await refcounts(settings) == {sha256_hex(v[2]): 1, sha256_hex(v[1]): 1}


@pytest.mark.parametrize("first", ["pin", "write"], ids=["pin-first", "write-first"])
async def test_a_pin_racing_a_thinning_write_is_never_lost(settings_env: dict[str, str], first: str) -> None:
    settings = make_settings(settings_env, version_keep_last=1, version_thinning="")
    v = contents("race", 3)
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node_id = await write_history(client, alice, "race.txt", v[:2])
        old = (await listed(client, alice, node_id))[1]  # the version the write's retention drops
        pin_it = client.patch(
            node_path(node_id, f"/versions/{old['id']}"), json={"pinned": True}, headers=alice.headers
        )
        write = put_raw(client, alice, alice.root_id, "race.txt", v[2], on_conflict="replace")

        if first == "pin":
            pinned, written = await lined_up(settings, old["id"], [pin_it, write])
        else:
            written, pinned = await lined_up(settings, old["id"], [write, pin_it])

        assert written.status_code == 200, written.text
        items = await listed(client, alice, node_id)
        if first == "pin":  # the write must not drop what was pinned meanwhile
            assert pinned.status_code == 200, pinned.text
            assert pinned.json()["pinned"] is True
            assert [(i["sha256"], i["pinned"]) for i in items] == [
                (sha256_hex(v[2]), False),
                (sha256_hex(v[1]), False),
                (sha256_hex(v[0]), True),
            ]
        else:  # the write dropped it first: the pin finds nothing (not a server error)
            assert_problem(pinned, 404, "not-found")
            assert [i["sha256"] for i in items] == hashes(v[2], v[1])
    remaining = v if first == "pin" else v[1:]
    assert (await storage(settings)).usage[alice.user_id] == sum(len(c) for c in remaining)


# --- settings -------------------------------------------------------------------------------------


def test_retention_settings_from_the_environment() -> None:
    settings = load_settings({"STOWAGE_VERSION_KEEP_LAST": "0", "STOWAGE_VERSION_THINNING": " 30m:1d, 1w "})
    defaults = load_settings({})

    assert settings.version_keep_last == 0
    assert settings.version_thinning == "30m:1d, 1w"
    assert load_settings({"STOWAGE_VERSION_THINNING": ""}).version_thinning == ""
    assert (defaults.version_keep_last, defaults.version_thinning) == (10, "1h:1d,1d:30d,1w")


@pytest.mark.parametrize(
    ("env", "name", "fragments"),
    [
        ({"STOWAGE_VERSION_THINNING": "1h:1d,weekly"}, "STOWAGE_VERSION_THINNING", ("1h:1d,1d:30d,1w", "'weekly'")),
        ({"STOWAGE_VERSION_THINNING": "1:1d"}, "STOWAGE_VERSION_THINNING", ("needs a unit",)),
        ({"STOWAGE_VERSION_THINNING": "1h:30d,1d:1d"}, "STOWAGE_VERSION_THINNING", ("must grow",)),
        ({"STOWAGE_VERSION_THINNING": "1w,1h:1d"}, "STOWAGE_VERSION_THINNING", ("only the last stage",)),
        ({"STOWAGE_VERSION_THINNING": "1h:0"}, "STOWAGE_VERSION_THINNING", ("more than 0",)),
        ({"STOWAGE_VERSION_KEEP_LAST": "-1"}, "STOWAGE_VERSION_KEEP_LAST", ("between 0 and 10000",)),
        ({"STOWAGE_VERSION_KEEP_LAST": "10001"}, "STOWAGE_VERSION_KEEP_LAST", ("between 0 and 10000",)),
        ({"STOWAGE_VERSION_KEEP_LAST": "ten"}, "STOWAGE_VERSION_KEEP_LAST", ("'ten'",)),
    ],
    ids=lambda case: str(case) if not isinstance(case, dict) else "=".join(next(iter(case.items()))),
)
def test_bad_retention_settings_are_refused_naming_the_setting(
    env: dict[str, str], name: str, fragments: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    message = str(caught.value)
    assert re.match(rf"{name} \({name.removeprefix('STOWAGE_').lower()}\)", message), message
    for fragment in fragments:
        assert fragment in message, message
