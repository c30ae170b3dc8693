"""Sharing with other users over HTTP, on SQLite and PostgreSQL: sharing by email, the recipient's use of
shared nodes through the ordinary file endpoints with exactly the granted rights (read: reads, 403 on
writes; read_write: writes inside, charged to the owner, never detaching the shared node), no re-sharing,
revocation, leaving and expiry taking effect on the next request, and account deletion with shares."""

from __future__ import annotations

from datetime import timedelta

import httpx

from accounts_helpers import PASSWORD, assert_problem, create_pat
from files_helpers import (
    API,
    Account,
    assert_unchanged,
    mkdir,
    names_in,
    new_account,
    node_path,
    put_raw,
    read_zip,
    storage,
    upload,
    used_bytes,
)
from sharing_helpers import create_link, set_share, share_rows, share_with, shared_with_me, visitor
from stowage.config import Settings
from stowage.db.base import utcnow
from tus_helpers import create as tus_create
from tus_helpers import metadata as tus_metadata
from tus_helpers import patch as tus_patch
from tus_helpers import upload_url


async def _three(client: httpx.AsyncClient) -> tuple[Account, Account, Account]:
    return (
        await new_account(client, "alice@example.com"),
        await new_account(client, "bob@example.com"),
        await new_account(client, "carol@example.com"),
    )


async def test_sharing_with_a_user_lists_on_both_sides(client: httpx.AsyncClient) -> None:
    alice, bob, _ = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "project")

    share = await share_with(client, alice, folder["id"], bob)
    again = await share_with(client, alice, folder["id"], bob, "read_write", expect=200)

    assert share["permission"] == "read"
    assert share["grantee"] == {"id": bob.user_id, "email": bob.email, "display_name": "bob"}
    assert again["id"] == share["id"]
    assert again["permission"] == "read_write"
    by_node = (await client.get(node_path(folder["id"], "/shares"), headers=alice.headers)).json()["items"]
    everything = (await client.get(f"{API}/shares", headers=alice.headers)).json()["items"]
    assert [s["id"] for s in by_node] == [share["id"]]
    assert [s["id"] for s in everything] == [share["id"]]
    received = await shared_with_me(client, bob)
    assert len(received) == 1
    assert received[0]["share_id"] == share["id"]
    assert received[0]["node"]["id"] == folder["id"]
    assert received[0]["permission"] == "read_write"
    assert received[0]["owner"]["email"] == alice.email
    assert await shared_with_me(client, alice) == []


async def test_sharing_refuses_what_it_cannot_do(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, bob, carol = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "project")
    await share_with(client, alice, folder["id"], bob, "read_write")
    before = await share_rows(settings)

    def body(email: str) -> dict[str, str]:
        return {"email": email, "permission": "read"}

    unknown = await client.post(
        node_path(folder["id"], "/shares"), json=body("nobody@example.com"), headers=alice.headers
    )
    assert_problem(unknown, 404, "not-found", detail_contains="nobody@example.com")
    itself = await client.post(node_path(folder["id"], "/shares"), json=body(alice.email), headers=alice.headers)
    assert_problem(itself, 400, "invalid-input", field="body.email")
    root = await client.post(node_path(alice.root_id, "/shares"), json=body(bob.email), headers=alice.headers)
    assert_problem(root, 409, "conflict", detail_contains="root folder")
    stranger = await client.post(node_path(folder["id"], "/shares"), json=body(bob.email), headers=carol.headers)
    assert_problem(stranger, 404, "not-found")
    # A recipient, even a writer, cannot re-share or see how the node is shared.
    reshare = await client.post(node_path(folder["id"], "/shares"), json=body(carol.email), headers=bob.headers)
    assert_problem(reshare, 403, "permission-denied", detail_contains="Only the owner")
    link = await client.post(node_path(folder["id"], "/links"), json={}, headers=bob.headers)
    assert_problem(link, 403, "permission-denied")
    assert_problem(await client.get(node_path(folder["id"], "/shares"), headers=bob.headers), 403, "permission-denied")
    bad = await client.post(
        node_path(folder["id"], "/shares"), json={"email": bob.email, "permission": "drop"}, headers=alice.headers
    )
    assert_problem(bad, 400, "invalid-input")
    assert await share_rows(settings) == before


