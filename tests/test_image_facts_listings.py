"""Photos by capture time, and image facts wherever files are listed, on SQLite and PostgreSQL: the
``taken_at`` sort (falling back to the modification time) with keyset pagination in both directions
and its index; search, starred and recent files; shares with users and share links — and never a
file's facts for someone who cannot see the file. Also GPS removal from stored originals."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

import image_samples as samples
from accounts_helpers import database
from conftest import make_settings
from files_helpers import (
    API,
    assert_unchanged,
    children,
    download,
    mkdir,
    new_account,
    node_path,
    sha256_hex,
    storage,
    upload,
)
from sharing_helpers import create_link, share_with, shared_with_me, visitor
from stowage.config import Settings
from stowage.files.listing_repository import children_query
from test_image_facts import photo
from tus_helpers import create, metadata, patch, served, upload_url


async def _pages(client: httpx.AsyncClient, url: str, headers: dict[str, str], **params: Any) -> list[list[str]]:
    """The names on each page of a paginated listing."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(url, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["name"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_sort_by_capture_time_with_pagination(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        await mkdir(client, alice, alice.root_id, "Albums")
        await upload(client, alice, alice.root_id, "d.jpg", photo("2025:01:01 09:00:00", seed=4))
        await upload(client, alice, alice.root_id, "a.jpg", photo("2024:01:01 09:00:00", seed=1))
        # Local time with an offset: 2023-06-01 09:00 at +05:00 is 04:00 UTC.
        await upload(client, alice, alice.root_id, "b.jpg", photo("2023:06:01 09:00:00", offset="+05:00", seed=2))
        # No capture time: sorted by its modification time.
        for name, modified in (("c.png", "2023-09-01T00:00:00Z"), ("e.txt", "2023-06-01T04:00:00Z")):
            response = await client.put(
                f"{API}/nodes/{alice.root_id}/children/{name}",
                content=samples.encoded("png") if name.endswith(".png") else b"words",
                headers={**alice.headers, "X-Modified-At": modified},
            )
            assert response.status_code == 201, response.text
        await runtime.files.facts.idle()
        url = node_path(alice.root_id, "/children")

        ascending = await _pages(client, url, alice.headers, sort="taken_at", limit=2)
        descending = await _pages(client, url, alice.headers, sort="taken_at", order="desc", limit=2)

        # b.jpg and e.txt share the instant: name breaks the tie.
        assert ascending == [["Albums", "b.jpg"], ["e.txt", "c.png"], ["a.jpg", "d.jpg"]]
        assert descending == [["Albums", "d.jpg"], ["a.jpg", "c.png"], ["e.txt", "b.jpg"]]
        searched = await _pages(client, f"{API}/search", alice.headers, q=".", sort="taken_at", limit=2)
        assert [name for page in searched for name in page] == ["b.jpg", "e.txt", "c.png", "a.jpg", "d.jpg"]


async def test_a_tampered_capture_time_cursor_is_refused(settings: Settings) -> None:
    async with served(settings) as (client, _):
        alice = await new_account(client, "alice@example.com")
        cursor = base64.urlsafe_b64encode(json.dumps(["file", "not a time", "x", "y"]).encode()).decode()

        response = await client.get(
            node_path(alice.root_id, "/children"), params={"sort": "taken_at", "cursor": cursor}, headers=alice.headers
        )

        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "query.cursor"


async def test_the_capture_time_order_is_one_index_range(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        await upload(client, alice, alice.root_id, "a.jpg", photo("2024:01:01 09:00:00"))
        await runtime.files.facts.idle()
        for descending in (False, True):
            query = children_query("file", "taken_at", descending, after=True, media_type=False)
            async with database(settings) as db, db.read_engine.connect() as connection:
                if db.is_sqlite:
                    moment = "2000-01-01 00:00:00.000000"
                    params = (alice.root_id, moment, moment, "", "", 10)
                    rows = await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + query.sqlite, params)
                    plan = "\n".join(str(row[-1]) for row in rows.all())
                    # A seek to the cursor (not a scan from the folder's first file), and no sort.
                    assert "ix_nodes_live_children_taken (parent_id=? AND kind=? AND <expr>" in plan
                    assert "TEMP B-TREE" not in plan
                else:
                    await connection.exec_driver_sql("SET enable_seqscan = off")
                    moment = datetime(2000, 1, 1, tzinfo=UTC)
                    params = (alice.root_id, moment, moment, "", "", 10)
                    rows = await connection.exec_driver_sql("EXPLAIN " + query.postgres, params)
                    plan = "\n".join(str(row[0]) for row in rows.all())
                    assert "ix_nodes_live_children_taken" in plan
                    seek = next(line for line in plan.splitlines() if "Index Cond" in line)
                    assert "COALESCE" in seek  # a seek to the cursor
                    assert "Sort" not in plan.replace("Sort Key", "")


