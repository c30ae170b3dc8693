"""Transform parameters: validated, normalised to one canonical form, and the output format negotiation.

Two requests that mean the same derivative must produce the same cache key, so parameters are
normalised before anything else uses them: a missing quality becomes the format's default, ``fit`` is
dropped when only one side is given (it cannot matter), and ``auto`` is resolved from ``Accept`` before
the key is built (the response then varies on ``Accept``).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from stowage.errors import FieldError, InvalidInput
from stowage.images.limits import ImageLimits

Fit = Literal["cover", "contain", "inside"]
OutputFormat = Literal["jpeg", "png", "webp", "avif"]
RequestedFormat = Literal["jpeg", "png", "webp", "avif", "auto"]

FITS: tuple[Fit, ...] = ("cover", "contain", "inside")
FORMATS: tuple[RequestedFormat, ...] = ("jpeg", "png", "webp", "avif", "auto")
MEDIA_TYPES: dict[OutputFormat, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
}
# Defaults chosen for thumbnails: visually clean at small sizes, small files.
# Width and height when a request gives neither (a square grid tile, cropped).
DEFAULT_SIZE = 256
DEFAULT_QUALITY: dict[OutputFormat, int] = {"jpeg": 80, "png": 100, "webp": 80, "avif": 55}


class TransformParams(msgspec.Struct, frozen=True, kw_only=True):
    """One derivative, canonical: at least one side, a resolved format, and a quality (100 for PNG,
    which is lossless; the field is kept so the key format stays uniform)."""

    width: int | None
    height: int | None
    fit: Fit
    quality: int
    format: OutputFormat

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def key(self) -> str:
        """The canonical text of these parameters: part of the cache key and of what a presigned URL signs."""
        return f"w{self.width or 0}-h{self.height or 0}-{self.fit}-q{self.quality}-{self.format}"


def negotiate_format(accept: str | None, *, has_alpha: bool = False) -> OutputFormat:
    """The format for ``auto``: WebP when accepted (an order of magnitude cheaper to encode than AVIF
    for a similar size at thumbnail scale), else AVIF when accepted, else PNG for images with
    transparency and JPEG for the rest (every client shows both)."""
    accepted = _accepted_types(accept or "")
    if "image/webp" in accepted:
        return "webp"
    if "image/avif" in accepted:
        return "avif"
    return "png" if has_alpha else "jpeg"


def _accepted_types(accept: str) -> set[str]:
    types: set[str] = set()
    for item in accept.split(","):
        media, _, rest = item.partition(";")
        q = 1.0
        for param in rest.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            types.add(media.strip().lower())
    return types


def normalise(
    *,
    width: int | None,
    height: int | None,
    fit: str | None,
    quality: int | None,
    format: str | None,  # noqa: A002 - the public query parameter's name
    accept: str | None,
    limits: ImageLimits,
    has_alpha: bool = False,
) -> TransformParams:
    """Validate raw parameters against the limits and return their canonical form.

    Raises ``InvalidInput`` (400) naming every offending parameter; a size outside ``allowed_sizes``
    names the allowed sizes.
    """
    problems: list[FieldError] = []
    if width is None and height is None:
        width = height = DEFAULT_SIZE  # a bare thumbnail request: the grid tile size
    for name, value in (("w", width), ("h", height)):
        if value is None:
            continue
        if value < 1 or value > limits.max_output_dimension:
            problems.append(FieldError(f"query.{name}", f"must be between 1 and {limits.max_output_dimension}"))
        elif limits.allowed_sizes and value not in limits.allowed_sizes:
            allowed = ", ".join(str(size) for size in sorted(limits.allowed_sizes))
            problems.append(FieldError(f"query.{name}", f"must be one of the allowed sizes: {allowed}"))
    if fit is not None and fit not in FITS:
        problems.append(FieldError("query.fit", "must be one of " + ", ".join(FITS)))
    if format is not None and format not in FORMATS:
        problems.append(FieldError("query.format", "must be one of " + ", ".join(FORMATS)))
    if quality is not None and not 1 <= quality <= 100:
        problems.append(FieldError("query.q", "must be between 1 and 100"))
    if problems:
        detail = "; ".join(f"{p.field.removeprefix('query.')} {p.message}" for p in problems)
        extra = {"allowed_sizes": sorted(limits.allowed_sizes)} if limits.allowed_sizes else None
        raise InvalidInput(f"Invalid image parameters: {detail}.", errors=problems, extra=extra)
    resolved: OutputFormat = (
        negotiate_format(accept, has_alpha=has_alpha) if format is None or format == "auto" else format  # type: ignore[assignment]  # checked against FORMATS above
    )
    chosen_fit: Fit = fit if fit is not None else "cover"  # type: ignore[assignment]  # checked above
    if width is None or height is None:
        chosen_fit = "inside"  # one side given: the other follows the aspect ratio, fit cannot matter
    chosen_quality = DEFAULT_QUALITY[resolved] if resolved == "png" or quality is None else quality
    return TransformParams(width=width, height=height, fit=chosen_fit, quality=chosen_quality, format=resolved)


def parse_key(key: str) -> TransformParams:
    """The parameters of a canonical key (inverse of ``TransformParams.key``); ValueError if malformed."""
    try:
        w, h, fit, q, fmt = key.split("-")
        width = int(w.removeprefix("w")) or None
        height = int(h.removeprefix("h")) or None
        quality = int(q.removeprefix("q"))
    except ValueError as exc:
        raise ValueError(f"not a transform key: {key!r:.80}") from exc
    if fit not in FITS or fmt not in MEDIA_TYPES or not (w.startswith("w") and h.startswith("h") and q.startswith("q")):
        raise ValueError(f"not a transform key: {key!r:.80}")
    return TransformParams(width=width, height=height, fit=fit, quality=quality, format=fmt)
