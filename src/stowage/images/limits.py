"""The abuse limits every decode and transform obeys, built once from the settings and passed down."""

from __future__ import annotations

import msgspec

from stowage.config import Settings


class ImageLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What the server agrees to decode and produce.

    ``max_input_pixels`` and ``max_input_bytes`` are checked against the file size and the image
    header *before* any pixel is decoded (a PNG declaring 50000x50000 is refused at once).
    ``max_output_dimension`` bounds each side of a derivative; ``allowed_sizes`` (when not empty) is the
    only set of widths and heights a transform may ask for, so nobody can fill the cache with arbitrary
    sizes; ``timeout`` bounds the wall time of one transform in seconds.
    """

    max_input_pixels: int = 100_000_000
    max_input_bytes: int = 100 * 1024 * 1024
    max_output_dimension: int = 4096
    allowed_sizes: tuple[int, ...] = ()
    timeout: float = 20.0


def limits_from(settings: Settings) -> ImageLimits:
    """The limits configured by the ``image_*`` settings."""
    return ImageLimits(
        max_input_pixels=settings.image_max_input_pixels,
        max_input_bytes=settings.image_max_input_bytes,
        max_output_dimension=settings.image_max_output_dimension,
        allowed_sizes=tuple(sorted(set(settings.image_allowed_sizes))),
        timeout=settings.image_transform_timeout,
    )
