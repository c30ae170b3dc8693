"""libvips set-up, done once per process before the first image is touched.

Untrusted loaders (ImageMagick, PDF, SVG, Matlab… whatever the wheel carries) are blocked, the
operation cache is kept small (it would otherwise hold decoded images of files we will not see again),
and only the loaders of the formats Stowage promises are accepted by :func:`loader_allowed`.
"""

from __future__ import annotations

import threading

import pyvips

_ALLOWED_LOADERS = ("jpegload", "pngload", "webpload", "gifload", "tiffload", "heifload")
_lock = threading.Lock()
_ready = False


def configure() -> None:
    """Idempotent process-wide libvips settings (thread-safe)."""
    global _ready  # noqa: PLW0603 - a once-per-process switch
    if _ready:
        return
    with _lock:
        if not _ready:
            pyvips.block_untrusted_set(True)
            pyvips.cache_set_max(0)
            pyvips.cache_set_max_mem(0)
            _ready = True


def loader_allowed(loader: str) -> bool:
    """True for the loaders of JPEG, PNG, WebP, GIF, TIFF and HEIF/AVIF (any of their file/source variants)."""
    return loader.startswith(_ALLOWED_LOADERS)
