"""Image facts over HTTP, on SQLite and PostgreSQL, with real images made in the tests: width and height
(EXIF orientation applied), capture time and BlurHash computed after uploads (REST and tus) and on
first need, in every listing, search and share listing; the ``taken_at`` sort with its pagination and
index; content that is not an image never retried; GPS removal from stored originals."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import delete, select, update

import image_samples as samples
from accounts_helpers import database
from conftest import make_settings
from files_helpers import (
    API,
    Account,
    children,
    mkdir,
    multipart_body,
    multipart_headers,
    new_account,
    node_path,
    sha256_hex,
    upload,
)
from stowage.config import Settings
from stowage.db.tables import ImageFacts, Node
from stowage.maintenance.housekeeping import housekeeping_pass
from tus_helpers import create, metadata, patch, served, upload_url

# samples.jpeg(): EXIF DateTimeOriginal 2024:05:01 14:03:22 with OffsetTimeOriginal +02:00.
TAKEN = "2024-05-01T12:03:22Z"


def photo(taken: str | None, *, offset: str | None = "+00:00", seed: int = 0) -> bytes:
    """A small JPEG with a capture time (EXIF ``YYYY:MM:DD HH:MM:SS``) or none; ``seed`` varies the pixels
    so each photo is distinct content."""
    picture = Image.new("RGB", (40, 30), (seed * 37 % 256, 120, 200))
    exif = Image.Exif()
    if taken is not None:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = taken
        if offset is not None:
            sub[0x9011] = offset
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=85, exif=exif.tobytes())
    return out.getvalue()


async def facts_row(settings: Settings, content: bytes) -> ImageFacts | None:
    async with database(settings) as db, db.session() as session:
        row: ImageFacts | None = await session.scalar(
            select(ImageFacts).where(ImageFacts.sha256 == sha256_hex(content))
        )
        return row


async def node_taken_at(settings: Settings, node_id: str) -> datetime | None:
    async with database(settings) as db, db.session() as session:
        value: datetime | None = await session.scalar(select(Node.taken_at).where(Node.id == node_id))
        return value


async def forget_facts(settings: Settings) -> None:
    """As after a restart that lost the queue: no facts stored, no capture times copied."""
    async with database(settings) as db, db.transaction() as session:
        await session.execute(delete(ImageFacts))


async def meta(client: httpx.AsyncClient, account: Account, node_id: str) -> dict[str, Any]:
    response = await client.get(node_path(node_id), headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


# --- what is computed ------------------------------------------------------------------------------------


async def test_a_rotated_jpeg_gets_its_displayed_size_capture_time_and_placeholder(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        content = samples.jpeg(orientation=6)  # stored 120x80, shown 80x120

        node = await upload(client, alice, alice.root_id, "IMG_0001.jpg", content)
        await runtime.files.facts.idle()

        image = (await meta(client, alice, node["id"]))["image"]
        assert (image["width"], image["height"]) == (80, 120)
        assert image["taken_at"] == TAKEN
        assert isinstance(image["placeholder"], str)
        assert 20 <= len(image["placeholder"]) <= 40
        listed = by_name(await children(client, alice, alice.root_id))["IMG_0001.jpg"]
        assert listed["image"] == image
        assert await node_taken_at(settings, node["id"]) == datetime(2024, 5, 1, 12, 3, 22, tzinfo=UTC)


async def test_png_without_exif_and_heic_from_an_iphone(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        await upload(client, alice, alice.root_id, "drawing.png", samples.encoded("png"))
        await upload(client, alice, alice.root_id, "IMG_0002.HEIC", samples.heic())
        await runtime.files.facts.idle()

        items = by_name(await children(client, alice, alice.root_id))

        assert items["IMG_0002.HEIC"]["media_type"] == "image/heic"
        heic = items["IMG_0002.HEIC"]["image"]
        assert (heic["width"], heic["height"], heic["taken_at"]) == (120, 80, TAKEN)
        png = items["drawing.png"]["image"]
        assert (png["width"], png["height"], png["taken_at"]) == (120, 80, None)
        assert png["placeholder"]


async def test_content_that_is_not_an_image_gets_no_image_field_and_is_never_retried(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        noise = random.Random(7).randbytes(3000)  # binary: typed image/jpeg by its name alone
        await upload(client, alice, alice.root_id, "not-really.jpg", noise)
        cut = samples.truncated_jpeg()
        await upload(client, alice, alice.root_id, "cut.jpg", cut)
        text = await upload(client, alice, alice.root_id, "notes.jpg", b"just some text, honestly\n" * 20)
        await runtime.files.facts.idle()
        computed = runtime.files.facts.computed

        for _ in range(3):  # listings, a metadata read and a search would schedule anything missing
            items = by_name(await children(client, alice, alice.root_id))
            await meta(client, alice, items["cut.jpg"]["id"])
            await client.get(f"{API}/search", params={"q": "jpg"}, headers=alice.headers)
            await runtime.files.facts.idle()

        assert runtime.files.facts.computed == computed == 2
        assert items["not-really.jpg"]["media_type"] == "image/jpeg"
        assert all("image" not in item for item in items.values())
        rows = [await facts_row(settings, noise), await facts_row(settings, cut)]
        assert [(r.failure, r.width) for r in rows if r is not None] == [
            ("not-an-image", None),
            ("image-damaged", None),
        ]
        assert text["media_type"] == "text/plain"
        assert await facts_row(settings, b"just some text, honestly\n" * 20) is None  # never scheduled


async def test_facts_are_computed_after_a_tus_upload(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        content = samples.jpeg(orientation=6)
        created = await create(client, alice, len(content), meta=metadata(filename="tus.jpg"))
        url = upload_url(created)
        assert (await patch(client, alice, url, 0, content)).status_code == 204
        await runtime.files.facts.idle()

        image = by_name(await children(client, alice, alice.root_id))["tus.jpg"]["image"]

        assert (image["width"], image["height"], image["taken_at"]) == (80, 120, TAKEN)


# --- when ---------------------------------------------------------------------------------------------


async def test_missing_facts_are_scheduled_by_listings_and_computed_by_a_metadata_read(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        first = await upload(client, alice, alice.root_id, "a.jpg", photo("2021:01:01 10:00:00", seed=1))
        second = await upload(client, alice, alice.root_id, "b.jpg", photo("2022:01:01 10:00:00", seed=2))
        await runtime.files.facts.idle()
        await forget_facts(settings)  # the work a restart would have lost

        # A single file's metadata computes its facts while the request waits (image_facts_wait_seconds).
        assert (await meta(client, alice, first["id"]))["image"]["taken_at"] == "2021-01-01T10:00:00Z"
        # A listing never waits: it answers without the missing facts and schedules them.
        listed = by_name(await children(client, alice, alice.root_id))
        assert "image" in listed["a.jpg"]
        assert "image" not in listed["b.jpg"]
        await runtime.files.facts.idle()
        listed = by_name(await children(client, alice, alice.root_id))
        assert listed["b.jpg"]["image"]["taken_at"] == "2022-01-01T10:00:00Z"
        assert await node_taken_at(settings, second["id"]) == datetime(2022, 1, 1, 10, tzinfo=UTC)


async def test_the_metadata_read_does_not_wait_when_told_not_to(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, image_facts_wait_seconds=0)
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "a.jpg", photo("2021:01:01 10:00:00"))
        await runtime.files.facts.idle()
        await forget_facts(settings)

        assert "image" not in await meta(client, alice, node["id"])
        await runtime.files.facts.idle()
        assert (await meta(client, alice, node["id"]))["image"]["taken_at"] == "2021-01-01T10:00:00Z"


async def test_an_upload_of_known_content_answers_with_its_facts_at_once(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        bob = await new_account(client, "bob@example.com")
        content = photo("2020:02:02 02:02:02")
        await upload(client, alice, alice.root_id, "mine.jpg", content)
        await runtime.files.facts.idle()
        computed = runtime.files.facts.computed

        copy = await upload(client, bob, bob.root_id, "same.jpg", content)  # deduplicated content

        assert copy["image"]["taken_at"] == "2020-02-02T02:02:02Z"
        assert await node_taken_at(settings, copy["id"]) == datetime(2020, 2, 2, 2, 2, 2, tzinfo=UTC)
        await runtime.files.facts.idle()
        assert runtime.files.facts.computed == computed


async def test_replacing_an_image_with_other_content_drops_its_facts(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "a.jpg", photo("2021:01:01 10:00:00"))
        await runtime.files.facts.idle()
        assert await node_taken_at(settings, node["id"]) is not None

        response = await client.put(
            node_path(node["id"], "/content"), content=b"plain words now\n" * 10, headers=alice.headers
        )

        assert response.status_code == 200, response.text
        assert "image" not in response.json()
        assert "image" not in await meta(client, alice, node["id"])
        assert await node_taken_at(settings, node["id"]) is None


async def test_facts_go_with_purged_content(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        content = photo("2021:01:01 10:00:00")
        node = await upload(client, alice, alice.root_id, "a.jpg", content)
        await runtime.files.facts.idle()
        assert await facts_row(settings, content) is not None

        assert (await client.delete(node_path(node["id"]), headers=alice.headers)).status_code == 200
        assert (await client.delete(f"{API}/trash/{node['id']}", headers=alice.headers)).status_code == 204

        assert await facts_row(settings, content) is None


async def test_housekeeping_schedules_images_nobody_listed(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        folder = await mkdir(client, alice, alice.root_id, "Old photos")
        content = photo("2019:09:09 09:09:09")
        node = await upload(client, alice, folder["id"], "a.jpg", content)
        await upload(client, alice, folder["id"], "notes.txt", b"not an image")
        await runtime.files.facts.idle()
        await forget_facts(settings)  # as content stored before facts existed, or work a restart lost

        report = await housekeeping_pass(runtime.files, settings)
        await runtime.files.facts.idle()

        assert report.problems == []
        row = await facts_row(settings, content)
        assert row is not None
        assert row.taken_at == datetime(2019, 9, 9, 9, 9, 9, tzinfo=UTC)
        assert await node_taken_at(settings, node["id"]) == row.taken_at
        assert await runtime.files.facts.backfill() == 0  # nothing left to do


async def test_facts_after_multipart_and_presigned_uploads(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        body = multipart_body(
            [("file", "one.jpg", photo("2021:03:03 03:03:03", seed=1)), ("file", "two.png", samples.encoded("png"))]
        )
        response = await client.post(
            node_path(alice.root_id, "/upload"), content=body, headers={**alice.headers, **multipart_headers()}
        )
        assert response.status_code == 201, response.text
        minted = await client.post(
            f"{API}/presign/upload", json={"folder_id": alice.root_id, "name": "three.jpg"}, headers=alice.headers
        )
        assert minted.status_code == 200, minted.text
        put = await client.put(minted.json()["url"], content=photo("2022:04:04 04:04:04", seed=2))
        assert put.status_code == 201, put.text
        await runtime.files.facts.idle()

        items = by_name(await children(client, alice, alice.root_id))

        assert items["one.jpg"]["image"]["taken_at"] == "2021-03-03T03:03:03Z"
        assert (items["two.png"]["image"]["width"], items["two.png"]["image"]["taken_at"]) == (120, None)
        assert items["three.jpg"]["image"]["taken_at"] == "2022-04-04T04:04:04Z"


async def test_a_listing_repairs_a_capture_time_copy_that_lags_its_facts(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "a.jpg", photo("2018:08:08 08:08:08"))
        await runtime.files.facts.idle()
        # As when an upload is recorded while its content's facts are being stored (PostgreSQL): the facts
        # exist, the node's copy of the capture time does not.
        async with database(settings) as db, db.transaction() as session:
            await session.execute(update(Node).where(Node.id == node["id"]).values(taken_at=None))

        listed = by_name(await children(client, alice, alice.root_id))["a.jpg"]
        await runtime.files.facts.idle()

        assert listed["image"]["taken_at"] == "2018-08-08T08:08:08Z"
        assert await node_taken_at(settings, node["id"]) == datetime(2018, 8, 8, 8, 8, 8, tzinfo=UTC)
