"""Render one derivative (resize, crop or pad, encode) from an image file into a file, within limits.

Everything here blocks: callers run it in a worker thread (the endpoint bounds how many at once). The
output carries no metadata at all (EXIF, GPS, XMP, ICC are dropped; pixels are converted to sRGB
first, so colours stay right without a profile), and a transform past ``limits.timeout`` is stopped by
libvips' kill switch and reported as :class:`ImageTimeout`.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pyvips

from stowage.images import _vips
from stowage.images.decode import UNBOUNDED, damaged, thumbnail
from stowage.images.errors import ImageTimeout
from stowage.images.limits import ImageLimits
from stowage.images.params import TransformParams
from stowage.images.probe import Probe, probe

_WHITE = (255, 255, 255)
_SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "jpeg": {"optimize_coding": True, "interlace": False},
    "png": {"compression": 6},
    "webp": {"effort": 4},
    "avif": {"effort": 2, "compression": "av1"},  # effort 2: AVIF encoding is otherwise seconds per image
}


class Rendered(msgspec.Struct, frozen=True):
    """A derivative written to ``path``."""

    path: Path
    size: int
    width: int
    height: int
    media_type: str


def render(source: Path, params: TransformParams, limits: ImageLimits, target: Path) -> Rendered:
    """Write the derivative of ``source`` described by ``params`` to ``target`` (which gets the format's
    suffix appended). Raises the errors of :mod:`stowage.images.errors` for unusable input."""
    _vips.configure()
    started = time.monotonic()
    info = probe(source, limits)
    image = _shape(source, info, params)
    image = _to_srgb(image)
    if params.format == "jpeg" and image.hasalpha():
        image = image.flatten(background=list(_WHITE))
    out = target.with_name(target.name + "." + ("jpg" if params.format == "jpeg" else params.format))
    _watch_deadline(image, started, limits.timeout)
    try:
        image.write_to_file(str(out), Q=params.quality, keep="none", **_SAVE_OPTIONS[params.format])
    except pyvips.Error as exc:
        out.unlink(missing_ok=True)
        if "killed" in (exc.detail or ""):
            raise ImageTimeout(
                f"The image took longer than {limits.timeout:g} seconds to process.", retry_after=30
            ) from exc
        raise damaged(exc) from exc
    return Rendered(
        path=out, size=out.stat().st_size, width=image.width, height=image.height, media_type=params.media_type
    )


def _shape(source: Path, info: Probe, params: TransformParams) -> pyvips.Image:
    width = params.width or UNBOUNDED
    if params.fit == "cover" and params.height is not None:
        return thumbnail(source, info, width, params.height, crop=True)
    image = thumbnail(source, info, width, params.height, crop=False)
    if params.fit == "contain" and params.width is not None and params.height is not None:
        # Letterbox to exactly the box: transparent where the format keeps alpha, white for JPEG.
        box_w, box_h = params.width, params.height
        if params.format == "jpeg":
            image = _to_srgb(image)
            if image.hasalpha():
                image = image.flatten(background=list(_WHITE))
            background = list(_WHITE)[: image.bands]
        else:
            image = _to_srgb(image)
            if not image.hasalpha():
                image = image.addalpha()
            background = [0] * image.bands
        image = image.gravity("centre", box_w, box_h, extend="background", background=background)
    return image


def _to_srgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB (or 8-bit grey): what every output format and every client expects without a profile."""
    if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
        target = "b-w" if image.interpretation in ("b-w", "grey16") else "srgb"
        image = image.colourspace(target)
        if image.format != "uchar":
            image = image.cast("uchar")
    return image


def _watch_deadline(image: pyvips.Image, started: float, timeout: float) -> None:
    """Ask libvips to stop evaluating ``image`` once ``timeout`` seconds have passed since ``started``."""
    image.set_progress(True)

    def _on_eval(target: pyvips.Image, _progress: object) -> None:
        if time.monotonic() - started > timeout:
            target.set_kill(True)

    image.signal_connect("eval", _on_eval)
