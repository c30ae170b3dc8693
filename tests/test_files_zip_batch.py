"""ZIP downloads (a folder, a file, a selection) and batch operations (delete, move) over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from files_helpers import (
    API,
    TRASH,
    Account,
    assert_problem,
    assert_unchanged,
    children,
    mkdir,
    names_in,
    new_account,
    node_path,
    read_zip,
    storage,
    upload,
)
from stowage.config import Settings

UNKNOWN = "00000000-0000-0000-0000-000000000000"


async def _album(client: httpx.AsyncClient, alice: Account) -> dict[str, Any]:
    """Photos/{a.jpg, notes/readme.txt, empty/, deleted.txt (trashed), notes/gone/ (trashed folder)}."""
    photos = await mkdir(client, alice, alice.root_id, "Photos")
    notes = await mkdir(client, alice, photos["id"], "notes")
    await mkdir(client, alice, photos["id"], "empty")
    a = await upload(client, alice, photos["id"], "a.jpg", b"\xff\xd8\xff" + b"jpeg bytes" * 50)
    readme = await upload(client, alice, notes["id"], "réadme.txt", b"read me\n")
    deleted = await upload(client, alice, photos["id"], "deleted.txt", b"deleted")
    gone = await mkdir(client, alice, notes["id"], "gone")
    await upload(client, alice, gone["id"], "inside.txt", b"inside a trashed folder")
    for node in (deleted, gone):
        assert (await client.delete(node_path(node["id"]), headers=alice.headers)).status_code == 200
    return {"photos": photos, "notes": notes, "a": a, "readme": readme}


def _assert_zip_response(response: httpx.Response, filename: str) -> dict[str, bytes]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'
    if "content-length" in response.headers:
        assert int(response.headers["content-length"]) == len(response.content)
    return read_zip(response.content)


async def test_zip_a_folder(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    album = await _album(client, alice)

    response = await client.get(node_path(album["photos"]["id"], "/zip"), headers=alice.headers)

    members = _assert_zip_response(response, "download.zip")
    assert "content-length" in response.headers  # every size is known, so the length is too
    assert members == {
        "Photos/": b"",
        "Photos/a.jpg": b"\xff\xd8\xff" + b"jpeg bytes" * 50,
        "Photos/empty/": b"",
        "Photos/notes/": b"",
        "Photos/notes/réadme.txt": b"read me\n",
    }


async def test_zip_the_root_a_file_and_an_empty_folder(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    album = await _album(client, alice)
    await upload(client, alice, alice.root_id, "top.txt", b"top")
    empty = next(i for i in await children(client, alice, album["photos"]["id"]) if i["name"] == "empty")

    root = _assert_zip_response(
        await client.get(node_path(alice.root_id, "/zip"), headers=alice.headers), "download.zip"
    )
    file = _assert_zip_response(
        await client.get(node_path(album["a"]["id"], "/zip"), headers=alice.headers), "download.zip"
    )
    folder = _assert_zip_response(
        await client.get(node_path(empty["id"], "/zip"), headers=alice.headers), "download.zip"
    )

    assert sorted(root) == [
        "Photos/",
        "Photos/a.jpg",
        "Photos/empty/",
        "Photos/notes/",
        "Photos/notes/réadme.txt",
        "top.txt",
    ]
    assert root["top.txt"] == b"top"
    assert file == {"a.jpg": b"\xff\xd8\xff" + b"jpeg bytes" * 50}
    assert folder == {"empty/": b""}


async def test_zip_a_selection(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    album = await _album(client, alice)
    loose = await upload(client, alice, alice.root_id, "loose.txt", b"loose")

    response = await client.post(
        f"{API}/zip", json={"ids": [loose["id"], album["notes"]["id"]], "name": "selection"}, headers=alice.headers
    )
    default_name = await client.post(f"{API}/zip", json={"ids": [loose["id"]]}, headers=alice.headers)

    members = _assert_zip_response(response, "selection.zip")
    assert members == {"loose.txt": b"loose", "notes/": b"", "notes/réadme.txt": b"read me\n"}
    assert _assert_zip_response(default_name, "download.zip") == {"loose.txt": b"loose"}


async def test_zip_a_selection_with_clashing_names(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    first = await mkdir(client, alice, alice.root_id, "A")
    second = await mkdir(client, alice, alice.root_id, "B")
    x_a = await upload(client, alice, first["id"], "x.txt", b"from A")
    x_b = await upload(client, alice, second["id"], "x.txt", b"from B")

    response = await client.post(f"{API}/zip", json={"ids": [x_a["id"], x_b["id"]]}, headers=alice.headers)

    assert _assert_zip_response(response, "download.zip") == {"x.txt": b"from A", "x (2).txt": b"from B"}


async def test_zip_refusals(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    album = await _album(client, alice)
    bobs = await upload(client, bob, bob.root_id, "bob.txt", b"bob")
    deleted = next(i for i in (await client.get(TRASH, headers=alice.headers)).json()["items"] if i["kind"] == "file")

    for node_id in (bobs["id"], UNKNOWN, deleted["id"]):
        assert_problem(await client.get(node_path(node_id, "/zip"), headers=alice.headers), 404, "not-found")
        mixed = await client.post(f"{API}/zip", json={"ids": [album["a"]["id"], node_id]}, headers=alice.headers)
        assert_problem(mixed, 404, "not-found")
    assert_problem(await client.post(f"{API}/zip", json={"ids": []}, headers=alice.headers), 400, "invalid-input")
    assert_problem(await client.get(node_path(album["a"]["id"], "/zip")), 401, "unauthenticated")


# --- batch ------------------------------------------------------------------------------------------------


async def test_batch_delete(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    one = await upload(client, alice, alice.root_id, "one.txt", b"1")
    folder = await mkdir(client, alice, alice.root_id, "folder")
    await upload(client, alice, folder["id"], "inside.txt", b"2")
    keep = await upload(client, alice, alice.root_id, "keep.txt", b"3")
    bobs = await upload(client, bob, bob.root_id, "bob.txt", b"bob")
    ids = [one["id"], UNKNOWN, bobs["id"], folder["id"], alice.root_id, one["id"]]

    response = await client.post(f"{API}/batch/delete", json={"ids": ids}, headers=alice.headers)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [
        (one["id"], 200),
        (UNKNOWN, 404),
        (bobs["id"], 404),
        (folder["id"], 200),
        (alice.root_id, 409),
        (one["id"], 404),  # already in the trash
    ]
    assert results[0]["node"]["trashed_at"] is not None
    assert (results[1]["error"], results[2]["error"], results[4]["error"]) == ("not-found", "not-found", "conflict")
    assert all(r["detail"] for r in results if r["status"] != 200)
    assert await names_in(client, alice, alice.root_id) == ["keep.txt"]
    assert sorted(i["name"] for i in (await client.get(TRASH, headers=alice.headers)).json()["items"]) == [
        "folder",
        "one.txt",
    ]
    assert (await client.get(node_path(bobs["id"]), headers=bob.headers)).json()["trashed_at"] is None
    assert (await client.get(node_path(keep["id"]), headers=alice.headers)).status_code == 200

    before = await storage(settings)
    nothing_of_hers = await client.post(f"{API}/batch/delete", json={"ids": [bobs["id"]]}, headers=alice.headers)
    assert [r["status"] for r in nothing_of_hers.json()["results"]] == [404]
    empty = await client.post(f"{API}/batch/delete", json={"ids": []}, headers=alice.headers)
    assert_problem(empty, 400, "invalid-input")
    assert_unchanged(before, await storage(settings))


async def test_batch_move(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    target = await mkdir(client, alice, alice.root_id, "target")
    taken = await upload(client, alice, target["id"], "b.txt", b"already in target")
    a = await upload(client, alice, alice.root_id, "a.txt", b"a")
    b = await upload(client, alice, alice.root_id, "b.txt", b"b")
    sub = await mkdir(client, alice, target["id"], "sub")
    bobs = await upload(client, bob, bob.root_id, "bob.txt", b"bob")
    ids = [a["id"], b["id"], UNKNOWN, bobs["id"], target["id"]]

    response = await client.post(
        f"{API}/batch/move", json={"ids": ids, "parent_id": target["id"]}, headers=alice.headers
    )

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [
        (a["id"], 200),
        (b["id"], 409),
        (UNKNOWN, 404),
        (bobs["id"], 404),
        (target["id"], 409),  # into itself
    ]
    assert results[0]["node"]["parent_id"] == target["id"]
    assert results[1]["error"] == "conflict"
    assert "b.txt" in results[1]["detail"]
    assert sorted(await names_in(client, alice, target["id"])) == ["a.txt", "b.txt", "sub"]
    assert sorted(await names_in(client, alice, alice.root_id)) == ["b.txt", "target"]
    assert (await client.get(node_path(bobs["id"]), headers=bob.headers)).json()["parent_id"] == bob.root_id

    renamed = await client.post(
        f"{API}/batch/move",
        json={"ids": [b["id"]], "parent_id": target["id"], "on_conflict": "rename"},
        headers=alice.headers,
    )
    assert [(r["status"], r["node"]["name"]) for r in renamed.json()["results"]] == [(200, "b (2).txt")]
    assert (await client.get(node_path(taken["id"]), headers=alice.headers)).json()["name"] == "b.txt"

    before = await storage(settings)
    into_bobs = await client.post(
        f"{API}/batch/move", json={"ids": [a["id"]], "parent_id": bob.root_id}, headers=alice.headers
    )
    into_a_file = await client.post(
        f"{API}/batch/move", json={"ids": [sub["id"]], "parent_id": a["id"]}, headers=alice.headers
    )
    assert [r["status"] for r in into_bobs.json()["results"]] == [404]
    assert [r["status"] for r in into_a_file.json()["results"]] == [409]
    assert_unchanged(before, await storage(settings))
