"""Streaming ZIP writer: round trips through zipfile and Info-ZIP, names, times, sizes and ZIP64.

The archives are parsed by hand too, because zipfile ignores most of what other readers depend on
(the local ZIP64 extra, the descriptor width, the UT extra field, the end records).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import shutil
import struct
import subprocess
import time
import zipfile
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar, overload

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stowage.files.zipstream import ZipEntry, stream_zip, zip_size_if_known

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
T = TypeVar("T")


# ---------------------------------------------------------------- helpers


def chunked(data: bytes, step: int = 7) -> Callable[[], AsyncIterator[bytes]]:
    async def content() -> AsyncIterator[bytes]:
        for start in range(0, len(data), step):
            yield data[start : start + step]

    return content


def file(path: str, data: bytes = b"", *, known: bool = True, modified: datetime = WHEN, step: int = 7) -> ZipEntry:
    return ZipEntry(path, modified, len(data) if known else None, chunked(data, step))


def folder(path: str, modified: datetime = WHEN) -> ZipEntry:
    return ZipEntry(path, modified)


async def feed(entries: Iterable[ZipEntry]) -> AsyncIterator[ZipEntry]:
    for entry in entries:
        yield entry


async def pieces_of(entries: Iterable[ZipEntry], **options: int) -> list[bytes]:
    return [piece async for piece in stream_zip(feed(entries), **options)]


async def archive(entries: Iterable[ZipEntry], **options: int) -> bytes:
    return b"".join(await pieces_of(entries, **options))


def opened(data: bytes) -> zipfile.ZipFile:
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    return zf


def extra_fields(extra: bytes) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    while extra:
        tag, length = struct.unpack_from("<HH", extra)
        fields[tag] = extra[4 : 4 + length]
        extra = extra[4 + length :]
    return fields


def extra_tags(extra: bytes) -> list[int]:
    return list(extra_fields(extra))


class LocalHeader:
    """The fixed fields, name and extra of the local header at ``offset``."""

    def __init__(self, data: bytes, offset: int) -> None:
        fields = struct.unpack_from("<IHHHHHIIIHH", data, offset)
        assert fields[0] == 0x04034B50
        (_, self.version, self.flags, self.method, self.dos_time, self.dos_date) = fields[:6]
        self.crc, self.compressed, self.uncompressed = fields[6:9]
        name_length, extra_length = fields[9:]
        start = offset + 30
        self.name = data[start : start + name_length]
        self.extra = data[start + name_length : start + name_length + extra_length]
        self.length = 30 + name_length + extra_length


def unix_time(extra: bytes) -> int:
    field = extra_fields(extra)[0x5455]
    flags, mtime = struct.unpack("<Bi", field)
    assert flags == 1
    return int(mtime)


# ---------------------------------------------------------------- round trips through zipfile


async def test_empty_archive_is_just_the_end_record() -> None:
    data = await archive([])
    assert data == b"PK\x05\x06" + bytes(18)
    assert opened(data).namelist() == []
    assert zip_size_if_known([]) == len(data)


@pytest.mark.parametrize("entry", [ZipEntry("empty.txt", WHEN), file("empty.txt"), file("empty.txt", known=False)])
async def test_one_empty_file(entry: ZipEntry) -> None:
    data = await archive([entry])
    zf = opened(data)
    [info] = zf.infolist()
    assert (info.filename, info.file_size, info.compress_type) == ("empty.txt", 0, zipfile.ZIP_STORED)
    assert zf.read(info) == b""
    assert not info.is_dir()
    assert zip_size_if_known([entry]) == (len(data) if entry.content is None or entry.size is not None else None)


async def test_folders_are_directory_entries_without_descriptor() -> None:
    entries = [folder("Photos/"), folder("Photos/2026/"), file("Photos/2026/beach.jpg", b"jpeg"), folder("Empty/")]
    data = await archive(entries)
    zf = opened(data)
    assert zf.namelist() == ["Photos/", "Photos/2026/", "Photos/2026/beach.jpg", "Empty/"]
    for info in zf.infolist():
        local = LocalHeader(data, info.header_offset)
        if info.is_dir():
            assert info.external_attr == (0o040755 << 16) | 0x10
            assert info.flag_bits == local.flags == 0x0800  # no descriptor: there is nothing to describe
            assert (info.CRC, info.file_size) == (0, 0)
        else:
            assert info.external_attr == 0o100644 << 16
            assert info.flag_bits == local.flags == 0x0808
    assert zf.read("Photos/2026/beach.jpg") == b"jpeg"
    assert zip_size_if_known(entries) == len(data)


async def test_unicode_names_are_utf8_with_the_language_encoding_flag() -> None:
    names = ["café/é.txt", "日本語/ファイル.txt", "emoji 🎉🙂.bin", "ascii.txt"]
    data = await archive([file(name, name.encode()) for name in names])
    zf = opened(data)
    assert zf.namelist() == names
    for info in zf.infolist():
        assert info.flag_bits & 0x0800
        assert LocalHeader(data, info.header_offset).name == info.filename.encode("utf-8")
        assert zf.read(info) == info.filename.encode()


async def test_many_small_files() -> None:
    entries = [file(f"dir{i % 7}/file-{i}.bin", bytes([i % 251]) * (i % 97), step=13) for i in range(600)]
    data = await archive(entries)
    zf = opened(data)
    assert len(zf.infolist()) == 600
    for entry, info in zip(entries, zf.infolist(), strict=True):
        assert info.filename == entry.path
        assert info.file_size == info.compress_size == entry.size
    assert zip_size_if_known(entries) == len(data)


@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-unknown"])
async def test_known_sizes_avoid_zip64_and_unknown_sizes_reserve_it(known: bool) -> None:
    payload = bytes(range(256)) * 40
    entries = [file("a.bin", payload, known=known), file("b.bin", b"second", known=known)]
    data = await archive(entries)
    zf = opened(data)
    assert [zf.read(name) for name in ("a.bin", "b.bin")] == [payload, b"second"]
    info = zf.getinfo("a.bin")
    local = LocalHeader(data, info.header_offset)
    end = local.length + len(payload)
    if known:
        assert zip_size_if_known(entries) == len(data)
        assert (local.version, local.compressed, local.uncompressed) == (20, 0, 0)
        assert extra_tags(local.extra) == [0x5455]
        descriptor = struct.unpack_from("<4sIII", data, end)
        assert data[end + 16 : end + 20] == b"PK\x03\x04"
    else:
        assert zip_size_if_known(entries) is None
        assert (local.version, local.compressed, local.uncompressed) == (45, 0xFFFFFFFF, 0xFFFFFFFF)
        assert extra_tags(local.extra) == [0x0001, 0x5455]  # ZIP64 first: Windows Explorer insists
        assert extra_fields(local.extra)[0x0001] == bytes(16)
        descriptor = struct.unpack_from("<4sIQQ", data, end)
        assert data[end + 24 : end + 28] == b"PK\x03\x04"
    assert local.crc == 0
    assert descriptor == (DESCRIPTOR_SIGNATURE, zlib.crc32(payload), len(payload), len(payload))
    # Small entries need no ZIP64 in the central directory, whatever the local header reserved.
    assert 0x0001 not in extra_fields(info.extra)
    assert info.extract_version == local.version


async def test_chunking_is_bounded_and_large_chunks_pass_through() -> None:
    big = bytes(range(256)) * 64  # 16 KiB in one chunk
    entries = [file(f"small-{i}.txt", b"x" * (i % 50)) for i in range(300)]
    entries.insert(150, ZipEntry("big.bin", WHEN, len(big), chunked(big, len(big))))
    pieces = await pieces_of(entries, chunk_hint=4 * KIB)
    assert any(piece is big for piece in pieces)  # handed on, not copied
    assert all(len(piece) < 8 * KIB for piece in pieces if piece is not big)
    # No dribble of tiny writes: only the last piece and a flush before a large chunk may be short.
    assert all(len(piece) >= 4 * KIB for piece, after in itertools.pairwise(pieces) if after is not big)
    assert opened(b"".join(pieces)).read("big.bin") == big
    with pytest.raises(ValueError, match="chunk_hint"):
        await pieces_of(entries, chunk_hint=0)


# ---------------------------------------------------------------- times


@pytest.mark.parametrize(
    "modified",
    [
        datetime(2026, 3, 4, 5, 6, 7, 999_999, tzinfo=UTC),
        datetime(2000, 1, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone(timedelta(hours=2))),
        datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC),
    ],
)
async def test_modification_time_round_trips_through_ut_extra_and_dos_time(modified: datetime) -> None:
    data = await archive([file("f.txt", b"x", modified=modified), folder("d/", modified=modified)])
    expected_unix = int(modified.timestamp())
    utc = modified.astimezone(UTC)
    for info in opened(data).infolist():
        local = LocalHeader(data, info.header_offset)
        assert unix_time(info.extra) == unix_time(local.extra) == expected_unix
        # DOS time is the UTC wall clock with 2-second resolution.
        assert info.date_time == (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second // 2 * 2)
        assert datetime.fromtimestamp(unix_time(info.extra), UTC) == utc.replace(microsecond=0)


async def test_times_outside_the_dos_range_are_clamped() -> None:
    early = datetime(1970, 1, 2, tzinfo=UTC)
    late = datetime(2200, 1, 1, tzinfo=UTC)
    zf = opened(await archive([file("early", modified=early), file("late", modified=late)]))
    assert zf.getinfo("early").date_time == (1980, 1, 1, 0, 0, 0)
    assert unix_time(zf.getinfo("early").extra) == int(early.timestamp())
    assert zf.getinfo("late").date_time == (2107, 12, 31, 23, 59, 58)
    assert unix_time(zf.getinfo("late").extra) == 2**31 - 1  # the UT field is a signed 32-bit time


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["../etc/passwd"], ["etc/passwd"]),
        (["a/../../b.txt"], ["a/b.txt"]),
        (["/abs"], ["abs"]),
        (["//abs/./x"], ["abs/x"]),
        (["a//b"], ["a/b"]),
        (["a\\b"], ["a_b"]),
        (["..\\..\\windows\\evil.dll"], [".._.._windows_evil.dll"]),
        (["bad\x00name\n.txt"], ["bad_name_.txt"]),
        (["dup.txt", "dup.txt", "dup.txt"], ["dup.txt", "dup (2).txt", "dup (3).txt"]),
        (["x/dup.tar.gz", "x/dup.tar.gz"], ["x/dup.tar.gz", "x/dup.tar (2).gz"]),
        ([".bashrc", ".bashrc", "README", "README"], [".bashrc", ".bashrc (2)", "README", "README (2)"]),
        (["a.txt", "a.txt", "a (2).txt"], ["a.txt", "a (2).txt", "a (2) (2).txt"]),
        (["a.txt", "a (2).txt", "a.txt", "a.txt"], ["a.txt", "a (2).txt", "a (3).txt", "a (4).txt"]),
        (["Photo.JPG", "photo.jpg"], ["Photo.JPG", "photo (2).jpg"]),  # macOS and Windows ignore case
        (["/a/b", "a//b", "./a/b"], ["a/b", "a/b (2)", "a/b (3)"]),
        (["..", ".", "a/.."], ["_", "_ (2)", "a"]),
    ],
)
async def test_file_names_are_sanitised_and_made_unique(paths: list[str], expected: list[str]) -> None:
    entries = [file(path, path.encode()) for path in paths]
    data = await archive(entries)
    zf = opened(data)
    assert zf.namelist() == expected
    assert [zf.read(name) for name in expected] == [entry.path.encode() for entry in entries]
    assert zip_size_if_known(entries) == len(data)


async def test_folder_names_are_sanitised_and_repeats_dropped() -> None:
    entries = [folder("/"), folder("./"), folder("a/"), folder("/a/"), folder("a//"), folder("../a/b/"), folder("A/")]
    data = await archive(entries)
    assert opened(data).namelist() == ["a/", "a/b/", "A/"]
    assert zip_size_if_known(entries) == len(data)


async def test_a_name_too_long_for_the_header_raises() -> None:
    with pytest.raises(ValueError, match="longer than 65535 bytes"):
        await archive([file("é" * 40_000)])


_PATH_CHARACTERS = st.sampled_from(["a", "B", "é", "日", "/", "\\", ".", "..", " ", "\x00", "\n", "\ud800", "ß"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(_PATH_CHARACTERS, max_size=12).map("".join), st.booleans()), max_size=12))
def test_any_path_becomes_a_safe_unique_name(paths: list[tuple[str, bool]]) -> None:
    entries = [
        folder(f"{path}/") if is_folder or path.endswith("/") else file(path, b"data") for path, is_folder in paths
    ]
    data = asyncio.run(archive(entries))
    names = opened(data).namelist()
    assert zip_size_if_known(entries) == len(data)
    assert sum(not entry.is_folder for entry in entries) == sum(not name.endswith("/") for name in names)
    for name in names:
        parts = name.removesuffix("/").split("/")
        assert all(part not in {"", ".", ".."} for part in parts)
        assert not any(ch in name for ch in "\\\x00\n\ud800")
    file_names = [name.casefold() for name in names if not name.endswith("/")]
    assert len(set(file_names)) == len(file_names)
    assert len(set(names)) == len(names)


# ---------------------------------------------------------------- contents


@pytest.mark.parametrize(("declared", "actual"), [(3, b"four"), (5, b"four"), (1, b"")])
async def test_a_content_of_the_wrong_size_raises(declared: int, actual: bytes) -> None:
    closed: list[bool] = []

    async def content() -> AsyncIterator[bytes]:
        try:
            for byte in actual:
                yield bytes([byte])
        finally:
            closed.append(True)

    entries = [file("ok.txt", b"fine"), ZipEntry("liar.txt", WHEN, declared, content)]
    streamed = bytearray()

    async def drain() -> None:
        async for piece in stream_zip(feed(entries), chunk_hint=1):
            streamed.extend(piece)

    with pytest.raises(ValueError, match=r"liar\.txt"):
        await drain()
    assert closed == [True]
    # Nothing past the declared size went out: the stream ends with the bytes that were still in bounds.
    content_start = streamed.rindex(b"liar.txt") + len(b"liar.txt") + 9
    assert streamed[content_start:] == actual[:declared]


def test_entries_are_validated_when_built() -> None:
    async def content() -> AsyncIterator[bytes]:
        yield b"x"

    with pytest.raises(ValueError, match="timezone-aware"):
        ZipEntry("a", datetime(2026, 1, 1))  # noqa: DTZ001 - the naive time is the point of the test
    with pytest.raises(ValueError, match="negative"):
        ZipEntry("a", WHEN, -1, content)
    with pytest.raises(ValueError, match="folder"):
        ZipEntry("a/", WHEN, None, content)
    with pytest.raises(ValueError, match="folder"):
        ZipEntry("a/", WHEN, 3)
    with pytest.raises(ValueError, match="no content"):
        ZipEntry("a", WHEN, 3)


async def test_contents_are_opened_one_at_a_time_and_closed() -> None:
    events: list[str] = []

    def tracked(name: str) -> Callable[[], AsyncIterator[bytes]]:
        async def content() -> AsyncIterator[bytes]:
            events.append(f"open {name}")
            try:
                yield name.encode()
            finally:
                events.append(f"close {name}")

        events.append(f"prepare {name}")
        return content

    async def entries() -> AsyncIterator[ZipEntry]:
        for name in ("a", "b"):
            yield ZipEntry(name, WHEN, None, tracked(name))

    data = b"".join([piece async for piece in stream_zip(entries(), chunk_hint=1)])
    assert events == ["prepare a", "open a", "close a", "prepare b", "open b", "close b"]
    assert opened(data).read("b") == b"b"


async def test_a_client_going_away_closes_the_open_content_and_the_entries() -> None:
    closed: list[str] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"z" * KIB
        finally:
            closed.append("content")

    async def entries() -> AsyncIterator[ZipEntry]:
        try:
            yield ZipEntry("endless", WHEN, None, endless)
        finally:
            closed.append("entries")

    stream = stream_zip(entries(), chunk_hint=1)
    received = [await anext(stream) for _ in range(3)]  # the local header, then content
    assert received[1:] == [b"z" * KIB] * 2
    await stream.aclose()  # what the server does when the client disconnects
    assert closed == ["content", "entries"]


class Replay(Generic[T]):
    """An async iterator that is not a generator: it has no ``aclose`` for the writer to call."""

    def __init__(self, items: Sequence[T]) -> None:
        self.items = list(items)

    def __aiter__(self) -> Replay[T]:
        return self

    async def __anext__(self) -> T:
        if not self.items:
            raise StopAsyncIteration
        return self.items.pop(0)


async def test_plain_async_iterators_are_accepted() -> None:
    entry = ZipEntry("plain.txt", WHEN, 5, lambda: Replay([b"pla", b"in"]))
    streamed = b"".join([piece async for piece in stream_zip(Replay([entry]))])
    assert opened(streamed).read("plain.txt") == b"plain"


_NAMES = st.text(alphabet="abcdefghij0123456789-_ é日🙂", min_size=1, max_size=8).filter(lambda n: n.strip(". ") != "")
_TREES = st.recursive(
    st.binary(max_size=300), lambda children: st.dictionaries(_NAMES, children, max_size=4), max_leaves=12
)


def flatten(tree: dict[str, object], prefix: str = "") -> list[tuple[str, bytes | None]]:
    flat: list[tuple[str, bytes | None]] = []
    for name, node in tree.items():
        if isinstance(node, dict):
            flat.append((f"{prefix}{name}/", None))
            flat += flatten(node, f"{prefix}{name}/")
        else:
            assert isinstance(node, bytes)
            flat.append((prefix + name, node))
    return flat


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(_NAMES, _TREES, max_size=6), data=st.data())
def test_random_trees_round_trip_exactly(tree: dict[str, object], data: st.DataObject) -> None:
    entries = []
    for path, content in flatten(tree):
        if content is None:
            entries.append(folder(path))
        else:
            known = data.draw(st.booleans(), label="size known")
            step = data.draw(st.integers(min_value=1, max_value=64), label="chunk size")
            entries.append(file(path, content, known=known, step=step))
    chunk_hint = data.draw(st.integers(min_value=1, max_value=1024), label="chunk_hint")
    streamed = asyncio.run(archive(entries, chunk_hint=chunk_hint))
    zf = opened(streamed)
    assert zf.namelist() == [entry.path for entry in entries]
    for path, content in flatten(tree):
        assert zf.getinfo(path).is_dir() == (content is None)
        if content is not None:
            assert zf.read(path) == content
    all_known = all(entry.size is not None or entry.is_folder for entry in entries)
    assert zip_size_if_known(entries) == (len(streamed) if all_known else None)


# ---------------------------------------------------------------- Info-ZIP


def unzip_test(tmp_path: Path, data: bytes) -> str:
    unzip = shutil.which("unzip")
    if unzip is None:
        pytest.skip("Info-ZIP unzip is not installed (apt-get install unzip)")
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    result = subprocess.run([unzip, "-t", str(path)], capture_output=True, check=False)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert "No errors detected" in output, output
    return output


async def test_info_zip_unzip_finds_no_errors(tmp_path: Path) -> None:
    entries = [
        folder("Photos/"),
        file("Photos/beach.jpg", b"\xff\xd8" + bytes(5000)),
        file("Photos/été 日本語 🙂.txt", b"unicode", known=False),
        file("empty.txt"),
        file("unknown.bin", bytes(range(256)) * 100, known=False, step=1000),
        file("../escape.txt", b"sanitised"),
    ]
    output = unzip_test(tmp_path, await archive(entries))
    assert "escape.txt" in output
    assert "../" not in output


# ---------------------------------------------------------------- ZIP64


class LazyEntries(Sequence[ZipEntry]):
    """``count`` empty files, built when asked for, so 70,000 entries cost no memory up front."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> ZipEntry: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ZipEntry]: ...
    def __getitem__(self, index: int | slice) -> ZipEntry | Sequence[ZipEntry]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        if not 0 <= index < self.length:
            raise IndexError(index)
        return ZipEntry(f"d{index // 1000:02}/f{index:05}", WHEN)


