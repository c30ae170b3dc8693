"""HTTP semantics for serving and accepting file bodies, as pure functions over header values.

Ranges and Content-Range (RFC 9110 §14), HTTP dates (§5.6.7), entity tags and conditional requests
(§8.8.3, §13), Content-Disposition with RFC 8187 encoded names (RFC 6266), and request digests
(RFC 9530 ``Content-Digest``, plus a plain SHA-256 header). Every download front end (REST, S3,
WebDAV, share links) decides ranges and preconditions here before the first byte is sent.

Policy choices, all allowed by RFC 9110:

- A ``Range`` we do not understand — another unit, a syntax error, or more than one range — is
  ignored and the whole representation is served with 200. We never build multipart/byteranges:
  clients that ask for several ranges accept a full response, and it avoids range amplification.
- Header values that are present but blank are treated as absent in ``Preconditions``; a blank
  ``If-Range`` validates nothing, so it disallows a partial response (the full body is always correct).
- Dates compare at one-second precision, since that is all an HTTP-date carries.

This module imports no web framework and does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote

import msgspec

from stowage.errors import FieldError, InvalidInput, RangeNotSatisfiable

_OWS = " \t"

# ---------------------------------------------------------------------------------------------- ranges

# A position longer than 19 digits cannot be a real offset; refusing it keeps int() cheap.
_MAX_DIGITS = 19
_RANGE_SPEC = re.compile(rf"([0-9]{{1,{_MAX_DIGITS}}})-([0-9]{{1,{_MAX_DIGITS}}})?|-([0-9]{{1,{_MAX_DIGITS}}})")


class ByteRange(msgspec.Struct, frozen=True):
    """One satisfiable byte range. ``end`` is inclusive, as in ``Content-Range``."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range a ``Range`` header selects from a ``size``-byte representation.

    Returns ``None`` — serve the whole representation — when the header is absent, uses another
    unit, is syntactically invalid, or lists more than one range. Raises ``RangeNotSatisfiable``
    when it is a valid single range that selects nothing (start at or past the end, a zero-length
    suffix, or any range of an empty representation).
    """
    if header is None:
        return None
    unit, equals, range_set = header.strip(_OWS).partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    # range-set = 1#range-spec: OWS around the commas, and empty list elements are tolerated.
    specs = [spec for spec in (part.strip(_OWS) for part in range_set.split(",")) if spec]
    if len(specs) != 1:
        return None
    match = _RANGE_SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        length = int(suffix)
        if length == 0:
            raise RangeNotSatisfiable(
                f"The range {specs[0]!r} asks for the last 0 bytes, which selects nothing; "
                f"the representation is {size} bytes.",
                size=size,
            )
        if size == 0:
            raise _empty_representation(specs[0])
        return ByteRange(start=max(size - length, 0), end=size - 1)
    start = int(first)
    end = int(last) if last is not None else None
    if end is not None and end < start:
        return None  # last-pos < first-pos makes the range-spec invalid, so the header is ignored
    if size == 0:
        raise _empty_representation(specs[0])
    if start >= size:
        raise RangeNotSatisfiable(
            f"The range {specs[0]!r} starts at byte {start}, past the end of the {size}-byte representation "
            f"(the last byte is {size - 1}).",
            size=size,
        )
    return ByteRange(start=start, end=size - 1 if end is None else min(end, size - 1))


def _empty_representation(spec: str) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"The range {spec!r} cannot be served: the representation is empty (size 0 bytes).", size=0
    )


def content_range(r: ByteRange, size: int) -> str:
    """The ``Content-Range`` value of a 206 response: ``bytes 0-99/1000``."""
    return f"bytes {r.start}-{r.end}/{size}"


def unsatisfied_content_range(size: int) -> str:
    """The ``Content-Range`` value of a 416 response: ``bytes */1000``."""
    return f"bytes */{size}"


# ---------------------------------------------------------------------------------------------- dates

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY = "|".join(_DAYS)
_MONTH = "|".join(_MONTHS)
_TIME = r"([0-9]{2}:[0-9]{2}:[0-9]{2})"
# HTTP-date is case-sensitive (RFC 9110 §5.6.7); the names are matched exactly.
_IMF_FIXDATE = re.compile(rf"(?:{_DAY}), ([0-9]{{2}}) ({_MONTH}) ([0-9]{{4}}) {_TIME} GMT")
_RFC850_DATE = re.compile(rf"(?:{'|'.join(_LONG_DAYS)}), ([0-9]{{2}})-({_MONTH})-([0-9]{{2}}) {_TIME} GMT")
_ASCTIME_DATE = re.compile(rf"(?:{_DAY}) ({_MONTH}) ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})")


@functools.lru_cache(maxsize=4096)
def http_date(dt: datetime) -> str:
    """``dt`` as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), independent of the locale."""
    if dt.utcoffset() is None:
        raise ValueError("http_date needs a timezone-aware datetime")
    u = dt.astimezone(UTC)
    return (
        f"{_DAYS[u.weekday()]}, {u.day:02d} {_MONTHS[u.month - 1]} {u.year:04d} "
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d} GMT"
    )


def parse_http_date(value: str) -> datetime | None:
    """An aware UTC datetime from an IMF-fixdate, RFC 850 or asctime date; ``None`` if invalid."""
    value = value.strip(_OWS)
    if match := _IMF_FIXDATE.fullmatch(value):
        day, month, year, clock = match.groups()
        return _build_date(int(year), month, day, clock)
    if match := _RFC850_DATE.fullmatch(value):
        day, month, two_digit_year, clock = match.groups()
        year = _expand_two_digit_year(int(two_digit_year), datetime.now(UTC).year)
        return _build_date(year, month, day, clock)
    if match := _ASCTIME_DATE.fullmatch(value):
        month, day, clock, year = match.groups()
        return _build_date(int(year), month, day, clock)
    return None


def _expand_two_digit_year(two_digit_year: int, current_year: int) -> int:
    """RFC 9110 §5.6.7: a year more than 50 years in the future means the most recent past one."""
    year = current_year - current_year % 100 + two_digit_year
    if year > current_year + 50:
        return year - 100
    if year + 100 <= current_year + 50:
        return year + 100  # late in a century, a small year may belong to the next one
    return year


def _build_date(year: int, month: str, day: str, clock: str) -> datetime | None:
    hour, minute, second = (int(part) for part in clock.split(":"))
    try:
        return datetime(
            year,
            _MONTHS.index(month) + 1,
            int(day),
            hour,
            minute,
            min(second, 59),  # the grammar allows a leap second (60); datetime does not
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _to_second(dt: datetime) -> datetime:
    """``dt`` at HTTP-date precision; a naive datetime is taken to be UTC."""
    if dt.utcoffset() is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.replace(microsecond=0)


# ---------------------------------------------------------------------------------------------- entity tags


class EntityTag(msgspec.Struct, frozen=True):
    """A parsed entity-tag: ``opaque`` is the text between the quotes."""

    opaque: str
    weak: bool = False


def _is_etagc(text: str) -> bool:
    # etagc = %x21 / %x23-7E / obs-text: visible characters except DQUOTE (commas included).
    return all(char == "!" or "#" <= char <= "~" or char >= "\x80" for char in text)


def _skip_element(value: str, index: int) -> int:
    """The index of the comma that ends the list element at ``index`` (quotes may hide commas)."""
    in_quotes = False
    while index < len(value):
        char = value[index]
        if char == '"':
            in_quotes = not in_quotes
        elif char == "," and not in_quotes:
            return index
        index += 1
    return index


def parse_entity_tags(value: str) -> list[EntityTag]:
    """The entity-tags of a ``#entity-tag`` list (If-Match, If-None-Match), in order.

    Commas inside quotes belong to the tag. Malformed elements (unquoted, unterminated, with
    invalid characters) are dropped: they cannot match anything, which is the safe reading for
    both If-Match (fails) and If-None-Match (proceeds). ``*`` is not an entity-tag; callers test it.
    """
    tags: list[EntityTag] = []
    index, end = 0, len(value)
    while index < end:
        while index < end and value[index] in " \t,":
            index += 1
        if index == end:
            break
        weak = value.startswith('W/"', index)
        opening = index + 2 if weak else index
        if value.startswith('"', opening):
            closing = value.find('"', opening + 1)
            if closing != -1:
                after = closing + 1
                while after < end and value[after] in _OWS:
                    after += 1
                opaque = value[opening + 1 : closing]
                if (after == end or value[after] == ",") and _is_etagc(opaque):
                    tags.append(EntityTag(opaque=opaque, weak=weak))
                    index = after
                    continue
        index = _skip_element(value, index)
    return tags


def parse_if_match(value: str | None) -> frozenset[str] | Literal["*"] | None:
    """An ``If-Match`` header as the condition a write checks: the quoted strong entity-tags the current
    representation must have, ``"*"`` (it must exist), or None when the header is absent.

    If-Match compares strongly (RFC 9110 §13.1.1), so weak tags are left out: they can never match."""
    if value is None:
        return None
    if "*" in (element.strip() for element in value.split(",")):
        return "*"
    return frozenset(f'"{tag.opaque}"' for tag in parse_entity_tags(value) if not tag.weak)


def _own_etag(etag: str) -> EntityTag:
    tags = parse_entity_tags(etag)
    if len(tags) != 1:
        raise ValueError(f"not a single entity-tag: {etag!r}")
    return tags[0]


def _strong_match(a: EntityTag, b: EntityTag) -> bool:
    return not a.weak and not b.weak and a.opaque == b.opaque


def _weak_match(a: EntityTag, b: EntityTag) -> bool:
    return a.opaque == b.opaque


# ---------------------------------------------------------------------------------------------- preconditions


class Preconditions(msgspec.Struct, frozen=True):
    """The conditional request header values, as received (``None`` when absent)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None
    if_range: str | None = None


