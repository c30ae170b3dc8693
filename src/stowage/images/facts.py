"""The facts a photo grid needs about an image, computed once per content (the caller stores them).

Dimensions come from the header (as displayed, orientation applied), the capture time from EXIF, and
the BlurHash from a 32-pixel decode that libvips shrinks while loading, so even a 50-megapixel JPEG
costs a few milliseconds here. Blocking: call from a worker thread.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import msgspec
import pyvips

from stowage.images import blurhash
from stowage.images.decode import thumbnail
from stowage.images.errors import ImageDamaged
from stowage.images.limits import ImageLimits
from stowage.images.probe import probe
from stowage.images.transform import _to_srgb

PLACEHOLDER_SIDE = 32


class ImageFacts(msgspec.Struct, frozen=True, kw_only=True):
    """``taken_at`` is EXIF DateTimeOriginal (aware: with the recorded offset, or marked UTC when the
    camera recorded none — ``taken_at_offset_known`` says which); ``blurhash`` is None only when the
    placeholder could not be computed."""

    width: int
    height: int
    taken_at: datetime | None
    taken_at_offset_known: bool
    blurhash: str | None
    has_alpha: bool
    pages: int


def image_facts(path: Path, limits: ImageLimits) -> ImageFacts:
    """Facts of the image at ``path``; raises the errors of :mod:`stowage.images.errors` for unusable input."""
    info = probe(path, limits)
    tiny = thumbnail(path, info, PLACEHOLDER_SIDE, PLACEHOLDER_SIDE, crop=False)
    try:
        tiny = _to_srgb(tiny)
        if tiny.hasalpha():
            tiny = tiny.flatten(background=[255, 255, 255])
        if tiny.bands == 1:
            tiny = tiny.bandjoin([tiny, tiny])
        rgb = tiny.extract_band(0, n=3).write_to_memory()
    except pyvips.Error as exc:
        raise ImageDamaged("The image cannot be decoded; the file may be truncated or corrupt.") from exc
    x_components, y_components = (4, 3) if tiny.width >= tiny.height else (3, 4)
    return ImageFacts(
        width=info.width,
        height=info.height,
        taken_at=info.exif.taken_at,
        taken_at_offset_known=info.exif.taken_at_offset_known,
        blurhash=blurhash.encode(rgb, tiny.width, tiny.height, x_components, y_components),
        has_alpha=info.has_alpha,
        pages=info.pages,
    )