async def test_search_starred_and_recent_carry_the_images(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "holiday.jpg", photo("2024:01:01 09:00:00"))
        await client.patch(node_path(node["id"]), json={"starred": True}, headers=alice.headers)
        await runtime.files.facts.idle()

        for url, params in ((f"{API}/search", {"q": "holiday"}), (f"{API}/starred", {}), (f"{API}/recent", {})):
            response = await client.get(url, params=params, headers=alice.headers)
            assert response.status_code == 200, response.text
            (item,) = response.json()["items"]
            assert item["image"]["taken_at"] == "2024-01-01T09:00:00Z", url


async def test_shares_show_the_images_and_others_never_see_them(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        bob = await new_account(client, "bob@example.com")
        carol = await new_account(client, "carol@example.com")
        album = await mkdir(client, alice, alice.root_id, "Album")
        node = await upload(client, alice, album["id"], "beach.jpg", photo("2024:07:01 12:00:00"))
        single = await upload(client, alice, alice.root_id, "single.jpg", photo("2024:08:01 12:00:00", seed=9))
        await runtime.files.facts.idle()
        await share_with(client, alice, album["id"], bob)
        await share_with(client, alice, single["id"], bob)

        # A recipient: shared-with-me, the shared folder's listing, the file's metadata.
        shared = {item["node"]["name"]: item["node"] for item in await shared_with_me(client, bob)}
        assert "image" not in shared["Album"]
        assert shared["single.jpg"]["image"]["taken_at"] == "2024-08-01T12:00:00Z"
        (listed,) = await children(client, bob, album["id"])
        assert listed["image"]["taken_at"] == "2024-07-01T12:00:00Z"
        assert (await client.get(node_path(node["id"]), headers=bob.headers)).json()["image"] == listed["image"]

        # A link's visitor: the folder listing, a node inside it, a shared file's own link.
        folder_link = await create_link(client, alice, album["id"])
        page = await client.get(visitor(folder_link["token"], "/children"))
        assert page.status_code == 200, page.text
        assert page.json()["items"][0]["image"] == listed["image"]
        inner = await client.get(visitor(folder_link["token"], f"/nodes/{node['id']}"))
        assert inner.json()["image"] == listed["image"]
        file_link = await create_link(client, alice, single["id"])
        info = await client.get(visitor(file_link["token"]))
        assert info.json()["node"]["image"]["taken_at"] == "2024-08-01T12:00:00Z"

        # Someone with no share: nothing about the file, in any way.
        assert (await client.get(node_path(node["id"]), headers=carol.headers)).status_code == 404
        assert (await client.get(node_path(album["id"], "/children"), headers=carol.headers)).status_code == 404
        found = await client.get(f"{API}/search", params={"q": "beach"}, headers=carol.headers)
        assert found.json()["items"] == []
        assert await shared_with_me(client, carol) == []
        anonymous = await client.get(node_path(node["id"]))
        assert anonymous.status_code == 401
        assert "image" not in anonymous.text


async def test_presigned_listings_keep_the_images(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        await upload(client, alice, alice.root_id, "a.jpg", photo("2024:01:01 09:00:00"))
        await runtime.files.facts.idle()

        response = await client.get(
            node_path(alice.root_id, "/children"), params={"presign": "true"}, headers=alice.headers
        )

        (item,) = response.json()["items"]
        assert item["url"].startswith("http")
        assert item["image"]["taken_at"] == "2024-01-01T09:00:00Z"


# --- GPS ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strip", [False, True])
async def test_gps_removal_from_stored_originals(settings_env: dict[str, str], strip: bool) -> None:
    settings = make_settings(settings_env, strip_gps_on_upload=strip)
    sent = samples.jpeg()
    assert samples.gps_of(sent)
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "where.jpg", sent)
        created = await create(client, alice, len(sent), meta=metadata(filename="tus.jpg"))
        assert (await patch(client, alice, upload_url(created), 0, sent)).status_code == 204
        await runtime.files.facts.idle()
        tus_node = next(item for item in await children(client, alice, alice.root_id) if item["name"] == "tus.jpg")

        for stored_node in (node, tus_node):
            response = await download(client, alice, stored_node["id"])
            stored = response.content
            assert response.headers["etag"] == f'"{sha256_hex(stored)}"' == stored_node["etag"]
            if strip:
                assert samples.gps_of(stored) == {}
                assert stored != sent
                assert len(stored) == len(sent)  # only the metadata changed: the picture is not re-encoded
            else:
                assert stored == sent
                assert samples.gps_of(stored)
            assert stored_node["etag"] is not None
        # The capture time and the rest of the EXIF stay.
        image = next(i for i in await children(client, alice, alice.root_id) if i["name"] == "where.jpg")["image"]
        assert image["taken_at"] == "2024-05-01T12:03:22Z"
        async with database(settings) as db, db.session() as session:
            hashes = set((await session.execute(text("SELECT sha256 FROM nodes WHERE kind = 'file'"))).scalars())
        assert (sha256_hex(sent) in hashes) is not strip


async def test_gps_removal_of_a_heic(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, strip_gps_on_upload=True)
    sent = samples.heic()
    assert samples.gps_of(sent)
    async with served(settings) as (client, _):
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "IMG_1.HEIC", sent)

        stored = (await download(client, alice, node["id"])).content

        assert samples.gps_of(stored) == {}
        assert node["etag"] == f'"{sha256_hex(stored)}"'


