"""Download a folder (or a selection) as one ZIP archive, streamed without temporary files.

Every entry is STORED (method 0): photos and videos do not compress, the CPU stays idle and the archive
length is known up front when every size is (``zip_size_if_known`` gives the Content-Length). Contents
are read lazily, one chunk at a time, and the CRC-32 is computed while streaming, so each file entry
sets general purpose bit 3 and is followed by a data descriptor (with its optional signature, which
macOS Archive Utility needs). Names are UTF-8 (bit 11).

ZIP64 is used only where it is needed, because older readers (and Safari's auto-extract) stumble on
it: in a local header when the size is unknown or at least 4 GiB (then the descriptor has 8-byte
sizes: the APPNOTE and 7-Zip tie the descriptor's width to the local ZIP64 extra, and macOS Archive
Utility wants that extra whenever the 32-bit fields hold 0xFFFFFFFF), in a central record when a size
or the header offset does not fit 32 bits, and at the end when there are 65,535 entries or more (0xFFFF
is itself the "see ZIP64" marker) or the central directory passes 4 GiB. The ZIP64 extra always comes
first among the extra fields, as Windows Explorer requires.

Memory is bounded: the output is coalesced into pieces of about ``chunk_hint`` bytes (fewer, larger
writes to the socket) and content chunks at least that large pass through uncopied, so at most
``chunk_hint`` bytes plus the current chunk are held. Only the central directory and the set of names
used (about a hundred bytes per entry) are kept until the end, as any ZIP writer must.
"""

from __future__ import annotations

import re
import struct
import unicodedata
import zlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

__all__ = ["ZipEntry", "stream_zip", "zip_size_if_known"]

_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

_LOCAL_SIGNATURE = 0x04034B50
_DESCRIPTOR_SIGNATURE = 0x08074B50
_CENTRAL_SIGNATURE = 0x02014B50
_ZIP64_END_SIGNATURE = 0x06064B50
_ZIP64_LOCATOR_SIGNATURE = 0x07064B50
_END_SIGNATURE = 0x06054B50

_FLAG_DESCRIPTOR = 0x0008
_FLAG_UTF8 = 0x0800
_VERSION_DEFAULT = 20
_VERSION_ZIP64 = 45
_HOST_UNIX = 3 << 8
_FILE_ATTRIBUTES = 0o100644 << 16
_FOLDER_ATTRIBUTES = (0o040755 << 16) | 0x10  # Unix mode plus the MS-DOS directory bit

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_DESCRIPTOR32 = struct.Struct("<IIII")
_DESCRIPTOR64 = struct.Struct("<IIQQ")
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")
_UNIX_TIME_EXTRA = struct.Struct("<HHBi")  # 0x5455 "UT": flags (bit 0: mtime present), mtime