Outcome = Literal["proceed", "not_modified", "precondition_failed"]


def _present(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip(_OWS) or None


def _list_matches(field: str, current: EntityTag | None, *, strong: bool) -> bool:
    if field == "*":
        return current is not None  # "*" matches any current representation
    if current is None:
        return False
    match = _strong_match if strong else _weak_match
    return any(match(tag, current) for tag in parse_entity_tags(field))


def evaluate_preconditions(
    method: str, p: Preconditions, *, etag: str | None, last_modified: datetime | None
) -> Outcome:
    """RFC 9110 §13.2.2: what the conditional headers say about this request.

    ``etag`` is the selected representation's current ETag, or ``None`` when the resource does not
    exist; ``last_modified`` is ``None`` when it has no modification date (date conditions are then
    ignored). The ``If-Range`` step belongs to range handling: see ``if_range_allows_partial``.
    """
    if p.if_match is None and p.if_none_match is None and p.if_unmodified_since is None and p.if_modified_since is None:
        return "proceed"  # the common case: an unconditional request
    current = _own_etag(etag) if etag is not None else None
    safe = method in {"GET", "HEAD"}
    modified = _to_second(last_modified) if last_modified is not None else None

    if (if_match := _present(p.if_match)) is not None:
        if not _list_matches(if_match, current, strong=True):
            return "precondition_failed"
    elif (if_unmodified_since := _present(p.if_unmodified_since)) is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and modified is not None and modified > date:
            return "precondition_failed"

    if (if_none_match := _present(p.if_none_match)) is not None:
        if _list_matches(if_none_match, current, strong=False):
            return "not_modified" if safe else "precondition_failed"
    elif safe and (if_modified_since := _present(p.if_modified_since)) is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and modified is not None and modified <= date:
            return "not_modified"

    return "proceed"


def if_range_allows_partial(if_range: str | None, *, etag: str | None, last_modified: datetime | None) -> bool:
    """Whether a ``Range`` may be honoured given ``If-Range`` (RFC 9110 §13.1.5).

    True when the header is absent, names the current strong ETag, or carries an HTTP-date equal
    (to the second) to ``last_modified``. Weak tags, lists, other values and blanks never match.
    """
    if if_range is None:
        return True
    value = if_range.strip(_OWS)
    if value.startswith(('"', 'W/"')):
        tags = parse_entity_tags(value)
        return len(tags) == 1 and etag is not None and _strong_match(tags[0], _own_etag(etag))
    date = parse_http_date(value)
    return date is not None and last_modified is not None and _to_second(last_modified) == date


# ---------------------------------------------------------------------------------------------- Content-Disposition

# RFC 8187 attr-char beyond the letters, digits and "-._~" that quote() always leaves alone.
_ATTR_CHAR_EXTRA = "!#$&+^`|"


def _fallback_char(char: str) -> str:
    # Printable ASCII survives, except the quote and backslash (quoted-string escapes, which some
    # user agents mishandle) and "%" (some user agents percent-decode the plain filename).
    return char if " " <= char <= "~" and char not in '"\\%' else "_"


@functools.lru_cache(maxsize=4096)
def content_disposition(filename: str, *, inline: bool) -> str:
    """A ``Content-Disposition`` value naming ``filename`` (RFC 6266, RFC 8187).

    ``filename`` is an ASCII-only fallback; ``filename*`` carries the exact UTF-8 name and is added
    only when the fallback had to change something. The result never contains CR, LF or NUL.
    """
    disposition = "inline" if inline else "attachment"
    if not filename:
        return disposition
    fallback = "".join(_fallback_char(char) for char in filename)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        encoded = quote(filename, safe=_ATTR_CHAR_EXTRA, encoding="utf-8", errors="replace")
        value += f"; filename*=UTF-8''{encoded}"
    return value


# ---------------------------------------------------------------------------------------------- digests

_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
# A structured-field bare item (RFC 8941 §3.3), used only to step over parameters we ignore.
_SF_BARE_ITEM = re.compile(
    r'-?[0-9]{1,15}(?:\.[0-9]{1,3})?|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
    r"|:[A-Za-z0-9+/=]*:|\?[01]|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*"
)
_DIGEST_LENGTHS = {"sha-256": 32, "sha-512": 64}


def _bad_content_digest(reason: str) -> InvalidInput:
    return InvalidInput(
        f"The Content-Digest header is malformed: {reason}. Send it as sha-256=:<base64 of the digest>:.",
        errors=[FieldError(field="header.content-digest", message=reason)],
    )


def _b64decode(text: str) -> bytes | None:
    """Standard base64, padding optional; ``None`` when invalid."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_content_digest(header: str | None) -> dict[str, bytes]:
    """The digests of an RFC 9530 ``Content-Digest`` field: ``{"sha-256": <32 raw bytes>, ...}``.

    The field is a structured-field dictionary whose values are byte sequences; member parameters
    are accepted and ignored, and unknown algorithms are kept for the caller to ignore. Known
    algorithms must have their digest length. Anything else raises ``InvalidInput``.
    """
    if header is None:
        return {}
    text = header.strip(_OWS)
    digests: dict[str, bytes] = {}
    index, end = 0, len(text)
    while index < end:
        key_match = _SF_KEY.match(text, index)
        if key_match is None:
            raise _bad_content_digest(f"expected a lowercase algorithm name at position {index}")
        key = key_match.group()
        index = key_match.end()
        if not text.startswith("=:", index):
            raise _bad_content_digest(f"{key} must have a byte-sequence value, {key}=:<base64>:")
        closing = text.find(":", index + 2)
        if closing == -1:
            raise _bad_content_digest(f"the value of {key} has no closing colon")
        digest = _b64decode(text[index + 2 : closing])
        if digest is None:
            raise _bad_content_digest(f"the value of {key} is not valid base64")
        expected = _DIGEST_LENGTHS.get(key)
        if expected is not None and len(digest) != expected:
            raise _bad_content_digest(f"a {key} digest is {expected} bytes, not {len(digest)}")
        digests[key] = digest  # a repeated key overrides the earlier one (RFC 8941 §4.2.2)
        index = _skip_parameters(text, closing + 1)
        while index < end and text[index] in _OWS:
            index += 1
        if index == end:
            break
        if text[index] != ",":
            raise _bad_content_digest(f"expected a comma between members at position {index}")
        index += 1
        while index < end and text[index] in _OWS:
            index += 1
        if index == end:
            raise _bad_content_digest("a trailing comma ends the list")
    return digests


def _skip_parameters(text: str, index: int) -> int:
    while text.startswith(";", index):
        index += 1
        while text.startswith(" ", index):
            index += 1
        key = _SF_KEY.match(text, index)
        if key is None:
            raise _bad_content_digest(f"expected a parameter name at position {index}")
        index = key.end()
        if text.startswith("=", index):
            item = _SF_BARE_ITEM.match(text, index + 1)
            if item is None:
                raise _bad_content_digest(f"the parameter {key.group()} has an invalid value")
            index = item.end()
    return index


def parse_sha256_header(value: str | None, *, header: str = "X-Content-SHA256") -> bytes | None:
    """The raw 32-byte SHA-256 a client declared: 64 hex characters, or base64 (either alphabet,
    padding optional). ``None`` when absent; anything else raises ``InvalidInput`` naming ``header``.
    """
    if value is None:
        return None
    text = value.strip(_OWS)
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    if re.fullmatch(r"[A-Za-z0-9+/_-]{43}=?", text):  # 43 base64 characters are exactly 32 bytes
        return base64.b64decode(text.rstrip("=").translate(str.maketrans("-_", "+/")) + "=")
    message = "expected a SHA-256 digest as 64 hex characters or base64 of 32 bytes"
    raise InvalidInput(
        f"The {header} header is malformed: {message}.",
        errors=[FieldError(field=f"header.{header.lower()}", message=message)],
    )