async def test_listings_with_thumbnail_urls(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, image_allowed_sizes="64,256")
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        await upload(client, alice, alice.root_id, "a.jpg", photo("2024:01:01 09:00:00"))
        await upload(client, alice, alice.root_id, "notes.txt", b"words")
        await runtime.files.facts.idle()
        url = node_path(alice.root_id, "/children")

        response = await client.get(url, params={"thumbnail": 64}, headers=alice.headers)

        items = {item["name"]: item for item in response.json()["items"]}
        assert "thumbnail_url" not in items["notes.txt"]
        assert "url" not in items["a.jpg"]  # the content URL only with presign=true
        thumb = await client.get(items["a.jpg"]["thumbnail_url"], headers={"Accept": "image/webp"})
        assert thumb.status_code == 200, thumb.text
        assert thumb.headers["content-type"] == "image/webp"
        assert thumb.content[:4] == b"RIFF"
        tampered = items["a.jpg"]["thumbnail_url"].replace("w=64", "w=256")
        assert tampered != items["a.jpg"]["thumbnail_url"]
        assert (await client.get(tampered)).status_code == 403
        refused = await client.get(url, params={"thumbnail": 100}, headers=alice.headers)
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["field"] == "query.thumbnail"
        both = await client.get(url, params={"thumbnail": 256, "presign": "true"}, headers=alice.headers)
        item = next(i for i in both.json()["items"] if i["name"] == "a.jpg")
        assert {"url", "thumbnail_url", "image"} <= set(item)


@pytest.mark.parametrize("setting", [False, True])
async def test_gps_removal_asked_per_upload(settings_env: dict[str, str], setting: bool) -> None:
    settings = make_settings(settings_env, strip_gps_on_upload=setting)
    sent = samples.jpeg()
    async with served(settings) as (client, _):
        alice = await new_account(client, "alice@example.com")
        before = await storage(settings)
        refused = await client.put(
            f"{API}/nodes/{alice.root_id}/children/bad.jpg",
            content=sent,
            headers={**alice.headers, "X-Strip-GPS": "yes"},
        )
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["field"] == "header.x-strip-gps"
        assert_unchanged(before, await storage(settings))

        for value in ("true", "false"):
            response = await client.put(
                f"{API}/nodes/{alice.root_id}/children/{value}.jpg",
                content=sent,
                headers={**alice.headers, "X-Strip-GPS": value},
            )
            assert response.status_code == 201, response.text
            stored = (await download(client, alice, response.json()["id"])).content
            assert (samples.gps_of(stored) == {}) is (value == "true")


async def test_facts_and_gps_removal_on_the_s3_store(settings_env: dict[str, str], s3_env: dict[str, str]) -> None:
    """Content that is not a local file: the facts and the GPS-free copy are made from a temporary copy."""
    settings = make_settings({**settings_env, **s3_env}, strip_gps_on_upload=True)
    sent = samples.jpeg(orientation=6)
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "s3.jpg", sent)
        await runtime.files.facts.idle()

        image = (await client.get(node_path(node["id"]), headers=alice.headers)).json()["image"]
        stored = (await download(client, alice, node["id"])).content

        assert (image["width"], image["height"], image["taken_at"]) == (80, 120, "2024-05-01T12:03:22Z")
        assert samples.gps_of(stored) == {}
        assert node["etag"] == f'"{sha256_hex(stored)}"'
        assert not [p for p in (settings.data_dir / "tmp").glob("*") if p.is_file()]  # temporary copies removed
