"""Custom key/value metadata on files and folders: what a client may store and how patches apply.

Small on purpose: it travels with every listing. Keys are identifiers a program would choose
(``camera``, ``app:album-id``); values are strings. A patch is a JSON merge patch (RFC 7396) restricted
to one level: a string sets a key, ``null`` removes it, keys not mentioned stay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from stowage.errors import FieldError, InvalidInput

MAX_KEYS = 64
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 1024
MAX_ENCODED_BYTES = 8192
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


def apply_patch(current: Mapping[str, str] | None, patch: Mapping[str, str | None]) -> dict[str, str]:
    """The metadata after ``patch``; raises ``InvalidInput`` naming every bad entry (nothing applied)."""
    errors: list[FieldError] = []
    for key, value in patch.items():
        field = f"body.metadata.{key}"
        if not (1 <= len(key) <= MAX_KEY_LENGTH) or _KEY.match(key) is None:
            errors.append(
                FieldError(
                    field=field,
                    message=f"keys are 1-{MAX_KEY_LENGTH} letters, digits, '.', '_', ':' or '-', "
                    "starting with a letter or digit",
                )
            )
        elif value is not None and len(value) > MAX_VALUE_LENGTH:
            errors.append(FieldError(field=field, message=f"values are at most {MAX_VALUE_LENGTH} characters"))
        elif value is not None and any((ord(c) < 0x20 and c not in "\t\n\r") or c == "\x7f" for c in value):
            errors.append(FieldError(field=field, message="values cannot contain control characters"))
    if errors:
        raise InvalidInput("Some metadata entries are not allowed.", errors=errors)
    merged = dict(current or {})
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > MAX_KEYS:
        raise InvalidInput(
            f"A file or folder holds at most {MAX_KEYS} metadata entries; this would make {len(merged)}.",
            errors=[FieldError(field="body.metadata", message=f"at most {MAX_KEYS} entries")],
        )
    size = len(msgspec.json.encode(merged))
    if size > MAX_ENCODED_BYTES:
        raise InvalidInput(
            f"Metadata is limited to {MAX_ENCODED_BYTES} bytes of JSON; this would make {size}.",
            errors=[FieldError(field="body.metadata", message=f"at most {MAX_ENCODED_BYTES} bytes")],
        )
    return merged
