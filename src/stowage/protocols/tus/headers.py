"""tus 1.0 header syntax: parsing what clients send, formatting what the server answers.

Pure functions on strings (no framework, no service): each parser returns a value or raises
``InvalidInput`` naming the header, so the front end can answer 400 with what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from stowage.errors import FieldError, InvalidInput
from stowage.files.schemas import ConflictPolicy
from stowage.uploads.schemas import UploadTarget

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
# Upload-Length and Upload-Offset: non-negative integers, at most 19 digits (fits a signed 64-bit column).
_INTEGER = re.compile(r"[0-9]{1,19}")
_METADATA_KEY = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
CONFLICT_POLICIES: tuple[ConflictPolicy, ...] = ("fail", "replace", "rename")
# The Upload-Metadata keys Stowage reads (others are kept and echoed, not interpreted); Uppy sends both
# ``filename``/``filetype`` and ``name``/``type``.
NAME_KEYS = ("filename", "name")
TYPE_KEYS = ("filetype", "type", "contentType")


def _invalid(header: str, message: str, detail: str) -> InvalidInput:
    return InvalidInput(detail, errors=[FieldError(field=f"header.{header.lower()}", message=message)])


def parse_integer(header: str, value: str) -> int:
    """A non-negative integer header (Upload-Length, Upload-Offset)."""
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise _invalid(
            header, "not a non-negative integer", f"{header} must be a non-negative integer, not {value!r:.40}."
        )
    return int(text)


def parse_metadata(value: str) -> dict[str, bytes]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value may be empty); keys are
    unique and contain no spaces or commas."""
    pairs: dict[str, bytes] = {}
    for item in value.split(","):
        text = item.strip()
        if not text:
            continue
        key, _, encoded = text.partition(" ")
        encoded = encoded.strip()
        if not _METADATA_KEY.fullmatch(key):
            raise _invalid("Upload-Metadata", "invalid key", f"Upload-Metadata key {key!r:.40} is not a valid token.")
        if key in pairs:
            raise _invalid("Upload-Metadata", "duplicate key", f"Upload-Metadata names {key!r} twice.")
        if not _BASE64.fullmatch(encoded):
            raise _invalid(
                "Upload-Metadata", "invalid base64", f"The value of {key!r} in Upload-Metadata is not base64."
            )
        try:
            pairs[key] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(
                "Upload-Metadata", "invalid base64", f"The value of {key!r} in Upload-Metadata is not base64."
            ) from None
    return pairs


def _text(metadata: Mapping[str, bytes], key: str) -> str:
    try:
        return metadata[key].decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(
            "Upload-Metadata", f"{key}: not UTF-8", f"The value of {key!r} in Upload-Metadata is not UTF-8."
        ) from None


def _first(metadata: Mapping[str, bytes], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in metadata:
            return _text(metadata, key) or None
    return None


def target_of(metadata: Mapping[str, bytes]) -> UploadTarget:
    """Where the finished file goes, from the metadata keys Stowage reads: ``filename`` (or ``name``),
    ``filetype`` (or ``type``), ``folder`` (a folder id) or ``path`` (a folder path), ``on_conflict``."""
    on_conflict = _first(metadata, ("on_conflict",))
    if on_conflict is not None and on_conflict not in CONFLICT_POLICIES:
        raise _invalid(
            "Upload-Metadata",
            "on_conflict: fail, replace or rename",
            f"on_conflict in Upload-Metadata must be fail, replace or rename, not {on_conflict!r:.40}.",
        )
    return UploadTarget(
        name=_first(metadata, NAME_KEYS),
        media_type=_first(metadata, TYPE_KEYS),
        folder_id=_first(metadata, ("folder",)),
        folder_path=_first(metadata, ("path",)),
        on_conflict=on_conflict,
    )


def parse_concat(value: str, endpoint: str) -> tuple[str, tuple[str, ...]]:
    """``Upload-Concat``: ``partial``, or ``final;<url> <url> …`` (absolute URLs or paths of uploads at
    this endpoint). Returns the kind and, for a final upload, the upload ids in order."""
    text = value.strip()
    if text == "partial":
        return "partial", ()
    kind, _, urls = text.partition(";")
    if kind != "final" or not urls.strip():
        raise _invalid(
            "Upload-Concat", "partial or final;<urls>", "Upload-Concat must be 'partial' or 'final;<url> <url> ...'."
        )
    prefix = endpoint.rstrip("/") + "/"
    ids: list[str] = []
    for url in urls.split():
        path = urlsplit(url).path
        if not path.startswith(prefix) or "/" in path[len(prefix) :].strip("/"):
            raise _invalid(
                "Upload-Concat", "not an upload URL", f"{url!r:.80} in Upload-Concat is not an upload of this server."
            )
        ids.append(path[len(prefix) :].strip("/"))
    return "final", tuple(ids)


def parse_checksum(value: str) -> tuple[str, bytes]:
    """``Upload-Checksum: <algorithm> <base64 digest>``."""
    algorithm, _, encoded = value.strip().partition(" ")
    encoded = encoded.strip()
    if not algorithm or not encoded or not _BASE64.fullmatch(encoded):
        raise _invalid(
            "Upload-Checksum", "<algorithm> <base64>", "Upload-Checksum must be '<algorithm> <base64 digest>'."
        )
    try:
        return algorithm.lower(), base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("Upload-Checksum", "invalid base64", "The digest in Upload-Checksum is not base64.") from None
