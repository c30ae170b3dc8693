"""Finding files over HTTP: search by name and filters, starred items, recent files, custom metadata —
and the query plans the search relies on, checked with EXPLAIN on both engines."""

from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event, func, insert, select

from accounts_helpers import database
from files_helpers import (
    API,
    TRASH,
    Account,
    assert_problem,
    assert_unchanged,
    expected_listing_order,
    mkdir,
    new_account,
    node_path,
    put_raw,
    storage,
    upload,
)
from stowage.blobs import LocalBlobStore
from stowage.config import Settings
from stowage.db import migrate
from stowage.db.base import search_key
from stowage.db.engine import Database
from stowage.db.tables import Change, Node, Share, User
from stowage.files.schemas import SearchQuery, SortKey
from stowage.files.services import FileDeps, FileServices
from stowage.policy import CredentialKind, Principal, Role, Scope

SEARCH = f"{API}/search"
STARRED = f"{API}/starred"
RECENT = f"{API}/recent"

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # 40 bytes
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 46  # 50 bytes
PDF = b"%PDF-1.7\n" + b"%" * 51  # 60 bytes
TEXT = b"n" * 30
HTML = b"<html><body>hi</body></html>"
BINARY = b"\x00\x01\x02\x03" * 5  # 20 bytes, no signature, not text
FULL_WIDTH = "\uff26\uff35\uff2c\uff2c"  # "FULL" in full-width Latin letters


