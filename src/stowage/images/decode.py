"""Pixels for a transform or a placeholder, decoded within the limits, shrinking on load where possible.

libvips decodes JPEG, PNG, WebP, GIF (first frame), TIFF and AVIF itself and shrinks while it loads (a
256 px thumbnail of a 12-megapixel JPEG decodes at 1/8 scale). HEIC (HEVC-coded HEIF, what iPhones
write) has no HEVC decoder in the libvips wheel, so pillow-heif decodes it; its size was checked from
the header first, so the decoded buffer is bounded by ``max_input_pixels``.
"""

from __future__ import annotations

from pathlib import Path

import pillow_heif
import pyvips

from stowage.images.errors import ImageDamaged
from stowage.images.probe import Probe

# libvips' "no limit" width, used when only a height constrains a thumbnail.
UNBOUNDED = 10_000_000


def thumbnail(path: Path, info: Probe, width: int, height: int | None, *, crop: bool) -> pyvips.Image:
    """A lazily evaluated thumbnail of at most ``width`` x ``height`` (never enlarged), orientation applied.

    Decoding errors surface when the result is evaluated (written); callers map them with ``damaged``.
    """
    # libvips takes a missing height as "same as width": pass "unbounded" so only the width constrains.
    options: dict[str, object] = {"size": "down", "crop": "centre" if crop else "none", "height": height or UNBOUNDED}
    if info.hevc:
        return decode_heif(path).thumbnail_image(width, **options)
    return pyvips.Image.thumbnail(str(path), width, fail_on="truncated", **options)


def decode_heif(path: Path) -> pyvips.Image:
    """Decode a HEIC with pillow-heif (transforms applied by libheif, 8 bits) into a libvips image."""
    try:
        heif = pillow_heif.open_heif(str(path), convert_hdr_to_8bit=True)
        width, height = heif.size
        bands = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}.get(heif.mode)
        data = heif.data  # decodes here; one buffer, handed to libvips without a copy when rows are packed
        if bands is None or heif.stride != width * bands:
            picture = heif.to_pillow()
            bands, data = len(picture.getbands()), picture.tobytes()
    except (ValueError, RuntimeError, OSError) as exc:
        raise ImageDamaged("The HEIC image cannot be decoded; the file may be truncated or corrupt.") from exc
    image = pyvips.Image.new_from_memory(data, width, height, bands, "uchar")
    return image.copy(interpretation="srgb" if bands >= 3 else "b-w")


def damaged(exc: pyvips.Error) -> ImageDamaged:
    """The error for a decode that failed half-way (a truncated or corrupt file)."""
    return ImageDamaged("The image cannot be decoded; the file may be truncated or corrupt.")
