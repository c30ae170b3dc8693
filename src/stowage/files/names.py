"""Names and paths of files and folders: one rule set for every protocol.

A name is UTF-8, NFC-normalised, 1-255 bytes, contains no "/" and no NUL (nor other C0 control
characters, which no file manager can display and which break headers and logs), and is not "." or
"..". Paths are "/"-separated names; an empty path or "/" is the user's root folder.
"""

from __future__ import annotations

import re
import unicodedata

from stowage.errors import FieldError, InvalidInput

MAX_NAME_BYTES = 255
MAX_PATH_DEPTH = 64
_FORBIDDEN = {"/", "\x00"}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalise_name(raw: str, *, field: str = "body.name") -> str:
    """Return the NFC form of ``raw`` or raise InvalidInput saying exactly what is wrong.

    Every path a request names goes through here, once per component: the checks are cheap ones."""
    name = unicodedata.normalize("NFC", raw)
    problem = None
    if name == "":
        problem = "a name cannot be empty"
    elif name in {".", ".."}:
        problem = "'.' and '..' are reserved"
    elif "/" in name:
        problem = "a name cannot contain '/'"
    elif _CONTROL.search(name) is not None:
        problem = "a name cannot contain control characters (NUL, newline, tab…)"
    elif len(name) * 4 > MAX_NAME_BYTES and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"a name is at most {MAX_NAME_BYTES} bytes in UTF-8"
    elif name[0] == " " and name.strip(" ") == "":
        problem = "a name cannot be only spaces"
    if problem is not None:
        raise InvalidInput(f"Invalid name {raw!r}: {problem}.", errors=[FieldError(field=field, message=problem)])
    return name


def split_path(raw: str, *, field: str = "path") -> list[str]:
    """``/Photos/2026/beach.jpg`` → ``["Photos", "2026", "beach.jpg"]`` (each part normalised).

    Leading, trailing and doubled slashes are tolerated; ``.`` and ``..`` are refused, never resolved.
    """
    parts = [p for p in raw.split("/") if p != ""]
    if len(parts) > MAX_PATH_DEPTH:
        raise InvalidInput(
            f"The path is deeper than {MAX_PATH_DEPTH} levels.",
            errors=[FieldError(field=field, message="too many levels")],
        )
    return [normalise_name(p, field=field) for p in parts]


def with_suffix_number(name: str, number: int) -> str:
    """``beach.jpg`` → ``beach (2).jpg``; used by the "rename" conflict policy.

    A name too long for the suffix loses characters from its stem, never its extension.
    """
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, extension = name, ""
    suffix = f" ({number})" + (f".{extension}" if extension else "")
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    while len(stem.encode("utf-8")) > budget:
        stem = stem[:-1]
    return stem + suffix
