"""Staged upload bytes written past the page cache (``blobs/direct_writes.py``): whole blocks only, the
partial last block carried in memory, padded at a chunk's end and cut back, read back by a later handle;
device writes overlapping the hashing, their errors raised; and the page cache where the file system
refuses direct writes."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from stowage.blobs import LocalBlobStore
from stowage.blobs import direct_writes as direct_module
from stowage.blobs.direct_writes import BLOCK, O_DIRECT, DirectFile, DirectWriters, probe
from stowage.errors import InsufficientStorage


@pytest.fixture
def direct_dir(tmp_path: Path) -> Path:
    if not probe(tmp_path):
        pytest.skip(f"the file system of {tmp_path} takes no O_DIRECT writes (the page-cache path is tested instead)")
    return tmp_path


def open_direct(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | O_DIRECT, 0o600)


def test_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    probe(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_probe_says_no_where_the_file_system_refuses_direct_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def refusing_open(path: object, flags: int, mode: int = 0o777) -> int:
        if flags & O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(direct_module.os, "open", refusing_open)
    assert probe(tmp_path) is False
    assert list(tmp_path.iterdir()) == []


def test_writes_of_any_size_land_in_order_with_the_true_size(direct_dir: Path) -> None:
    """Odd-sized pieces over several writes and several handles (each reads the partial block back),
    with buffers of two blocks, so pieces straddle buffers and blocks."""
    rng = random.Random(7)
    expected = bytearray()
    path = direct_dir / "staged"
    writers = DirectWriters(2 * BLOCK)
    for _handle in range(4):
        fd = open_direct(path)
        try:
            staged = DirectFile(fd, os.fstat(fd).st_size, writers)
            for _write in range(3):
                sizes = [rng.choice([1, 17, BLOCK - 1, BLOCK, BLOCK + 3, 3 * BLOCK + 5]) for _ in range(3)]
                pieces = [rng.randbytes(size) for size in sizes]
                staged.write(pieces, final=False)
                for piece in pieces:
                    expected += piece
                assert staged.end == len(expected)
            staged.write([], final=True)
            assert os.fstat(fd).st_size == len(expected)  # padded, then cut back
        finally:
            os.close(fd)
        assert path.read_bytes() == bytes(expected)


def test_a_final_write_with_a_partial_block_is_cut_back_to_its_size(direct_dir: Path) -> None:
    path = direct_dir / "staged"
    fd = open_direct(path)
    try:
        staged = DirectFile(fd, 0, DirectWriters(BLOCK))
        staged.write([b"a" * (BLOCK + 10)], final=True)
        assert staged.carry_written
        assert os.fstat(fd).st_size == BLOCK + 10
        staged.write([b"b" * 5], final=True)  # rewrites the partial block with its first bytes unchanged
    finally:
        os.close(fd)
    assert path.read_bytes() == b"a" * (BLOCK + 10) + b"b" * 5


def test_a_cut_file_is_continued_from_its_new_size(direct_dir: Path) -> None:
    path = direct_dir / "staged"
    fd = open_direct(path)
    try:
        staged = DirectFile(fd, 0, DirectWriters(BLOCK))
        staged.write([b"x" * 3 * BLOCK], final=True)
        os.ftruncate(fd, BLOCK + 7)
        staged.cut(BLOCK + 7)
        staged.write([b"y" * 9], final=True)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * (BLOCK + 7) + b"y" * 9


def test_a_failed_device_write_is_raised_and_every_write_is_waited_for(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_write = direct_module.write_exactly

    def failing_second(fd: int, view: memoryview, position: int) -> None:
        calls.append(position)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, view, position)

    monkeypatch.setattr(direct_module, "write_exactly", failing_second)
    fd = open_direct(direct_dir / "staged")
    try:
        staged = DirectFile(fd, 0, DirectWriters(BLOCK))
        with pytest.raises(OSError, match="No space left") as raised:
            staged.write([b"z" * 4 * BLOCK], final=True)
        assert raised.value.errno == errno.ENOSPC
        assert not staged.busy
    finally:
        os.close(fd)


async def test_the_staging_is_opened_for_direct_writes_and_hashes_what_it_wrote(direct_dir: Path) -> None:
    store = LocalBlobStore(direct_dir / "data")
    upload_id = str(uuid.uuid4())
    data = random.Random(3).randbytes(3 * 1024 * 1024 + 123)
    staging = await store.open_staging(upload_id)
    fd = staging._require_fd()  # the flag is the point of the test
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT
    for offset in range(0, len(data), 65_537):
        await staging.append(data[offset : offset + 65_537])
    assert await staging.sync() == len(data)
    await staging.close()
    assert store.direct_staging is True
    info = await (await store.open_staging(upload_id)).finish()
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.blob_path(info.sha256).read_bytes() == data


async def test_a_full_disk_during_a_direct_write_is_insufficient_storage(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(direct_dir / "data")
    staging = await store.open_staging(str(uuid.uuid4()))

    def no_room(fd: int, view: memoryview, position: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_module, "write_exactly", no_room)
    await staging.append(b"q" * (3 * 1024 * 1024))
    with pytest.raises(InsufficientStorage):
        await staging.sync()
    await staging.close()


async def test_where_direct_writes_are_refused_the_staging_uses_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_module, "O_DIRECT", 0)  # a platform or file system without it
    store = LocalBlobStore(tmp_path / "data")
    upload_id = str(uuid.uuid4())
    staging = await store.open_staging(upload_id)
    await staging.append(b"page cache " * 1000)
    await staging.sync()
    await staging.close()
    assert store.direct_staging is False
    info = await (await store.open_staging(upload_id)).finish()
    assert info.sha256 == hashlib.sha256(b"page cache " * 1000).hexdigest()


def test_a_buffer_handed_to_a_writer_thread_is_never_given_back_twice(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If no new buffer can be had after one went to a writer thread, only that thread gives the old one
    back: two writes must never fill the same buffer."""
    writers = DirectWriters(BLOCK)
    real_take = writers.take
    taken: list[object] = []

    def second_take_fails() -> Any:
        if taken:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        buffer = real_take()
        taken.append(buffer)
        return buffer

    monkeypatch.setattr(writers, "take", second_take_fails)
    fd = open_direct(direct_dir / "staged")
    try:
        staged = DirectFile(fd, 0, writers)
        with pytest.raises(OSError, match="allocate"):
            staged.write([b"w" * 2 * BLOCK], final=True)
    finally:
        os.close(fd)
    idle = writers._idle  # the pool's spare buffers
    assert len(idle) == 1
    assert idle[0] is taken[0]