def _zip(member: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(member, b"inside")
    return out.getvalue()


def _cursor(values: list[Any]) -> str:
    """A cursor in the server's encoding (URL-safe base64 of a JSON list), for tampering tests."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


# --- helpers --------------------------------------------------------------------------------------


async def _pages(client: httpx.AsyncClient, account: Account, url: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a paginated endpoint, following ``next_cursor``."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(url, params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 200, "pagination does not end"


async def _items(client: httpx.AsyncClient, account: Account, url: str = SEARCH, **params: Any) -> list[dict[str, Any]]:
    return [item for page in await _pages(client, account, url, **params) for item in page]


async def _found(client: httpx.AsyncClient, account: Account, url: str = SEARCH, **params: Any) -> list[str]:
    return [item["name"] for item in await _items(client, account, url, **params)]


async def _put(
    client: httpx.AsyncClient, account: Account, folder_id: str, name: str, content: bytes, *, modified: str
) -> dict[str, Any]:
    response = await put_raw(client, account, folder_id, name, content, headers={"x-modified-at": modified})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _patch(client: httpx.AsyncClient, account: Account, node_id: str, **body: Any) -> httpx.Response:
    return await client.patch(node_path(node_id), json=body, headers=account.headers)


async def _trash(client: httpx.AsyncClient, account: Account, node_id: str) -> None:
    response = await client.delete(node_path(node_id), headers=account.headers)
    assert response.status_code == 200, response.text


async def _annotations(settings: Settings) -> dict[str, tuple[Any, ...]]:
    """Per node: what PATCH can change (name, parent, starred, metadata, folded name, modified time)."""
    async with database(settings) as db, db.session() as session:
        rows = await session.execute(
            select(
                Node.id, Node.name, Node.parent_id, Node.starred, Node.properties, Node.search_name, Node.modified_at
            )
        )
        return {row[0]: tuple(row[1:]) for row in rows}


# --- name matching --------------------------------------------------------------------------------


async def test_names_match_as_substrings_ignoring_case_and_unicode_forms(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    for name in (
        "Straße.txt",
        "Café Menu.txt",
        f"{FULL_WIDTH} width.txt",  # full-width Latin letters
        "fullness.txt",
        "report_2024.txt",
        "report-2024.txt",
        "reportX2024.txt",
        "100%done.txt",
        "100 done.txt",
        "back\\slash.txt",
        "Ωmega.TXT",
    ):
        await upload(client, alice, alice.root_id, name, b"x")

    async def names(q: str) -> list[str]:
        return sorted(await _found(client, alice, q=q))

    assert await names("STRASSE") == ["Straße.txt"]
    assert await names("straße") == ["Straße.txt"]
    assert await names("ASS") == ["Straße.txt"]  # anywhere in the name, not only at the start
    assert await names("CAFÉ") == ["Café Menu.txt"]  # composed query
    assert await names("cafe\u0301 m") == ["Café Menu.txt"]  # decomposed query (e + combining acute)
    assert await names("menu.TXT") == ["Café Menu.txt"]
    assert await names(FULL_WIDTH) == ["fullness.txt", f"{FULL_WIDTH} width.txt"]  # full-width query
    assert await names("full w") == [f"{FULL_WIDTH} width.txt"]  # ASCII query, full-width name
    assert await names("ωMEGA.txt") == ["Ωmega.TXT"]
    # LIKE's wildcards and its escape character are literal in a query.
    assert await names("t_2") == ["report_2024.txt"]
    assert await names("0%d") == ["100%done.txt"]
    assert await names("%") == ["100%done.txt"]
    assert await names("_") == ["report_2024.txt"]
    assert await names("k\\s") == ["back\\slash.txt"]
    assert await names("\\") == ["back\\slash.txt"]
    assert await names("nothing like it") == []
    everything = await names("")
    assert len(everything) == 11  # an empty query matches every name
    assert "" not in everything  # the root folder is never a result


async def test_renaming_updates_what_a_search_finds(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "draft.txt", b"x")

    renamed = await _patch(client, alice, node["id"], name="FINAL Größe.txt")

    assert renamed.status_code == 200, renamed.text
    assert await _found(client, alice, q="draft") == []
    assert await _found(client, alice, q="final grösse") == ["FINAL Größe.txt"]


# --- scope: subtree, trash, other users -----------------------------------------------------------


async def test_search_scope_subtree_trash_and_other_users(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    deep = await mkdir(client, alice, docs["id"], "deep")
    inner = await mkdir(client, alice, deep["id"], "inner")
    other = await mkdir(client, alice, alice.root_id, "other")
    gone = await mkdir(client, alice, alice.root_id, "gone")
    await mkdir(client, alice, docs["id"], "planning")
    await upload(client, alice, docs["id"], "plan.txt", b"1")
    await upload(client, alice, inner["id"], "plan-b.txt", b"2")
    await upload(client, alice, other["id"], "plan-c.txt", b"3")
    await upload(client, alice, alice.root_id, "plan-root.txt", b"4")
    old = await upload(client, alice, docs["id"], "old-plan.txt", b"5")
    await upload(client, alice, gone["id"], "plan-x.txt", b"6")
    await _trash(client, alice, old["id"])
    await _trash(client, alice, gone["id"])
    bob_folder = await mkdir(client, bob, bob.root_id, "plans of bob")
    await upload(client, bob, bob_folder["id"], "plan-bob.txt", b"7")

    everywhere = ["planning", "plan-b.txt", "plan-c.txt", "plan-root.txt", "plan.txt"]
    assert await _found(client, alice, q="plan") == everywhere
    assert await _found(client, alice, q="plan", folder_id=alice.root_id) == everywhere
    assert await _found(client, alice, q="plan", folder_id=docs["id"]) == ["planning", "plan-b.txt", "plan.txt"]
    assert await _found(client, alice, q="plan", folder_id=deep["id"]) == ["plan-b.txt"]
    assert await _found(client, alice, folder_id=deep["id"]) == ["inner", "plan-b.txt"]  # the start is not a result
    assert await _found(client, alice, q="plan", folder_id=other["id"]) == ["plan-c.txt"]
    assert await _found(client, bob, q="plan") == ["plans of bob", "plan-bob.txt"]
    assert await _found(client, bob, q="root") == []

    # What was trashed (alone or with its folder) is not found, and is found again once restored.
    assert await _found(client, alice, q="old-plan") == []
    assert await _found(client, alice, q="plan-x") == []
    restored = await client.post(f"{TRASH}/{gone['id']}/restore", json={}, headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert await _found(client, alice, q="plan-x") == ["plan-x.txt"]
    assert await _found(client, alice, q="plan-x", folder_id=gone["id"]) == ["plan-x.txt"]

    before = await storage(settings)
    file_id = (await _items(client, alice, q="plan-root"))[0]["id"]
    foreign = await client.get(SEARCH, params={"q": "plan", "folder_id": bob_folder["id"]}, headers=alice.headers)
    a_file = await client.get(SEARCH, params={"q": "plan", "folder_id": file_id}, headers=alice.headers)
    unknown = await client.get(SEARCH, params={"folder_id": str(uuid.uuid4())}, headers=alice.headers)
    trashed = await client.get(SEARCH, params={"folder_id": old["id"]}, headers=alice.headers)
    anonymous = await client.get(SEARCH, params={"q": "plan"})
    assert_problem(foreign, 404, "not-found")
    assert_problem(a_file, 409, "conflict", detail_contains="is a file")
    assert_problem(unknown, 404, "not-found")
    assert_problem(trashed, 404, "not-found")
    assert_problem(anonymous, 401, "unauthenticated")
    assert_unchanged(before, await storage(settings))


async def test_a_folder_trashed_inside_the_searched_folder_hides_its_subtree(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    top = await mkdir(client, alice, alice.root_id, "top")
    middle = await mkdir(client, alice, top["id"], "middle")
    bottom = await mkdir(client, alice, middle["id"], "bottom")
    await upload(client, alice, bottom["id"], "needle.txt", b"x")
    await upload(client, alice, top["id"], "needle-kept.txt", b"x")

    assert await _found(client, alice, q="needle", folder_id=top["id"]) == ["needle-kept.txt", "needle.txt"]
    await _trash(client, alice, middle["id"])

    assert await _found(client, alice, q="needle", folder_id=top["id"]) == ["needle-kept.txt"]
    assert await _found(client, alice, q="needle") == ["needle-kept.txt"]
    assert await _found(client, alice, folder_id=top["id"]) == ["needle-kept.txt"]


# --- filters --------------------------------------------------------------------------------------


async def _filter_fixture(client: httpx.AsyncClient) -> tuple[Account, dict[str, dict[str, Any]]]:
    """Files of every category with distinct sizes and modification times, and one folder."""
    alice = await new_account(client, "alice@example.com")
    nodes = {"photos": await mkdir(client, alice, alice.root_id, "photos")}
    files = [
        ("photo.png", PNG, "2021-01-01T00:00:00Z", "image/png"),
        ("snap.jpg", JPEG, "2022-06-01T00:00:00Z", "image/jpeg"),
        ("paper.pdf", PDF, "2023-01-01T00:00:00Z", "application/pdf"),
        ("bundle.zip", _zip("a.txt"), "2023-06-01T00:00:00Z", "application/zip"),
        (
            "report.docx",
            _zip("word/document.xml"),
            "2023-09-01T00:00:00Z",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("notes.txt", TEXT, "2024-01-01T00:00:00Z", "text/plain"),
        ("page.html", HTML, "2020-01-01T00:00:00Z", "text/html"),
        ("blob.bin", BINARY, "2019-01-01T00:00:00Z", "application/octet-stream"),
    ]
    for name, content, modified, media_type in files:
        folder_id = nodes["photos"]["id"] if name == "snap.jpg" else alice.root_id
        node = await _put(client, alice, folder_id, name, content, modified=modified)
        nodes[name] = node
        # Media types are sniffed from the content: the fixture is what the filters expect.
        assert (node["media_type"], node["size"]) == (media_type, len(content)), name
        assert datetime.fromisoformat(node["modified_at"]) == datetime.fromisoformat(modified)
    return alice, nodes


async def test_filters_by_kind_type_category_size_time_and_star(client: httpx.AsyncClient) -> None:
    alice, nodes = await _filter_fixture(client)

    async def names(**params: str) -> list[str]:
        return await _found(client, alice, **params)

    files = ["blob.bin", "bundle.zip", "notes.txt", "page.html", "paper.pdf", "photo.png", "report.docx", "snap.jpg"]
    assert await names(kind="folder") == ["photos"]
    assert await names(kind="file") == files
    assert await names(q="photo") == ["photos", "photo.png"]
    assert await names(q="photo", kind="file") == ["photo.png"]
    # media_type: exact (any case), or a prefix ending in "/"; LIKE wildcards are literal.
    assert await names(media_type="image/png") == ["photo.png"]
    assert await names(media_type="IMAGE/PNG") == ["photo.png"]
    assert await names(media_type="image/") == ["photo.png", "snap.jpg"]
    assert await names(media_type="image") == []
    assert await names(media_type="image/p") == []
    assert await names(media_type="text/") == ["notes.txt", "page.html"]
    assert await names(media_type="application/") == ["blob.bin", "bundle.zip", "paper.pdf", "report.docx"]
    assert await names(media_type="%/") == []
    assert await names(media_type="_mage/") == []
    # category: a family of media types.
    assert await names(category="image") == ["photo.png", "snap.jpg"]
    assert await names(category="document") == ["paper.pdf", "report.docx"]
    assert await names(category="archive") == ["bundle.zip"]
    assert await names(category="text") == ["notes.txt", "page.html"]
    assert await names(category="video") == []
    assert await names(category="audio") == []
    # sizes are inclusive at both ends and only files have one.
    assert await names(min_size="30", max_size="50", sort="size") == ["notes.txt", "photo.png", "snap.jpg"]
    assert await names(min_size="31", max_size="49") == ["photo.png"]
    assert await names(max_size="20") == ["blob.bin"]
    assert await names(min_size="0", kind="folder") == []
    assert await names(min_size="60", max_size="60") == ["paper.pdf"]
    # modified_after is inclusive, modified_before exclusive; naive times are UTC.
    window = ["snap.jpg", "paper.pdf"]
    assert (
        await names(modified_after="2022-06-01T00:00:00Z", modified_before="2023-06-01T00:00:00Z", sort="modified")
        == window
    )
    assert await names(modified_after="2022-06-01T02:00:00+02:00", modified_before="2023-06-01T00:00:00Z") == [
        "paper.pdf",
        "snap.jpg",
    ]
    assert await names(modified_after="2022-06-01T00:00:00", modified_before="2023-06-01T00:00:00.000001") == [
        "bundle.zip",
        "paper.pdf",
        "snap.jpg",
    ]
    assert await names(modified_after="2022-06-01T00:00:01Z", modified_before="2023-06-01T00:00:00Z") == ["paper.pdf"]
    assert await names(modified_before="2020-01-01T00:00:00Z") == ["blob.bin"]
    assert await names(modified_after="2022-06-01T00:00:00Z", modified_before="2022-06-01T00:00:00Z") == []
    # starred
    for name in ("notes.txt", "photos"):
        assert (await _patch(client, alice, nodes[name]["id"], starred=True)).status_code == 200
    assert await names(starred="true") == ["photos", "notes.txt"]
    assert await names(starred="false") == [n for n in files if n != "notes.txt"]
    # every given criterion must hold
    assert await names(category="image", modified_before="2022-01-01T00:00:00Z") == ["photo.png"]
    assert await names(category="image", q="snap", folder_id=nodes["photos"]["id"]) == ["snap.jpg"]
    assert await names(category="image", folder_id=nodes["photos"]["id"], min_size="51") == []
    assert await names(q="o", category="text", starred="true") == ["notes.txt"]


# --- sorting and pagination -----------------------------------------------------------------------


async def test_sorting_and_keyset_pagination(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    top = await mkdir(client, alice, alice.root_id, "sorting")
    await mkdir(client, alice, top["id"], "beta")
    alpha = await mkdir(client, alice, top["id"], "alpha")
    for name, content, modified in [
        ("c.txt", b"c" * 30, "2020-01-01T00:00:00Z"),
        ("a.png", PNG[:10], "2022-01-01T00:00:00Z"),
        ("b.txt", b"b" * 20, "2021-01-01T00:00:00Z"),
        ("e.txt", b"e" * 20, "2021-01-01T00:00:00Z"),  # same size and time as b.txt
        ("d.jpg", JPEG[:40], "2019-06-01T12:30:00.123456Z"),
        ("f.txt", b"f" * 10, "2023-01-01T00:00:00Z"),  # same size as a.png
    ]:
        await _put(client, alice, top["id"], name, content, modified=modified)
    await _put(client, alice, alpha["id"], "g.txt", b"g" * 5, modified="2018-01-01T00:00:00Z")
    everything = await _items(client, alice, folder_id=top["id"], limit=1000)
    assert len(everything) == 9

    expected_by_name = ["alpha", "beta", "a.png", "b.txt", "c.txt", "d.jpg", "e.txt", "f.txt", "g.txt"]
    assert expected_listing_order(everything, "name", descending=False) == expected_by_name
    for sort in ("name", "size", "modified", "type"):
        for order in ("asc", "desc"):
            params = {"folder_id": top["id"], "sort": sort, "order": order}
            one_page = await client.get(SEARCH, params=params, headers=alice.headers)
            assert one_page.status_code == 200, one_page.text
            assert one_page.json()["next_cursor"] is None
            names = [i["name"] for i in one_page.json()["items"]]
            assert names == expected_listing_order(everything, sort, order == "desc"), (sort, order)
            assert set(names[:2]) == {"alpha", "beta"}
            for limit in (1, 2, 4):
                pages = await _pages(client, alice, SEARCH, **params, limit=limit)
                assert [i["name"] for page in pages for i in page] == names, (sort, order, limit)
                assert all(len(page) == limit for page in pages[:-1]), (sort, order, limit)
    by_size = await _found(client, alice, folder_id=top["id"], sort="size", kind="file")
    assert by_size == ["g.txt", "a.png", "f.txt", "b.txt", "e.txt", "c.txt", "d.jpg"]
    by_time = await _found(client, alice, folder_id=top["id"], sort="modified", order="desc", kind="file")
    assert by_time == ["f.txt", "a.png", "e.txt", "b.txt", "c.txt", "d.jpg", "g.txt"]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pagination_while_the_tree_changes(client: httpx.AsyncClient, order: str) -> None:
    alice = await new_account(client, "alice@example.com")
    one = await mkdir(client, alice, alice.root_id, "one")
    two = await mkdir(client, alice, alice.root_id, "two")
    ids: dict[str, str] = {}
    for number in range(10, 30, 2):  # item10, item12, ... item28, spread over two folders
        folder = one if number % 4 == 0 else two
        ids[f"item{number}"] = (await upload(client, alice, folder["id"], f"item{number}", b"x"))["id"]
    await upload(client, alice, one["id"], "unrelated", b"x")
    params = {"q": "ITEM", "order": order, "limit": 3}

    first = (await client.get(SEARCH, params=params, headers=alice.headers)).json()
    seen = [i["name"] for i in first["items"]]
    assert seen == (["item10", "item12", "item14"] if order == "asc" else ["item28", "item26", "item24"])
    # Between pages: matches land before and after the cursor, a seen match and an unseen one go away,
    # an unseen one is renamed so it no longer matches.
    for name, folder in (("item11", one), ("item13", two), ("item15", one), ("item23", two)):
        await upload(client, alice, folder["id"], name, b"y")
    await upload(client, alice, two["id"], "item00", b"y")
    await upload(client, alice, one["id"], "item99", b"y")
    deleted_seen, deleted_unseen, renamed_unseen = seen[1], "item20", "item18"
    for name in (deleted_seen, deleted_unseen):
        await _trash(client, alice, ids[name])
    assert (await _patch(client, alice, ids[renamed_unseen], name="other18")).status_code == 200

    cursor = first["next_cursor"]
    while cursor:
        page = (await client.get(SEARCH, params={**params, "cursor": cursor}, headers=alice.headers)).json()
        assert len(page["items"]) <= 3
        seen += [i["name"] for i in page["items"]]
        cursor = page["next_cursor"]

    assert len(seen) == len(set(seen)), f"duplicates: {seen}"
    untouched = set(ids) - {deleted_unseen, renamed_unseen}
    assert untouched <= set(seen), f"skipped: {sorted(untouched - set(seen))}"
    assert deleted_unseen not in seen
    assert renamed_unseen not in seen
    assert "unrelated" not in seen
    assert ("item99" if order == "asc" else "item00") in seen
    assert ("item00" if order == "asc" else "item99") not in seen
    assert seen[3:] == sorted(seen[3:], reverse=order == "desc")  # after the first page: in order, beyond it


# --- refused input --------------------------------------------------------------------------------


async def test_bad_search_input_is_refused_and_changes_nothing(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "a.txt", b"x")
    await mkdir(client, alice, alice.root_id, "folder")
    before = await storage(settings)
    marks = await _annotations(settings)

    async def refused(params: dict[str, str], field: str | None, url: str = SEARCH) -> None:
        response = await client.get(url, params=params, headers=alice.headers)
        assert_problem(response, 400, "invalid-input", field=field)

    await refused({"min_size": "10", "max_size": "5"}, "query.min_size")
    backwards = {"modified_after": "2024-01-01T00:00:00Z", "modified_before": "2023-12-31T23:59:59Z"}
    body = assert_problem(await client.get(SEARCH, params=backwards, headers=alice.headers), 400, "invalid-input")
    assert body["errors"][0]["field"] in {"query.modified_after", "query.modified_before"}, body
    await refused({"q": "x" * 256}, "query.q")
    await refused({"q": "ß" * 256}, "query.q")
    await refused({"category": "spreadsheet"}, "query.category")
    await refused({"min_size": "-1"}, "query.min_size")
    await refused({"max_size": "lots"}, "query.max_size")
    await refused({"modified_after": "yesterday"}, "query.modified_after")
    await refused({"kind": "link"}, "query.kind")
    await refused({"sort": "colour"}, "query.sort")
    await refused({"order": "sideways"}, "query.order")
    await refused({"starred": "maybe"}, "query.starred")
    for limit in ("0", "1001"):
        await refused({"limit": limit}, "query.limit")
        await refused({"limit": limit}, "query.limit", url=RECENT)
    # At the limits, the same criteria are fine.
    at_limits = {"q": "x" * 255, "min_size": "5", "max_size": "5", "modified_after": "2024-01-01T00:00:00Z"}
    ok = await client.get(
        SEARCH, params={**at_limits, "modified_before": "2024-01-01T00:00:00Z"}, headers=alice.headers
    )
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"items": [], "next_cursor": None}
    assert_unchanged(before, await storage(settings))
    assert await _annotations(settings) == marks


# (what, endpoint, other parameters, cursor)
MALFORMED_CURSORS: list[tuple[str, str, dict[str, str], str]] = [
    ("garbage", SEARCH, {}, "!!!not base64!!!"),
    ("object", SEARCH, {}, _cursor({"kind": "file"})),
    ("three-items", SEARCH, {}, _cursor(["file", "a.txt", "a.txt"])),
    ("recent-cursor", SEARCH, {}, _cursor(["2024-01-01T00:00:00+00:00", "id"])),  # a /recent cursor
    ("modified-not-a-time", SEARCH, {"sort": "modified"}, _cursor(["file", "not a time", "a.txt", "id"])),
    ("size-not-a-number", SEARCH, {"sort": "size"}, _cursor(["file", "not a size", "a.txt", "id"])),
    ("modified-naive-time", SEARCH, {"sort": "modified"}, _cursor(["file", "2024-01-01T00:00:00", "a", "id"])),
    ("size-a-boolean", SEARCH, {"sort": "size"}, _cursor(["file", True, "a.txt", "id"])),
    ("wrong-types", SEARCH, {"sort": "name"}, _cursor([{"kind": 1}, ["a"], None, 7])),
    ("unknown-kind", SEARCH, {"sort": "type"}, _cursor(["link", "text/plain", "a.txt", "id"])),
    ("recent-garbage", RECENT, {}, "%%%"),
    ("search-cursor-on-recent", RECENT, {}, _cursor(["file", "a", "a", "id"])),  # a /search cursor
    ("recent-not-a-time", RECENT, {}, _cursor(["not a time", "id"])),
    ("recent-null-time", RECENT, {}, _cursor([None, "id"])),
    ("recent-naive-time", RECENT, {}, _cursor(["2024-01-01T00:00:00", "id"])),
    ("starred-short", STARRED, {}, _cursor(["x"])),
]


async def test_a_malformed_cursor_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "a.txt", b"x")
    before = await storage(settings)

    for what, url, params, cursor in MALFORMED_CURSORS:
        response = await client.get(url, params={**params, "cursor": cursor}, headers=alice.headers)
        assert response.status_code == 400, (what, response.text)
        assert_problem(response, 400, "invalid-input", field="query.cursor")

    assert_unchanged(before, await storage(settings))


# --- starred --------------------------------------------------------------------------------------


async def test_star_and_unstar(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    music = await mkdir(client, alice, alice.root_id, "music")
    inner = await mkdir(client, alice, music["id"], "inner")
    small = await upload(client, alice, inner["id"], "small.txt", b"s")
    big = await upload(client, alice, alice.root_id, "big.txt", b"b" * 100)
    plain = await upload(client, alice, alice.root_id, "plain.txt", b"p")
    assert (small["starred"], big["starred"], music["starred"]) == (False, False, False)
    assert await _found(client, alice, STARRED) == []

    for node in (small, big, music):
        response = await _patch(client, alice, node["id"], starred=True)
        assert response.status_code == 200, response.text
        assert response.json()["starred"] is True
    again = await _patch(client, alice, big["id"], starred=True)  # idempotent

    assert again.json()["starred"] is True
    assert await _found(client, alice, STARRED) == ["music", "big.txt", "small.txt"]
    assert await _found(client, alice, STARRED, sort="size", order="desc") == ["music", "big.txt", "small.txt"]
    assert await _found(client, alice, STARRED, sort="size") == ["music", "small.txt", "big.txt"]
    assert await _found(client, alice, STARRED, order="desc") == ["music", "small.txt", "big.txt"]
    assert [[i["name"] for i in p] for p in await _pages(client, alice, STARRED, limit=1)] == [
        ["music"],
        ["big.txt"],
        ["small.txt"],
    ]
    assert (await client.get(node_path(plain["id"]), headers=alice.headers)).json()["starred"] is False
    assert (await client.get(node_path(music["id"]), headers=alice.headers)).json()["node"]["starred"] is True
    assert await _found(client, bob, STARRED) == []
    assert_problem(await _patch(client, bob, big["id"], starred=False), 404, "not-found")

    unstarred = await _patch(client, alice, big["id"], starred=False)
    assert unstarred.status_code == 200, unstarred.text
    assert unstarred.json()["starred"] is False
    assert await _found(client, alice, STARRED) == ["music", "small.txt"]
    # A starred item in the trash is not listed; restored, it is starred again.
    await _trash(client, alice, music["id"])
    assert await _found(client, alice, STARRED) == []
    restored = await client.post(f"{TRASH}/{music['id']}/restore", json={}, headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert await _found(client, alice, STARRED) == ["music", "small.txt"]
    # Only a boolean stars.
    assert_problem(await _patch(client, alice, plain["id"], starred="yes"), 400, "invalid-input", field="body.starred")


# --- recent ---------------------------------------------------------------------------------------


async def test_recent_files(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    folder = await mkdir(client, alice, alice.root_id, "folder")
    a = await upload(client, alice, alice.root_id, "a.txt", b"a")
    b = await upload(client, alice, folder["id"], "b.txt", b"b")
    await mkdir(client, alice, folder["id"], "made later")
    # The server's upload time counts, not the client's modification time.
    c = await _put(client, alice, alice.root_id, "c.txt", b"c", modified="2001-01-01T00:00:00Z")
    await upload(client, bob, bob.root_id, "bob.txt", b"x")

    assert await _found(client, alice, RECENT) == ["c.txt", "b.txt", "a.txt"]
    assert await _found(client, bob, RECENT) == ["bob.txt"]

    replaced = await put_raw(client, alice, alice.root_id, "a.txt", b"a2", on_conflict="replace")
    assert replaced.status_code == 200, replaced.text
    assert await _found(client, alice, RECENT) == ["a.txt", "c.txt", "b.txt"]
    copied = await client.post(node_path(b["id"], "/copy"), json={"parent_id": alice.root_id}, headers=alice.headers)
    assert copied.status_code == 201, copied.text
    assert await _found(client, alice, RECENT) == ["b.txt", "a.txt", "c.txt", "b.txt"]
    renamed = await _patch(client, alice, a["id"], name="renamed.txt", starred=True, metadata={"k": "v"})
    assert renamed.status_code == 200, renamed.text  # renaming, starring or tagging is not an upload
    assert await _found(client, alice, RECENT) == ["b.txt", "renamed.txt", "c.txt", "b.txt"]

    await _trash(client, alice, folder["id"])  # b.txt goes with its folder
    assert await _found(client, alice, RECENT) == ["b.txt", "renamed.txt", "c.txt"]
    pages = await _pages(client, alice, RECENT, limit=1)
    assert [[i["name"] for i in p] for p in pages] == [["b.txt"], ["renamed.txt"], ["c.txt"]]
    assert [i["id"] for p in pages for i in p] == [copied.json()["id"], a["id"], c["id"]]
    assert all(i["kind"] == "file" for p in pages for i in p)
    two = await _pages(client, alice, RECENT, limit=2)
    assert [len(p) for p in two] == [2, 1]

    # Pages stay consistent while files are uploaded between them: newer files are not repeated.
    first = (await client.get(RECENT, params={"limit": 2}, headers=alice.headers)).json()
    await upload(client, alice, alice.root_id, "newest.txt", b"n")
    rest = (await client.get(RECENT, params={"cursor": first["next_cursor"]}, headers=alice.headers)).json()
    assert [i["name"] for i in first["items"] + rest["items"]] == ["b.txt", "renamed.txt", "c.txt"]
    assert await _found(client, alice, RECENT) == ["newest.txt", "b.txt", "renamed.txt", "c.txt"]


async def test_recent_includes_restored_versions(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    old = await upload(client, alice, alice.root_id, "old.txt", b"one")
    assert (await put_raw(client, alice, alice.root_id, "old.txt", b"two", on_conflict="replace")).status_code == 200
    await upload(client, alice, alice.root_id, "new.txt", b"n")
    assert await _found(client, alice, RECENT) == ["new.txt", "old.txt"]
    versions = (await client.get(node_path(old["id"], "/versions"), headers=alice.headers)).json()["items"]

    restored = await client.post(node_path(old["id"], f"/versions/{versions[-1]['id']}/restore"), headers=alice.headers)

    assert restored.status_code == 200, restored.text
    assert await _found(client, alice, RECENT) == ["old.txt", "new.txt"]


# --- custom metadata ------------------------------------------------------------------------------


async def test_metadata_set_merge_delete_and_shown_everywhere(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    album = await mkdir(client, alice, alice.root_id, "album")
    photo = await upload(client, alice, album["id"], "photo.jpg", JPEG)
    other = await upload(client, alice, album["id"], "other.jpg", JPEG + b"x")
    assert photo["metadata"] == {}

    first = await _patch(client, alice, photo["id"], metadata={"camera": "X100", "app:album-id": "42"})
    assert first.status_code == 200, first.text
    assert first.json()["metadata"] == {"camera": "X100", "app:album-id": "42"}
    merged = await _patch(client, alice, photo["id"], metadata={"camera": None, "lens": "23mm f/2", "gone": None})
    assert merged.status_code == 200, merged.text
    expected = {"app:album-id": "42", "lens": "23mm f/2"}
    assert merged.json()["metadata"] == expected
    multiline = {"caption": "Line one\nline\ttwo — «ünïcode» 🎞", "A.b_c-d:e": "0"}
    folder_tags = await _patch(client, alice, album["id"], metadata=multiline, starred=True)
    assert folder_tags.status_code == 200, folder_tags.text
    assert folder_tags.json()["metadata"] == multiline
    unchanged = await _patch(client, alice, photo["id"], metadata={})
    assert unchanged.json()["metadata"] == expected

    got = (await client.get(node_path(photo["id"]), headers=alice.headers)).json()
    listed = (await client.get(node_path(album["id"], "/children"), headers=alice.headers)).json()["items"]
    root_listing = (await client.get(node_path(alice.root_id, "/children"), headers=alice.headers)).json()["items"]
    found = await _items(client, alice, q="photo")
    starred = await _items(client, alice, STARRED)
    recent = await _items(client, alice, RECENT)
    folder_meta = (await client.get(node_path(album["id"]), headers=alice.headers)).json()
    assert got["metadata"] == expected
    assert {i["name"]: i["metadata"] for i in listed} == {"photo.jpg": expected, "other.jpg": {}}
    assert root_listing[0]["metadata"] == multiline
    assert [(i["name"], i["metadata"]) for i in found] == [("photo.jpg", expected)]
    assert [(i["name"], i["metadata"]) for i in starred] == [("album", multiline)]
    assert {i["name"]: i["metadata"] for i in recent} == {"photo.jpg": expected, "other.jpg": {}}
    assert folder_meta["node"]["metadata"] == multiline

    # A copy keeps the metadata (of the whole tree), not the star.
    copied = await client.post(
        node_path(album["id"], "/copy"), json={"parent_id": alice.root_id, "name": "copy"}, headers=alice.headers
    )
    assert copied.status_code == 201, copied.text
    assert (copied.json()["metadata"], copied.json()["starred"]) == (multiline, False)
    copied_children = (await client.get(node_path(copied.json()["id"], "/children"), headers=alice.headers)).json()
    assert {i["name"]: i["metadata"] for i in copied_children["items"]} == {"photo.jpg": expected, "other.jpg": {}}
    # The copy is independent: changing it leaves the original alone.
    copied_photo = next(i for i in copied_children["items"] if i["name"] == "photo.jpg")
    assert (await _patch(client, alice, copied_photo["id"], metadata={"lens": None})).status_code == 200
    assert (await client.get(node_path(photo["id"]), headers=alice.headers)).json()["metadata"] == expected
    # Deleting every key leaves an empty object.
    cleared = await _patch(client, alice, photo["id"], metadata={"app:album-id": None, "lens": None})
    assert cleared.json()["metadata"] == {}
    assert (await client.get(node_path(other["id"]), headers=alice.headers)).json()["metadata"] == {}


async def test_metadata_limits(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "tagged.txt", b"x")
    assert (await _patch(client, alice, node["id"], metadata={"keep": "me"})).status_code == 200
    before = await storage(settings)
    marks = await _annotations(settings)

    cases: list[tuple[dict[str, Any], str]] = [
        ({f"k{i}": "v" for i in range(64)}, "body.metadata"),  # 65 with the one already there
        ({"long": "v" * 1025}, "body.metadata.long"),
        ({"bad key": "v"}, "body.metadata.bad key"),
        ({"-leading": "v"}, "body.metadata.-leading"),
        ({"": "v"}, "body.metadata."),
        ({"ключ": "v"}, "body.metadata.ключ"),
        ({"k" * 65: "v"}, f"body.metadata.{'k' * 65}"),
        ({"a/b": None}, "body.metadata.a/b"),  # even to delete, a key must be well-formed
        ({f"big{i}": "€" * 1000 for i in range(3)}, "body.metadata"),  # 9000+ bytes of JSON
        ({"nul": "a\x00b"}, "body.metadata.nul"),
        ({"esc": "\x1b[31mred"}, "body.metadata.esc"),
        ({"bell": "ding\x07"}, "body.metadata.bell"),
        ({"del": "a\x7fb"}, "body.metadata.del"),
        ({"good": "applied?", "bad key": "v"}, "body.metadata.bad key"),  # nothing of a bad patch applies
    ]
    for patch, field in cases:
        response = await _patch(client, alice, node["id"], metadata=patch)
        assert_problem(response, 400, "invalid-input", field=field)
        assert await _annotations(settings) == marks, patch
    for body in ({"metadata": {"n": 1}}, {"metadata": ["a"]}, {"metadata": "a=b"}):
        assert_problem(
            await client.patch(node_path(node["id"]), json=body, headers=alice.headers), 400, "invalid-input"
        )
    assert await _annotations(settings) == marks
    assert_unchanged(before, await storage(settings))

    # Exactly at the limits is fine.
    at_limits = {f"k{i}": "v" for i in range(62)} | {"k" * 64: "x" * 1024}
    response = await _patch(client, alice, node["id"], metadata=at_limits)
    assert response.status_code == 200, response.text
    assert len(response.json()["metadata"]) == 64
    assert_problem(await _patch(client, alice, node["id"], metadata={"one-more": "v"}), 400, "invalid-input")
    swap = await _patch(client, alice, node["id"], metadata={"k0": None, "one-more": "tab\tand\r\nnewline"})
    assert swap.status_code == 200, swap.text
    assert swap.json()["metadata"]["one-more"] == "tab\tand\r\nnewline"
    assert len(swap.json()["metadata"]) == 64
    big = {f"b{i}": "x" * 1000 for i in range(8)}  # about 8 KB of JSON: just within the budget
    response = await _patch(client, alice, node["id"], metadata=dict.fromkeys(swap.json()["metadata"]) | big)
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == big
    assert_problem(await _patch(client, alice, node["id"], metadata={"b8": "x" * 200}), 400, "invalid-input")


async def test_patch_applies_rename_star_and_metadata_together_or_not_at_all(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.txt", b"x")
    await upload(client, alice, alice.root_id, "taken.txt", b"y")
    target = await mkdir(client, alice, alice.root_id, "target")
    marks = await _annotations(settings)

    bad_key = await _patch(client, alice, node["id"], name="renamed.txt", starred=True, metadata={"bad key": "x"})
    taken = await _patch(client, alice, node["id"], name="taken.txt", starred=True, metadata={"k": "v"})
    bad_name = await _patch(client, alice, node["id"], name="a/b", starred=True, metadata={"k": "v"})
    bad_parent = await _patch(client, alice, node["id"], parent_id=node["id"], starred=True, metadata={"k": "v"})
    unknown_field = await client.patch(
        node_path(node["id"]), json={"name": "renamed.txt", "starred": True, "colour": "red"}, headers=alice.headers
    )

    assert_problem(bad_key, 400, "invalid-input", field="body.metadata.bad key")
    assert_problem(taken, 409, "conflict")
    assert_problem(bad_name, 400, "invalid-input", field="body.name")
    assert_problem(bad_parent, 409, "conflict")
    assert_problem(unknown_field, 400, "invalid-input")
    assert await _annotations(settings) == marks
    assert await _found(client, alice, q="renamed") == []

    together = await _patch(
        client, alice, node["id"], name="Renamed.txt", parent_id=target["id"], starred=True, metadata={"k": "v"}
    )

    assert together.status_code == 200, together.text
    body = together.json()
    assert (body["name"], body["parent_id"], body["starred"], body["metadata"]) == (
        "Renamed.txt",
        target["id"],
        True,
        {"k": "v"},
    )
    found = await _items(client, alice, q="RENAMED", starred="true", folder_id=target["id"])
    assert [(i["id"], i["metadata"]) for i in found] == [(node["id"], {"k": "v"})]


async def test_star_and_metadata_changes_are_in_the_change_log(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.txt", b"x")

    async def actions() -> list[str]:
        async with database(settings) as db, db.session() as session:
            rows = await session.scalars(select(Change.action).where(Change.node_id == node["id"]).order_by(Change.id))
            return list(rows)

    assert await actions() == ["create"]
    assert (await _patch(client, alice, node["id"], starred=True)).status_code == 200
    assert (await _patch(client, alice, node["id"], metadata={"k": "v"})).status_code == 200
    # The name given is the current one: nothing moves, but the star still changes and is logged.
    assert (await _patch(client, alice, node["id"], name="a.txt", starred=False)).status_code == 200
    assert (await _patch(client, alice, node["id"], name="b.txt", metadata={"k": None})).status_code == 200
    assert await actions() == ["create", "update", "update", "update", "move"]
    got = (await client.get(node_path(node["id"]), headers=alice.headers)).json()
    assert (got["name"], got["starred"], got["metadata"]) == ("b.txt", False, {})


# --- query plans ----------------------------------------------------------------------------------

PLAN_ROWS = 3000  # per user; enough for PostgreSQL's planner to prefer an index over reading the table


@asynccontextmanager
async def _search_services(settings: Settings) -> AsyncIterator[tuple[Database, FileServices, list[Any]]]:
    """The real search service on a migrated database, with every statement it runs captured."""
    db = Database(settings)
    try:
        await migrate.upgrade(db)
        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
            if "FROM nodes" in statement:
                captured.append((statement, parameters))

        # Search reads off the event loop (the offload engine), recent files in it: listen to both.
        for engine in {db.read_engine, db.offload_engine}:
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
        store = LocalBlobStore(settings.data_dir.resolve())
        yield db, FileServices.build(FileDeps(settings=settings, database=db, store=store)), captured
    finally:
        await db.dispose()


async def _populate(db: Database, users: list[str]) -> dict[str, str]:
    """Per user: a root, 30 folders and files; a few trashed, a few starred. Returns each user's root."""
    now = datetime.now(UTC)
    roots: dict[str, str] = {}
    async with db.transaction() as session:
        await session.execute(
            insert(User),
            [
                {
                    "id": user,
                    "email": f"{user}@example.com",
                    "display_name": "plan",
                    "password_hash": "x",
                    "role": "user",
                    "created_at": now,
                    "updated_at": now,
                }
                for user in users
            ],
        )
        for user in users:
            root = str(uuid.uuid4())
            roots[user] = root
            rows: list[dict[str, Any]] = [_row(root, user, None, kind="folder", name="", now=now, n=0)]
            folders = [str(uuid.uuid4()) for _ in range(30)]
            rows += [
                _row(f, user, root, kind="folder", name=f"folder {n:02d}", now=now, n=n) for n, f in enumerate(folders)
            ]
            for n in range(PLAN_ROWS):
                name = f"file {n:05d} report.txt"
                rows.append(_row(str(uuid.uuid4()), user, folders[n % 30], kind="file", name=name, now=now, n=n))
            rows.append(_row(str(uuid.uuid4()), user, folders[0], kind="file", name="Needle.txt", now=now, n=1))
            for start in range(0, len(rows), 1000):
                await session.execute(insert(Node.__table__), rows[start : start + 1000])
    return roots


def _row(
    node_id: str, owner: str, parent: str | None, *, kind: str, name: str, now: datetime, n: int
) -> dict[str, Any]:
    is_file = kind == "file"
    return {
        "id": node_id,
        "owner_id": owner,
        "parent_id": parent,
        "kind": kind,
        "name": name,
        "search_name": search_key(name),
        "size": n * 100 if is_file else 0,
        "media_type": "text/plain" if is_file else None,
        "created_at": now,
        "modified_at": now - timedelta(minutes=n),
        "uploaded_at": now - timedelta(minutes=n) if is_file else None,
        "trashed_at": now if n % 41 == 7 else None,
        "starred": n % 50 == 3,
    }


async def _explain(db: Database, statement: str, parameters: Any) -> str:
    async with db.read_engine.connect() as connection:
        if db.is_sqlite:
            rows = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
            return "\n".join(str(row[-1]) for row in rows)
        await connection.exec_driver_sql("SET enable_seqscan = off")
        rows = (await connection.exec_driver_sql("EXPLAIN " + statement, parameters)).all()
        return "\n".join(str(row[0]) for row in rows)


async def _postgres(settings: Settings, sql: str, *args: Any) -> Any:
    """Run one statement outside a transaction (VACUUM needs that) in the test's schema."""
    dsn = settings.effective_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn, timeout=5, server_settings={"search_path": settings.database_schema or ""})
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def test_query_plans_use_the_search_indexes(settings: Settings, backend: str) -> None:
    users = [str(uuid.uuid4()) for _ in range(2)]
    async with _search_services(settings) as (db, files, captured):
        roots = await _populate(db, users)
        trigram = False
        if backend == "postgresql":
            # What autovacuum does on a live server: statistics, and GIN's pending list merged.
            await _postgres(settings, "VACUUM ANALYZE nodes")
            installed = await _postgres(settings, "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            indexes = await _postgres(
                settings,
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND indexname = 'ix_nodes_search_name_trgm'",
                settings.database_schema,
            )
            trigram = bool(installed)
            assert bool(indexes) == trigram, "the migration creates the trigram index when pg_trgm is there"
        principal = Principal(
            user_id=users[0],
            role=Role.USER,
            scopes=frozenset({Scope.READ}),
            kind=CredentialKind.SESSION,
            credential_id="plan-test",
        )

        async def plan_of(call: Any) -> tuple[str, Any, str]:
            captured.clear()
            page = await call
            assert len(captured) >= 1
            statement, parameters = captured[-1]
            return statement, page, await _explain(db, statement, parameters)

        # Everywhere, by name: the folded column is compared as stored (no function call per row).
        statement, page, plan = await plan_of(
            files.search.search(principal, SearchQuery(text="NEEDLE"), cursor=None, limit=50)
        )
        assert [i.name for i in page.items] == ["Needle.txt"]
        assert "search_name LIKE" in statement
        assert "lower(" not in statement.lower()
        if backend == "sqlite":
            assert "USING INDEX ix_nodes_owner_id_trashed_at" in plan, plan
        elif trigram:
            assert "Bitmap Index Scan on ix_nodes_search_name_trgm" in plan, plan
        else:
            assert "ix_nodes_owner_id" in plan, plan

        # Everywhere without a selective name: narrowed to the caller's nodes by an owner index.
        _, page, plan = await plan_of(files.search.search(principal, SearchQuery(text="report"), cursor=None, limit=5))
        assert len(page.items) == 5
        assert "ix_nodes_owner_id" in plan, plan
        assert "SCAN nodes\n" not in plan + "\n", plan
        assert "Seq Scan" not in plan, plan

        # Recent files: the (owner, upload time) index read backwards, no sort of the whole set.
        _, page, plan = await plan_of(files.search.recent(principal, cursor=None, limit=20))
        assert len(page.items) == 20
        _, second, second_plan = await plan_of(files.search.recent(principal, cursor=page.next_cursor, limit=20))
        assert {i.id for i in second.items}.isdisjoint({i.id for i in page.items})
        for shown in (plan, second_plan):
            if backend == "sqlite":
                assert "USING INDEX ix_nodes_owner_id_uploaded_at" in shown, shown
                assert "USE TEMP B-TREE FOR ORDER BY" not in shown, shown  # only for the id tie-break
            else:
                assert "Index Scan Backward using ix_nodes_owner_id_uploaded_at" in shown, shown

        # Starred (PostgreSQL): the partial index holds only starred rows.
        _, page, plan = await plan_of(files.search.search(principal, SearchQuery(starred=True), cursor=None, limit=50))
        assert page.items
        assert all(i.starred for i in page.items)
        if backend == "postgresql":
            assert "ix_nodes_owner_id_starred" in plan, plan

        # A subtree: the recursive walk over folders goes through an index on (parent, kind, …).
        async with db.session() as session:
            first = await session.scalar(select(Node.id).where(Node.owner_id == users[0], Node.name == "folder 00"))
        assert first is not None
        _, page, plan = await plan_of(
            files.search.search(principal, SearchQuery(text="needle", folder_id=first), cursor=None, limit=5)
        )
        assert [i.name for i in page.items] == ["Needle.txt"]
        if backend == "sqlite":
            assert "(parent_id=? AND kind=?)" in plan, plan

        # Below the root is the whole tree: answered like "everywhere", without walking the folders.
        _, page, plan = await plan_of(
            files.search.search(principal, SearchQuery(text="needle", folder_id=roots[users[0]]), cursor=None, limit=5)
        )
        assert [i.name for i in page.items] == ["Needle.txt"]
        assert "kind=?)" not in plan, plan  # no walk over the folders
        if backend == "sqlite":
            assert "ix_nodes_owner_id_trashed_at" in plan, plan

        # Shared with the caller too (scope=all): the caller's nodes by the owner index, the shares by the
        # grantee index, the shared subtree by the walk over folders — never a scan of every node.
        now = datetime.now(UTC)
        async with db.transaction() as session:
            shared = await session.scalar(select(Node.id).where(Node.owner_id == users[1], Node.name == "folder 00"))
            await session.execute(
                insert(Share),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "node_id": shared,
                        "owner_id": users[1],
                        "kind": "user",
                        "grantee_user_id": users[0],
                        "permission": "read",
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
        if backend == "postgresql":
            await _postgres(settings, "ANALYZE shares")
        _, page, plan = await plan_of(
            files.search.search(principal, SearchQuery(text="needle", scope="all"), cursor=None, limit=5)
        )
        assert [i.name for i in page.items] == ["Needle.txt", "Needle.txt"]
        assert len({i.id for i in page.items}) == 2  # the caller's own and the shared one
        assert "SCAN nodes\n" not in plan + "\n", plan
        assert "Seq Scan on nodes" not in plan, plan
        if backend == "sqlite":
            assert "ix_shares_grantee_user_id" in plan, plan
            assert "(parent_id=? AND kind=?)" in plan, plan

        # Sanity: the rows are all there, so the plans above were made for a table of this size.
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Node)) == 2 * (PLAN_ROWS + 32)


