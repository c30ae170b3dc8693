"""A copy of an image file with its GPS position removed, without re-encoding the picture.

The upload path calls this when the owner asked for GPS to be stripped from stored originals. The
EXIF block is found in the container (JPEG APP1 segments, the TIFF file itself, PNG ``eXIf`` chunks,
WebP ``EXIF`` chunks, and the ``Exif`` item of HEIC/AVIF, found by its signature) and edited in place
by :func:`stowage.images.exif.remove_gps`; XMP packets in a JPEG that mention GPS are blanked. The
copy streams (constant memory); only the small metadata blocks are edited.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from stowage.images.exif import remove_gps

_EXIF_SIGNATURE = b"Exif\x00\x00"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_XMP_SIGNATURE = b"http://ns.adobe.com/xap/1.0/\x00"
_SCAN_CHUNK = 1 << 20


def strip_gps(source: Path, target: Path) -> bool:
    """Write ``target`` as a copy of ``source`` without GPS metadata; True if any was removed.

    ValueError if a GPS block was found but could not be edited safely (the caller should then keep
    the upload out rather than store a position the owner asked to drop).
    """
    shutil.copyfile(source, target)
    with target.open("r+b") as handle:
        head = handle.read(12)
        if head[:2] == b"\xff\xd8":
            return _strip_jpeg(handle)
        if head[:4] in _TIFF_MAGICS:
            return remove_gps(handle, 0)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return _strip_png(handle)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _strip_riff(handle)
        return _strip_scanned(handle)


def _strip_scanned(handle: BinaryIO) -> bool:
    removed = False
    for base in list(_scan_exif(handle)):
        try:
            removed = remove_gps(handle, base) or removed
        except ValueError:
            continue  # the signature occurred by chance inside compressed data: not an EXIF block
    return removed


def _strip_jpeg(handle: BinaryIO) -> bool:
    removed = False
    for marker, start, length in _jpeg_segments(handle):
        if marker != 0xE1:
            continue
        handle.seek(start)
        payload = handle.read(length)
        if payload.startswith(_EXIF_SIGNATURE):
            removed = remove_gps(handle, start + len(_EXIF_SIGNATURE)) or removed
        elif payload.startswith(_XMP_SIGNATURE) and b"GPS" in payload:
            # An XMP packet with a position: blank it whole (spaces keep the segment's length).
            handle.seek(start)
            handle.write(b" " * length)
            removed = True
    return removed


def _jpeg_segments(handle: BinaryIO) -> Iterator[tuple[int, int, int]]:
    """(marker, payload offset, payload length) of each segment before the image data."""
    position = 2
    while True:
        handle.seek(position)
        header = handle.read(4)
        if len(header) < 4 or header[0] != 0xFF:
            return
        marker = header[1]
        if marker in {0xDA, 0xD9}:  # start of scan / end of image: no metadata after this
            return
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = struct.unpack(">H", header[2:4])[0]
        yield marker, position + 4, length - 2
        position += 2 + length


def _strip_png(handle: BinaryIO) -> bool:
    removed = False
    position = 8
    while True:
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            return removed
        length, kind = struct.unpack(">I4s", header)
        if kind == b"eXIf":
            chunk = io.BytesIO(handle.read(length))  # eXIf chunks are small: edit in memory, then the CRC
            if remove_gps(chunk, 0):
                data = chunk.getvalue()
                handle.seek(position + 8)
                handle.write(data)
                handle.write(struct.pack(">I", zlib.crc32(kind + data)))
                removed = True
        if kind == b"IEND":
            return removed
        position += 12 + length


def _strip_riff(handle: BinaryIO) -> bool:
    removed = False
    position = 12
    while True:
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            return removed
        kind, length = struct.unpack("<4sI", header)
        if kind == b"EXIF":
            handle.seek(position + 8)
            start = position + 8 + (len(_EXIF_SIGNATURE) if handle.read(6) == _EXIF_SIGNATURE else 0)
            removed = remove_gps(handle, start) or removed
        position += 8 + length + (length & 1)


def _scan_exif(handle: BinaryIO) -> Iterator[int]:
    """Offsets of TIFF structures introduced by the ``Exif\\0\\0`` signature (how HEIC and AVIF files
    store their EXIF item), read in bounded chunks with an overlap for matches across boundaries."""
    overlap = len(_EXIF_SIGNATURE) + 4
    offset = 0
    tail = b""
    found: list[int] = []
    handle.seek(0)
    while chunk := handle.read(_SCAN_CHUNK):
        window = tail + chunk
        window_start = offset - len(tail)
        at = window.find(_EXIF_SIGNATURE)
        while at != -1:
            magic = window[at + 6 : at + 10]
            if magic in _TIFF_MAGICS:
                base = window_start + at + 6
                if base not in found:
                    found.append(base)
            at = window.find(_EXIF_SIGNATURE, at + 1)
        offset += len(chunk)
        tail = window[-overlap:]
    yield from found
