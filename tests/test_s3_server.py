"""The whole server on the S3 blob store (moto's S3 server), on SQLite and PostgreSQL: uploads and ranged
downloads, a tus upload in chunks, a ZIP archive, delete + gc, fsck finding a missing and a damaged
object, readiness reporting the bucket, and a clear start-up error for a bucket that cannot be used."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from conftest import make_settings
from files_helpers import TRASH, download, new_account, node_path, read_zip, sha256_hex, upload
from stowage.app import create_app
from stowage.blobs import create_blob_store, s3_location
from stowage.blobs.s3 import BlobStoreUnavailable, S3BlobStore
from stowage.config import Settings
from stowage.db.engine import Database
from stowage.maintenance.fsck import fsck
from stowage.maintenance.fsck_report import CORRUPT_BLOB, MISSING_BLOB
from support.s3_blobs import s3_delete_object, s3_overwrite, s3_temp_count
from support.server import ServerProcess
from tus_helpers import new_upload, offset_of, patch

MIB = 1024 * 1024


@pytest.fixture
def settings(settings_env: dict[str, str], s3_env: dict[str, str]) -> Settings:
    return make_settings({**settings_env, **s3_env}, s3_part_size=5 * MIB)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[S3BlobStore]:
    """A second handle on the server's bucket, to look behind its back."""
    opened = create_blob_store(settings)
    assert isinstance(opened, S3BlobStore)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


async def objects(store: S3BlobStore, prefix: str) -> list[str]:
    return [entry["Key"] async for entry in store.list_objects(f"{store.prefix}{prefix}")]


async def run_fsck(settings: Settings, store: S3BlobStore, **options: Any) -> list[tuple[str, str]]:
    database = Database(settings)
    try:
        report = await fsck(database, store, grace_seconds=0, **options)
    finally:
        await database.dispose()
    return [(p.kind, p.subject) for p in report.problems]


async def test_files_live_in_the_bucket_and_round_trip(
    client: httpx.AsyncClient, settings: Settings, store: S3BlobStore
) -> None:
    alice = await new_account(client, "alice@example.com")
    small = b"hello from the object store\n"
    big = os.urandom(12 * MIB + 123)  # three 5 MiB parts: the multipart path + server-side copy
    small_node = await upload(client, alice, alice.root_id, "small.txt", small)
    big_node = await upload(client, alice, alice.root_id, "big.bin", big)

    assert sorted(await objects(store, "blobs/")) == sorted(
        store.blob_key(sha256_hex(content)) for content in (small, big)
    )
    assert await s3_temp_count(store) == 0  # the multipart upload's temporary object is gone
    assert not (settings.data_dir / "blobs").exists()  # nothing on local disk

    whole = await download(client, alice, big_node["id"])
    assert whole.status_code == 200
    assert whole.content == big
    ranged = await download(client, alice, big_node["id"], Range="bytes=5242870-5242889")
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 5242870-5242889/{len(big)}"
    assert ranged.content == big[5242870:5242890]
    suffix = await download(client, alice, small_node["id"], Range="bytes=-6")
    assert suffix.status_code == 206
    assert suffix.content == small[-6:]

    archive = await client.get(node_path(alice.root_id, "/zip"), headers=alice.headers)
    assert archive.status_code == 200, archive.text
    assert read_zip(archive.content) == {"small.txt": small, "big.bin": big}

    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["blob_store"]["ok"] is True


async def test_a_tus_upload_in_chunks_lands_in_the_bucket(client: httpx.AsyncClient, store: S3BlobStore) -> None:
    alice = await new_account(client, "alice@example.com")
    content = os.urandom(6 * MIB + 7)
    url = await new_upload(client, alice, len(content), meta=f"filename {_b64('tus.bin')}")
    upload_id = url.rsplit("/", 1)[-1]
    first = await patch(client, alice, url, 0, content[: 3 * MIB])
    assert first.status_code == 204, first.text
    assert await offset_of(client, alice, url) == 3 * MIB
    staged = await objects(store, f"staging/{upload_id}/")
    assert staged  # the durable bytes are objects: any node can continue the upload
    last = await patch(client, alice, url, 3 * MIB, content[3 * MIB :])
    assert last.status_code == 204, last.text

    assert await objects(store, "staging/") == []
    assert store.blob_key(sha256_hex(content)) in await objects(store, "blobs/")
    listing = await client.get(node_path(alice.root_id, "/children"), headers=alice.headers)
    (node,) = [item for item in listing.json()["items"] if item["name"] == "tus.bin"]
    assert (await download(client, alice, node["id"])).content == content


