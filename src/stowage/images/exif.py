"""The few EXIF facts Stowage needs, read from (and GPS removed from) a TIFF structure in place.

EXIF is a TIFF structure (a header, then directories of 12-byte entries) embedded in JPEG, HEIC,
AVIF, WebP and PNG files. We read the orientation and the capture time, and we *remove* the GPS
directory without re-encoding anything: the GPS entry is dropped from the first directory (the later
entries move up, the freed 12 bytes become zeros) and the GPS directory and its values are
overwritten with zeros. The file keeps its length and every other offset, so the same edit works in
every container, and the picture itself is untouched (no generation loss).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import BinaryIO

import msgspec

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
DATE_TIME_ORIGINAL = 0x9003
OFFSET_TIME_ORIGINAL = 0x9011
SUB_SEC_TIME_ORIGINAL = 0x9291

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_MAX_ENTRIES = 1000  # a directory claiming more is damaged; stop rather than read megabytes
_MAX_VALUE_BYTES = 1 << 20


class ExifFacts(msgspec.Struct, frozen=True):
    """``orientation`` 1-8 (1 when absent); ``taken_at`` is DateTimeOriginal, aware when the camera
    recorded its offset (OffsetTimeOriginal) and otherwise the local time as recorded, marked UTC
    (``taken_at_offset_known`` says which)."""

    orientation: int = 1
    taken_at: datetime | None = None
    taken_at_offset_known: bool = False


class _Entry(msgspec.Struct, frozen=True):
    tag: int
    type: int
    count: int
    raw: bytes  # the 4-byte value/offset field
    position: int  # offset of the entry from the TIFF base


class _Tiff:
    """Random access to a TIFF structure starting at ``base`` in ``handle``."""

    def __init__(self, handle: BinaryIO, base: int) -> None:
        self.handle = handle
        self.base = base
        handle.seek(base)
        header = handle.read(8)
        if len(header) < 8 or header[:4] not in (b"II*\x00", b"MM\x00*"):
            raise ValueError("not a TIFF header")
        self.order = "<" if header[:2] == b"II" else ">"
        self.ifd0 = self.u32(header[4:8])

    def u16(self, data: bytes) -> int:
        return int(struct.unpack(self.order + "H", data[:2])[0])

    def u32(self, data: bytes) -> int:
        return int(struct.unpack(self.order + "I", data[:4])[0])

    def read(self, offset: int, size: int) -> bytes:
        self.handle.seek(self.base + offset)
        data = self.handle.read(size)
        if len(data) != size:
            raise ValueError("TIFF structure points past the end of its data")
        return data

    def write(self, offset: int, data: bytes) -> None:
        self.handle.seek(self.base + offset)
        self.handle.write(data)

    def entries(self, offset: int) -> list[_Entry]:
        count = self.u16(self.read(offset, 2))
        if count > _MAX_ENTRIES:
            raise ValueError("TIFF directory too large")
        table = self.read(offset + 2, 12 * count)
        found = []
        for i in range(count):
            item = table[12 * i : 12 * i + 12]
            found.append(
                _Entry(
                    tag=self.u16(item[0:2]),
                    type=self.u16(item[2:4]),
                    count=self.u32(item[4:8]),
                    raw=item[8:12],
                    position=offset + 2 + 12 * i,
                )
            )
        return found

    def value_bytes(self, entry: _Entry) -> tuple[int | None, bytes]:
        """(offset of out-of-line data or None, the value's bytes)."""
        size = _TYPE_SIZES.get(entry.type, 1) * entry.count
        if size > _MAX_VALUE_BYTES:
            raise ValueError("TIFF value too large")
        if size <= 4:
            return None, entry.raw[:size]
        offset = self.u32(entry.raw)
        return offset, self.read(offset, size)

    def short(self, entry: _Entry) -> int:
        return self.u16(entry.raw) if entry.type == 3 else self.u32(entry.raw)

    def ascii(self, entry: _Entry) -> str:
        _, data = self.value_bytes(entry)
        return data.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def read_facts(handle: BinaryIO, base: int = 0) -> ExifFacts:
    """Orientation and capture time from the TIFF structure at ``base``; defaults for anything unreadable."""
    try:
        tiff = _Tiff(handle, base)
        ifd0 = {e.tag: e for e in tiff.entries(tiff.ifd0)}
        orientation = tiff.short(ifd0[ORIENTATION]) if ORIENTATION in ifd0 else 1
        if not 1 <= orientation <= 8:
            orientation = 1
        taken: datetime | None = None
        known = False
        if EXIF_IFD in ifd0:
            sub = {e.tag: e for e in tiff.entries(tiff.short(ifd0[EXIF_IFD]))}
            if DATE_TIME_ORIGINAL in sub:
                offset = tiff.ascii(sub[OFFSET_TIME_ORIGINAL]) if OFFSET_TIME_ORIGINAL in sub else None
                subsec = tiff.ascii(sub[SUB_SEC_TIME_ORIGINAL]) if SUB_SEC_TIME_ORIGINAL in sub else None
                taken, known = parse_exif_datetime(tiff.ascii(sub[DATE_TIME_ORIGINAL]), offset, subsec)
    except (ValueError, struct.error, KeyError):
        return ExifFacts()
    return ExifFacts(orientation=orientation, taken_at=taken, taken_at_offset_known=known)


def parse_exif_datetime(value: str, offset: str | None, subsec: str | None = None) -> tuple[datetime | None, bool]:
    """``2024:05:01 14:03:22`` (+ ``+02:00``, + sub-seconds) as an aware datetime; (None, False) if invalid."""
    try:
        local = datetime.strptime(value[:19], "%Y:%m:%d %H:%M:%S")  # noqa: DTZ007 - the zone is added below
    except ValueError:
        return None, False
    if subsec and subsec.isdigit():
        local = local.replace(microsecond=int(subsec[:6].ljust(6, "0")))
    if offset and len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        try:
            minutes = int(offset[1:3]) * 60 + int(offset[4:6])
        except ValueError:
            return local.replace(tzinfo=UTC), False
        sign = -1 if offset[0] == "-" else 1
        return local.replace(tzinfo=timezone(timedelta(minutes=sign * minutes))), True
    return local.replace(tzinfo=UTC), False


def remove_gps(handle: BinaryIO, base: int = 0) -> bool:
    """Remove the GPS directory of the TIFF structure at ``base`` in place; True if there was one.

    ``handle`` is open for reading and writing. Nothing changes length; a structure too damaged to
    edit safely raises ValueError (the caller refuses to store a copy it could not clean).
    """
    tiff = _Tiff(handle, base)
    entries = tiff.entries(tiff.ifd0)
    gps = [e for e in entries if e.tag == GPS_IFD]
    if not gps:
        return False
    # Read and check everything first, then write: a damaged structure raises before any byte changes.
    gps_offset = tiff.u32(gps[0].raw)
    gps_entries = tiff.entries(gps_offset)
    writes: list[tuple[int, bytes]] = []
    for entry in gps_entries:
        value_offset, data = tiff.value_bytes(entry)
        if value_offset is not None:
            writes.append((value_offset, bytes(len(data))))
    writes.append((gps_offset, bytes(2 + 12 * len(gps_entries) + 4)))
    kept = [e for e in entries if e.tag != GPS_IFD]
    next_ifd = tiff.read(tiff.ifd0 + 2 + 12 * len(entries), 4)
    table = bytearray(struct.pack(tiff.order + "H", len(kept)))
    for entry in kept:
        table += struct.pack(tiff.order + "HHI", entry.tag, entry.type, entry.count) + entry.raw
    table += next_ifd + bytes(12 * (len(entries) - len(kept)))
    writes.append((tiff.ifd0, bytes(table)))  # last: the GPS values may share bytes with nothing else
    for offset, data in writes:
        tiff.write(offset, data)
    return True