async def test_a_read_share_reads_everywhere_and_writes_nowhere(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, bob, _ = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "photos")
    inner = await mkdir(client, alice, folder["id"], "2026")
    photo = await upload(client, alice, inner["id"], "beach.jpg", b"sand and sea")
    replaced = await put_raw(client, alice, inner["id"], "beach.jpg", b"sand, sea, sun", on_conflict="replace")
    assert replaced.status_code == 200
    await share_with(client, alice, folder["id"], bob)

    assert (await client.get(node_path(folder["id"]), headers=bob.headers)).status_code == 200
    assert await names_in(client, bob, folder["id"]) == ["2026"]
    content = await client.get(node_path(photo["id"], "/content"), headers=bob.headers)
    assert content.content == b"sand, sea, sun"
    versions = await client.get(node_path(photo["id"], "/versions"), headers=bob.headers)
    assert len(versions.json()["items"]) == 2
    old = next(v["id"] for v in versions.json()["items"] if not v["current"])
    old_content = await client.get(node_path(photo["id"], f"/versions/{old}/content"), headers=bob.headers)
    assert old_content.content == b"sand and sea"
    archive = await client.get(node_path(folder["id"], "/zip"), headers=bob.headers)
    assert read_zip(archive.content) == {
        "photos/": b"",
        "photos/2026/": b"",
        "photos/2026/beach.jpg": b"sand, sea, sun",
    }
    found = await client.get(f"{API}/search", params={"q": "beach", "folder_id": folder["id"]}, headers=bob.headers)
    assert [item["id"] for item in found.json()["items"]] == [photo["id"]]
    before = await storage(settings)

    writes = [
        await put_raw(client, bob, inner["id"], "new.txt", b"bob was here"),
        await client.put(node_path(photo["id"], "/content"), content=b"overwritten", headers=bob.headers),
        await client.patch(node_path(photo["id"]), json={"name": "renamed.jpg"}, headers=bob.headers),
        await client.delete(node_path(photo["id"]), headers=bob.headers),
        await client.post(node_path(inner["id"], "/folders"), json={"name": "sub"}, headers=bob.headers),
        await client.post(node_path(photo["id"], f"/versions/{old}/restore"), headers=bob.headers),
    ]

    for response in writes:
        assert_problem(response, 403, "permission-denied", detail_contains="read-only")
    assert_unchanged(before, await storage(settings))


async def test_a_read_write_share_writes_inside_on_the_owners_quota(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice, bob, _ = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "team")
    doc = await upload(client, alice, folder["id"], "plan.txt", b"v1")
    await share_with(client, alice, folder["id"], bob, "read_write")
    alice_before, bob_before = await used_bytes(settings, alice.user_id), await used_bytes(settings, bob.user_id)

    added = await put_raw(client, bob, folder["id"], "notes.txt", b"bob's notes")
    new_version = await client.put(node_path(doc["id"], "/content"), content=b"version two", headers=bob.headers)
    sub = await client.post(node_path(folder["id"], "/folders"), json={"name": "drafts"}, headers=bob.headers)
    renamed = await client.patch(node_path(doc["id"]), json={"name": "plan v2.txt"}, headers=bob.headers)

    assert added.status_code == 201, added.text
    assert new_version.status_code == 200, new_version.text
    assert sub.status_code == 201
    assert renamed.status_code == 200
    assert await used_bytes(settings, alice.user_id) == alice_before + len(b"bob's notes") + len(b"version two")
    assert await used_bytes(settings, bob.user_id) == bob_before
    history = (await client.get(node_path(doc["id"], "/versions"), headers=alice.headers)).json()["items"]
    assert next(v["author_id"] for v in history if v["current"]) == bob.user_id
    assert sorted(await names_in(client, alice, folder["id"])) == ["drafts", "notes.txt", "plan v2.txt"]
    moved_inside = await client.patch(
        node_path(added.json()["id"]), json={"parent_id": sub.json()["id"]}, headers=bob.headers
    )
    assert moved_inside.status_code == 200
    deleted = await client.delete(node_path(added.json()["id"]), headers=bob.headers)
    assert deleted.status_code == 200


