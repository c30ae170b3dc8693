"""The thumbnail endpoint end to end, on SQLite and PostgreSQL: real sample images uploaded and
transformed, errors as problem+json, the derivative cache (hit, 304, single flight, eviction, gc),
and who may read a thumbnail (owner, share recipient, administrator, link visitor, presigned URL)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

import image_samples as samples
from accounts_helpers import assert_problem, database, open_client
from conftest import make_settings
from files_helpers import (
    Account,
    blob_file,
    blob_files,
    collect_garbage,
    fsck_problems,
    new_account,
    node_path,
    upload,
    used_bytes,
)
from stowage.config import Settings
from stowage.db.tables import ImageDerivative


def thumb(node_id: str) -> str:
    return node_path(node_id, "/thumbnail")


def picture(response: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


async def derivative_rows(settings: Settings) -> list[tuple[Any, ...]]:
    async with database(settings) as db, db.session() as session:
        rows = await session.execute(
            select(ImageDerivative.source_sha256, ImageDerivative.params, ImageDerivative.sha256, ImageDerivative.size)
        )
        return sorted(tuple(row) for row in rows.all())


@pytest.fixture
async def client(settings: Settings):  # type: ignore[no-untyped-def]
    async with open_client(settings) as test_client:
        yield test_client


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> Account:
    return await new_account(client, "owner@example.com")


async def test_a_remembered_thumbnail_answers_for_the_file_as_it_is_now(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A worker reuses the answer it built for a tile while the file is unchanged; a rename shows in the
    next answer's file name, and the same derivative asked for with and without ``auto`` varies (or
    not) on Accept as each request says."""
    node = await upload(client, owner, owner.root_id, "beach.jpg", samples.jpeg())
    params = {"w": 32, "format": "webp"}
    first = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
    again = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["etag"] == first.headers["etag"]
    assert 'filename="beach.webp"' in again.headers["content-disposition"]
    renamed = await client.patch(node_path(node["id"]), json={"name": "sunset.jpg"}, headers=owner.headers)
    assert renamed.status_code == 200, renamed.text
    after = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
    assert 'filename="sunset.webp"' in after.headers["content-disposition"]
    assert after.headers["etag"] == first.headers["etag"]
    assert "vary" not in after.headers
    negotiated = await client.get(
        thumb(node["id"]), params={"w": 32}, headers={**owner.headers, "accept": "image/webp"}
    )
    assert negotiated.headers["etag"] == first.headers["etag"]  # the same derivative...
    assert negotiated.headers["vary"] == "Accept"  # ...chosen by Accept this time
    explicit = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
    assert "vary" not in explicit.headers


