"""The staging extension of the blob-store contract (resumable uploads), on every store: bytes appended over
several handles, truncated back to a durable offset, concatenated, published by ``finish`` (re-hashed,
deduplicated), discarded; and on the local store: where staged bytes live, that they survive a new
store object (a restart), and that gc, fsck's blob listing and the temp-file sweep never see them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import s3_store_for
from stowage.blobs import BlobStore, LocalBlobStore, MemoryBlobStore
from stowage.blobs import local as local_module
from stowage.blobs._fs import fingerprint
from stowage.blobs.direct_writes import IOV_MAX, write_all_at

DATA = bytes(range(256)) * 40 + b"tail"


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(params=["memory", "local", "local-page-cache", "local-unbuffered", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """Every store with staging. "local" writes past the page cache where the file system allows it (as the
    server does); "local-page-cache" is the local store where it does not."""
    if request.param == "memory":
        yield MemoryBlobStore()
    elif request.param == "local":
        yield LocalBlobStore(tmp_path / "data")
    elif request.param == "local-page-cache":
        page_cache = LocalBlobStore(tmp_path / "data")
        page_cache.direct_staging = False
        yield page_cache
    elif request.param == "local-unbuffered":
        yield LocalBlobStore(tmp_path / "data", spool_buffer_bytes=0)
    else:
        s3 = s3_store_for(request.getfixturevalue("s3_endpoint"))
        await s3.start()
        try:
            yield s3
        finally:
            await s3.close()


async def read_blob(store: BlobStore, sha256: str) -> bytes:
    return b"".join([chunk async for chunk in store.open_read(sha256)])


async def stage(store: BlobStore, upload_id: str, data: bytes, *, chunk: int = 1000) -> int:
    staging = await store.open_staging(upload_id)
    try:
        for offset in range(0, len(data), chunk):
            await staging.append(data[offset : offset + chunk])
        return await staging.sync()
    finally:
        await staging.close()


async def test_a_new_staging_is_empty(store: BlobStore) -> None:
    staging = await store.open_staging(new_id())
    assert await staging.size() == 0
    assert await staging.sync() == 0
    await staging.close()
    await staging.close()  # twice is fine


async def test_bytes_appended_over_several_handles_finish_as_one_blob(store: BlobStore) -> None:
    upload_id = new_id()
    half = len(DATA) // 2
    assert await stage(store, upload_id, DATA[:half]) == half
    staging = await store.open_staging(upload_id)  # a later request (or another process) resumes
    assert await staging.size() == half
    await staging.append(DATA[half:])
    assert await staging.size() == len(DATA)
    info = await staging.finish()
    assert info.sha256 == hashlib.sha256(DATA).hexdigest()
    assert info.size == len(DATA)
    assert await read_blob(store, info.sha256) == DATA
    assert upload_id not in await store.staged_uploads()
    assert [sha async for sha in store.iter_hashes()] == [info.sha256]


async def test_truncate_drops_the_bytes_of_a_failed_chunk(store: BlobStore) -> None:
    upload_id = new_id()
    await stage(store, upload_id, DATA[:100])
    staging = await store.open_staging(upload_id)
    await staging.append(b"garbage that failed its checksum")
    await staging.truncate(100)
    assert await staging.size() == 100
    await staging.append(DATA[100:])
    info = await staging.finish()
    assert await read_blob(store, info.sha256) == DATA


async def test_truncate_past_the_staged_bytes_is_refused(store: BlobStore) -> None:
    upload_id = new_id()
    await stage(store, upload_id, b"abc")
    staging = await store.open_staging(upload_id)
    with pytest.raises(ValueError, match="3 bytes are staged"):
        await staging.truncate(4)
    with pytest.raises(ValueError, match="cannot truncate"):
        await staging.truncate(-1)
    assert await staging.size() == 3
    await staging.close()


async def test_finish_of_content_already_stored_deduplicates(store: BlobStore) -> None:
    first, second = new_id(), new_id()
    await stage(store, first, DATA)
    await stage(store, second, DATA)
    one = await (await store.open_staging(first)).finish()
    two = await (await store.open_staging(second)).finish()
    assert one == two
    assert [sha async for sha in store.iter_hashes()] == [one.sha256]
    assert await store.staged_uploads() == {}


async def test_an_empty_staging_finishes_as_the_empty_blob(store: BlobStore) -> None:
    info = await (await store.open_staging(new_id())).finish()
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(b"").hexdigest()


async def test_concatenation_joins_the_parts_in_order_and_keeps_them(store: BlobStore) -> None:
    a, b, final = new_id(), new_id(), new_id()
    await stage(store, a, b"hello")
    await stage(store, b, b" world")
    assert await store.stage_concatenation(final, [b, a]) == 11
    staged = await store.staged_uploads()
    assert {a, b, final} <= staged.keys()
    info = await (await store.open_staging(final)).finish()
    assert await read_blob(store, info.sha256) == b" worldhello"
    assert await (await store.open_staging(a)).size() == 5


async def test_concatenation_of_a_missing_part_stages_nothing(store: BlobStore) -> None:
    a, final = new_id(), new_id()
    await stage(store, a, b"hello")
    with pytest.raises(FileNotFoundError):
        await store.stage_concatenation(final, [a, new_id()])
    assert final not in await store.staged_uploads()


async def test_discard_removes_the_staging_and_tolerates_a_missing_one(store: BlobStore) -> None:
    upload_id = new_id()
    await stage(store, upload_id, DATA)
    assert upload_id in await store.staged_uploads()
    await store.discard_staging(upload_id)
    await store.discard_staging(upload_id)
    assert upload_id not in await store.staged_uploads()
    assert await (await store.open_staging(upload_id)).size() == 0


@pytest.mark.parametrize("name", ["../escape", "0" * 36, "ABCDEFAB-1234-4234-8234-123456789012", "", "a/b"])
async def test_staging_names_must_be_upload_ids(store: BlobStore, name: str) -> None:
    with pytest.raises(ValueError, match="not an upload id"):
        await store.open_staging(name)
    with pytest.raises(ValueError, match="not an upload id"):
        await store.discard_staging(name)


async def test_staged_bytes_are_never_blobs_or_temp_files(store: BlobStore) -> None:
    upload_id = new_id()
    await stage(store, upload_id, DATA)
    assert [sha async for sha in store.iter_hashes()] == []
    assert await store.remove_stale_temp(0) == 0
    assert await (await store.open_staging(upload_id)).size() == len(DATA)


# --- local store ------------------------------------------------------------------------------------


async def test_local_staging_is_a_private_file_in_the_staging_folder(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "data", spool_buffer_bytes=0)
    upload_id = new_id()
    await stage(store, upload_id, DATA)
    path = tmp_path / "data" / "staging" / upload_id
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_local_synced_bytes_survive_a_new_store_object(tmp_path: Path) -> None:
    upload_id = new_id()
    await stage(LocalBlobStore(tmp_path / "data"), upload_id, DATA[:500])
    restarted = LocalBlobStore(tmp_path / "data")
    staging = await restarted.open_staging(upload_id)
    assert await staging.size() == 500
    await staging.append(DATA[500:])
    info = await staging.finish()
    assert await read_blob(restarted, info.sha256) == DATA
    blob = restarted.blob_path(info.sha256)
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert not (tmp_path / "data" / "staging" / upload_id).exists()


async def test_local_buffered_bytes_reach_the_file_on_sync(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "data")  # 1 MiB buffer: small appends stay in memory until sync
    upload_id = new_id()
    staging = await store.open_staging(upload_id)
    await staging.append(b"abc")
    path = store.staging_path(upload_id)
    assert path.stat().st_size == 0
    assert await staging.sync() == 3
    assert path.read_bytes() == b"abc"
    await staging.close()


async def test_local_finish_rehashes_what_is_on_disk(tmp_path: Path) -> None:
    """The hash comes from the file, not from what this handle saw: bytes staged by an earlier process count."""
    store = LocalBlobStore(tmp_path / "data")
    upload_id = new_id()
    store.staging_dir.mkdir(parents=True)
    store.staging_path(upload_id).write_bytes(b"written by another process")
    info = await (await store.open_staging(upload_id)).finish()
    assert info.sha256 == hashlib.sha256(b"written by another process").hexdigest()


async def test_local_staged_uploads_ignores_stray_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "data")
    upload_id = new_id()
    await stage(store, upload_id, b"x")
    (store.staging_dir / "not-an-upload").write_bytes(b"x")
    os.utime(store.staging_path(upload_id), (1000, 1000))
    assert await store.staged_uploads() == {upload_id: 1000.0}


async def test_local_hash_state_is_kept_for_the_next_request_of_this_process(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "data")
    upload_id = new_id()
    await stage(store, upload_id, DATA[:700])
    path = store.staging_path(upload_id)
    kept = store.hash_states.resume(upload_id, fingerprint(path.stat()))
    assert kept is not None
    assert kept.hexdigest() == hashlib.sha256(DATA[:700]).hexdigest()
    staging = await store.open_staging(upload_id)
    await staging.append(DATA[700:])
    info = await staging.finish()
    assert info.sha256 == hashlib.sha256(DATA).hexdigest()
    assert store.hash_states.resume(upload_id, fingerprint(store.blob_path(info.sha256).stat())) is None


async def test_local_a_file_changed_behind_the_store_is_rehashed(tmp_path: Path) -> None:
    """A kept hash state is used only while the file has the fingerprint it had then: bytes rewritten by
    someone else (another worker that took over the upload) are re-read, never trusted."""
    store = LocalBlobStore(tmp_path / "data")
    upload_id = new_id()
    await stage(store, upload_id, b"a" * 1000)
    await asyncio.sleep(0.01)  # a later ctime, whatever the filesystem's clock granularity
    with store.staging_path(upload_id).open("r+b") as handle:
        handle.write(b"b" * 1000)
    info = await (await store.open_staging(upload_id)).finish()
    assert info.sha256 == hashlib.sha256(b"b" * 1000).hexdigest()


async def test_local_truncation_forgets_the_hash_state(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "data", spool_buffer_bytes=0)
    upload_id = new_id()
    await stage(store, upload_id, DATA[:500])
    staging = await store.open_staging(upload_id)
    await staging.append(b"refused chunk")
    await staging.truncate(500)
    await staging.append(DATA[500:])
    info = await staging.finish()
    assert info.sha256 == hashlib.sha256(DATA).hexdigest()


def test_write_all_at_writes_every_piece_in_order(tmp_path: Path) -> None:
    """More pieces than one pwritev takes, empty ones among them, at an offset into the file."""
    pieces = [bytes([i % 251]) * (i % 7) for i in range(IOV_MAX * 2 + 5)]
    path = tmp_path / "target"
    path.write_bytes(b"head")
    fd = os.open(path, os.O_RDWR)
    try:
        end = write_all_at(fd, pieces, 4)
    finally:
        os.close(fd)
    assert end == 4 + sum(map(len, pieces))
    assert path.read_bytes() == b"head" + b"".join(pieces)


async def test_local_two_processes_deduplicating_in_turn_hash_the_stored_blob_once_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worker processes (two store objects on one folder) take turns publishing the same content. Each
    re-hashes the stored blob once before trusting it; after that neither does again, because a recently
    touched blob's mtime is left alone (a ``utime`` would change its fingerprint for the other process)."""
    hashed: list[str] = []
    real_hash_file = local_module._hash_file

    def counting_hash_file(path: Path) -> str:
        hashed.append(path.name)
        return real_hash_file(path)

    monkeypatch.setattr(local_module, "_hash_file", counting_hash_file)
    first, second = LocalBlobStore(tmp_path / "data"), LocalBlobStore(tmp_path / "data")

    async def publish(store: LocalBlobStore) -> str:
        upload_id = new_id()
        await stage(store, upload_id, DATA)
        return (await (await store.open_staging(upload_id)).finish()).sha256

    sha = await publish(first)  # writes it: known to the first process
    blob = first.blob_path(sha)
    before = blob.stat()
    for store in (second, first, second, first, second):
        assert await publish(store) == sha
    assert hashed == [sha]  # the second process, once
    after = blob.stat()
    assert (after.st_mtime_ns, after.st_ctime_ns) == (before.st_mtime_ns, before.st_ctime_ns)


async def test_local_dedup_refreshes_the_mtime_of_a_blob_older_than_a_minute(tmp_path: Path) -> None:
    """gc removes unreferenced blobs older than its grace period: a deduplicating upload about to reference
    an old blob makes it young again, so the grace period covers the reference it then records."""
    store = LocalBlobStore(tmp_path / "data")
    upload_id = new_id()
    await stage(store, upload_id, DATA)
    sha = (await (await store.open_staging(upload_id)).finish()).sha256
    blob = store.blob_path(sha)
    old = time.time() - local_module.MTIME_REFRESH_SECONDS - 5
    os.utime(blob, (old, old))
    again = new_id()
    await stage(store, again, DATA)
    assert (await (await store.open_staging(again)).finish()).sha256 == sha
    assert blob.stat().st_mtime > time.time() - local_module.MTIME_REFRESH_SECONDS
    assert local_module.MIN_GC_GRACE_SECONDS > local_module.MTIME_REFRESH_SECONDS
