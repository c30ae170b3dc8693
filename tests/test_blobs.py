"""The blob-store contract, run against every store, plus local durability, concurrency and memory checks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from conftest import require_capability, s3_store_for
from stowage.blobs import BlobCorrupt, BlobInfo, BlobNotFound, BlobStore, LocalBlobStore, MemoryBlobStore
from stowage.blobs.base import BlobWriter
from stowage.blobs.local import LocalBlobWriter
from stowage.blobs.memory import MemoryBlobWriter
from stowage.blobs.s3 import S3BlobStore
from stowage.errors import InsufficientStorage, PayloadTooLarge, StowageError
from support.s3_blobs import s3_overwrite, s3_temp_count
from support.small_fs import CannotMount, small_tmpfs

DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes, every byte value
DATA_SHA = hashlib.sha256(DATA).hexdigest()
MISSING = "0" * 64


@pytest.fixture(params=["memory", "local", "local-buffered", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """Every implementation of the contract. "local" writes each chunk to its spool file at once;
    "local-buffered" is the server's setting (chunks gathered in memory up to a MiB first); "s3" is the
    S3 store on a bucket of moto's S3 server, with 5 MiB parts."""
    if request.param == "memory":
        yield MemoryBlobStore()
    elif request.param == "local":
        yield LocalBlobStore(tmp_path / "data", spool_buffer_bytes=0)
    elif request.param == "local-buffered":
        yield LocalBlobStore(tmp_path / "data")
    else:
        s3 = s3_store_for(request.getfixturevalue("s3_endpoint"))
        await s3.start()
        try:
            yield s3
        finally:
            await s3.close()


@pytest.fixture(params=["memory", "local"])
def spooling_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Stores whose spool can be seen after every write (an open writer, a spool file)."""
    if request.param == "memory":
        return MemoryBlobStore()
    return LocalBlobStore(tmp_path / "data", spool_buffer_bytes=0)


@pytest.fixture
def local(tmp_path: Path) -> LocalBlobStore:
    """A local store as the server uses it (buffered spooling)."""
    return LocalBlobStore(tmp_path / "data")


@pytest.fixture
def unbuffered(tmp_path: Path) -> LocalBlobStore:
    """A local store that writes every chunk to its spool file at once (the spool is observable)."""
    return LocalBlobStore(tmp_path / "data", spool_buffer_bytes=0)


# --- helpers ---------------------------------------------------------------------------------------


async def write_all(writer: BlobWriter, data: bytes, chunk: int) -> None:
    for offset in range(0, len(data), chunk):
        await writer.write(data[offset : offset + chunk])


async def put(store: BlobStore, data: bytes, *, chunk: int = 100) -> BlobInfo:
    writer = await store.open_writer()
    await write_all(writer, data, chunk)
    return await writer.commit()


async def read(store: BlobStore, sha256: str, start: int = 0, end: int | None = None, *, chunk_size: int = 64) -> bytes:
    chunks = [chunk async for chunk in store.open_read(sha256, start, end, chunk_size=chunk_size)]
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    return b"".join(chunks)


async def hashes(store: BlobStore) -> list[str]:
    return [sha async for sha in store.iter_hashes()]


async def temp_count(store: BlobStore) -> int:
    """Spools left behind: temp files for the local store, unfinished writers for the memory store,
    temporary objects and unfinished multipart uploads for the S3 store."""
    if isinstance(store, MemoryBlobStore):
        return store.open_writer_count
    if isinstance(store, S3BlobStore):
        return await s3_temp_count(store)
    assert isinstance(store, LocalBlobStore)
    return len(list(store.temp_dir.iterdir())) if store.temp_dir.exists() else 0


def blob_files(store: LocalBlobStore) -> list[Path]:
    return [p for p in (store.root / "blobs").rglob("*") if p.is_file()]


def age(writer: BlobWriter, seconds: float) -> None:
    """Pretend the writer's spool was last written ``seconds`` ago."""
    then = time.time() - seconds
    if isinstance(writer, MemoryBlobWriter):
        writer.last_write_at = then
    else:
        assert isinstance(writer, LocalBlobWriter)
        os.utime(writer.temp_path, (then, then))


