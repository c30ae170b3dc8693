"""Images: decode within limits, transform to derivatives, facts and placeholders, GPS removal.

Pure: no database, no web framework, no blob store. Every function takes a local file path and blocks
(run it in a worker thread); the caller turns stored content into a path (``BlobStore.local_path`` for
local blobs, a temporary copy from ``open_read`` otherwise). Errors are protocol-neutral
(:mod:`stowage.images.errors`): unusable images are 422 over REST, a timeout 503.
"""

from __future__ import annotations

from stowage.images.errors import ImageDamaged, ImageTimeout, ImageTooLarge, NotAnImage
from stowage.images.exif import ExifFacts
from stowage.images.facts import ImageFacts, image_facts
from stowage.images.gps import strip_gps
from stowage.images.limits import ImageLimits, limits_from
from stowage.images.params import FITS, FORMATS, MEDIA_TYPES, TransformParams, negotiate_format, normalise, parse_key
from stowage.images.probe import Probe, probe
from stowage.images.transform import Rendered, render

__all__ = [
    "FITS",
    "FORMATS",
    "MEDIA_TYPES",
    "ExifFacts",
    "ImageDamaged",
    "ImageFacts",
    "ImageLimits",
    "ImageTimeout",
    "ImageTooLarge",
    "NotAnImage",
    "Probe",
    "Rendered",
    "TransformParams",
    "image_facts",
    "limits_from",
    "negotiate_format",
    "normalise",
    "parse_key",
    "probe",
    "render",
    "strip_gps",
]
