"""The folder tree over HTTP: root, folders, mkdir -p, metadata with totals, listings (sorting, filters,
keyset pagination under concurrent changes), rename, move, copy, and look-ups by path."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest

from accounts_helpers import concurrent_client
from files_helpers import (
    API,
    TRASH,
    Account,
    assert_problem,
    assert_unchanged,
    by_path,
    children,
    expected_listing_order,
    mkdir,
    names_in,
    new_account,
    node_path,
    put_raw,
    race,
    sha256_hex,
    storage,
    upload,
    used_bytes,
)
from stowage.config import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 12
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16


async def test_the_root_folder(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")

    again = await client.get(f"{API}/files/root", headers=alice.headers)

    root = again.json()
    assert again.status_code == 200
    assert root["id"] == alice.root_id != bob.root_id
    assert (root["name"], root["kind"], root["parent_id"], root["etag"]) == ("", "folder", None, None)
    meta = await client.get(node_path(alice.root_id), headers=alice.headers)
    assert meta.json()["path"] == "/"
    assert_problem(await client.delete(node_path(alice.root_id), headers=alice.headers), 409, "conflict")
    renamed = await client.patch(node_path(alice.root_id), json={"name": "x"}, headers=alice.headers)
    assert_problem(renamed, 409, "conflict", detail_contains="root")


async def test_create_folders(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")

    photos = await mkdir(client, alice, alice.root_id, "Photos")
    assert (photos["name"], photos["kind"], photos["parent_id"]) == ("Photos", "folder", alice.root_id)
    before = await storage(settings)
    duplicate = await client.post(node_path(alice.root_id, "/folders"), json={"name": "Photos"}, headers=alice.headers)
    body = assert_problem(duplicate, 409, "conflict", detail_contains="'Photos' already exists")
    assert body["conflicting_id"] == photos["id"]
    assert_unchanged(before, await storage(settings))

    renamed = await mkdir(client, alice, alice.root_id, "Photos", on_conflict="rename")
    reused = await mkdir(client, alice, alice.root_id, "Photos", expect=200, on_conflict="reuse")

    assert renamed["name"] == "Photos (2)"
    assert reused["id"] == photos["id"]
    assert sorted(await names_in(client, alice, alice.root_id)) == ["Photos", "Photos (2)"]
    file = await upload(client, alice, alice.root_id, "notes.txt", b"x")
    before = await storage(settings)
    reuse_a_file = await client.post(
        node_path(alice.root_id, "/folders"), json={"name": "notes.txt", "on_conflict": "reuse"}, headers=alice.headers
    )
    inside_a_file = await client.post(node_path(file["id"], "/folders"), json={"name": "x"}, headers=alice.headers)
    unknown_field = await client.post(
        node_path(alice.root_id, "/folders"), json={"name": "y", "colour": "red"}, headers=alice.headers
    )
    assert_problem(reuse_a_file, 409, "conflict", detail_contains="notes.txt")
    assert_problem(inside_a_file, 409, "conflict", detail_contains="is a file")
    assert_problem(unknown_field, 400, "invalid-input")
    assert_unchanged(before, await storage(settings))


async def test_concurrent_creation_of_one_folder(
    settings: Settings, backend: str, request: pytest.FixtureRequest
) -> None:
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")

        def create(name: str, policy: str) -> Awaitable[httpx.Response]:
            body = {"name": name, "on_conflict": policy}
            return client.post(node_path(alice.root_id, "/folders"), json=body, headers=alice.headers)

        reuse = await race(settings, [create("Shared", "reuse") for _ in range(2)])
        fail = await race(settings, [create("Once", "fail") for _ in range(2)])

        assert sorted(r.status_code for r in reuse) == [200, 201], [r.text[:200] for r in reuse]
        assert len({r.json()["id"] for r in reuse}) == 1
        assert sorted(r.status_code for r in fail) == [201, 409], [r.text[:200] for r in fail]
        assert sorted(await names_in(client, alice, alice.root_id)) == ["Once", "Shared"]


async def test_mkdir_p(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")

    created = await client.post(f"{API}/folders", json={"path": "/a/b/c"}, headers=alice.headers)
    again = await client.post(f"{API}/folders", json={"path": "a//b/c/"}, headers=alice.headers)
    sibling = await client.post(f"{API}/folders", json={"path": "a/b/d"}, headers=alice.headers)

    assert created.status_code == 201, created.text
    assert again.status_code == 200, again.text
    assert again.json()["id"] == created.json()["id"]
    assert sibling.status_code == 201
    b = (await client.get(by_path("paths", "a/b"), headers=alice.headers)).json()
    assert (b["path"], b["folders"], b["files"]) == ("/a/b", 2, 0)
    assert sorted(await names_in(client, alice, b["node"]["id"])) == ["c", "d"]

    await upload(client, alice, b["node"]["id"], "f.txt", b"x")
    before = await storage(settings)
    through_a_file = await client.post(f"{API}/folders", json={"path": "a/b/f.txt/x"}, headers=alice.headers)
    dot_dot = await client.post(f"{API}/folders", json={"path": "a/../etc"}, headers=alice.headers)
    assert_problem(through_a_file, 409, "conflict", detail_contains="f.txt")
    assert_problem(dot_dot, 400, "invalid-input", field="body.path")
    assert_unchanged(before, await storage(settings))


async def test_folder_metadata_has_subtree_totals(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    top = await mkdir(client, alice, alice.root_id, "top")
    sub = await mkdir(client, alice, top["id"], "sub")
    deeper = await mkdir(client, alice, sub["id"], "deeper")
    await upload(client, alice, top["id"], "a.txt", b"a" * 10)
    await upload(client, alice, sub["id"], "b.txt", b"b" * 20)
    await upload(client, alice, deeper["id"], "c.txt", b"c" * 30)
    gone = await upload(client, alice, deeper["id"], "gone.txt", b"d" * 1000)
    await mkdir(client, alice, deeper["id"], "empty")
    assert (await client.delete(node_path(gone["id"]), headers=alice.headers)).status_code == 200

    response = await client.get(node_path(top["id"]), headers=alice.headers)

    assert response.status_code == 200
    meta = response.json()
    assert meta["node"]["id"] == top["id"]
    assert meta["node"]["kind"] == "folder"
    assert (meta["path"], meta["files"], meta["folders"], meta["bytes"]) == ("/top", 3, 3, 60)
    sub_meta = (await client.get(node_path(sub["id"]), headers=alice.headers)).json()
    assert (sub_meta["path"], sub_meta["files"], sub_meta["folders"], sub_meta["bytes"]) == ("/top/sub", 2, 2, 50)
    root_meta = (await client.get(node_path(alice.root_id), headers=alice.headers)).json()
    assert (root_meta["files"], root_meta["folders"], root_meta["bytes"]) == (3, 4, 60)
    file_meta = (await client.get(by_path("paths", "top/sub/b.txt"), headers=alice.headers)).json()
    assert (file_meta["name"], file_meta["size"], file_meta["kind"]) == ("b.txt", 20, "file")


# --- listings -------------------------------------------------------------------------------------------


async def _listing_fixture(client: httpx.AsyncClient) -> tuple[Account, str]:
    """A folder with two subfolders and files of varied sizes, types and times (with ties)."""
    alice = await new_account(client, "alice@example.com")
    folder = await mkdir(client, alice, alice.root_id, "mixed")
    await mkdir(client, alice, folder["id"], "b-dir")
    await mkdir(client, alice, folder["id"], "a-dir")
    files = [
        ("c.txt", b"c" * 30, "2020-01-01T00:00:00Z"),
        ("a.png", PNG, "2022-01-01T00:00:00Z"),
        ("b.jpg", JPEG, "2021-01-01T00:00:00Z"),
        ("d.html", b"<html></html>", "2023-01-01T00:00:00Z"),
        ("e.txt", b"e" * 20, "2021-01-01T00:00:00Z"),  # same size as b.jpg and a.png, same time as b.jpg
        ("f.jpg", JPEG[:-1] + b"\x01", "2019-06-01T12:30:00.123456Z"),
    ]
    for name, content, modified in files:
        response = await put_raw(client, alice, folder["id"], name, content, headers={"x-modified-at": modified})
        assert response.status_code == 201, response.text
    return alice, folder["id"]


@pytest.mark.parametrize("sort", ["name", "size", "modified", "type"])
async def test_listing_sorts_and_pages(client: httpx.AsyncClient, sort: str) -> None:
    alice, folder_id = await _listing_fixture(client)
    everything = await children(client, alice, folder_id, limit=100)
    assert len(everything) == 8

    for order in ("asc", "desc"):
        one_page = await client.get(
            node_path(folder_id, "/children"), params={"sort": sort, "order": order}, headers=alice.headers
        )
        assert one_page.status_code == 200
        assert one_page.json()["next_cursor"] is None
        names = [i["name"] for i in one_page.json()["items"]]
        assert names == expected_listing_order(everything, sort, order == "desc"), (sort, order)
        for limit in (1, 3):
            pages = await _walk(client, alice, folder_id, sort=sort, order=order, limit=limit)
            assert [name for page in pages for name in page] == names, (sort, order, limit)
            assert all(len(page) == limit for page in pages[:-1])


async def test_a_listed_item_is_the_node_itself(client: httpx.AsyncClient) -> None:
    """A listing builds its items from its own query: each must equal what GET /nodes/{id} says of that
    node, member for member (times, etag, media type, star, metadata, parent)."""
    alice, folder_id = await _listing_fixture(client)
    listed = await children(client, alice, folder_id, limit=100)
    starred = next(item for item in listed if item["name"] == "c.txt")
    patched = await client.patch(
        node_path(starred["id"]), json={"starred": True, "metadata": {"album": "x"}}, headers=alice.headers
    )
    assert patched.status_code == 200, patched.text
    listed = await children(client, alice, folder_id, limit=100)

    for item in listed:
        response = await client.get(node_path(item["id"]), headers=alice.headers)
        assert response.status_code == 200
        itself = response.json()
        assert item == itself.get("node", itself), item["name"]
    file = next(item for item in listed if item["name"] == "f.jpg")
    assert file["modified_at"] == "2019-06-01T12:30:00.123456Z"
    assert file["created_at"] != file["modified_at"]
    assert next(item for item in listed if item["name"] == "c.txt")["metadata"] == {"album": "x"}


async def _walk(client: httpx.AsyncClient, account: Account, folder_id: str, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(node_path(folder_id, "/children"), params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append([i["name"] for i in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


async def test_listing_filters(client: httpx.AsyncClient) -> None:
    alice, folder_id = await _listing_fixture(client)

    async def names(**params: str) -> list[str]:
        return [i["name"] for i in await children(client, alice, folder_id, **params)]

    assert await names(kind="folder") == ["a-dir", "b-dir"]
    assert await names(kind="file") == ["a.png", "b.jpg", "c.txt", "d.html", "e.txt", "f.jpg"]
    assert await names(media_type="image/") == ["a.png", "b.jpg", "f.jpg"]
    assert await names(media_type="image/jpeg") == ["b.jpg", "f.jpg"]
    assert await names(media_type="text/", kind="file", sort="size") == ["d.html", "e.txt", "c.txt"]
    assert await names(media_type="%") == []
    assert await names(media_type="image/jpeg", limit="1") == ["b.jpg", "f.jpg"]
    bad_kind = await client.get(node_path(folder_id, "/children"), params={"kind": "link"}, headers=alice.headers)
    bad_sort = await client.get(node_path(folder_id, "/children"), params={"sort": "colour"}, headers=alice.headers)
    assert_problem(bad_kind, 400, "invalid-input")
    assert_problem(bad_sort, 400, "invalid-input")


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pagination_under_concurrent_changes(client: httpx.AsyncClient, order: str) -> None:
    alice = await new_account(client, "alice@example.com")
    folder = await mkdir(client, alice, alice.root_id, "busy")
    ids: dict[str, str] = {}
    for number in range(10, 30, 2):  # n10, n12, ... n28
        ids[f"n{number}"] = (await upload(client, alice, folder["id"], f"n{number}", b"x"))["id"]
    url = node_path(folder["id"], "/children")

    first = (await client.get(url, params={"order": order, "limit": 3}, headers=alice.headers)).json()
    seen = [i["name"] for i in first["items"]]
    assert seen == (["n10", "n12", "n14"] if order == "asc" else ["n28", "n26", "n24"])
    # Between pages: names land before and after the cursor, a seen item and an unseen one go away.
    for name in ("n11", "n13", "n15", "n23", "n00", "n99"):
        await upload(client, alice, folder["id"], name, b"y")
    deleted_seen = seen[1]
    deleted_unseen = "n20"
    for name in (deleted_seen, deleted_unseen):
        assert (await client.delete(node_path(ids[name]), headers=alice.headers)).status_code == 200

    cursor = first["next_cursor"]
    while cursor:
        page = (
            await client.get(url, params={"order": order, "limit": 3, "cursor": cursor}, headers=alice.headers)
        ).json()
        seen += [i["name"] for i in page["items"]]
        cursor = page["next_cursor"]

    assert len(seen) == len(set(seen)), f"duplicates: {seen}"
    survivors = set(ids) - {deleted_unseen}
    assert survivors <= set(seen), f"skipped: {sorted(survivors - set(seen))}"
    assert deleted_unseen not in seen
    after_cursor = "n99" if order == "asc" else "n00"
    before_cursor = "n00" if order == "asc" else "n99"
    assert after_cursor in seen
    assert before_cursor not in seen
    # Everything after the first page is in order and strictly beyond it.
    rest = seen[3:]
    assert rest == sorted(rest, reverse=order == "desc")


@pytest.mark.parametrize(
    "cursor",
    ["!!!not base64!!!", "e30", "WzFd", "WyJmaWxlIiwiYSIsImEiXQ", "WyJmaWxlIiwgMSwgMiwgM10x"],
    ids=["garbage", "object", "short-list", "three-items", "trailing-junk"],
)
async def test_a_malformed_cursor_is_refused(client: httpx.AsyncClient, cursor: str) -> None:
    alice = await new_account(client, "alice@example.com")

    response = await client.get(node_path(alice.root_id, "/children"), params={"cursor": cursor}, headers=alice.headers)

    assert_problem(response, 400, "invalid-input", field="query.cursor")


def _cursor(values: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("sort", "values"),
    [
        ("name", ["file", 1, "a", "b"]),
        ("name", ["blob", "a", "a", "b"]),
        ("name", ["file", "a", None, "b"]),
        ("size", ["file", "12", "a", "b"]),
        ("size", ["file", True, "a", "b"]),
        ("modified", ["file", "2026-01-01T00:00:00", "a", "b"]),
        ("modified", ["file", "yesterday", "a", "b"]),
        ("modified", ["file", 5, "a", "b"]),
    ],
    ids=["name-number", "unknown-kind", "null-name", "size-text", "size-bool", "naive-time", "bad-time", "time-number"],
)
async def test_a_cursor_with_values_of_the_wrong_type_is_refused(
    client: httpx.AsyncClient, sort: str, values: list[object]
) -> None:
    """Well-formed cursors with tampered values must not reach SQL (a 500, or a silently wrong page)."""
    alice = await new_account(client, "alice@example.com")

    response = await client.get(
        node_path(alice.root_id, "/children"), params={"sort": sort, "cursor": _cursor(values)}, headers=alice.headers
    )

    assert_problem(response, 400, "invalid-input", field="query.cursor")


async def test_listing_limits_and_wrong_targets(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    file = await upload(client, alice, alice.root_id, "a.txt", b"x")

    for limit in ("0", "1001", "many"):
        response = await client.get(
            node_path(alice.root_id, "/children"), params={"limit": limit}, headers=alice.headers
        )
        assert_problem(response, 400, "invalid-input")
    assert_problem(await client.get(node_path(file["id"], "/children"), headers=alice.headers), 409, "conflict")
    assert_problem(await client.get(node_path(alice.root_id, "/children"), headers=bob.headers), 404, "not-found")
    assert_problem(await client.get(node_path(file["id"]), headers=bob.headers), 404, "not-found")


# --- rename, move, copy ---------------------------------------------------------------------------------


async def test_rename(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    file = await upload(client, alice, docs["id"], "draft.txt", b"text")
    await upload(client, alice, docs["id"], "taken.txt", b"other")

    renamed = await client.patch(node_path(file["id"]), json={"name": "final.txt"}, headers=alice.headers)

    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["etag"]) == ("final.txt", file["etag"])
    assert (await client.get(by_path("paths", "docs/final.txt"), headers=alice.headers)).json()["id"] == file["id"]
    assert_problem(await client.get(by_path("paths", "docs/draft.txt"), headers=alice.headers), 404, "not-found")
    same = await client.patch(node_path(file["id"]), json={"name": "final.txt"}, headers=alice.headers)
    assert same.status_code == 200
    before = await storage(settings)
    clash = await client.patch(node_path(file["id"]), json={"name": "taken.txt"}, headers=alice.headers)
    bad = await client.patch(node_path(file["id"]), json={"name": "a/b"}, headers=alice.headers)
    assert_problem(clash, 409, "conflict", detail_contains="taken.txt")
    assert_problem(bad, 400, "invalid-input", field="body.name")
    assert_unchanged(before, await storage(settings))
    folder_renamed = await client.patch(node_path(docs["id"]), json={"name": "papers"}, headers=alice.headers)
    assert folder_renamed.status_code == 200
    assert (await client.get(by_path("paths", "papers/final.txt"), headers=alice.headers)).status_code == 200


async def test_move(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    a = await mkdir(client, alice, alice.root_id, "a")
    b = await mkdir(client, alice, a["id"], "b")
    c = await mkdir(client, alice, b["id"], "c")
    target = await mkdir(client, alice, alice.root_id, "target")
    file = await upload(client, alice, b["id"], "f.txt", b"f")

    moved = await client.patch(node_path(file["id"]), json={"parent_id": target["id"]}, headers=alice.headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["parent_id"] == target["id"]
    assert await names_in(client, alice, target["id"]) == ["f.txt"]
    assert await names_in(client, alice, b["id"]) == ["c"]
    both = await client.patch(
        node_path(file["id"]), json={"parent_id": a["id"], "name": "g.txt"}, headers=alice.headers
    )
    assert (both.json()["parent_id"], both.json()["name"]) == (a["id"], "g.txt")

    bobs = await mkdir(client, bob, bob.root_id, "bobs")
    before = await storage(settings)
    refusals = {
        "into itself": (a["id"], a["id"], 409),
        "into a child": (a["id"], b["id"], 409),
        "into a grandchild": (a["id"], c["id"], 409),
        "into a file": (b["id"], file["id"], 409),
        "into another user's folder": (b["id"], bobs["id"], 404),
        "into an unknown folder": (b["id"], "00000000-0000-0000-0000-000000000000", 404),
    }
    for what, (node_id, parent_id, status) in refusals.items():
        response = await client.patch(node_path(node_id), json={"parent_id": parent_id}, headers=alice.headers)
        assert response.status_code == status, (what, response.text)
        assert_problem(response, status, "conflict" if status == 409 else "not-found")
    by_bob = await client.patch(node_path(b["id"]), json={"parent_id": bob.root_id}, headers=bob.headers)
    assert_problem(by_bob, 404, "not-found")
    assert_unchanged(before, await storage(settings))
    up = await client.patch(node_path(c["id"]), json={"parent_id": alice.root_id}, headers=alice.headers)
    assert up.status_code == 200
    assert sorted(await names_in(client, alice, alice.root_id)) == ["a", "c", "target"]


async def test_move_onto_a_taken_name(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    src = await mkdir(client, alice, alice.root_id, "src")
    dst = await mkdir(client, alice, alice.root_id, "dst")
    one = await upload(client, alice, src["id"], "x.txt", b"one")
    two = await upload(client, alice, src["id"], "y.txt", b"two")
    await mkdir(client, alice, src["id"], "x.dir")
    existing = await upload(client, alice, dst["id"], "x.txt", b"existing")
    await upload(client, alice, dst["id"], "y.txt", b"existing y")
    dst_dir = await mkdir(client, alice, dst["id"], "x.dir")
    before = await storage(settings)

    fail = await client.patch(node_path(one["id"]), json={"parent_id": dst["id"]}, headers=alice.headers)
    body = assert_problem(fail, 409, "conflict", detail_contains="x.txt")
    assert body["conflicting_id"] == existing["id"]
    assert_unchanged(before, await storage(settings))

    renamed = await client.patch(
        node_path(one["id"]), json={"parent_id": dst["id"], "on_conflict": "rename"}, headers=alice.headers
    )
    assert renamed.json()["name"] == "x (2).txt"
    replaced = await client.patch(
        node_path(two["id"]), json={"parent_id": dst["id"], "on_conflict": "replace"}, headers=alice.headers
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == "y.txt"
    listing = {i["name"]: i["id"] for i in await children(client, alice, dst["id"])}
    assert listing == {"x.dir": dst_dir["id"], "x (2).txt": one["id"], "x.txt": existing["id"], "y.txt": two["id"]}
    trash = (await client.get(TRASH, headers=alice.headers)).json()["items"]
    assert [(i["name"], i["kind"]) for i in trash] == [("y.txt", "file")]

    folder = next(i for i in await children(client, alice, src["id"]) if i["name"] == "x.dir")
    before = await storage(settings)
    folder_onto_folder = await client.patch(
        node_path(folder["id"]), json={"parent_id": dst["id"], "on_conflict": "replace"}, headers=alice.headers
    )
    assert_problem(folder_onto_folder, 409, "conflict", detail_contains="only a file can replace a file")
    assert_unchanged(before, await storage(settings))


async def test_copy_a_file(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    content = b"copy me" * 100
    original = await upload(client, alice, alice.root_id, "orig.txt", content)
    backup = await mkdir(client, alice, alice.root_id, "backup")
    before = await storage(settings)

    copied = await client.post(
        node_path(original["id"], "/copy"), json={"parent_id": backup["id"]}, headers=alice.headers
    )

    assert copied.status_code == 201, copied.text
    copy = copied.json()
    assert copy["id"] != original["id"]
    assert (copy["name"], copy["etag"], copy["size"], copy["media_type"]) == (
        "orig.txt",
        original["etag"],
        original["size"],
        original["media_type"],
    )
    after = await storage(settings)
    assert after.usage[alice.user_id] == before.usage[alice.user_id] + len(content)
    assert after.blob_files == before.blob_files
    assert {b[0]: b[2] for b in after.blobs}[sha256_hex(content)] == 2
    assert len(after.versions) == len(before.versions) + 1
    downloaded = await client.get(node_path(copy["id"], "/content"), headers=alice.headers)
    assert downloaded.content == content

    same_place = await client.post(
        node_path(original["id"], "/copy"), json={"parent_id": alice.root_id}, headers=alice.headers
    )
    assert_problem(same_place, 409, "conflict", detail_contains="orig.txt")
    renamed = await client.post(
        node_path(original["id"], "/copy"),
        json={"parent_id": alice.root_id, "on_conflict": "rename"},
        headers=alice.headers,
    )
    named = await client.post(
        node_path(original["id"], "/copy"),
        json={"parent_id": alice.root_id, "name": "other.txt"},
        headers=alice.headers,
    )
    assert renamed.json()["name"] == "orig (2).txt"
    assert named.json()["name"] == "other.txt"
    assert await used_bytes(settings, alice.user_id) == 4 * len(content)


async def test_copy_a_folder_tree(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    project = await mkdir(client, alice, alice.root_id, "project")
    src = await mkdir(client, alice, project["id"], "src")
    await mkdir(client, alice, src["id"], "empty")
    await upload(client, alice, project["id"], "README.md", b"# Project\n")
    await upload(client, alice, src["id"], "main.py", b"print('hi')\n")
    old = await upload(client, alice, src["id"], "old.py", b"# old\n")
    assert (await client.delete(node_path(old["id"]), headers=alice.headers)).status_code == 200
    before = await storage(settings)

    response = await client.post(
        node_path(project["id"], "/copy"),
        json={"parent_id": alice.root_id, "name": "project copy"},
        headers=alice.headers,
    )

    assert response.status_code == 201, response.text
    copy = response.json()
    assert (copy["name"], copy["kind"], copy["parent_id"]) == ("project copy", "folder", alice.root_id)
    original_tree = await _tree(client, alice, project["id"])
    copied_tree = await _tree(client, alice, copy["id"])
    assert copied_tree == original_tree
    assert set(original_tree) == {"README.md", "src", "src/empty", "src/main.py"}
    after = await storage(settings)
    assert after.blob_files == before.blob_files
    assert after.usage[alice.user_id] == before.usage[alice.user_id] + len(b"# Project\n") + len(b"print('hi')\n")
    assert len(after.versions) == len(before.versions) + 2
    meta = (await client.get(node_path(copy["id"]), headers=alice.headers)).json()
    assert (meta["files"], meta["folders"], meta["bytes"]) == (2, 2, 22)

    before = await storage(settings)
    into_itself = await client.post(
        node_path(project["id"], "/copy"), json={"parent_id": src["id"]}, headers=alice.headers
    )
    foreign = await client.post(
        node_path(project["id"], "/copy"), json={"parent_id": bob.root_id}, headers=alice.headers
    )
    by_bob = await client.post(node_path(project["id"], "/copy"), json={"parent_id": bob.root_id}, headers=bob.headers)
    assert_problem(into_itself, 409, "conflict", detail_contains="itself")
    assert_problem(foreign, 404, "not-found")
    assert_problem(by_bob, 404, "not-found")
    assert_unchanged(before, await storage(settings))


async def _tree(client: httpx.AsyncClient, account: Account, folder_id: str, prefix: str = "") -> dict[str, Any]:
    """path → (kind, size, media_type, etag, modified_at) of every live item below a folder."""
    found: dict[str, Any] = {}
    for item in await children(client, account, folder_id):
        path = prefix + item["name"]
        found[path] = (item["kind"], item["size"], item["media_type"], item["etag"], item["modified_at"])
        if item["kind"] == "folder":
            found |= await _tree(client, account, item["id"], path + "/")
    return found


async def test_lookup_by_path(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    a = await mkdir(client, alice, alice.root_id, "a")
    b = await upload(client, alice, a["id"], "b", b"bee")
    await mkdir(client, bob, bob.root_id, "a")

    file = await client.get(by_path("paths", "a/b"), headers=alice.headers)
    folder = await client.get(by_path("paths", "a"), headers=alice.headers)
    slashes = await client.get(f"{API}/paths//a//b/", headers=alice.headers)

    assert file.status_code == 200
    assert (file.json()["id"], file.json()["kind"], file.json()["size"]) == (b["id"], "file", 3)
    assert folder.json()["node"]["id"] == a["id"]
    assert folder.json()["files"] == 1
    assert slashes.json()["id"] == b["id"]
    assert_problem(
        await client.get(by_path("paths", "a/x/y"), headers=alice.headers), 404, "not-found", detail_contains="/a/x"
    )
    assert_problem(
        await client.get(by_path("paths", "a/b/c"), headers=alice.headers),
        404,
        "not-found",
        detail_contains="is a file",
    )
    assert_problem(await client.get(f"{API}/paths/a/%2E%2E/b", headers=alice.headers), 400, "invalid-input")
    # Bob has his own "a", without "b": paths are always resolved in the caller's tree.
    assert_problem(await client.get(by_path("paths", "a/b"), headers=bob.headers), 404, "not-found")
    assert (await client.get(by_path("paths", "a"), headers=bob.headers)).json()["node"]["id"] != a["id"]
    assert_problem(await client.get(by_path("paths", "a/b")), 401, "unauthenticated")