async def test_delete_gc_and_fsck_on_the_bucket(
    client: httpx.AsyncClient, settings: Settings, store: S3BlobStore
) -> None:
    alice = await new_account(client, "alice@example.com")
    keep, lose, damage, drop = (
        f"{name} content {os.urandom(8).hex()}".encode() for name in ("keep", "lose", "damage", "drop")
    )
    for name, content in (("keep", keep), ("lose", lose), ("damage", damage), ("drop", drop)):
        await upload(client, alice, alice.root_id, name, content)
    assert await run_fsck(settings, store) == []

    listing = await client.get(node_path(alice.root_id, "/children"), headers=alice.headers)
    dropped = next(item for item in listing.json()["items"] if item["name"] == "drop")
    assert (await client.delete(node_path(dropped["id"]), headers=alice.headers)).status_code == 200
    assert (await client.delete(f"{TRASH}/{dropped['id']}", headers=alice.headers)).status_code in {200, 204}
    assert store.blob_key(sha256_hex(drop)) in await objects(store, "blobs/")  # rows go first, bytes at gc
    await run_fsck(settings, store, rehash=False, repair=True)
    assert store.blob_key(sha256_hex(drop)) not in await objects(store, "blobs/")

    await s3_delete_object(store, store.blob_key(sha256_hex(lose)))
    await s3_overwrite(store, sha256_hex(damage), b"not what was uploaded")
    problems = await run_fsck(settings, store)
    assert sorted(problems) == sorted([(MISSING_BLOB, sha256_hex(lose)), (CORRUPT_BLOB, sha256_hex(damage))])
    node = next(item for item in listing.json()["items"] if item["name"] == "damage")
    refused = await download(client, alice, node["id"])
    assert refused.status_code == 500  # verify-on-read: the ETag changed, the content was re-hashed
    assert refused.json()["type"].endswith("blob-corrupt")
    kept = next(item for item in listing.json()["items"] if item["name"] == "keep")
    assert (await download(client, alice, kept["id"])).content == keep


async def test_an_unusable_bucket_stops_the_start_with_the_reason(
    settings_env: dict[str, str], s3_env: dict[str, str]
) -> None:
    missing = make_settings({**settings_env, **s3_env}, s3_create_bucket="false")
    assert "does not exist; create it, or set s3_create_bucket = true" in await _start_failure(missing)
    nowhere = make_settings({**settings_env, **s3_env}, s3_endpoint_url="http://127.0.0.1:9")
    assert "cannot reach bucket" in await _start_failure(nowhere)


async def _start_failure(settings: Settings) -> str:
    """The BlobStoreUnavailable detail that stopped the application's start (the test client wraps it)."""
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - the group is unwrapped below
        async with AsyncTestClient(app=create_app(settings)):  # type: ignore[arg-type]
            pass
    found: list[BaseException] = [caught.value]
    while found:
        error = found.pop()
        if isinstance(error, BlobStoreUnavailable):
            return error.detail
        if isinstance(error, BaseExceptionGroup):
            found.extend(error.exceptions)
    raise AssertionError(f"not stopped by BlobStoreUnavailable: {caught.value!r}")


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


@pytest.mark.slow
async def test_stowage_serve_with_two_workers_on_the_bucket(
    tmp_path: Path, settings_env: dict[str, str], s3_env: dict[str, str], s3_endpoint: str
) -> None:
    """The real ``stowage serve`` command, two Granian workers, blob_store=s3: a tus upload whose chunks
    may land on either worker, a plain upload, ranged and whole downloads; nothing in the data folder's
    blobs; the stop closes the S3 client cleanly."""
    env = {k: v for k, v in settings_env.items() if k != "STOWAGE_DATA_DIR"}
    server = ServerProcess(tmp_path / "server", env={**env, **s3_env}, args=("--workers", "2"))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            alice = await new_account(http, "alice@example.com")
            content = os.urandom(6 * MIB + 5)
            url = await new_upload(http, alice, len(content), meta=f"filename {_b64('served.bin')}")
            for offset in range(0, len(content), 2 * MIB):
                sent = await patch(http, alice, url, offset, content[offset : offset + 2 * MIB])
                assert sent.status_code == 204, sent.text
            small = await upload(http, alice, alice.root_id, "small.txt", b"small and plain")
            listing = await http.get(node_path(alice.root_id, "/children"), headers=alice.headers)
            node = next(item for item in listing.json()["items"] if item["name"] == "served.bin")
            for _ in range(4):  # several requests, so both workers serve some
                assert (await download(http, alice, node["id"])).content == content
            ranged = await download(http, alice, small["id"], Range="bytes=6-8")
            assert ranged.status_code == 206
            assert ranged.content == b"and"
            ready = await http.get("/readyz")
            assert ready.json()["checks"]["blob_store"]["ok"] is True
    finally:
        assert await server.stop() == 0
    assert not (server.data_dir / "blobs").exists()
    assert "Unclosed" not in server.stderr_text()
    check = S3BlobStore(s3_location(make_settings({**settings_env, **s3_env})))
    try:
        assert sorted([sha async for sha in check.iter_hashes()]) == sorted(
            [sha256_hex(content), sha256_hex(b"small and plain")]
        )
    finally:
        await check.close()


async def test_thumbnails_are_made_from_and_stored_in_the_bucket(
    client: httpx.AsyncClient, settings: Settings, store: S3BlobStore
) -> None:
    """Images work on a store without local files: the original is copied to a temporary file for libvips,
    the derivative is stored as a blob in the bucket, and nothing stays behind in the data folder."""
    import image_samples as samples

    alice = await new_account(client, "alice@example.com")
    original = samples.jpeg(orientation=6)
    node = await upload(client, alice, alice.root_id, "rotated.jpg", original)
    response = await client.get(
        node_path(node["id"], "/thumbnail"), params={"w": 40, "format": "png"}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    again = await client.get(
        node_path(node["id"], "/thumbnail"), params={"w": 40, "format": "png"}, headers=alice.headers
    )
    assert again.content == response.content  # the cached derivative, read back from the bucket
    stored = sorted([sha async for sha in store.iter_hashes()])
    assert stored == sorted([sha256_hex(original), sha256_hex(response.content)])  # the derivative is a blob
    assert [p.name for p in settings.data_dir.rglob("*") if p.is_file() and "original" in p.name] == []