@pytest.mark.parametrize("sort", ["name", "size", "modified", "type"])
@pytest.mark.parametrize("descending", [False, True])
async def test_a_listing_page_is_a_range_of_one_index(
    settings: Settings, backend: str, sort: SortKey, descending: bool
) -> None:
    """Listing a folder reads folders, then files, each as a range of ``ix_nodes_live_children_<order>``
    in either direction — no sort of the whole folder, so a page of a 10,000-file folder costs the same
    at its end as at its start. Checked on the statements the listing service really runs."""
    users = [str(uuid.uuid4())]
    async with _search_services(settings) as (db, files, _captured):
        roots = await _populate(db, users)
        if backend == "postgresql":
            await _postgres(settings, "VACUUM ANALYZE nodes")
        statements: list[tuple[str, list[Any]]] = []
        real_fetch_all = db.direct.fetch_all

        async def recording_fetch_all(query: Any, params: Any = ()) -> Any:
            statements.append((query.sqlite if db.is_sqlite else query.postgres, list(params)))
            return await real_fetch_all(query, params)

        db.direct.fetch_all = recording_fetch_all  # type: ignore[method-assign]
        principal = Principal(
            user_id=users[0],
            role=Role.USER,
            scopes=frozenset({Scope.READ}),
            kind=CredentialKind.SESSION,
            credential_id="listing-plan",
        )
        first = await files.tree.list_children(principal, roots[users[0]], sort=sort, descending=descending, limit=5)
        assert first.next_cursor is not None
        await files.tree.list_children(
            principal, roots[users[0]], sort=sort, descending=descending, cursor=first.next_cursor, limit=5
        )
        assert statements
        for statement, params in statements:
            plan = await _explain(db, statement, tuple(params))
            # Folders have no size or media type of their own: by size or type they are listed by name.
            folders = "kind = 'folder'" in statement
            order = "name" if folders and sort in {"size", "type"} else sort
            assert f"ix_nodes_live_children_{order}" in plan, (statement, plan)
            assert "TEMP B-TREE" not in plan, plan  # SQLite: no sorting, the index gives the order
            assert "Sort" not in plan, plan  # PostgreSQL: likewise