@pytest.fixture(scope="module")
def many_entries_archive() -> tuple[LazyEntries, bytes]:
    entries = LazyEntries(70_000)
    return entries, asyncio.run(archive(entries))


def test_more_than_65535_entries_use_the_zip64_end_records(many_entries_archive: tuple[LazyEntries, bytes]) -> None:
    entries, data = many_entries_archive
    assert zip_size_if_known(entries) == len(data)
    zf = opened(data)
    assert len(zf.infolist()) == 70_000
    assert zf.infolist()[-1].filename == "d69/f69999"
    # EOCD: counts at the 0xFFFF marker; the ZIP64 locator just before it points at the ZIP64 record.
    end = struct.unpack_from("<IHHHHIIH", data, len(data) - 22)
    assert end[3:5] == (0xFFFF, 0xFFFF)
    locator = struct.unpack_from("<IIQI", data, len(data) - 42)
    assert locator[0] == 0x07064B50
    assert locator[3] == 1
    record = struct.unpack_from("<IQHHIIQQQQ", data, locator[2])
    assert record[0] == 0x06064B50
    assert record[1] == 44
    assert record[6:8] == (70_000, 70_000)
    assert record[8:] == (end[5], end[6])  # the central directory still fits 32 bits here


def test_info_zip_reads_the_zip64_end_records(tmp_path: Path, many_entries_archive: tuple[LazyEntries, bytes]) -> None:
    unzip_test(tmp_path, many_entries_archive[1])


