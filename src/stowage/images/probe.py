"""What an image file is, read from its header alone, with the size limits applied before decoding.

Every decode starts here: the file size and the pixel count declared in the header are checked against
:class:`ImageLimits` first, so a decompression bomb (a small PNG declaring 50000x50000) is refused with
a clear :class:`ImageTooLarge` and never allocates its pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import pyvips

from stowage.images import _vips
from stowage.images.errors import ImageDamaged, ImageTooLarge, NotAnImage
from stowage.images.exif import ExifFacts, read_facts
from stowage.images.limits import ImageLimits

_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


class Probe(msgspec.Struct, frozen=True, kw_only=True):
    """The header facts of an image. ``width``/``height`` are as displayed (EXIF orientation applied);
    ``hevc`` marks a HEIC whose pixels libvips cannot decode (pillow-heif does)."""

    loader: str
    width: int
    height: int
    pages: int
    has_alpha: bool
    exif: ExifFacts
    hevc: bool


def probe(path: Path, limits: ImageLimits) -> Probe:
    """Read the header of ``path`` and enforce the input limits. Blocking: call from a worker thread."""
    _vips.configure()
    size = path.stat().st_size
    if size > limits.max_input_bytes:
        raise ImageTooLarge(
            f"The image is {size} bytes; the server processes images up to {limits.max_input_bytes} bytes.",
            extra={"max_input_bytes": limits.max_input_bytes},
        )
    try:
        header = pyvips.Image.new_from_file(str(path), access="sequential")
        loader = str(header.get("vips-loader"))
    except pyvips.Error as exc:
        if "not a known file format" in (exc.detail or ""):
            raise NotAnImage("The file is not in an image format the server reads.") from exc
        raise ImageDamaged("The image header cannot be read; the file may be truncated or corrupt.") from exc
    if not _vips.loader_allowed(loader):
        raise NotAnImage("The file is not a JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIC image.")
    fields = set(header.get_fields())
    exif = _exif_of(header, fields)
    width, height = int(header.width), int(header.height)
    pixels = width * height
    if pixels > limits.max_input_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} ({pixels} pixels); the server processes images up to "
            f"{limits.max_input_pixels} pixels.",
            extra={"max_input_pixels": limits.max_input_pixels},
        )
    hevc = loader.startswith("heifload") and "heif-compression" in fields and header.get("heif-compression") == "hevc"
    if exif.orientation in _SWAPPING_ORIENTATIONS and not loader.startswith("heifload"):
        width, height = height, width  # libheif applies rotations itself; EXIF orientation is for the rest
    return Probe(
        loader=loader,
        width=width,
        height=height,
        pages=int(header.get("n-pages")) if "n-pages" in fields else 1,
        has_alpha=bool(header.hasalpha()),
        exif=exif,
        hevc=hevc,
    )


def _exif_of(header: pyvips.Image, fields: set[str]) -> ExifFacts:
    if "exif-data" not in fields:
        return ExifFacts()
    data = bytes(header.get("exif-data"))
    base = 6 if data.startswith(b"Exif\x00\x00") else 0
    return read_facts(io.BytesIO(data), base)