async def corrupt(store: BlobStore, sha256: str, content: bytes) -> None:
    if isinstance(store, MemoryBlobStore):
        store.tamper(sha256, content)
        return
    if isinstance(store, S3BlobStore):
        await s3_overwrite(store, sha256, content)
        return
    assert isinstance(store, LocalBlobStore)
    path = store.blob_path(sha256)
    path.chmod(0o644)
    path.write_bytes(content)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


# --- the contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "chunk"), [(b"", 1), (b"x", 1), (DATA, 1), (DATA, 100), (DATA, 5000)])
async def test_commit_names_the_content_by_its_sha256(store: BlobStore, data: bytes, chunk: int) -> None:
    info = await put(store, data, chunk=chunk)

    assert info == BlobInfo(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert await store.exists(info.sha256)
    assert await store.size(info.sha256) == len(data)
    assert await read(store, info.sha256) == data
    assert await temp_count(store) == 0


async def test_digest_so_far_tracks_the_written_bytes(store: BlobStore) -> None:
    writer = await store.open_writer()
    assert writer.bytes_written == 0
    assert writer.sha256_so_far == hashlib.sha256(b"").hexdigest()
    await writer.write(DATA[:10])
    await writer.write(b"")  # no-op
    await writer.write(DATA[10:])

    assert writer.bytes_written == len(DATA)
    assert writer.sha256_so_far == DATA_SHA
    assert writer.digest() == hashlib.sha256(DATA).digest()
    assert (await writer.commit()).sha256 == DATA_SHA


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (0, len(DATA)),
        (100, None),
        (100, 300),
        (0, 1),
        (len(DATA) - 1, None),  # last byte
        (len(DATA) - 1, len(DATA)),
        (5, 5),  # zero-length
        (len(DATA), None),  # at the end: nothing
        (1000, 10**9),  # end past the size is clamped, like a slice
        (10**9, None),
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 256 * 1024])
async def test_read_ranges_like_a_slice(store: BlobStore, start: int, end: int | None, chunk_size: int) -> None:
    info = await put(store, DATA)
    assert await read(store, info.sha256, start, end, chunk_size=chunk_size) == DATA[start:end]


async def test_default_chunk_size_bounds_the_chunks(store: BlobStore) -> None:
    data = b"z" * (600 * 1024)
    info = await put(store, data, chunk=100 * 1024)
    sizes = [len(chunk) async for chunk in store.open_read(info.sha256)]
    assert sizes == [256 * 1024, 256 * 1024, 88 * 1024]