# Sizes are in the data descriptor, so the local ZIP64 extra carries zeros behind 0xFFFFFFFF markers.
_LOCAL_ZIP64_EXTRA = struct.pack("<HHQQ", 0x0001, 16, 0, 0)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DOS_FIRST = (0 << 9) | (1 << 5) | 1, 0  # 1980-01-01 00:00:00
_DOS_LAST = (127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29  # 2107-12-31 23:59:58

# Backslashes (Windows separators), C0 controls, DEL and lone surrogates (undecodable file system
# names) become "_": none of them can be extracted safely everywhere.
_UNSAFE_CHARACTERS = re.compile("[\\\\\x00-\x1f\x7f\ud800-\udfff]")


class ZipEntry(msgspec.Struct, frozen=True):
    """One member of the archive; a ``path`` ending in "/" is a folder and has no content."""

    path: str
    modified: datetime
    size: int | None = None
    content: Callable[[], AsyncIterator[bytes]] | None = None

    def __post_init__(self) -> None:
        if self.modified.utcoffset() is None:
            raise ValueError(f"{self.path!r}: the modification time must be timezone-aware")
        if self.size is not None and self.size < 0:
            raise ValueError(f"{self.path!r}: the size cannot be negative")
        if self.is_folder and (self.content is not None or self.size):
            raise ValueError(f"{self.path!r}: a folder has no content")
        if self.content is None and self.size:
            raise ValueError(f"{self.path!r}: a size of {self.size} bytes but no content")

    @property
    def is_folder(self) -> bool:
        return self.path.endswith("/")


async def stream_zip(entries: AsyncIterable[ZipEntry], *, chunk_hint: int = 64 * 1024) -> AsyncGenerator[bytes, None]:
    """Yield the archive of ``entries`` in pieces of about ``chunk_hint`` bytes.

    Raises ValueError mid-stream when a content yields a different number of bytes than the entry's
    ``size`` (before any byte past it goes out): the archive would be corrupt, so the HTTP layer must
    abort the connection. Closing the stream early (the client went away) closes the content being
    read and the ``entries`` iterator.
    """
    if chunk_hint < 1:
        raise ValueError("chunk_hint must be positive")
    buffer = bytearray()
    async with aclosing(_pieces(entries)) as pieces:
        async for piece in pieces:
            if len(piece) >= chunk_hint:
                if buffer:
                    yield bytes(buffer)
                    buffer.clear()
                yield piece
                continue
            buffer += piece
            if len(buffer) >= chunk_hint:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


def zip_size_if_known(entries: Sequence[ZipEntry]) -> int | None:
    """The exact length ``stream_zip(entries)`` will have, or None when a file's size is unknown."""
    namer = _Namer()
    offset = central_size = count = 0
    for entry in entries:
        size = _known_size(entry)
        if size is None:
            return None
        name = namer.claim(entry.path, folder=entry.is_folder)
        if name is None:
            continue
        member = _Member.of(entry, name, offset)
        offset += len(_local_header(member))
        if not member.folder:
            offset += size + len(_descriptor(member, 0, size))
        central_size += len(_central_record(member, 0, size))
        count += 1
    return offset + central_size + len(_end_records(count, offset, central_size))


async def _pieces(entries: AsyncIterable[ZipEntry]) -> AsyncGenerator[bytes, None]:
    """The archive as headers, content chunks, descriptors and records, each yielded as it is ready."""
    namer = _Namer()
    central: list[bytes] = []
    offset = 0
    iterator = aiter(entries)
    try:
        async for entry in iterator:
            name = namer.claim(entry.path, folder=entry.is_folder)
            if name is None:
                continue
            member = _Member.of(entry, name, offset)
            header = _local_header(member)
            yield header
            offset += len(header)
            crc = written = 0
            if entry.content is not None:
                chunks = entry.content()
                try:
                    async for chunk in chunks:
                        written += len(chunk)
                        if entry.size is not None and written > entry.size:
                            raise ValueError(f"{entry.path!r} yielded more than its size of {entry.size} bytes")
                        crc = zlib.crc32(chunk, crc)
                        yield chunk
                finally:
                    await _close(chunks)
            if entry.size is not None and written != entry.size:
                raise ValueError(f"{entry.path!r} yielded {written} bytes instead of its size of {entry.size}")
            offset += written
            if not member.folder:
                descriptor = _descriptor(member, crc, written)
                yield descriptor
                offset += len(descriptor)
            central.append(_central_record(member, crc, written))
    finally:
        await _close(iterator)
    central_size = 0
    for record in central:
        central_size += len(record)
        yield record
    yield _end_records(len(central), offset, central_size)


async def _close(iterator: object) -> None:
    """Close an async generator (a file handle behind it, an entries query) as soon as we are done."""
    aclose: Any = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _known_size(entry: ZipEntry) -> int | None:
    if entry.is_folder or entry.content is None:
        return 0
    return entry.size


@dataclass(frozen=True, slots=True)
class _Member:
    """What the headers of one entry need, decided before its first byte is written."""

    name: bytes
    folder: bool
    dos_date: int
    dos_time: int
    mtime: int
    offset: int
    zip64_local: bool  # the local header carries the ZIP64 extra and the descriptor has 8-byte sizes

    @classmethod
    def of(cls, entry: ZipEntry, name: str, offset: int) -> _Member:
        encoded = name.encode("utf-8")
        if len(encoded) > _U16_MAX:
            raise ValueError(f"{entry.path!r}: the name is longer than {_U16_MAX} bytes")
        dos_date, dos_time = _dos_date_time(entry.modified)
        size = _known_size(entry)
        return cls(
            name=encoded,
            folder=entry.is_folder,
            dos_date=dos_date,
            dos_time=dos_time,
            mtime=_unix_time(entry.modified),
            offset=offset,
            zip64_local=size is None or size >= _U32_MAX,
        )

    @property
    def flags(self) -> int:
        return _FLAG_UTF8 if self.folder else _FLAG_UTF8 | _FLAG_DESCRIPTOR

    @property
    def time_extra(self) -> bytes:
        return _UNIX_TIME_EXTRA.pack(0x5455, 5, 1, self.mtime)


def _local_header(member: _Member) -> bytes:
    # With bit 3 the CRC and sizes are zero here (they follow in the descriptor); folders need neither.
    if member.zip64_local:
        extra, size_field, version = _LOCAL_ZIP64_EXTRA + member.time_extra, _U32_MAX, _VERSION_ZIP64
    else:
        extra, size_field, version = member.time_extra, 0, _VERSION_DEFAULT
    fixed = _LOCAL.pack(
        _LOCAL_SIGNATURE,
        version,
        member.flags,
        0,  # STORED
        member.dos_time,
        member.dos_date,
        0,
        size_field,
        size_field,
        len(member.name),
        len(extra),
    )
    return fixed + member.name + extra


def _descriptor(member: _Member, crc: int, size: int) -> bytes:
    if member.zip64_local:
        return _DESCRIPTOR64.pack(_DESCRIPTOR_SIGNATURE, crc, size, size)
    return _DESCRIPTOR32.pack(_DESCRIPTOR_SIGNATURE, crc, size, size)


def _central_record(member: _Member, crc: int, size: int) -> bytes:
    zip64_fields: list[int] = []
    if size >= _U32_MAX:
        zip64_fields += [size, size]  # uncompressed, then compressed: STORED, so the same
        size_field = _U32_MAX
    else:
        size_field = size
    if member.offset >= _U32_MAX:
        zip64_fields.append(member.offset)
        offset_field = _U32_MAX
    else:
        offset_field = member.offset
    extra = member.time_extra
    if zip64_fields:
        extra = struct.pack(f"<HH{len(zip64_fields)}Q", 0x0001, 8 * len(zip64_fields), *zip64_fields) + extra
    version = _VERSION_ZIP64 if zip64_fields or member.zip64_local else _VERSION_DEFAULT
    fixed = _CENTRAL.pack(
        _CENTRAL_SIGNATURE,
        _HOST_UNIX | version,
        version,
        member.flags,
        0,  # STORED
        member.dos_time,
        member.dos_date,
        crc,
        size_field,
        size_field,
        len(member.name),
        len(extra),
        0,  # comment length
        0,  # disk number
        0,  # internal attributes
        _FOLDER_ATTRIBUTES if member.folder else _FILE_ATTRIBUTES,
        offset_field,
    )
    return fixed + member.name + extra


def _end_records(count: int, central_offset: int, central_size: int) -> bytes:
    # 0xFFFF and 0xFFFFFFFF are the "look in the ZIP64 record" markers, so reaching them needs ZIP64 too.
    zip64 = b""
    if count >= _U16_MAX or central_offset >= _U32_MAX or central_size >= _U32_MAX:
        zip64 = _ZIP64_END.pack(
            _ZIP64_END_SIGNATURE,
            _ZIP64_END.size - 12,  # the record's size excludes its signature and this field
            _HOST_UNIX | _VERSION_ZIP64,
            _VERSION_ZIP64,
            0,
            0,
            count,
            count,
            central_size,
            central_offset,
        ) + _ZIP64_LOCATOR.pack(_ZIP64_LOCATOR_SIGNATURE, 0, central_offset + central_size, 1)
    return zip64 + _END.pack(
        _END_SIGNATURE,
        0,
        0,
        min(count, _U16_MAX),
        min(count, _U16_MAX),
        min(central_size, _U32_MAX),
        min(central_offset, _U32_MAX),
        0,  # comment length
    )


def _dos_date_time(moment: datetime) -> tuple[int, int]:
    """MS-DOS date and time of the UTC wall clock (2-second resolution, clamped to 1980-2107)."""
    utc = moment.astimezone(UTC)
    if utc.year < 1980:
        return _DOS_FIRST
    if utc.year > 2107:
        return _DOS_LAST
    date = ((utc.year - 1980) << 9) | (utc.month << 5) | utc.day
    time = (utc.hour << 11) | (utc.minute << 5) | (utc.second // 2)
    return date, time


def _unix_time(moment: datetime) -> int:
    """Whole seconds since the epoch, clamped to the signed 32 bits of the UT extra field."""
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return max(_INT32_MIN, min(_INT32_MAX, seconds))


def _sanitise_path(path: str) -> str:
    """The archive name of ``path`` without its trailing "/": relative, no "..", no "\\", no empty parts.

    Every extractor then writes inside its target folder ("../etc/passwd" becomes "etc/passwd").
    """
    cleaned = _UNSAFE_CHARACTERS.sub("_", path)
    return "/".join(part for part in cleaned.split("/") if part not in {"", ".", ".."})


class _Namer:
    """Sanitises names and keeps them unique, as the target file system would compare them.

    A second file named like an earlier one (ignoring case and Unicode normalisation, since macOS and
    Windows do) becomes "name (2).ext"; a repeated folder is dropped, its children merge into it.
    """

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._folders: set[str] = set()
        self._next_number: dict[str, int] = {}

    def claim(self, path: str, *, folder: bool) -> str | None:
        """The unique archive name for ``path``, or None when the entry is to be left out."""
        name = _sanitise_path(path)
        if folder:
            if not name or name in self._folders:
                return None
            self._folders.add(name)
            return name + "/"
        name = name or "_"
        key = _fold(name)
        if key in self._files:
            number = self._next_number.get(key, 2)
            while _fold(candidate := _numbered(name, number)) in self._files:
                number += 1
            self._next_number[key] = number + 1
            name, key = candidate, _fold(candidate)
        self._files.add(key)
        return name


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _numbered(name: str, number: int) -> str:
    """``Photos/beach.jpg`` → ``Photos/beach (2).jpg``; ``.bashrc`` → ``.bashrc (2)``."""
    folder, slash, base = name.rpartition("/")
    stem, dot, extension = base.rpartition(".")
    numbered = f"{stem} ({number}).{extension}" if dot and stem else f"{base} ({number})"
    return folder + slash + numbered
