"""What the S3 store does beyond the shared contract (tests/test_blobs.py, tests/test_blob_staging.py):
its key layout, the multipart path and its temporary objects, stale spool collection, staging shared by
two store objects (two nodes), truncation across chunks, dedup re-stamping, verify-on-read by ETag,
and bounded memory. Against moto's S3 server, in its own process."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import s3_store_for
from stowage.blobs import BlobCorrupt, BlobInfo
from stowage.blobs import s3 as s3_module
from stowage.blobs.s3 import S3BlobStore
from stowage.blobs.s3_writer import S3BlobWriter
from support.s3_blobs import s3_overwrite, s3_temp_count

MIB = 1024 * 1024
PART = 5 * MIB


@pytest.fixture
async def store(s3_endpoint: str) -> AsyncIterator[S3BlobStore]:
    opened = s3_store_for(s3_endpoint, part_size=PART)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


async def keys(store: S3BlobStore, prefix: str = "") -> list[str]:
    return [entry["Key"] async for entry in store.list_objects(prefix)]


async def put(store: S3BlobStore, data: bytes, chunk: int = MIB) -> BlobInfo:
    writer = await store.open_writer()
    for offset in range(0, len(data), chunk):
        await writer.write(data[offset : offset + chunk])
    return await writer.commit()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_blobs_live_under_the_prefix_at_their_fanout_key(s3_endpoint: str) -> None:
    store = s3_store_for(s3_endpoint, prefix="stowage/")
    await store.start()
    try:
        info = await put(store, b"prefixed")
        sha = info.sha256
        assert await keys(store) == [f"stowage/blobs/{sha[:2]}/{sha[2:4]}/{sha}"]
        assert [h async for h in store.iter_hashes()] == [sha]
    finally:
        await store.close()


async def test_a_small_blob_is_one_put_and_a_big_one_a_multipart_upload_then_a_copy(store: S3BlobStore) -> None:
    writer = await store.open_writer()
    assert isinstance(writer, S3BlobWriter)
    await writer.write(b"x" * (PART - 1))
    assert writer.multipart_id is None  # still in memory
    await writer.write(b"x")
    await asyncio.sleep(0)
    assert writer.multipart_id is not None  # one part's worth: the multipart upload has begun
    assert writer.temp_key is not None
    assert writer.temp_key.startswith("tmp/upload-")
    big = b"x" * PART + os.urandom(PART + 17)
    await writer.write(big[PART:])
    info = await writer.commit()

    assert info == BlobInfo(sha256=hashlib.sha256(big).hexdigest(), size=len(big))
    assert await keys(store) == [store.blob_key(info.sha256)]  # the temporary object is gone
    assert await s3_temp_count(store) == 0
    assert await store.verify(info.sha256)


async def test_stale_multipart_uploads_and_temporary_objects_are_collected(store: S3BlobStore) -> None:
    abandoned = await store.open_writer()
    await abandoned.write(os.urandom(PART))  # a multipart upload with one part, never finished
    await asyncio.sleep(0.05)
    client = await store.client()
    await client.put_object(Bucket=store.bucket, Key=f"{store.temp_prefix}upload-crashed", Body=b"left by a crash")
    await client.put_object(Bucket=store.bucket, Key="tmpfile-of-someone-else", Body=b"not ours")
    assert await s3_temp_count(store) == 2

    assert await store.remove_stale_temp(3600) == 0  # all fresh
    await asyncio.sleep(1.1)  # S3 timestamps have one-second resolution
    assert await store.remove_stale_temp(1) == 2
    assert await s3_temp_count(store) == 0
    assert await keys(store) == ["tmpfile-of-someone-else"]
    with pytest.raises(FileNotFoundError):
        await abandoned.commit()  # its multipart upload was aborted: nothing is published
    assert [h async for h in store.iter_hashes()] == []


async def test_two_nodes_continue_one_staging(s3_endpoint: str) -> None:
    """A tus PATCH may land on any node: a second store object on the same bucket sees the durable bytes."""
    first = s3_store_for(s3_endpoint, part_size=PART)
    await first.start()
    second = S3BlobStore(first.location, part_size=PART)
    upload_id = str(uuid.uuid4())
    data = os.urandom(2 * PART + 1000)
    try:
        staging = await first.open_staging(upload_id)
        await staging.append(data[: PART + 10])
        assert await staging.sync() == PART + 10
        await staging.close()

        resumed = await second.open_staging(upload_id)
        assert await resumed.size() == PART + 10
        await resumed.append(data[PART + 10 :])
        info = await resumed.finish()

        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert b"".join([c async for c in first.open_read(info.sha256)]) == data
        assert await first.staged_uploads() == {}
    finally:
        await first.close()
        await second.close()


async def test_truncation_cuts_a_chunk_and_drops_the_later_ones(store: S3BlobStore) -> None:
    upload_id = str(uuid.uuid4())
    data = os.urandom(3 * PART)
    staging = await store.open_staging(upload_id)
    for offset in range(0, len(data), MIB):
        await staging.append(data[offset : offset + MIB])
    await staging.sync()
    assert len(await keys(store, store.staging_prefix(upload_id))) == 3

    await staging.truncate(PART + 123)  # inside the second chunk
    await staging.close()
    reopened = await store.open_staging(upload_id)
    assert await reopened.size() == PART + 123
    assert len(await keys(store, store.staging_prefix(upload_id))) == 2
    await reopened.append(data[PART + 123 :])
    info = await reopened.finish()
    assert info.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_chunk_that_fails_leaves_no_object(store: S3BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    upload_id = str(uuid.uuid4())
    staging = await store.open_staging(upload_id)
    await staging.append(b"durable")
    await staging.sync()
    client = await store.client()

    async def refused(**_: object) -> None:
        raise ConnectionResetError("the network went away mid-chunk")

    monkeypatch.setattr(client, "put_object", refused)
    await staging.append(b"lost")
    with pytest.raises(ConnectionResetError):
        await staging.sync()
    monkeypatch.undo()
    await staging.close()
    assert await (await store.open_staging(upload_id)).size() == len(b"durable")


async def test_deduplication_restamps_an_old_blob_for_gc(store: S3BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    info = await put(store, b"popular content")
    before = await store.modified_at(info.sha256)
    assert before is not None
    await asyncio.sleep(1.1)  # S3 timestamps have one-second resolution
    monkeypatch.setattr(s3_module, "REFRESH_AFTER_SECONDS", 0.0)  # "old" already

    assert await put(store, b"popular content") == info

    after = await store.modified_at(info.sha256)
    assert after is not None
    assert after > before  # gc's grace period now covers the reference about to be recorded
    assert await store.verify(info.sha256)


async def test_dedup_replaces_a_damaged_copy(store: S3BlobStore) -> None:
    info = await put(store, b"the real content")
    await s3_overwrite(store, info.sha256, b"the real c0ntent")  # same size, wrong bytes
    assert not await store.verify(info.sha256)
    assert await put(store, b"the real content") == info
    assert await store.verify(info.sha256)


async def test_verify_on_read_rehashes_only_when_the_object_changed(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = await put(store, b"checked once")
    hashed: list[str] = []
    real_verify = store.verify

    async def counting_verify(sha256: str) -> bool:
        hashed.append(sha256)
        return await real_verify(sha256)

    monkeypatch.setattr(store, "verify", counting_verify)
    await store.ensure_intact(info.sha256)
    assert hashed == []  # written by this process: its ETag is known
    await store.ensure_intact(info.sha256, always=True)
    assert hashed == [info.sha256]
    await s3_overwrite(store, info.sha256, b"checked twice")
    with pytest.raises(BlobCorrupt):
        await store.ensure_intact(info.sha256)
    assert len(hashed) == 2


async def test_a_64_mib_blob_streams_in_bounded_memory(store: S3BlobStore) -> None:
    await put(store, os.urandom(PART + 1), chunk=MIB)  # warm up the connection pool and allocator
    baseline = rss_bytes()
    peak = baseline
    expected = hashlib.sha256()
    writer = await store.open_writer()
    for _ in range(64):
        chunk = os.urandom(MIB)
        expected.update(chunk)
        await writer.write(chunk)
        peak = max(peak, rss_bytes())
    info = await writer.commit()
    assert info.sha256 == expected.hexdigest()
    readback = hashlib.sha256()
    async for chunk in store.open_read(info.sha256, chunk_size=MIB):
        readback.update(chunk)
        peak = max(peak, rss_bytes())
    assert readback.hexdigest() == info.sha256
    # Two 5 MiB parts (one filling, one in flight) plus the HTTP client's buffers.
    assert peak - baseline < 40 * MIB, f"RSS grew by {(peak - baseline) / MIB:.1f} MiB"


async def test_a_staging_hashed_here_is_published_by_server_side_copies(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks this process wrote (and hashed) are not read back to finish the upload: one chunk is copied,
    several (each at least 5 MiB but the last) are joined by UploadPartCopy."""
    client = await store.client()
    reads: list[str] = []
    real_get = client.get_object

    async def counting_get(**kwargs: object) -> object:
        reads.append(str(kwargs["Key"]))
        return await real_get(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client, "get_object", counting_get)
    for data, cut in ((os.urandom(MIB), 0), (os.urandom(2 * PART + 77), PART + 38)):
        upload_id = str(uuid.uuid4())
        staging = await store.open_staging(upload_id)
        await staging.append(data[:cut])
        await staging.sync()  # a PATCH ends: the hash state is kept for the next one
        await staging.close()
        resumed = await store.open_staging(upload_id)
        await resumed.append(data[cut:])
        info = await resumed.finish()
        assert info == BlobInfo(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert [key for key in reads if "/staging/" in f"/{key}"] == []
    monkeypatch.undo()
    assert len([h async for h in store.iter_hashes()]) == 2
    for sha in [h async for h in store.iter_hashes()]:
        assert await store.verify(sha)
    assert await store.staged_uploads() == {}


async def test_small_chunks_or_chunks_from_another_node_are_read_back(s3_endpoint: str) -> None:
    first = s3_store_for(s3_endpoint, part_size=PART)
    await first.start()
    second = S3BlobStore(first.location, part_size=PART)
    try:
        small = os.urandom(3 * MIB)
        upload_id = str(uuid.uuid4())
        for offset in range(0, len(small), MIB):  # three 1 MiB PATCHes: too small to join by copies
            staging = await first.open_staging(upload_id)
            await staging.append(small[offset : offset + MIB])
            await staging.sync()
            await staging.close()
        info = await (await first.open_staging(upload_id)).finish()
        assert info.sha256 == hashlib.sha256(small).hexdigest()

        other = os.urandom(PART + 5)
        upload_id = str(uuid.uuid4())
        staging = await first.open_staging(upload_id)
        await staging.append(other)
        await staging.sync()
        await staging.close()
        info = await (await second.open_staging(upload_id)).finish()  # no hash state on this node
        assert info.sha256 == hashlib.sha256(other).hexdigest()
        assert await first.verify(info.sha256)
    finally:
        await first.close()
        await second.close()
