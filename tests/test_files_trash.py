"""The trash over HTTP: deleting (folders with their subtree), listing, restoring (to the original place or a
chosen one, with name clashes), purging (usage and blob files released, shared content kept), emptying, and
the automatic purge after the retention period."""

from __future__ import annotations

from datetime import timedelta

import httpx

from accounts_helpers import database
from files_helpers import (
    TRASH,
    assert_problem,
    assert_unchanged,
    by_path,
    children,
    collect_garbage,
    fsck_problems,
    mkdir,
    names_in,
    new_account,
    node_path,
    put_raw,
    set_trashed_at,
    sha256_hex,
    storage,
    upload,
    used_bytes,
)
from stowage.blobs import LocalBlobStore
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.files.services import FileDeps, FileServices


async def _trash(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get(TRASH, headers=headers, params=params)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items


async def test_deleting_a_folder_hides_its_subtree(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    sub = await mkdir(client, alice, docs["id"], "sub")
    file = await upload(client, alice, sub["id"], "f.txt", b"content of f")
    await upload(client, alice, alice.root_id, "keep.txt", b"kept")
    usage = await used_bytes(settings, alice.user_id)

    response = await client.delete(node_path(docs["id"]), headers=alice.headers)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == docs["id"]
    assert response.json()["trashed_at"] is not None
    assert await names_in(client, alice, alice.root_id) == ["keep.txt"]
    for path in ("docs", "docs/sub", "docs/sub/f.txt"):
        assert_problem(await client.get(by_path("paths", path), headers=alice.headers), 404, "not-found")
    for node_id in (docs["id"], sub["id"], file["id"]):
        assert_problem(await client.get(node_path(node_id), headers=alice.headers), 404, "not-found")
    assert_problem(await client.get(node_path(sub["id"], "/children"), headers=alice.headers), 404, "not-found")
    assert_problem(await client.get(by_path("content", "docs/sub/f.txt"), headers=alice.headers), 404, "not-found")
    root = (await client.get(node_path(alice.root_id), headers=alice.headers)).json()
    assert (root["files"], root["folders"], root["bytes"]) == (1, 0, 4)

    trash = await _trash(client, alice.headers)
    assert [(i["id"], i["name"]) for i in trash] == [(docs["id"], "docs")]
    assert trash[0]["trashed_at"] is not None
    # Trashed content still counts until it is purged.
    assert await used_bytes(settings, alice.user_id) == usage
    assert_problem(await client.delete(node_path(docs["id"]), headers=alice.headers), 404, "not-found")
    assert_problem(await client.delete(node_path(file["id"]), headers=alice.headers), 404, "not-found")
    # The name is free again.
    assert (await mkdir(client, alice, alice.root_id, "docs"))["id"] != docs["id"]


async def test_trash_lists_roots_newest_first(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    ids = []
    for name in ("one", "two", "three", "four", "five"):
        node = await upload(client, alice, alice.root_id, name, name.encode())
        assert (await client.delete(node_path(node["id"]), headers=alice.headers)).status_code == 200
        ids.append(node["id"])
    bobs = await upload(client, bob, bob.root_id, "bob.txt", b"bob")
    await client.delete(node_path(bobs["id"]), headers=bob.headers)

    trash = await _trash(client, alice.headers)

    assert [i["id"] for i in trash] == ids[::-1]
    assert [i["name"] for i in await _trash(client, bob.headers)] == ["bob.txt"]
    bad = await client.get(TRASH, headers=alice.headers, params={"cursor": "nonsense"})
    assert_problem(bad, 400, "invalid-input", field="query.cursor")


async def test_restore_to_the_original_place(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    sub = await mkdir(client, alice, docs["id"], "sub")
    file = await upload(client, alice, sub["id"], "f.txt", b"restored content")
    await client.delete(node_path(docs["id"]), headers=alice.headers)
    before = await storage(settings)

    child = await client.post(f"{TRASH}/{file['id']}/restore", json={}, headers=alice.headers)
    child_purge = await client.delete(f"{TRASH}/{file['id']}", headers=alice.headers)
    assert_problem(child, 409, "conflict", detail_contains="restore the folder")
    assert_problem(child_purge, 409, "conflict", detail_contains="purge the folder")
    assert_unchanged(before, await storage(settings))

    response = await client.post(f"{TRASH}/{docs['id']}/restore", json={}, headers=alice.headers)

    assert response.status_code == 200, response.text
    assert (response.json()["parent_id"], response.json()["name"]) == (alice.root_id, "docs")
    assert response.json()["trashed_at"] is None
    found = await client.get(by_path("paths", "docs/sub/f.txt"), headers=alice.headers)
    assert found.json()["id"] == file["id"]
    assert (await client.get(by_path("content", "docs/sub/f.txt"), headers=alice.headers)).content == (
        b"restored content"
    )
    assert await _trash(client, alice.headers) == []
    assert_problem(await client.post(f"{TRASH}/{docs['id']}/restore", json={}, headers=alice.headers), 404, "not-found")


async def test_restore_when_the_original_folder_is_in_the_trash(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    elsewhere = await mkdir(client, alice, alice.root_id, "elsewhere")
    file = await upload(client, alice, docs["id"], "f.txt", b"f")
    await client.delete(node_path(file["id"]), headers=alice.headers)
    await client.delete(node_path(docs["id"]), headers=alice.headers)
    assert {i["name"] for i in await _trash(client, alice.headers)} == {"f.txt", "docs"}
    a_file = await upload(client, alice, alice.root_id, "x", b"x")
    before = await storage(settings)

    refused = await client.post(f"{TRASH}/{file['id']}/restore", json={}, headers=alice.headers)
    foreign = await client.post(f"{TRASH}/{file['id']}/restore", json={"parent_id": bob.root_id}, headers=alice.headers)
    into_file = await client.post(
        f"{TRASH}/{file['id']}/restore", json={"parent_id": a_file["id"]}, headers=alice.headers
    )

    assert_problem(refused, 409, "conflict", detail_contains="parent_id")
    assert_problem(foreign, 404, "not-found")
    assert_problem(into_file, 409, "conflict", detail_contains="is a file")
    assert_unchanged(before, await storage(settings))

    restored = await client.post(
        f"{TRASH}/{file['id']}/restore", json={"parent_id": elsewhere["id"]}, headers=alice.headers
    )

    assert restored.status_code == 200, restored.text
    assert restored.json()["parent_id"] == elsewhere["id"]
    assert await names_in(client, alice, elsewhere["id"]) == ["f.txt"]
    assert [i["name"] for i in await _trash(client, alice.headers)] == ["docs"]


async def test_restore_onto_a_taken_name(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    old = await upload(client, alice, alice.root_id, "report.txt", b"old report")
    await client.delete(node_path(old["id"]), headers=alice.headers)
    new = await upload(client, alice, alice.root_id, "report.txt", b"new report")
    before = await storage(settings)

    clash = await client.post(f"{TRASH}/{old['id']}/restore", json={}, headers=alice.headers)
    replace = await client.post(f"{TRASH}/{old['id']}/restore", json={"on_conflict": "replace"}, headers=alice.headers)

    body = assert_problem(clash, 409, "conflict", detail_contains="on_conflict=rename")
    assert body["conflicting_id"] == new["id"]
    assert_problem(replace, 400, "invalid-input")  # restoring never overwrites
    assert_unchanged(before, await storage(settings))


async def test_restore_with_rename(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    old = await upload(client, alice, alice.root_id, "report.txt", b"old report")
    await client.delete(node_path(old["id"]), headers=alice.headers)
    new = await upload(client, alice, alice.root_id, "report.txt", b"new report")

    renamed = await client.post(f"{TRASH}/{old['id']}/restore", json={"on_conflict": "rename"}, headers=alice.headers)

    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "report (2).txt"
    listing = {i["name"]: i["id"] for i in await children(client, alice, alice.root_id)}
    assert listing == {"report.txt": new["id"], "report (2).txt": old["id"]}


async def test_restore_elsewhere_while_the_name_is_taken_at_home(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    old = await upload(client, alice, alice.root_id, "report.txt", b"old report")
    await client.delete(node_path(old["id"]), headers=alice.headers)
    await upload(client, alice, alice.root_id, "report.txt", b"new report")
    archive = await mkdir(client, alice, alice.root_id, "archive")

    moved = await client.post(f"{TRASH}/{old['id']}/restore", json={"parent_id": archive["id"]}, headers=alice.headers)

    assert moved.status_code == 200, moved.text
    assert await names_in(client, alice, archive["id"]) == ["report.txt"]


async def test_purge_releases_usage_and_blob_files(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    first, second = b"first version " * 10, b"second version " * 10
    doc = await upload(client, alice, alice.root_id, "doc.txt", first)
    replaced = await put_raw(client, alice, alice.root_id, "doc.txt", second, on_conflict="replace")
    assert replaced.status_code == 200
    keep = await upload(client, alice, alice.root_id, "keep.txt", b"keep")
    assert await used_bytes(settings, alice.user_id) == len(first) + len(second) + 4
    await client.delete(node_path(doc["id"]), headers=alice.headers)
    before = await storage(settings)

    live = await client.delete(f"{TRASH}/{keep['id']}", headers=alice.headers)
    by_bob = await client.delete(f"{TRASH}/{doc['id']}", headers=bob.headers)
    assert_problem(live, 404, "not-found", detail_contains="trash")
    assert_problem(by_bob, 404, "not-found")
    assert_unchanged(before, await storage(settings))

    response = await client.delete(f"{TRASH}/{doc['id']}", headers=alice.headers)

    assert response.status_code == 204, response.text
    assert await _trash(client, alice.headers) == []
    await collect_garbage(settings)
    after = await storage(settings)
    assert after.usage[alice.user_id] == 4
    assert sha256_hex(first) not in after.blob_files
    assert sha256_hex(second) not in after.blob_files
    assert sha256_hex(b"keep") in after.blob_files
    assert doc["id"] not in {n[0] for n in after.nodes}
    assert doc["id"] not in {v[1] for v in after.versions}
    assert {b[0] for b in after.blobs} == {sha256_hex(b"keep")}
    assert_problem(await client.delete(f"{TRASH}/{doc['id']}", headers=alice.headers), 404, "not-found")


async def test_shared_content_survives_until_its_last_reference_is_purged(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    content = b"the same holiday photo, uploaded by both"
    sha = sha256_hex(content)
    alices = await upload(client, alice, alice.root_id, "photo.jpg", content)
    bobs = await upload(client, bob, bob.root_id, "same.jpg", content)
    state = await storage(settings)
    assert {b[0]: b[2] for b in state.blobs}[sha] == 2
    assert sha in state.blob_files

    await client.delete(node_path(alices["id"]), headers=alice.headers)
    assert (await client.delete(f"{TRASH}/{alices['id']}", headers=alice.headers)).status_code == 204

    await collect_garbage(settings)
    state = await storage(settings)
    assert sha in state.blob_files
    assert {b[0]: b[2] for b in state.blobs}[sha] == 1
    assert (await client.get(node_path(bobs["id"], "/content"), headers=bob.headers)).content == content

    await client.delete(node_path(bobs["id"]), headers=bob.headers)
    assert (await client.delete(f"{TRASH}/{bobs['id']}", headers=bob.headers)).status_code == 204

    await collect_garbage(settings)
    state = await storage(settings)
    assert sha not in state.blob_files
    assert sha not in {b[0] for b in state.blobs}
    assert state.usage[alice.user_id] == state.usage[bob.user_id] == 0


async def test_empty_trash(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    folder = await mkdir(client, alice, alice.root_id, "folder")
    await upload(client, alice, folder["id"], "a.txt", b"aaa")
    loose = await upload(client, alice, alice.root_id, "b.txt", b"bbbb")
    kept = await upload(client, alice, alice.root_id, "c.txt", b"ccccc")
    bobs = await upload(client, bob, bob.root_id, "bob.txt", b"bob's")
    for node_id in (folder["id"], loose["id"]):
        await client.delete(node_path(node_id), headers=alice.headers)
    await client.delete(node_path(bobs["id"]), headers=bob.headers)

    response = await client.delete(TRASH, headers=alice.headers)

    assert response.status_code == 204, response.text
    assert await _trash(client, alice.headers) == []
    assert [i["id"] for i in await _trash(client, bob.headers)] == [bobs["id"]]
    await collect_garbage(settings)
    state = await storage(settings)
    assert state.usage[alice.user_id] == 5
    assert state.blob_files == {sha256_hex(b"ccccc"), sha256_hex(b"bob's")}
    assert await names_in(client, alice, alice.root_id) == [kept["name"]]
    again = await client.delete(TRASH, headers=alice.headers)
    assert again.status_code == 204


async def test_automatic_purge_respects_the_retention(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    nodes = {}
    for name in ("old-1", "old-2", "old-3", "young", "fresh"):
        nodes[name] = await upload(client, alice, alice.root_id, name, f"content of {name}".encode())
        await client.delete(node_path(nodes[name]["id"]), headers=alice.headers)
    folder = await mkdir(client, alice, alice.root_id, "old-folder")
    inner = await upload(client, alice, folder["id"], "inner", b"inner content")
    await client.delete(node_path(folder["id"]), headers=alice.headers)
    now = utcnow()
    old_ids = [nodes[n]["id"] for n in ("old-1", "old-2", "old-3")] + [folder["id"]]
    await set_trashed_at(settings, old_ids, now - timedelta(days=30, minutes=1))
    await set_trashed_at(settings, [nodes["young"]["id"]], now - timedelta(days=29, hours=23))

    async with database(settings) as db:
        files = FileServices.build(FileDeps(settings=settings, database=db, store=LocalBlobStore(settings.data_dir)))
        purged = await files.trash.purge_expired(timedelta(days=30), batch=2)
        again = await files.trash.purge_expired(timedelta(days=30), batch=2)

    assert (purged, again) == (4, 0)
    remaining = await _trash(client, alice.headers)
    assert sorted(i["name"] for i in remaining) == ["fresh", "young"]
    await collect_garbage(settings)
    state = await storage(settings)
    node_ids = {n[0] for n in state.nodes}
    for node_id in [*old_ids, inner["id"]]:
        assert node_id not in node_ids
    assert state.blob_files == {sha256_hex(b"content of young"), sha256_hex(b"content of fresh")}
    assert state.usage[alice.user_id] == len(b"content of young") + len(b"content of fresh")


async def test_purging_a_folder_accounts_for_what_was_deleted_from_it_before(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    folder = await mkdir(client, alice, alice.root_id, "F")
    content = b"deleted before its folder"
    inner = await upload(client, alice, folder["id"], "x.txt", content)
    await client.delete(node_path(inner["id"]), headers=alice.headers)
    await client.delete(node_path(folder["id"]), headers=alice.headers)

    assert (await client.delete(f"{TRASH}/{folder['id']}", headers=alice.headers)).status_code == 204

    await collect_garbage(settings)
    state = await storage(settings)
    # The file has its own trash entry: purging the folder leaves it there, still charged.
    assert [i["id"] for i in await _trash(client, alice.headers)] == [inner["id"]]
    charged = state.usage[alice.user_id]
    held = sum(v[3] for v in state.versions)
    assert (charged, held) == (len(content), len(content)), (charged, state.versions)
    assert {b[0] for b in state.blobs} == {v[2] for v in state.versions} == {sha256_hex(content)}, state.blobs
    assert state.blob_files == {v[2] for v in state.versions}
    assert await fsck_problems(settings) == []


async def test_purging_a_folder_keeps_an_item_deleted_from_it_before(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    kept, gone = b"deleted on its own, before its folder", b"deleted with its folder"
    pp = await mkdir(client, alice, alice.root_id, "pp")
    inner = await mkdir(client, alice, pp["id"], "inner")
    keep = await upload(client, alice, inner["id"], "keep.txt", kept)
    other = await upload(client, alice, inner["id"], "other.txt", gone)
    assert (await client.delete(node_path(keep["id"]), headers=alice.headers)).status_code == 200
    assert (await client.delete(node_path(inner["id"]), headers=alice.headers)).status_code == 200
    assert {i["id"] for i in await _trash(client, alice.headers)} == {keep["id"], inner["id"]}

    response = await client.delete(f"{TRASH}/{inner['id']}", headers=alice.headers)

    assert response.status_code == 204, response.text
    # One entry purged; the separately deleted file stays, now under the purged folder's parent.
    assert [(i["id"], i["parent_id"]) for i in await _trash(client, alice.headers)] == [(keep["id"], pp["id"])]
    await collect_garbage(settings)
    state = await storage(settings)
    assert state.usage[alice.user_id] == len(kept)
    assert {n[0] for n in state.nodes} == {alice.root_id, pp["id"], keep["id"]}
    assert {v[1] for v in state.versions} == {keep["id"]}
    assert state.blob_files == {sha256_hex(kept)}
    assert await fsck_problems(settings) == []
    assert_problem(await client.delete(f"{TRASH}/{other['id']}", headers=alice.headers), 404, "not-found")

    # Its original folder is gone: restoring asks where to.
    before = await storage(settings)
    home = await client.post(f"{TRASH}/{keep['id']}/restore", json={}, headers=alice.headers)
    assert_problem(home, 409, "conflict", detail_contains="parent_id")
    assert_unchanged(before, await storage(settings))

    restored = await client.post(f"{TRASH}/{keep['id']}/restore", json={"parent_id": pp["id"]}, headers=alice.headers)

    assert restored.status_code == 200, restored.text
    assert (restored.json()["parent_id"], restored.json()["trashed_at"]) == (pp["id"], None)
    assert await names_in(client, alice, pp["id"]) == ["keep.txt"]
    assert (await client.get(by_path("content", "pp/keep.txt"), headers=alice.headers)).content == kept
    assert await _trash(client, alice.headers) == []
    assert await used_bytes(settings, alice.user_id) == len(kept)


async def test_restoring_a_folder_leaves_an_item_deleted_from_it_before_in_the_trash(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    alone = await upload(client, alice, docs["id"], "alone.txt", b"deleted on its own")
    await upload(client, alice, docs["id"], "with.txt", b"deleted with the folder")
    await client.delete(node_path(alone["id"]), headers=alice.headers)
    await client.delete(node_path(docs["id"]), headers=alice.headers)

    restored = await client.post(f"{TRASH}/{docs['id']}/restore", json={}, headers=alice.headers)

    assert restored.status_code == 200, restored.text
    assert await names_in(client, alice, docs["id"]) == ["with.txt"]
    assert [i["id"] for i in await _trash(client, alice.headers)] == [alone["id"]]
    assert_problem(await client.get(node_path(alone["id"]), headers=alice.headers), 404, "not-found")
    # Its folder is back, so it can go home now.
    home = await client.post(f"{TRASH}/{alone['id']}/restore", json={}, headers=alice.headers)
    assert home.status_code == 200, home.text
    assert await names_in(client, alice, docs["id"]) == ["alone.txt", "with.txt"]
    assert await _trash(client, alice.headers) == []


async def test_nested_trash_entries_expire_and_empty_one_by_one(client: httpx.AsyncClient, settings: Settings) -> None:
    """Trash entries inside one another (a file, then its folder, then that folder's parent): each
    purge removes exactly its own entry, in one unit of work or several."""
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    entries: dict[str, dict[str, str]] = {}
    for account in (alice, bob):
        pp = await mkdir(client, account, account.root_id, "pp")
        inner = await mkdir(client, account, pp["id"], "inner")
        await upload(client, account, pp["id"], "p.txt", f"{account.email} p".encode())
        await upload(client, account, inner["id"], "i.txt", f"{account.email} i".encode())
        keep = await upload(client, account, inner["id"], "keep.txt", f"{account.email} keep".encode())
        for node in (keep, inner, pp):  # deleted innermost first: three entries, nested
            assert (await client.delete(node_path(node["id"]), headers=account.headers)).status_code == 200
        entries[account.email] = {"pp": pp["id"], "inner": inner["id"], "keep": keep["id"]}
    alices = entries[alice.email]
    now = utcnow()
    # Alice's two folders expired (the outer one first, so its purge moves the inner one mid-batch); her file is young.
    await set_trashed_at(settings, [alices["pp"]], now - timedelta(days=32))
    await set_trashed_at(settings, [alices["inner"]], now - timedelta(days=31))
    await set_trashed_at(settings, [alices["keep"]], now - timedelta(days=1))

    async with database(settings) as db:
        files = FileServices.build(FileDeps(settings=settings, database=db, store=LocalBlobStore(settings.data_dir)))
        purged = await files.trash.purge_expired(timedelta(days=30), batch=10)

    assert purged == 2
    assert [(i["id"], i["parent_id"]) for i in await _trash(client, alice.headers)] == [(alices["keep"], alice.root_id)]
    assert await used_bytes(settings, alice.user_id) == len(b"alice@example.com keep")
    assert len(await _trash(client, bob.headers)) == 3
    purged_content = [f"alice@example.com {name}".encode() for name in ("p", "i")]
    assert sorted(await fsck_problems(settings)) == sorted(("orphan_blob", sha256_hex(c)) for c in purged_content)
    await collect_garbage(settings)
    assert await fsck_problems(settings) == []

    for account in (alice, bob):
        assert (await client.delete(TRASH, headers=account.headers)).status_code == 204
        assert await _trash(client, account.headers) == []

    await collect_garbage(settings)
    state = await storage(settings)
    assert {n[0] for n in state.nodes} == {alice.root_id, bob.root_id}
    assert (state.versions, state.blobs, state.blob_files) == ([], [], frozenset())
    assert state.usage[alice.user_id] == state.usage[bob.user_id] == 0
    assert await fsck_problems(settings) == []