async def test_a_writer_cannot_take_the_shared_node_or_its_content_away(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice, bob, _ = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "team")
    doc = await upload(client, alice, folder["id"], "plan.txt", b"plan")
    mine = await upload(client, bob, bob.root_id, "mine.txt", b"bob's own")
    await share_with(client, alice, folder["id"], bob, "read_write")
    before = await storage(settings)

    for response in (
        await client.delete(node_path(folder["id"]), headers=bob.headers),
        await client.patch(node_path(folder["id"]), json={"name": "taken"}, headers=bob.headers),
        await client.patch(node_path(folder["id"]), json={"parent_id": bob.root_id}, headers=bob.headers),
    ):
        assert_problem(response, 403, "permission-denied", detail_contains="shared item itself")
    out = await client.patch(node_path(doc["id"]), json={"parent_id": bob.root_id}, headers=bob.headers)
    assert_problem(out, 409, "conflict", detail_contains="owner")
    into = await client.patch(node_path(mine["id"]), json={"parent_id": folder["id"]}, headers=bob.headers)
    assert_problem(into, 409, "conflict", detail_contains="owner")
    assert_unchanged(before, await storage(settings))

    copied = await client.post(node_path(doc["id"], "/copy"), json={"parent_id": bob.root_id}, headers=bob.headers)

    assert copied.status_code == 201, copied.text
    assert await used_bytes(settings, bob.user_id) == before.usage[bob.user_id] + len(b"plan")
    assert await used_bytes(settings, alice.user_id) == before.usage[alice.user_id]
    mine_now = await client.get(node_path(copied.json()["id"]), headers=bob.headers)
    assert mine_now.status_code == 200
    assert (await client.get(node_path(copied.json()["id"]), headers=alice.headers)).status_code == 404


async def test_a_read_only_token_stays_read_only_on_a_writable_share(client: httpx.AsyncClient) -> None:
    alice, bob, _ = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "team")
    await share_with(client, alice, folder["id"], bob, "read_write")
    pat = (await create_pat(client, bob.token, ["read"]))["token"]

    response = await client.put(
        f"{API}/nodes/{folder['id']}/children/x.txt", content=b"x", headers={"Authorization": f"Bearer {pat}"}
    )

    assert_problem(response, 403, "permission-denied", detail_contains="scope")


async def test_nobody_else_reaches_a_shared_node(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "project")
    file = await upload(client, alice, folder["id"], "a.txt", b"a")
    await share_with(client, alice, folder["id"], bob, "read_write")

    for suffix in ("", "/content", "/versions"):
        assert_problem(await client.get(node_path(file["id"], suffix), headers=carol.headers), 404, "not-found")
    assert_problem(await client.get(node_path(folder["id"], "/children"), headers=carol.headers), 404, "not-found")
    assert await shared_with_me(client, carol) == []


