"""A file's versions over REST: list, download (with ranges), restore, delete — on both databases."""

from __future__ import annotations

from typing import Any

import httpx

from files_helpers import (
    Account,
    assert_problem,
    assert_unchanged,
    collect_garbage,
    new_account,
    node_path,
    put_raw,
    sha256_hex,
    storage,
    upload,
    used_bytes,
)
from stowage.config import Settings

ONE, TWO, THREE = b"first draft", b"second draft, longer", b"third"


async def _three_versions(client: httpx.AsyncClient, settings: Settings) -> tuple[Account, dict[str, Any]]:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "essay.txt", ONE)
    for content in (TWO, THREE):
        response = await put_raw(client, alice, alice.root_id, "essay.txt", content, on_conflict="replace")
        assert response.status_code == 200, response.text
    return alice, node


async def test_every_overwrite_keeps_a_version(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, node = await _three_versions(client, settings)
    listed = await client.get(node_path(node["id"], "/versions"), headers=alice.headers)

    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [i["etag"] for i in items] == [f'"{sha256_hex(c)}"' for c in (THREE, TWO, ONE)]
    assert [i["current"] for i in items] == [True, False, False]
    assert [i["size"] for i in items] == [len(THREE), len(TWO), len(ONE)]
    assert all(i["author_id"] == alice.user_id for i in items)
    assert await used_bytes(settings, alice.user_id) == len(ONE) + len(TWO) + len(THREE)


async def test_download_an_old_version_with_range_and_etag(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, node = await _three_versions(client, settings)
    headers = alice.headers
    items = (await client.get(node_path(node["id"], "/versions"), headers=headers)).json()["items"]
    second = items[1]
    url = node_path(node["id"], f"/versions/{second['id']}/content")

    whole = await client.get(url, headers=headers)
    part = await client.get(url, headers={**headers, "range": "bytes=0-5"})
    cached = await client.get(url, headers={**headers, "if-none-match": second["etag"]})
    beyond = await client.get(url, headers={**headers, "range": "bytes=999-"})

    assert whole.status_code == 200
    assert whole.content == TWO
    assert whole.headers["etag"] == second["etag"]
    assert part.status_code == 206
    assert part.content == TWO[:6]
    assert part.headers["content-range"] == f"bytes 0-5/{len(TWO)}"
    assert cached.status_code == 304
    assert_problem(beyond, 416, "range-not-satisfiable")
    assert beyond.headers["content-range"] == f"bytes */{len(TWO)}"


async def test_restore_makes_an_old_version_current_as_a_new_one(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, node = await _three_versions(client, settings)
    headers = alice.headers
    first = (await client.get(node_path(node["id"], "/versions"), headers=headers)).json()["items"][2]

    restored = await client.post(node_path(node["id"], f"/versions/{first['id']}/restore"), headers=headers)

    assert restored.status_code == 200, restored.text
    assert restored.json()["etag"] == first["etag"]
    content = await client.get(node_path(node["id"], "/content"), headers=headers)
    assert content.content == ONE
    items = (await client.get(node_path(node["id"], "/versions"), headers=headers)).json()["items"]
    assert len(items) == 4
    assert items[0]["current"]
    assert items[0]["etag"] == first["etag"]


async def test_restore_after_the_file_was_moved(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, node = await _three_versions(client, settings)
    headers = alice.headers
    folder = await client.post(
        node_path(alice.root_id, "/folders"),
        json={"name": "Archive"},
        headers=headers,
    )
    moved = await client.patch(
        node_path(node["id"]), json={"parent_id": folder.json()["id"], "name": "old essay.txt"}, headers=headers
    )
    assert moved.status_code == 200, moved.text
    first = (await client.get(node_path(node["id"], "/versions"), headers=headers)).json()["items"][2]

    restored = await client.post(node_path(node["id"], f"/versions/{first['id']}/restore"), headers=headers)

    assert restored.status_code == 200, restored.text
    assert restored.json()["parent_id"] == folder.json()["id"]
    assert restored.json()["name"] == "old essay.txt"
    assert (await client.get("/api/v1/content/Archive/old essay.txt", headers=headers)).content == ONE


async def test_delete_an_old_version_releases_its_bytes(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, node = await _three_versions(client, settings)
    headers = alice.headers
    items = (await client.get(node_path(node["id"], "/versions"), headers=headers)).json()["items"]

    deleted = await client.delete(node_path(node["id"], f"/versions/{items[1]['id']}"), headers=headers)

    assert deleted.status_code == 204, deleted.text
    await collect_garbage(settings)
    state = await storage(settings)
    assert state.usage[alice.user_id] == len(ONE) + len(THREE)
    assert sha256_hex(TWO) not in state.blob_files
    remaining = (await client.get(node_path(node["id"], "/versions"), headers=headers)).json()["items"]
    assert [i["id"] for i in remaining] == [items[0]["id"], items[2]["id"]]


async def test_version_errors_change_nothing(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, node = await _three_versions(client, settings)
    bob = await new_account(client, "bob@example.com")
    headers = alice.headers
    items = (await client.get(node_path(node["id"], "/versions"), headers=headers)).json()["items"]
    folder = await client.post(
        node_path(alice.root_id, "/folders"),
        json={"name": "F"},
        headers=headers,
    )
    before = await storage(settings)

    current = await client.delete(node_path(node["id"], f"/versions/{items[0]['id']}"), headers=headers)
    unknown = await client.delete(node_path(node["id"], "/versions/nope"), headers=headers)
    foreign = await client.post(node_path(node["id"], f"/versions/{items[1]['id']}/restore"), headers=bob.headers)
    of_folder = await client.get(node_path(folder.json()["id"], "/versions"), headers=headers)

    assert_problem(current, 409, "conflict")
    assert_problem(unknown, 404, "not-found")
    assert_problem(foreign, 404, "not-found")
    assert_problem(of_folder, 409, "conflict")
    assert_unchanged(before, await storage(settings))
