"""Share links over HTTP, on SQLite and PostgreSQL: the owner's side (create, list, edit, revoke) and the
visitor's (metadata, downloads with Range and ETag, listings, ZIP, passwords and their rate limit, expiry,
download limits under concurrency, drop folders, escape attempts, trash and moves taking effect at once)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import httpx
from sqlalchemy import select

from accounts_helpers import assert_problem, concurrent_client, database, open_client
from conftest import make_settings
from files_helpers import (
    API,
    assert_unchanged,
    mkdir,
    names_in,
    new_account,
    node_path,
    read_zip,
    set_quota,
    storage,
    upload,
    used_bytes,
)
from sharing_helpers import create_link, set_share, share_rows, unlock, visitor
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.tables import Share

CONTENT = b"the quick brown fox jumps over the lazy dog"


# --- the owner's side ---------------------------------------------------------------------------------


async def test_a_link_token_is_random_shown_once_and_stored_only_as_a_hash(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)

    created = await create_link(client, alice, file["id"])
    again = await create_link(client, alice, file["id"])

    token = created["token"]
    assert token.startswith("shl_")
    assert len(token) >= 4 + 22
    assert token != again["token"]
    assert created["path"] == f"/api/v1/s/{token}"
    assert created["link"]["mode"] == "read"
    assert created["link"]["node_id"] == file["id"]
    assert created["link"]["password_protected"] is False
    assert created["link"]["download_count"] == 0
    async with database(settings) as db, db.session() as session:
        row = await session.scalar(select(Share).where(Share.id == created["link"]["id"]))
    assert row is not None
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr([getattr(row, c.name) for c in Share.__table__.columns])
    listed = await client.get(node_path(file["id"], "/links"), headers=alice.headers)
    assert [link["id"] for link in listed.json()["items"]] == [created["link"]["id"], again["link"]["id"]]
    assert "token" not in listed.json()["items"][0]


async def test_the_owner_edits_and_revokes_and_the_next_visit_sees_it(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
    created = await create_link(client, alice, file["id"])
    link_id, token = created["link"]["id"], created["token"]
    assert (await client.get(visitor(token, "/content"))).content == CONTENT

    expiry = (utcnow() + timedelta(days=2)).isoformat()
    edited = await client.patch(
        f"{API}/links/{link_id}", json={"max_downloads": 5, "expires_at": expiry}, headers=alice.headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["max_downloads"] == 5
    assert edited.json()["expires_at"] is not None
    both = await client.patch(
        f"{API}/links/{link_id}", json={"max_downloads": 2, "remove_download_limit": True}, headers=alice.headers
    )
    assert_problem(both, 400, "invalid-input", field="body.max_downloads")
    cleared = await client.patch(f"{API}/links/{link_id}", json={"remove_expiry": True}, headers=alice.headers)
    assert cleared.json()["expires_at"] is None
    assert cleared.json()["max_downloads"] == 5

    revoked = await client.delete(f"{API}/links/{link_id}", headers=alice.headers)

    assert revoked.status_code == 204
    assert_problem(await client.get(visitor(token, "/content")), 404, "not-found")
    assert_problem(await client.get(visitor(token)), 404, "not-found")
    assert (await client.get(f"{API}/links", headers=alice.headers)).json()["items"] == []
    assert_problem(await client.delete(f"{API}/links/{link_id}", headers=alice.headers), 404, "not-found")


async def test_only_the_owner_manages_a_link(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    mallory = await new_account(client, "mallory@example.com")
    file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
    link_id = (await create_link(client, alice, file["id"]))["link"]["id"]
    before = await share_rows(settings)

    assert_problem(
        await client.post(node_path(file["id"], "/links"), json={}, headers=mallory.headers), 404, "not-found"
    )
    assert_problem(await client.get(node_path(file["id"], "/links"), headers=mallory.headers), 404, "not-found")
    patched = await client.patch(f"{API}/links/{link_id}", json={"max_downloads": 1}, headers=mallory.headers)
    assert_problem(patched, 404, "not-found")
    assert_problem(await client.delete(f"{API}/links/{link_id}", headers=mallory.headers), 404, "not-found")
    assert (await client.get(f"{API}/links", headers=mallory.headers)).json()["items"] == []
    assert await share_rows(settings) == before


async def test_links_refuse_bad_requests(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
    folder = await mkdir(client, alice, alice.root_id, "inbox")
    past = (utcnow() - timedelta(minutes=1)).isoformat()

    response = await client.post(node_path(file["id"], "/links"), json={"expires_at": past}, headers=alice.headers)
    assert_problem(response, 400, "invalid-input", field="body.expires_at")
    response = await client.post(node_path(file["id"], "/links"), json={"drop": True}, headers=alice.headers)
    assert_problem(response, 409, "conflict", detail_contains="drop links lead to folders")
    body = {"drop": True, "max_downloads": 3}
    response = await client.post(node_path(folder["id"], "/links"), json=body, headers=alice.headers)
    assert_problem(response, 400, "invalid-input", field="body.max_downloads")
    response = await client.post(node_path(alice.root_id, "/links"), json={}, headers=alice.headers)
    assert_problem(response, 409, "conflict", detail_contains="root folder")
    response = await client.post(node_path(file["id"], "/links"), json={"max_downloads": 0}, headers=alice.headers)
    assert_problem(response, 400, "invalid-input")
    assert await share_rows(settings) == []


# --- visiting a file link -----------------------------------------------------------------------------


async def test_a_visitor_downloads_like_any_client(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
    token = (await create_link(client, alice, file["id"]))["token"]

    whole = await client.get(visitor(token, "/content"))
    ranged = await client.get(visitor(token, "/content"), headers={"Range": "bytes=4-8"})
    cached = await client.get(visitor(token, "/content"), headers={"If-None-Match": whole.headers["etag"]})
    head = await client.head(visitor(token, "/content"))
    attachment = await client.get(visitor(token, "/content"), params={"download": "true"})
    info = await client.get(visitor(token))

    assert whole.status_code == 200
    assert whole.content == CONTENT
    assert whole.headers["etag"] == file["etag"]
    assert ranged.status_code == 206
    assert ranged.content == CONTENT[4:9]
    assert ranged.headers["content-range"] == f"bytes 4-8/{len(CONTENT)}"
    assert cached.status_code == 304
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(CONTENT))
    assert attachment.headers["content-disposition"].startswith("attachment")
    assert info.status_code == 200
    assert info.json() == {
        "mode": "read",
        "password_required": False,
        "node": {
            "id": file["id"],
            "name": "fox.txt",
            "kind": "file",
            "size": len(CONTENT),
            "media_type": file["media_type"],
            "etag": file["etag"],
            "modified_at": file["modified_at"],
        },
        "expires_at": None,
        "downloads_left": None,
    }


async def test_unknown_malformed_and_expired_links_are_not_found(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
    created = await create_link(client, alice, file["id"], expires_at=(utcnow() + timedelta(hours=1)).isoformat())
    token = created["token"]
    assert (await client.get(visitor(token, "/content"))).status_code == 200

    for bad in ("shl_" + "A" * 43, "nonsense", "shl_" + "x" * 300, token[:-1]):
        assert_problem(await client.get(visitor(bad, "/content")), 404, "not-found")
    await set_share(settings, created["link"]["id"], expires_at=utcnow() - timedelta(seconds=1))

    for suffix in ("", "/content", "/children", "/zip"):
        assert_problem(await client.get(visitor(token, suffix)), 404, "not-found", detail_contains="expired")


# --- passwords ----------------------------------------------------------------------------------------


async def test_a_password_link_needs_a_grant_bound_to_its_password(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
    created = await create_link(client, alice, file["id"], password="open sesame")
    token, link_id = created["token"], created["link"]["id"]
    assert created["link"]["password_protected"] is True

    locked = await client.get(visitor(token, "/content"))
    body = assert_problem(locked, 403, "permission-denied", detail_contains="password")
    assert body["password_required"] is True
    info = (await client.get(visitor(token))).json()
    assert info["password_required"] is True
    assert info["node"] is None
    assert_problem(await unlock(client, token, "wrong"), 403, "permission-denied", detail_contains="wrong password")

    unlocked = await unlock(client, token, "open sesame")

    assert unlocked.status_code == 200, unlocked.text
    grant = unlocked.json()["grant"]
    by_header = await client.get(visitor(token, "/content"), headers={"X-Share-Grant": grant})
    by_query = await client.get(visitor(token, "/content"), params={"grant": grant})
    assert by_header.status_code == 200
    assert by_header.content == CONTENT
    assert by_query.status_code == 200
    assert by_query.content == CONTENT
    assert (await client.get(visitor(token), headers={"X-Share-Grant": grant})).json()["node"]["id"] == file["id"]
    tampered = grant[:-2] + ("AA" if not grant.endswith("AA") else "BB")
    assert_problem(
        await client.get(visitor(token, "/content"), headers={"X-Share-Grant": tampered}), 403, "permission-denied"
    )
    other = (await create_link(client, alice, file["id"], password="open sesame"))["token"]
    assert_problem(
        await client.get(visitor(other, "/content"), headers={"X-Share-Grant": grant}), 403, "permission-denied"
    )

    changed = await client.patch(f"{API}/links/{link_id}", json={"password": "new words"}, headers=alice.headers)
    assert changed.status_code == 200
    assert_problem(
        await client.get(visitor(token, "/content"), headers={"X-Share-Grant": grant}), 403, "permission-denied"
    )
    removed = await client.patch(f"{API}/links/{link_id}", json={"remove_password": True}, headers=alice.headers)
    assert removed.json()["password_protected"] is False
    assert (await client.get(visitor(token, "/content"))).status_code == 200
    assert_problem(await unlock(client, token, "new words"), 409, "conflict")


async def test_wrong_passwords_are_rate_limited_per_link(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, rate_limit_auth_per_account=3, rate_limit_auth_per_ip=1000)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
        token = (await create_link(client, alice, file["id"], password="open sesame"))["token"]
        other = (await create_link(client, alice, file["id"], password="open sesame"))["token"]

        for _ in range(3):
            assert_problem(await unlock(client, token, "guess"), 403, "permission-denied")
        limited = await unlock(client, token, "open sesame")

        assert_problem(limited, 429, "rate-limited", detail_contains="password attempts for this link")
        assert (await unlock(client, other, "open sesame")).status_code == 200


# --- download limits --------------------------------------------------------------------------------


async def test_a_download_limit_holds_under_concurrent_downloads(settings: Settings) -> None:
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
        created = await create_link(client, alice, file["id"], max_downloads=3)
        token = created["token"]

        answers = await asyncio.gather(*(client.get(visitor(token, "/content")) for _ in range(12)))

        assert sorted(a.status_code for a in answers) == [200] * 3 + [404] * 9
        assert all(a.content == CONTENT for a in answers if a.status_code == 200)
        for refused in (a for a in answers if a.status_code == 404):
            assert_problem(refused, 404, "not-found", detail_contains="download limit")
        assert [r[4] for r in await share_rows(settings) if r[0] == created["link"]["id"]] == [3]
        assert (await client.get(visitor(token))).json()["downloads_left"] == 0


async def test_only_whole_downloads_count_against_the_limit(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    file = await upload(client, alice, alice.root_id, "fox.txt", CONTENT)
    token = (await create_link(client, alice, file["id"], max_downloads=1))["token"]

    assert (await client.head(visitor(token, "/content"))).status_code == 200
    assert (await client.get(visitor(token, "/content"), headers={"Range": "bytes=5-"})).status_code == 206
    etag = file["etag"]
    assert (await client.get(visitor(token, "/content"), headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get(visitor(token))).json()["downloads_left"] == 1
    assert (await client.get(visitor(token, "/content"))).status_code == 200

    assert_problem(await client.get(visitor(token, "/content")), 404, "not-found", detail_contains="download limit")
    assert (await client.head(visitor(token, "/content"))).status_code == 404


# --- folders: listings, ZIP, escapes ----------------------------------------------------------------


async def test_a_folder_link_lists_serves_and_zips_its_subtree(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    album = await mkdir(client, alice, alice.root_id, "album")
    inner = await mkdir(client, alice, album["id"], "day 1")
    photo = await upload(client, alice, inner["id"], "a.jpg", b"jpeg bytes")
    note = await upload(client, alice, album["id"], "note.txt", b"hello")
    token = (await create_link(client, alice, album["id"]))["token"]

    top = await client.get(visitor(token, "/children"))
    below = await client.get(visitor(token, f"/nodes/{inner['id']}/children"))
    one = await client.get(visitor(token, f"/nodes/{photo['id']}"))
    content = await client.get(visitor(token, f"/nodes/{photo['id']}/content"))
    archive = await client.get(visitor(token, "/zip"))
    inner_archive = await client.get(visitor(token, f"/nodes/{inner['id']}/zip"))

    assert [item["name"] for item in top.json()["items"]] == ["day 1", "note.txt"]
    assert set(top.json()["items"][1]) == {"id", "name", "kind", "size", "media_type", "etag", "modified_at"}
    assert [item["id"] for item in below.json()["items"]] == [photo["id"]]
    assert one.json()["name"] == "a.jpg"
    assert one.json()["etag"] == photo["etag"]
    assert content.status_code == 200
    assert content.content == b"jpeg bytes"
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    assert read_zip(archive.content) == {
        "album/": b"",
        "album/day 1/": b"",
        "album/day 1/a.jpg": b"jpeg bytes",
        "album/note.txt": b"hello",
    }
    assert read_zip(inner_archive.content) == {"day 1/": b"", "day 1/a.jpg": b"jpeg bytes"}
    assert_problem(await client.get(visitor(token, "/content")), 409, "conflict", detail_contains="ZIP")
    assert (await client.get(visitor(token, f"/nodes/{note['id']}/content"))).content == b"hello"


async def test_a_visitor_cannot_leave_the_shared_folder(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    outer = await mkdir(client, alice, alice.root_id, "outer")
    shared = await mkdir(client, alice, outer["id"], "shared")
    await upload(client, alice, shared["id"], "ok.txt", b"ok")
    sibling = await upload(client, alice, outer["id"], "secret.txt", b"alice's secret")
    elsewhere = await upload(client, alice, alice.root_id, "top.txt", b"top secret")
    foreign = await upload(client, bob, bob.root_id, "bob.txt", b"bob's file")
    token = (await create_link(client, alice, shared["id"]))["token"]

    for target in (sibling["id"], elsewhere["id"], foreign["id"], outer["id"], alice.root_id, "no-such-id"):
        for suffix in ("", "/content", "/children", "/zip"):
            response = await client.get(visitor(token, f"/nodes/{target}{suffix}"))
            assert_problem(response, 404, "not-found")
    for escape in (f"/nodes/..%2F{sibling['id']}/content", "/nodes/%2E%2E/content", "/nodes/../../content"):
        response = await client.get(visitor(token, escape))
        assert response.status_code in {404, 401}, (escape, response.status_code)
        assert b"secret" not in response.content
    raw = await client.get(visitor(token, f"/../../nodes/{sibling['id']}/content"))
    assert raw.status_code in {401, 404}
    assert b"secret" not in raw.content


async def test_trashing_or_moving_the_node_takes_effect_on_the_next_request(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    shared = await mkdir(client, alice, alice.root_id, "shared")
    outside = await mkdir(client, alice, alice.root_id, "outside")
    file = await upload(client, alice, shared["id"], "f.txt", b"inside")
    token = (await create_link(client, alice, shared["id"]))["token"]
    assert (await client.get(visitor(token, f"/nodes/{file['id']}/content"))).status_code == 200

    moved = await client.patch(node_path(file["id"]), json={"parent_id": outside["id"]}, headers=alice.headers)
    assert moved.status_code == 200
    assert_problem(await client.get(visitor(token, f"/nodes/{file['id']}/content")), 404, "not-found")
    back = await client.patch(node_path(file["id"]), json={"parent_id": shared["id"]}, headers=alice.headers)
    assert back.status_code == 200
    assert (await client.get(visitor(token, f"/nodes/{file['id']}/content"))).status_code == 200

    assert (await client.delete(node_path(shared["id"]), headers=alice.headers)).status_code == 200
    assert_problem(await client.get(visitor(token, "/children")), 404, "not-found")
    assert_problem(await client.get(visitor(token, f"/nodes/{file['id']}/content")), 404, "not-found")
    restored = await client.post(f"{API}/trash/{shared['id']}/restore", json={}, headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert (await client.get(visitor(token, "/children"))).status_code == 200


# --- drop folders ---------------------------------------------------------------------------------


async def test_a_drop_link_takes_files_and_shows_nothing(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    inbox = await mkdir(client, alice, alice.root_id, "inbox")
    existing = await upload(client, alice, inbox["id"], "report.pdf", b"alice's own report")
    await mkdir(client, alice, inbox["id"], "sub")
    created = await create_link(client, alice, inbox["id"], drop=True)
    token = created["token"]
    assert created["link"]["mode"] == "drop"
    usage = await used_bytes(settings, alice.user_id)

    first = await client.put(visitor(token, "/files/report.pdf"), content=b"visitor report")
    second = await client.post(visitor(token, "/files/report.pdf"), content=b"another one")

    assert first.status_code == 201, first.text
    assert first.json() == {"name": "report (2).pdf", "size": len(b"visitor report")}
    assert second.json()["name"] == "report (3).pdf"
    beside_folder = await client.put(visitor(token, "/files/sub"), content=b"named like the folder")
    assert beside_folder.status_code == 201, beside_folder.text
    assert beside_folder.json()["name"] == "sub (2)"  # no 409 telling the visitor that a folder "sub" exists
    assert sorted(await names_in(client, alice, inbox["id"])) == [
        "report (2).pdf",
        "report (3).pdf",
        "report.pdf",
        "sub",
        "sub (2)",
    ]
    dropped = len(b"visitor report") + len(b"another one") + len(b"named like the folder")
    assert await used_bytes(settings, alice.user_id) == usage + dropped
    info = (await client.get(visitor(token))).json()
    assert info["mode"] == "drop"
    assert info["node"] is None
    for suffix in ("/content", "/children", "/zip", f"/nodes/{existing['id']}", f"/nodes/{existing['id']}/content"):
        assert_problem(await client.get(visitor(token, suffix)), 404, "not-found")
    sub_before = await storage(settings)
    into_sub = await client.put(visitor(token, f"/nodes/{existing['id']}/content"), content=b"x")
    assert into_sub.status_code in {404, 405}  # nothing to write to but the drop route
    assert_unchanged(sub_before, await storage(settings))


async def test_a_read_link_takes_no_uploads(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    folder = await mkdir(client, alice, alice.root_id, "photos")
    token = (await create_link(client, alice, folder["id"]))["token"]
    before = await storage(settings)

    response = await client.put(visitor(token, "/files/evil.txt"), content=b"evil")

    assert_problem(response, 403, "permission-denied", detail_contains="does not take uploads")
    assert_unchanged(before, await storage(settings))


async def test_a_password_drop_link_needs_its_grant_for_uploads(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    inbox = await mkdir(client, alice, alice.root_id, "inbox")
    token = (await create_link(client, alice, inbox["id"], drop=True, password="letters"))["token"]
    before = await storage(settings)

    refused = await client.put(visitor(token, "/files/a.txt"), content=b"a")
    assert_problem(refused, 403, "permission-denied", detail_contains="password")
    assert_unchanged(before, await storage(settings))
    grant = (await unlock(client, token, "letters")).json()["grant"]
    accepted = await client.put(visitor(token, "/files/a.txt"), content=b"a", headers={"X-Share-Grant": grant})
    assert accepted.status_code == 201, accepted.text
    assert await names_in(client, alice, inbox["id"]) == ["a.txt"]


async def test_a_drop_upload_past_the_owners_quota_stores_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    inbox = await mkdir(client, alice, alice.root_id, "inbox")
    token = (await create_link(client, alice, inbox["id"], drop=True))["token"]
    await set_quota(settings, alice.user_id, 10)
    before = await storage(settings)

    response = await client.put(visitor(token, "/files/big.bin"), content=b"x" * 100)

    assert_problem(response, 507, "quota-exceeded")
    assert_unchanged(before, await storage(settings))