async def test_revoking_leaving_and_expiry_take_effect_on_the_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice, bob, carol = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "project")
    file = await upload(client, alice, folder["id"], "a.txt", b"a")
    to_bob = await share_with(client, alice, folder["id"], bob)
    to_carol = await share_with(client, alice, file["id"], carol)
    assert (await client.get(node_path(file["id"], "/content"), headers=bob.headers)).status_code == 200

    assert (await client.delete(f"{API}/shares/{to_bob['id']}", headers=alice.headers)).status_code == 204
    assert_problem(await client.get(node_path(file["id"], "/content"), headers=bob.headers), 404, "not-found")
    assert await shared_with_me(client, bob) == []

    assert_problem(await client.delete(f"{API}/shared-with-me/{to_carol['id']}", headers=bob.headers), 404, "not-found")
    assert (await client.delete(f"{API}/shared-with-me/{to_carol['id']}", headers=carol.headers)).status_code == 204
    assert_problem(await client.get(node_path(file["id"], "/content"), headers=carol.headers), 404, "not-found")
    assert (await client.get(node_path(file["id"], "/content"), headers=alice.headers)).status_code == 200

    again = await share_with(client, alice, folder["id"], bob)
    assert again["id"] != to_bob["id"]
    assert (await client.get(node_path(file["id"]), headers=bob.headers)).status_code == 200
    await set_share(settings, again["id"], expires_at=utcnow() - timedelta(seconds=1))
    assert_problem(await client.get(node_path(file["id"]), headers=bob.headers), 404, "not-found")
    assert await shared_with_me(client, bob) == []


async def test_trashing_the_shared_node_hides_it_from_the_recipient(client: httpx.AsyncClient) -> None:
    alice, bob, _ = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "project")
    file = await upload(client, alice, folder["id"], "a.txt", b"a")
    await share_with(client, alice, folder["id"], bob)

    assert (await client.delete(node_path(folder["id"]), headers=alice.headers)).status_code == 200

    assert_problem(await client.get(node_path(file["id"]), headers=bob.headers), 404, "not-found")
    assert await shared_with_me(client, bob) == []


async def test_deleting_either_account_removes_its_shares(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, bob, carol = await _three(client)
    folder = await mkdir(client, alice, alice.root_id, "project")
    file = await upload(client, alice, folder["id"], "a.txt", b"a")
    await share_with(client, alice, folder["id"], bob)
    await share_with(client, alice, file["id"], carol, "read_write")
    token = (await create_link(client, alice, file["id"]))["token"]
    bob_file = await upload(client, bob, bob.root_id, "b.txt", b"b")
    await share_with(client, bob, bob_file["id"], carol)
    assert len(await share_rows(settings)) == 4

    gone = await client.request("DELETE", f"{API}/me", json={"password": PASSWORD}, headers=bob.headers)
    assert gone.status_code == 204, gone.text
    assert len(await share_rows(settings)) == 2  # bob's own share and the one made with him
    assert [item["owner"]["email"] for item in await shared_with_me(client, carol)] == [alice.email]

    gone = await client.request("DELETE", f"{API}/me", json={"password": PASSWORD}, headers=alice.headers)
    assert gone.status_code == 204, gone.text
    assert await share_rows(settings) == []
    assert await shared_with_me(client, carol) == []
    assert_problem(await client.get(visitor(token, "/content")), 404, "not-found")


async def test_tus_uploads_follow_the_share(client: httpx.AsyncClient, settings: Settings) -> None:
    """No extra code path: a resumable upload into a shared folder is authorised by the same grants and
    charged to the folder's owner."""
    alice, bob, carol = await _three(client)
    dave = await new_account(client, "dave@example.com")
    folder = await mkdir(client, alice, alice.root_id, "team")
    await share_with(client, alice, folder["id"], bob, "read_write")
    await share_with(client, alice, folder["id"], carol, "read")
    alice_before, bob_before = await used_bytes(settings, alice.user_id), await used_bytes(settings, bob.user_id)
    meta = tus_metadata(filename="resumed.bin", folder=folder["id"])

    url = upload_url(await tus_create(client, bob, 10, meta=meta))
    done = await tus_patch(client, bob, url, 0, b"0123456789")

    assert done.status_code == 204, done.text
    assert await names_in(client, alice, folder["id"]) == ["resumed.bin"]
    assert await used_bytes(settings, alice.user_id) == alice_before + 10
    assert await used_bytes(settings, bob.user_id) == bob_before
    assert_problem(
        await tus_create(client, carol, 10, meta=meta), 403, "permission-denied", detail_contains="read-only"
    )
    assert_problem(await tus_create(client, dave, 10, meta=meta), 404, "not-found")