@pytest.mark.parametrize(("start", "end", "chunk_size"), [(-1, None, 10), (5, 4, 10), (0, None, 0), (0, None, -1)])
async def test_bad_read_arguments_fail_before_any_io(
    store: BlobStore, start: int, end: int | None, chunk_size: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        store.open_read(MISSING, start, end, chunk_size=chunk_size)


async def test_same_content_twice_is_stored_once(store: BlobStore) -> None:
    first = await put(store, DATA, chunk=10)
    second = await put(store, DATA, chunk=333)

    assert first == second
    assert await hashes(store) == [DATA_SHA]
    assert await temp_count(store) == 0
    if isinstance(store, LocalBlobStore):
        assert blob_files(store) == [store.blob_path(DATA_SHA)]


@pytest.mark.parametrize("chunk", [1, 100, 2000])
async def test_exceeding_max_size_raises_and_leaves_nothing(store: BlobStore, chunk: int) -> None:
    writer = await store.open_writer(max_size=len(DATA) - 1)
    with pytest.raises(PayloadTooLarge) as caught:
        await write_all(writer, DATA, chunk)

    assert caught.value.extra == {"max_size": len(DATA) - 1}
    assert await temp_count(store) == 0
    assert not await store.exists(DATA_SHA)
    assert await hashes(store) == []
    with pytest.raises(RuntimeError, match="aborted"):
        await writer.write(b"more")
    with pytest.raises(RuntimeError, match="aborted"):
        await writer.commit()
    await writer.abort()  # still safe


async def test_content_of_exactly_max_size_is_accepted(store: BlobStore) -> None:
    writer = await store.open_writer(max_size=len(DATA))
    await writer.write(DATA)
    assert (await writer.commit()).size == len(DATA)

    empty = await store.open_writer(max_size=0)
    with pytest.raises(PayloadTooLarge):
        await empty.write(b"x")
    with pytest.raises(ValueError, match="max_size"):
        await store.open_writer(max_size=-1)


async def test_abort_removes_the_spool_and_is_idempotent(spooling_store: BlobStore) -> None:
    store = spooling_store
    writer = await store.open_writer()
    await writer.write(DATA)
    assert await temp_count(store) == 1

    await writer.abort()
    await writer.abort()

    assert await temp_count(store) == 0
    assert not await store.exists(DATA_SHA)
    with pytest.raises(RuntimeError, match="aborted"):
        await writer.commit()


async def test_commit_twice_is_an_error_and_abort_after_commit_keeps_the_blob(store: BlobStore) -> None:
    writer = await store.open_writer()
    await writer.write(DATA)
    await writer.commit()

    with pytest.raises(RuntimeError, match="committed"):
        await writer.commit()
    with pytest.raises(RuntimeError, match="committed"):
        await writer.write(b"x")
    await writer.abort()
    assert await read(store, DATA_SHA) == DATA


async def test_writer_context_manager_aborts_unless_committed(store: BlobStore) -> None:
    async def fail_midway() -> None:
        async with store.writer() as failing:
            await failing.write(b"one")
            raise KeyError("boom")

    with pytest.raises(KeyError):
        await fail_midway()
    async with store.writer() as abandoned:
        await abandoned.write(b"two")
    async with store.writer(max_size=10) as kept:
        await kept.write(b"three")
        info = await kept.commit()

    assert await temp_count(store) == 0
    assert await hashes(store) == [info.sha256]
    assert info.sha256 == hashlib.sha256(b"three").hexdigest()


async def test_exists_size_and_delete(store: BlobStore) -> None:
    info = await put(store, DATA)
    other = await put(store, b"other")

    await store.delete(info.sha256)
    await store.delete(info.sha256)  # missing: no error

    assert not await store.exists(info.sha256)
    assert await store.exists(other.sha256)
    assert await store.size(other.sha256) == 5
    with pytest.raises(BlobNotFound):
        await store.size(info.sha256)


async def test_missing_blob_raises_blob_not_found(store: BlobStore) -> None:
    assert not await store.exists(MISSING)
    with pytest.raises(BlobNotFound) as caught:
        await store.size(MISSING)
    assert caught.value.sha256 == MISSING
    assert isinstance(caught.value, StowageError)
    assert caught.value.code == "blob-not-found"
    assert MISSING not in caught.value.detail  # the client-facing detail does not leak the digest

    iterator = store.open_read(MISSING)  # nothing happens until the first iteration
    with pytest.raises(BlobNotFound):
        await anext(iterator)
    with pytest.raises(BlobNotFound):
        await store.verify(MISSING)


async def test_a_read_in_progress_survives_a_delete(store: BlobStore) -> None:
    info = await put(store, DATA)
    iterator = store.open_read(info.sha256, chunk_size=100)
    async with contextlib.aclosing(iterator):
        first = await anext(iterator)
        await store.delete(info.sha256)
        rest = [chunk async for chunk in iterator]
    assert first + b"".join(rest) == DATA


async def test_iter_hashes_lists_exactly_the_committed_blobs(store: BlobStore) -> None:
    assert await hashes(store) == []
    contents = [b"a", b"b", DATA, b""]
    infos = [await put(store, c) for c in contents]
    pending = await store.open_writer()
    await pending.write(b"not committed")
    aborted = await store.open_writer()
    await aborted.write(b"aborted")
    await aborted.abort()

    assert await hashes(store) == sorted(i.sha256 for i in infos)
    await pending.abort()


async def test_verify_detects_content_that_does_not_match_its_name(store: BlobStore) -> None:
    info = await put(store, DATA)
    assert await store.verify(info.sha256)

    await corrupt(store, info.sha256, DATA[:-1] + b"?")
    assert not await store.verify(info.sha256)
    await corrupt(store, info.sha256, b"")
    assert not await store.verify(info.sha256)


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", DATA_SHA.upper(), DATA_SHA[:63], DATA_SHA + "0", DATA_SHA[:63] + "g", "", DATA_SHA + "\n"],
)
async def test_invalid_hash_names_are_rejected(store: BlobStore, name: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        await store.exists(name)
    with pytest.raises(ValueError, match="SHA-256"):
        await store.size(name)
    with pytest.raises(ValueError, match="SHA-256"):
        await store.delete(name)
    with pytest.raises(ValueError, match="SHA-256"):
        await store.verify(name)
    with pytest.raises(ValueError, match="SHA-256"):
        store.open_read(name)
    with pytest.raises(ValueError, match="SHA-256"):
        store.local_path(name)


async def test_remove_stale_temp_removes_only_old_spools(spooling_store: BlobStore) -> None:
    store = spooling_store
    assert await store.remove_stale_temp(0) == 0  # nothing spooled yet
    old = await store.open_writer()
    await old.write(b"old upload")
    age(old, 3600)
    fresh = await store.open_writer()
    await fresh.write(b"fresh upload")

    assert await store.remove_stale_temp(600) == 1
    assert await temp_count(store) == 1
    assert await store.remove_stale_temp(600) == 0

    with pytest.raises(FileNotFoundError):
        await old.commit()  # its spool is gone: nothing is published
    assert not await store.exists(hashlib.sha256(b"old upload").hexdigest())
    assert (await fresh.commit()).sha256 == hashlib.sha256(b"fresh upload").hexdigest()
    assert await temp_count(store) == 0
    with pytest.raises(ValueError, match="older_than_seconds"):
        await store.remove_stale_temp(-1)


async def test_local_path_is_only_given_by_local_stores(store: BlobStore) -> None:
    info = await put(store, DATA)
    path = store.local_path(info.sha256)
    name = store.local_file(info.sha256)
    if isinstance(store, LocalBlobStore):
        assert path is not None
        assert path.read_bytes() == DATA
        assert name == str(path)  # the string form a download sends names the same file
    else:
        assert path is None
        assert name is None


async def test_a_cancelled_write_leaves_an_unusable_writer_and_no_spool(store: BlobStore) -> None:
    writer = await store.open_writer()
    await writer.write(b"start")
    task = asyncio.create_task(writer.write(b"x" * (8 * 1024 * 1024)))
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    if task.cancelled():
        with pytest.raises(RuntimeError, match="aborted"):
            await writer.commit()
    else:  # the memory store finishes a write without yielding; nothing to cancel
        await writer.abort()
    assert await temp_count(store) == 0
    assert await hashes(store) == []


# --- local store: layout, durability, concurrency, memory -------------------------------------------


async def test_local_blob_is_read_only_at_its_fanout_path(local: LocalBlobStore) -> None:
    info = await put(local, DATA)

    path = local.root / "blobs" / info.sha256[:2] / info.sha256[2:4] / info.sha256
    assert local.local_path(info.sha256) == path
    assert blob_files(local) == [path]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list(local.temp_dir.iterdir()) == []


async def test_local_spool_is_a_private_temp_file(unbuffered: LocalBlobStore) -> None:
    local = unbuffered
    writer = await local.open_writer()
    assert isinstance(writer, LocalBlobWriter)
    await writer.write(b"secret")

    spool = writer.temp_path
    assert spool is not None
    assert spool.parent == local.temp_dir
    assert spool.name.startswith("upload-")
    assert spool.name.endswith(".part")
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600
    assert spool.read_bytes() == b"secret"
    await writer.abort()
    assert not spool.exists()


async def test_local_small_upload_reaches_the_disk_only_at_commit(local: LocalBlobStore) -> None:
    writer = await local.open_writer()
    await write_all(writer, DATA, chunk=7)

    assert writer.temp_path is None  # gathered in memory: no spool file, no worker-thread call yet
    assert await temp_count(local) == 0
    assert writer.sha256_so_far == DATA_SHA  # hashed as it arrived
    info = await writer.commit()
    assert info == BlobInfo(sha256=DATA_SHA, size=len(DATA))
    assert await read(local, DATA_SHA) == DATA
    assert await temp_count(local) == 0


async def test_local_spool_buffer_is_written_out_when_full(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "data", spool_buffer_bytes=8)
    writer = await store.open_writer()
    await writer.write(b"12345")
    assert writer.temp_path is None
    await writer.write(b"6789")  # 9 bytes gathered ≥ 8: written out in one call
    spool = writer.temp_path
    assert spool is not None
    assert spool.read_bytes() == b"123456789"
    await writer.write(b"ab")  # stays in memory until commit
    assert spool.read_bytes() == b"123456789"
    info = await writer.commit()
    assert await read(store, info.sha256) == b"123456789ab"
    assert not spool.exists()
    assert await temp_count(store) == 0


async def test_local_dedup_of_a_verified_small_upload_writes_no_file(
    local: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await put(local, DATA)
    path = local.blob_path(first.sha256)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    local.verified.record(
        first.sha256, (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns, path.stat().st_ctime_ns)
    )
    created: list[Path] = []
    real_create = local.create_temp

    def counting_create() -> tuple[int, Path]:
        fd, spool = real_create()
        created.append(spool)
        return fd, spool

    monkeypatch.setattr(local, "create_temp", counting_create)
    again = await put(local, DATA)

    assert again == first
    assert created == []  # known, verified content: no spool file at all
    assert path.stat().st_mtime > time.time() - 60  # touched, so gc's grace period covers the new reference
    assert await read(local, DATA_SHA) == DATA


async def test_local_concurrent_writers_of_the_same_content_publish_one_file(local: LocalBlobStore) -> None:
    async def upload() -> BlobInfo:
        writer = await local.open_writer()
        for offset in range(0, len(DATA), 50):
            await writer.write(DATA[offset : offset + 50])
            await asyncio.sleep(0)
        return await writer.commit()

    infos = await asyncio.gather(*(upload() for _ in range(10)))

    assert set(infos) == {BlobInfo(sha256=DATA_SHA, size=len(DATA))}
    assert blob_files(local) == [local.blob_path(DATA_SHA)]
    assert list(local.temp_dir.iterdir()) == []
    assert await local.verify(DATA_SHA)


async def test_local_dedup_replaces_a_truncated_copy(local: LocalBlobStore) -> None:
    info = await put(local, DATA)
    await corrupt(local, info.sha256, DATA[:10])  # e.g. a disk that lost the tail

    assert await put(local, DATA) == info
    assert await local.verify(info.sha256)
    assert stat.S_IMODE(local.blob_path(info.sha256).stat().st_mode) == 0o444


async def test_local_read_of_a_file_truncated_mid_stream_raises_blob_corrupt(local: LocalBlobStore) -> None:
    info = await put(local, DATA)
    iterator = local.open_read(info.sha256, chunk_size=100)
    async with contextlib.aclosing(iterator):
        await anext(iterator)
        await corrupt(local, info.sha256, DATA[:150])
        await anext(iterator)  # bytes 100..150, then the file ends early
        with pytest.raises(BlobCorrupt) as caught:
            await anext(iterator)
    assert caught.value.code == "blob-corrupt"


async def test_local_iter_hashes_ignores_stray_files(local: LocalBlobStore) -> None:
    info = await put(local, DATA)
    fanout = local.blob_path(info.sha256).parent
    (fanout / "notes.txt").write_text("x")
    (fanout / ("ab" * 32)).write_text("misplaced")  # valid name, wrong folder
    (local.root / "blobs" / "zz").mkdir()
    (fanout.parent / "tmp").mkdir()
    (local.root / "blobs" / "README").write_text("x")

    assert await hashes(local) == [info.sha256]


async def test_local_remove_stale_temp_spares_other_files(local: LocalBlobStore) -> None:
    local.temp_dir.mkdir(parents=True)
    other = local.temp_dir / "tus-123.bin"
    other.write_bytes(b"someone else's")
    os.utime(other, (0, 0))

    assert await local.remove_stale_temp(0) == 0
    assert other.exists()


async def test_local_crash_between_spooling_and_rename_publishes_nothing(unbuffered: LocalBlobStore) -> None:
    local = unbuffered
    writer = await local.open_writer()
    await writer.write(DATA)  # the process "dies" here: no commit, no abort

    restarted = LocalBlobStore(local.root)
    assert not await restarted.exists(DATA_SHA)
    assert await hashes(restarted) == []
    assert await restarted.remove_stale_temp(0) == 1
    assert list(restarted.temp_dir.iterdir()) == []
    await writer.abort()  # close the descriptor the "dead" process held


async def test_local_store_does_not_leak_file_descriptors(local: LocalBlobStore) -> None:
    await put(local, b"warm up")
    before = open_fds()

    info = await put(local, DATA)
    await put(local, DATA)
    iterator = local.open_read(info.sha256, chunk_size=10)
    async with contextlib.aclosing(iterator):
        await anext(iterator)
    await local.verify(info.sha256)
    aborted = await local.open_writer()
    await aborted.write(b"x")
    await aborted.abort()
    too_big = await local.open_writer(max_size=1)
    with pytest.raises(PayloadTooLarge):
        await too_big.write(b"xy")
    with pytest.raises(BlobNotFound):
        await anext(local.open_read(MISSING))

    assert open_fds() == before


# --- a full disk (a real tmpfs of 1 MiB; needs root) ------------------------------------------------

SMALL_FS_BYTES = 1024 * 1024


@contextlib.contextmanager
def _small_data_dir(path: Path, *, inodes: int | None = None) -> Iterator[Path]:
    try:
        with small_tmpfs(path, SMALL_FS_BYTES, inodes=inodes) as mounted:
            yield mounted
    except CannotMount as exc:
        require_capability("a small tmpfs filesystem for the full-disk tests", str(exc))


@pytest.fixture
def small_local(tmp_path: Path) -> Iterator[LocalBlobStore]:
    """A local store whose data folder is a 1 MiB filesystem of its own."""
    with _small_data_dir(tmp_path / "small") as root:
        yield LocalBlobStore(root)


async def test_local_write_that_does_not_fit_raises_insufficient_storage_and_leaves_nothing(
    small_local: LocalBlobStore,
) -> None:
    writer = await small_local.open_writer()
    with pytest.raises(InsufficientStorage) as caught:
        await write_all(writer, os.urandom(2 * SMALL_FS_BYTES), 64 * 1024)

    assert caught.value.code == "insufficient-storage"
    assert "disk is full" in caught.value.detail
    assert caught.value.path == str(small_local.root)  # for the operator's log
    assert isinstance(caught.value.__cause__, OSError)
    assert await temp_count(small_local) == 0  # the spool is gone, and its space with it
    assert await hashes(small_local) == []
    with pytest.raises(RuntimeError, match="aborted"):
        await writer.write(b"more")

    info = await put(small_local, DATA)  # the store goes on working once there is room
    assert await read(small_local, info.sha256) == DATA


def _use_up_inodes(root: Path) -> list[Path]:
    """Create empty files until the filesystem has no inode left; return them (to free them again)."""
    fillers: list[Path] = []
    with contextlib.suppress(OSError):
        for n in range(1000):
            filler = root / f"filler-{n}"
            filler.touch()
            fillers.append(filler)
    assert fillers, "the filesystem had no free inode to begin with"
    return fillers


async def test_local_writer_without_a_free_inode_raises_insufficient_storage(tmp_path: Path) -> None:
    with _small_data_dir(tmp_path / "small", inodes=16) as root:
        store = LocalBlobStore(root)
        store.temp_dir.mkdir()
        fillers = _use_up_inodes(root)

        writer = await store.open_writer()  # nothing on disk yet: the spool is made at the first write-out
        await writer.write(DATA)
        with pytest.raises(InsufficientStorage):
            await writer.commit()  # no inode for the spool file

        assert await temp_count(store) == 0
        for filler in fillers:
            filler.unlink()
        assert (await put(store, DATA)).sha256 == DATA_SHA


async def test_local_commit_without_room_for_its_directories_raises_insufficient_storage(tmp_path: Path) -> None:
    with _small_data_dir(tmp_path / "small", inodes=16) as root:
        store = LocalBlobStore(root)
        writer = await store.open_writer()
        await writer.write(DATA)  # spooled while there was room
        fillers = _use_up_inodes(root)  # now blobs/ab/cd cannot be created

        with pytest.raises(InsufficientStorage):
            await writer.commit()

        assert await temp_count(store) == 0
        assert await hashes(store) == []
        for filler in fillers:
            filler.unlink()
        assert (await put(store, DATA)).sha256 == DATA_SHA


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached within 1 s")


async def test_local_cancelled_write_out_releases_what_the_worker_thread_acquired(unbuffered: LocalBlobStore) -> None:
    local = unbuffered
    info = await put(local, DATA)
    before = open_fds()

    writer = await local.open_writer()
    writing = asyncio.create_task(writer.write(DATA))  # its first write-out creates the spool file
    reading = asyncio.create_task(anext(local.open_read(info.sha256)))
    await asyncio.sleep(0)  # both are now waiting for their worker thread
    writing.cancel()
    reading.cancel()
    for task in (writing, reading):
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert writing.cancelled()
    assert reading.cancelled()
    await wait_until(lambda: open_fds() == before)
    await wait_until(lambda: list(local.temp_dir.iterdir()) == [])


async def test_local_streams_64_mib_in_bounded_memory(local: LocalBlobStore) -> None:
    mib = 1024 * 1024
    await put(local, os.urandom(mib), chunk=mib)  # warm up worker threads and allocator arenas
    baseline = rss_bytes()
    peak = baseline
    expected = hashlib.sha256()

    writer = await local.open_writer(max_size=64 * mib)
    for _ in range(64):
        chunk = os.urandom(mib)
        expected.update(chunk)
        await writer.write(chunk)
        peak = max(peak, rss_bytes())
    info = await writer.commit()
    assert info == BlobInfo(sha256=expected.hexdigest(), size=64 * mib)

    readback = hashlib.sha256()
    async for chunk in local.open_read(info.sha256, chunk_size=mib):
        readback.update(chunk)
        peak = max(peak, rss_bytes())
    assert readback.hexdigest() == info.sha256
    assert await local.verify(info.sha256)
    peak = max(peak, rss_bytes())

    assert peak - baseline < 32 * mib, f"RSS grew by {(peak - baseline) / mib:.1f} MiB"


# --- memory store specifics ------------------------------------------------------------------------


async def test_memory_writer_copies_the_callers_buffer() -> None:
    store = MemoryBlobStore()
    buffer = bytearray(b"abc")
    writer = await store.open_writer()
    await writer.write(buffer)  # type: ignore[arg-type]  # services may pass a reused bytearray
    buffer[:] = b"xyz"
    info = await writer.commit()
    assert await read(store, info.sha256) == b"abc"


async def test_memory_tamper_requires_an_existing_blob() -> None:
    with pytest.raises(BlobNotFound):
        MemoryBlobStore().tamper(MISSING, b"x")