class SparseArchive(io.RawIOBase):
    """A read-only file of ``length`` bytes: ``head`` then zeros then ``tail``, for zipfile to open."""

    def __init__(self, head: bytes, tail: bytes, length: int) -> None:
        self.head, self.tail, self.length = head, tail, length
        self.tail_start = length - len(tail)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = base + offset
        return self.position

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self.length - self.position))
        done = 0
        while done < count:
            at, wanted = self.position + done, count - done
            if at < len(self.head):
                piece = self.head[at : at + wanted]
            elif at >= self.tail_start:
                piece = self.tail[at - self.tail_start : at - self.tail_start + wanted]
            else:
                piece = bytes(min(wanted, self.tail_start - at))
            view[done : done + len(piece)] = piece
            done += len(piece)
        self.position += count
        return count


@pytest.mark.slow
async def test_an_entry_over_4_gib_streams_with_zip64_everywhere() -> None:
    """4 GiB + 1 of zeros, then a small entry past the 4 GiB mark; nothing is written to disk.

    Only the first 64 KiB and the last ~1 MiB of the stream are kept; the rest is counted and hashed.
    """
    started = time.monotonic()
    big_size = 4 * GIB + 1
    zeros = bytes(MIB)
    generated_crc: list[int] = []

    async def zero_content() -> AsyncIterator[bytes]:
        remaining, crc = big_size, 0
        while remaining:
            chunk = zeros if remaining >= MIB else zeros[:remaining]
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
            yield chunk
        generated_crc.append(crc)

    entries = [ZipEntry("big.bin", WHEN, big_size, zero_content), file("after.txt", b"after")]
    head = bytearray()
    tail: deque[bytes] = deque()
    tail_length = total = 0
    keep_head, keep_tail = 64 * KIB, MIB + 64 * KIB
    data_start = data_end = -1
    streamed_crc = 0
    async for piece in stream_zip(feed(entries)):
        if len(head) < keep_head:
            head += piece[: keep_head - len(head)]
            if data_start < 0 and len(head) >= 30:
                data_start = LocalHeader(bytes(head), 0).length
                data_end = data_start + big_size
        # Hash the bytes the archive actually carries for big.bin, independently of the writer.
        low, high = max(total, data_start), min(total + len(piece), data_end)
        if low < high:
            streamed_crc = zlib.crc32(memoryview(piece)[low - total : high - total], streamed_crc)
        total += len(piece)
        tail.append(piece)
        tail_length += len(piece)
        while tail_length - len(tail[0]) >= keep_tail:
            tail_length -= len(tail.popleft())
    tail_bytes = b"".join(tail)
    tail_start = total - len(tail_bytes)

    def at(offset: int, size: int) -> bytes:
        assert offset >= tail_start, "outside the kept tail"
        return tail_bytes[offset - tail_start : offset - tail_start + size]

    assert total == zip_size_if_known(entries)
    [crc] = generated_crc
    assert crc == streamed_crc

    # The local header knew the size up front, so it carries ZIP64 and the descriptor has 8-byte sizes.
    local = LocalHeader(bytes(head), 0)
    assert (local.name, local.version, local.flags, local.method) == (b"big.bin", 45, 0x0808, 0)
    assert (local.crc, local.compressed, local.uncompressed) == (0, 0xFFFFFFFF, 0xFFFFFFFF)
    assert extra_tags(local.extra) == [0x0001, 0x5455]
    after_offset = local.length + big_size + 24
    assert struct.unpack("<4sIQQ", at(after_offset - 24, 24)) == (DESCRIPTOR_SIGNATURE, crc, big_size, big_size)

    # End records: EOCD with markers, the locator, the ZIP64 end record.
    end = struct.unpack("<IHHHHIIH", at(total - 22, 22))
    assert end == (0x06054B50, 0, 0, 2, 2, end[5], 0xFFFFFFFF, 0)
    locator = struct.unpack("<IIQI", at(total - 42, 20))
    assert locator[0] == 0x07064B50
    zip64_end = struct.unpack("<IQHHIIQQQQ", at(locator[2], 56))
    assert zip64_end[0] == 0x06064B50
    assert zip64_end[6:8] == (2, 2)
    central_size, central_offset = zip64_end[8:]
    assert central_size == end[5]
    assert central_offset == locator[2] - central_size > 4 * GIB

    # Central records: sizes of big.bin and the offset of after.txt live in ZIP64 extras.
    central = at(central_offset, central_size)
    records = []
    position = 0
    while position < len(central):
        fields = struct.unpack_from("<IHHHHHHIIIHHHHHII", central, position)
        assert fields[0] == 0x02014B50
        name_length, extra_length, comment_length = fields[10:13]
        name = central[position + 46 : position + 46 + name_length]
        extra = central[position + 46 + name_length : position + 46 + name_length + extra_length]
        records.append((name, fields, extra))
        position += 46 + name_length + extra_length + comment_length
    (big_name, big_fields, big_extra), (after_name, after_fields, after_extra) = records
    assert big_name == b"big.bin"
    assert big_fields[1:4] == (0x0300 | 45, 45, 0x0808)
    assert big_fields[7:10] == (crc, 0xFFFFFFFF, 0xFFFFFFFF)
    assert big_fields[16] == 0
    assert extra_tags(big_extra) == [0x0001, 0x5455]
    assert struct.unpack("<QQ", extra_fields(big_extra)[0x0001]) == (big_size, big_size)
    assert after_name == b"after.txt"
    assert after_fields[1:4] == (0x0300 | 45, 45, 0x0808)
    assert after_fields[7:10] == (zlib.crc32(b"after"), 5, 5)
    assert after_fields[16] == 0xFFFFFFFF
    assert struct.unpack("<Q", extra_fields(after_extra)[0x0001]) == (after_offset,)
    after_local = LocalHeader(at(after_offset, 200), 0)
    assert (after_local.name, after_local.version) == (b"after.txt", 20)
    assert at(after_offset + after_local.length, 5) == b"after"

    # And zipfile agrees, reading the kept ends with zeros in between.
    with zipfile.ZipFile(io.BufferedReader(SparseArchive(bytes(head), tail_bytes, total))) as zf:
        assert [(i.filename, i.file_size, i.CRC) for i in zf.infolist()] == [
            ("big.bin", big_size, crc),
            ("after.txt", 5, zlib.crc32(b"after")),
        ]
        assert zf.read("after.txt") == b"after"
    assert time.monotonic() - started < 60
