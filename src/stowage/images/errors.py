"""Why an image could not be used: protocol-neutral errors every front end maps once.

A file that is not an image, is damaged, or is too big to decode safely is a property of the content
(422 over REST: the request was fine, the file cannot be processed); a transform that runs out of time
is a property of the server's load and limits (503 with ``Retry-After``).
"""

from __future__ import annotations

from stowage.errors import ServiceUnavailable, UnprocessableContent


class NotAnImage(UnprocessableContent):
    """The bytes are not in any image format the server decodes (a text file renamed ``.jpg``)."""

    code = "not-an-image"
    title = "The file is not an image the server can read"


class ImageDamaged(UnprocessableContent):
    """The bytes start like an image but do not decode (a truncated upload, a corrupt stream)."""

    code = "image-damaged"
    title = "The image is damaged"


class ImageTooLarge(UnprocessableContent):
    """The image is larger than the server decodes (too many pixels or bytes): refused from its header,
    before any pixel is decoded, so a decompression bomb costs nothing."""

    code = "image-too-large"
    title = "The image is too large to process"


class ImageTimeout(ServiceUnavailable):
    """The transform took longer than ``image_transform_timeout`` and was stopped."""

    code = "image-timeout"
    title = "The image took too long to process"