async def test_rotated_jpeg_thumbnail_formats_and_metadata(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    node = await upload(client, owner, owner.root_id, "rotated.jpg", samples.jpeg(orientation=6))
    response = await client.get(thumb(node["id"]), params={"w": 40, "format": "png"}, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert "vary" not in response.headers
    image = picture(response)
    assert image.size == (40, 60)
    assert not image.getexif()
    assert response.headers["etag"].startswith('"')
    assert "rotated.png" in response.headers["content-disposition"]
    # auto: WebP for a browser that takes it, JPEG for one that does not; the answer varies on Accept.
    webp = await client.get(thumb(node["id"]), params={"w": 40}, headers={**owner.headers, "accept": "image/webp,*/*"})
    assert webp.headers["content-type"] == "image/webp"
    assert webp.headers["vary"] == "Accept"
    jpeg = await client.get(thumb(node["id"]), params={"w": 40}, headers={**owner.headers, "accept": "*/*"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert samples.gps_of(jpeg.content) == {}
    assert len(await derivative_rows(settings)) == 3
    # Derivatives are in nobody's quota.
    assert await used_bytes(settings, owner.user_id) == node["size"]


async def test_heic_gif_and_other_inputs(client: httpx.AsyncClient, owner: Account) -> None:
    inputs = {
        "iphone.heic": samples.heic(),
        "anim.gif": samples.animated_gif(),
        "a.webp": samples.encoded("webp"),
        "a.avif": samples.encoded("avif"),
        "a.tiff": samples.encoded("tiff"),
        "a.png": samples.encoded("png", alpha=True),
    }
    for name, data in inputs.items():
        node = await upload(client, owner, owner.root_id, name, data)
        response = await client.get(
            thumb(node["id"]), params={"w": 32, "h": 32, "format": "webp"}, headers=owner.headers
        )
        assert response.status_code == 200, (name, response.text)
        assert picture(response).size == (32, 32), name
    gif = await upload(client, owner, owner.root_id, "anim2.gif", samples.animated_gif(4))
    first = await client.get(thumb(gif["id"]), params={"w": 16, "format": "png"}, headers=owner.headers)
    assert picture(first).convert("RGB").getpixel((8, 8))[0] > 200  # the red first frame


async def test_cache_hit_304_and_single_flight(client: httpx.AsyncClient, owner: Account, settings: Settings) -> None:
    node = await upload(client, owner, owner.root_id, "a.jpg", samples.jpeg())
    params = {"w": 50, "h": 50, "fit": "cover", "format": "webp"}
    answers = await asyncio.gather(
        *(client.get(thumb(node["id"]), params=params, headers=owner.headers) for _ in range(6))
    )
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert len(await derivative_rows(settings)) == 1
    etag = answers[0].headers["etag"]
    cached = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
    assert cached.headers["etag"] == etag
    assert cached.content == answers[0].content
    not_modified = await client.get(thumb(node["id"]), params=params, headers={**owner.headers, "if-none-match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    head = await client.head(thumb(node["id"]), params=params, headers=owner.headers)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(answers[0].content))
    # Equivalent parameters share one derivative (the key is canonical).
    same = await client.get(
        thumb(node["id"]), params={"h": 50, "w": 50, "format": "webp", "q": 80}, headers=owner.headers
    )
    assert same.headers["etag"] == etag
    assert len(await derivative_rows(settings)) == 1


UNUSABLE = {
    "truncated.jpg": (samples.truncated_jpeg(), 422, "image-damaged"),
    "bomb.png": (samples.png_bomb(), 422, "image-too-large"),
    # Binary bytes no decoder knows, named .jpg: stored as image/jpeg (the name decides), refused by the decoder.
    "random.jpg": (bytes(range(256)) * 4, 422, "not-an-image"),
    # Text renamed .jpg: the content decides its stored type (text/plain), so it is refused by type.
    "holiday.jpg": (b"not a picture at all, just text\n" * 4, 415, "unsupported-media-type"),
    "notes.txt": (b"plain text\n", 415, "unsupported-media-type"),
}


@pytest.mark.parametrize("name", sorted(UNUSABLE))
async def test_unusable_files(client: httpx.AsyncClient, owner: Account, settings: Settings, name: str) -> None:
    data, status, code = UNUSABLE[name]
    node = await upload(client, owner, owner.root_id, name, data)
    before = blob_files(settings)
    response = await client.get(thumb(node["id"]), params={"w": 64}, headers=owner.headers)
    assert_problem(response, status, code)
    assert await derivative_rows(settings) == []
    assert blob_files(settings) == before
    assert not list((settings.data_dir / "tmp").iterdir()), "no temporary file left behind"


async def test_bad_parameters_and_allowed_sizes(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, image_allowed_sizes="64,256")
    async with open_client(settings) as client:
        owner = await new_account(client, "owner@example.com")
        node = await upload(client, owner, owner.root_id, "a.jpg", samples.jpeg())
        refused = await client.get(thumb(node["id"]), params={"w": 100}, headers=owner.headers)
        body = assert_problem(refused, 400, "invalid-input", detail_contains="64, 256")
        assert body["allowed_sizes"] == [64, 256]
        bad_fit = await client.get(thumb(node["id"]), params={"w": 64, "fit": "stretch"}, headers=owner.headers)
        assert_problem(bad_fit, 400, "invalid-input")
        too_big = await client.get(thumb(node["id"]), params={"w": 99999}, headers=owner.headers)
        assert_problem(too_big, 400, "invalid-input")
        allowed = await client.get(thumb(node["id"]), params={"w": 64, "h": 64}, headers=owner.headers)
        assert allowed.status_code == 200
        assert await derivative_rows(settings) != []


async def test_input_limits_are_settings(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, image_max_input_pixels=1000)
    async with open_client(settings) as client:
        owner = await new_account(client, "owner@example.com")
        node = await upload(client, owner, owner.root_id, "a.jpg", samples.jpeg())
        response = await client.get(thumb(node["id"]), params={"w": 10}, headers=owner.headers)
        assert_problem(response, 422, "image-too-large", detail_contains="9600 pixels")


async def test_eviction_under_the_cap_and_gc(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, image_cache_max_bytes=1024 * 1024)
    async with open_client(settings) as client:
        owner = await new_account(client, "owner@example.com")
        noise = samples.encoded_noise(300, 300)
        node = await upload(client, owner, owner.root_id, "noise.png", noise)
        made: list[str] = []
        for width in (300, 299, 298, 297, 296, 295):
            response = await client.get(thumb(node["id"]), params={"w": width, "format": "png"}, headers=owner.headers)
            assert response.status_code == 200
            made.append(response.headers["etag"].strip('"'))
        rows = await derivative_rows(settings)
        assert sum(row[3] for row in rows) <= 1024 * 1024
        kept = {row[2] for row in rows}
        evicted = set(made) - kept
        assert evicted, "the least recently used derivatives were evicted"
        assert made[-1] in kept, "the newest derivative stays"
        assert set(made) <= blob_files(settings)  # eviction drops rows; files wait for gc
        # gc keeps the files of cached derivatives and removes the evicted ones (past the grace period).
        await collect_garbage(settings)
        assert kept <= blob_files(settings)
        assert not evicted & blob_files(settings)
        assert await fsck_problems(settings) == []
        again = await client.get(thumb(node["id"]), params={"w": 300, "format": "png"}, headers=owner.headers)
        assert again.status_code == 200  # an evicted derivative is simply made again


async def test_a_transform_past_its_time_limit_is_503(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, image_transform_timeout="0.001")
    async with open_client(settings) as client:
        owner = await new_account(client, "owner@example.com")
        node = await upload(client, owner, owner.root_id, "noise.png", samples.encoded_noise(1500, 1000))
        response = await client.get(thumb(node["id"]), params={"w": 1400, "format": "avif"}, headers=owner.headers)
        assert_problem(response, 503, "image-timeout", detail_contains="0.001 seconds")
        assert await derivative_rows(settings) == []
        assert not list((settings.data_dir / "tmp").iterdir())


async def test_a_lost_derivative_file_is_made_again(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    """A derivative whose blob file went missing (removed by hand, a restore without it) is rendered
    again, from this worker's memory of it and from its row alike — never a 500."""
    node = await upload(client, owner, owner.root_id, "a.jpg", samples.jpeg())
    params = {"w": 30, "format": "png"}
    first = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
    digest = first.headers["etag"].strip('"')
    blob_file(settings, digest).unlink()
    again = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
    assert again.status_code == 200, again.text
    assert again.content == first.content
    assert blob_file(settings, digest).exists()
    assert [row[2] for row in await derivative_rows(settings)] == [digest]


async def test_thumbnails_on_the_s3_blob_store(settings_env: dict[str, str], s3_env: dict[str, str]) -> None:
    """With blobs in S3 (no local files) the original is copied to a temporary file to be decoded, the
    derivative is stored in the bucket, and the next request is served from the cache like any file."""
    settings = make_settings({**settings_env, **s3_env})
    async with open_client(settings) as client:
        owner = await new_account(client, "owner@example.com")
        node = await upload(client, owner, owner.root_id, "rotated.jpg", samples.jpeg(orientation=6))
        params = {"w": 40, "format": "png"}
        first = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
        assert first.status_code == 200, first.text
        assert picture(first).size == (40, 60)
        again = await client.get(thumb(node["id"]), params=params, headers=owner.headers)
        assert again.content == first.content
        assert again.headers["etag"] == first.headers["etag"]
        assert [row[2] for row in await derivative_rows(settings)] == [first.headers["etag"].strip('"')]
        assert not list((settings.data_dir / "tmp").iterdir()), "the temporary copy of the original is gone"
        bomb = await upload(client, owner, owner.root_id, "bomb.png", samples.png_bomb())
        refused = await client.get(thumb(bomb["id"]), params=params, headers=owner.headers)
        assert_problem(refused, 422, "image-too-large")
