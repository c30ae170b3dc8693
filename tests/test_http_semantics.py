"""HTTP semantics helpers: ranges, dates, entity tags, preconditions, Content-Disposition, digests."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stowage.errors import InvalidInput, RangeNotSatisfiable
from stowage.files.schemas import etag_of
from stowage.http import semantics as http_semantics
from stowage.http.semantics import (
    ByteRange,
    EntityTag,
    Preconditions,
    content_disposition,
    content_range,
    evaluate_preconditions,
    http_date,
    if_range_allows_partial,
    parse_content_digest,
    parse_entity_tags,
    parse_http_date,
    parse_if_match,
    parse_range,
    parse_sha256_header,
    unsatisfied_content_range,
)

# ---------------------------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, ByteRange(0, 9)),
        ("bytes=0-0", 1, ByteRange(0, 0)),
        ("bytes=10-", 100, ByteRange(10, 99)),
        ("bytes=99-", 100, ByteRange(99, 99)),
        ("bytes=50-500", 100, ByteRange(50, 99)),  # end clamped to the last byte
        ("bytes=0-99999999999999999", 100, ByteRange(0, 99)),
        ("bytes=-10", 100, ByteRange(90, 99)),
        ("bytes=-100", 100, ByteRange(0, 99)),
        ("bytes=-1000", 100, ByteRange(0, 99)),  # suffix longer than the representation: all of it
        ("bytes=-1", 1, ByteRange(0, 0)),
        ("BYTES=1-2", 10, ByteRange(1, 2)),  # the unit is case-insensitive
        ("Bytes=1-2", 10, ByteRange(1, 2)),
        (" bytes=1-2\t", 10, ByteRange(1, 2)),  # OWS around the field value
        ("bytes= 1-2 ", 10, ByteRange(1, 2)),  # OWS around the list element
        ("bytes=1-2,", 10, ByteRange(1, 2)),  # empty list elements are tolerated
        ("bytes=, ,1-2", 10, ByteRange(1, 2)),
        ("bytes=0000000000000000001-2", 10, ByteRange(1, 2)),  # 19 digits is still fine
    ],
)
def test_parse_range_single_ranges(header: str, size: int, expected: ByteRange) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=-",
        "bytes=a-b",
        "bytes=1-a",
        "bytes=1 -2",  # no whitespace inside a range-spec
        "bytes=1- 2",
        "bytes =1-2",  # nor around the "="
        "bytes=5-4",  # last-pos before first-pos: invalid, so ignored
        "bytes=1-2-3",
        "bytes=--1",
        "bytes=+1-2",
        "bytes=-+1",
        "bytes=0x10-0x20",
        "bytes=1.5-2",
        "bytes=\u0661-\u0662",  # non-ASCII (Arabic-Indic) digits are not DIGIT
        "bytes=00000000000000000001-2",  # 20 digits
        "bytes=1-99999999999999999999",
        "bytes=-99999999999999999999",
        "bytes=" + "9" * 10_000 + "-",  # huge digit strings are refused without converting them
        "items=0-9",  # unknown unit: ignored
        "none",
        "0-9",
        "bytes=0-1,5-6",  # several ranges: the whole representation is served instead
        "bytes=0-1, -5",
        "bytes=0-1,0-1",
        "bytes=100-200,0-1",  # even if one of them is unsatisfiable
        "bytes=0-1\r\n",  # CR/LF is not OWS
    ],
)
def test_parse_range_ignores_what_it_cannot_honour(header: str | None) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=1000-1001", 100),
        ("bytes=-0", 100),
        ("bytes=-0", 0),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-5", 0),
        ("bytes=5-10", 0),
    ],
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.size == size
    assert f"{size}" in caught.value.detail
    assert "byte" in caught.value.detail


def test_unsatisfiable_detail_names_size_and_position() -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range("bytes=500-", 100)
    assert caught.value.detail == (
        "The range '500-' starts at byte 500, past the end of the 100-byte representation (the last byte is 99)."
    )
    with pytest.raises(RangeNotSatisfiable, match="empty"):
        parse_range("bytes=0-", 0)
    with pytest.raises(RangeNotSatisfiable, match="last 0 bytes"):
        parse_range("bytes=-0", 10)


def test_content_range_and_length() -> None:
    r = ByteRange(0, 99)
    assert content_range(r, 1000) == "bytes 0-99/1000"
    assert r.length == 100
    assert content_range(ByteRange(5, 5), 6) == "bytes 5-5/6"
    assert unsatisfied_content_range(1000) == "bytes */1000"


@settings(max_examples=300)
@given(size=st.integers(1, 2**62), data=st.data())
def test_parse_range_round_trips_any_valid_range(size: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, size - 1))
    assert parse_range(f"bytes={start}-{end}", size) == ByteRange(start, end)
    assert parse_range(f"bytes={start}-", size) == ByteRange(start, size - 1)


@given(size=st.integers(1, 10**12), suffix=st.integers(1, 10**13))
def test_suffix_range_is_the_last_n_bytes(size: int, suffix: int) -> None:
    r = parse_range(f"bytes=-{suffix}", size)
    assert r is not None
    assert r.end == size - 1
    assert r.length == min(suffix, size)


_RANGE_ALPHABET = st.sampled_from([*"0123456789-=, \t;abyteBYTES*+.\r\n\x00é", "bytes=", "bytes=-", "bytes=0-"])


@settings(max_examples=500)
@given(
    header=st.one_of(st.text(max_size=40), st.lists(_RANGE_ALPHABET, max_size=12).map("".join)),
    size=st.integers(0, 10**6),
)
def test_parse_range_on_garbage_returns_a_valid_range_none_or_416(header: str, size: int) -> None:
    try:
        r = parse_range(header, size)
    except RangeNotSatisfiable as error:
        refused_size: int | None = error.size
        r = None
    else:
        refused_size = None
    assert refused_size in {None, size}
    if r is not None:
        assert 0 <= r.start <= r.end <= size - 1


# ---------------------------------------------------------------------------------------------- dates

NOV_6 = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


def test_http_date_formats_imf_fixdate() -> None:
    assert http_date(NOV_6) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(NOV_6.replace(microsecond=999_999)) == "Sun, 06 Nov 1994 08:49:37 GMT"
    paris = timezone(timedelta(hours=1))
    assert http_date(datetime(1994, 11, 6, 9, 49, 37, tzinfo=paris)) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(datetime(2024, 2, 29, 0, 0, 0, tzinfo=UTC)) == "Thu, 29 Feb 2024 00:00:00 GMT"


def test_http_date_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        http_date(datetime(2024, 1, 1))  # noqa: DTZ001 - the naive datetime is the point of the test


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # ANSI C asctime()
        " Sun, 06 Nov 1994 08:49:37 GMT ",
    ],
)
def test_parse_http_date_accepts_the_three_formats(value: str) -> None:
    assert parse_http_date(value) == NOV_6


def test_parse_http_date_details() -> None:
    assert parse_http_date("Thu, 29 Feb 2024 23:59:60 GMT") == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    assert parse_http_date("Mon Nov 16 08:49:37 1994") == datetime(1994, 11, 16, 8, 49, 37, tzinfo=UTC)
    parsed = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "sun, 06 nov 1994 08:49:37 gmt",  # HTTP-date is case-sensitive
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:61:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",  # a list is not a date
        "Sun, 06-Nov-94 08:49:37 GMT",  # RFC 850 needs the long day name
        "Sun Nov 6 08:49:37 1994",  # asctime pads the day with a space
        "2024-01-01T00:00:00Z",
        "Sun, 06 Nov 1994 08:49:37 GMT\r\nX: y",
    ],
)
def test_parse_http_date_rejects_invalid(value: str) -> None:
    assert parse_http_date(value) is None


@pytest.mark.parametrize(
    ("two_digit", "current", "expected"),
    [
        (94, 2025, 1994),
        (25, 2025, 2025),
        (75, 2025, 2075),  # exactly 50 years ahead: still the future
        (76, 2025, 1976),  # 51 years ahead: the past century
        (0, 2099, 2100),
        (49, 2099, 2149),  # late in a century: exactly 50 years ahead is the next century
        (50, 2099, 2050),  # 2150 would be 51 years ahead
    ],
)
def test_rfc850_two_digit_year_is_never_more_than_50_years_ahead(two_digit: int, current: int, expected: int) -> None:
    assert http_semantics._expand_two_digit_year(two_digit, current) == expected


# Hypothesis takes naive bounds and attaches the zone itself.
_DATES = st.datetimes(datetime(1900, 1, 1), datetime(9999, 12, 31), timezones=st.just(UTC))  # noqa: DTZ001


@given(_DATES)
def test_http_date_round_trips_at_second_precision(dt: datetime) -> None:
    assert parse_http_date(http_date(dt)) == dt.replace(microsecond=0)


# ---------------------------------------------------------------------------------------------- entity tags

SHA = hashlib.sha256(b"hello").hexdigest()
ETAG = etag_of(SHA)
OTHER = etag_of(hashlib.sha256(b"other").hexdigest())


def test_etag_of_is_a_strong_quoted_digest() -> None:
    assert etag_of(SHA) == f'"{SHA}"'
    assert etag_of(SHA.upper()) == ETAG
    for bad in ("", "abc", SHA + "0", SHA[:-1] + "g", f'"{SHA[2:]}"'):
        with pytest.raises(ValueError, match="64 hex"):
            etag_of(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("*", "*"),
        (" * ", "*"),
        (f"{ETAG}, *", "*"),
        (ETAG, frozenset({ETAG})),
        (f"{ETAG} , {OTHER}", frozenset({ETAG, OTHER})),
        (f"W/{ETAG}", frozenset()),  # If-Match compares strongly: a weak tag can never match
        (f"W/{ETAG}, {OTHER}", frozenset({OTHER})),
        ("unquoted", frozenset()),
        ("", frozenset()),
    ],
)
def test_parse_if_match(value: str | None, expected: object) -> None:
    assert parse_if_match(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"abc"', [EntityTag("abc")]),
        ('W/"abc"', [EntityTag("abc", weak=True)]),
        ('""', [EntityTag("")]),
        ('"a", W/"b" ,"c"', [EntityTag("a"), EntityTag("b", weak=True), EntityTag("c")]),
        ('"a,b", "c"', [EntityTag("a,b"), EntityTag("c")]),  # commas inside quotes belong to the tag
        ('W/"x,y",W/","', [EntityTag("x,y", weak=True), EntityTag(",", weak=True)]),
        (', ,"a",, ', [EntityTag("a")]),  # empty list elements
        ('\t"a"\t,\t"b"\t', [EntityTag("a"), EntityTag("b")]),
        ('abc, "ok"', [EntityTag("ok")]),  # an unquoted tag is dropped
        ('"ok", w/"lower"', [EntityTag("ok")]),  # the weak prefix is case-sensitive
        ('"unterminated', []),
        ('"a" "b", "c"', [EntityTag("c")]),  # two tags without a comma: the element is malformed
        ('"a b", "c"', [EntityTag("c")]),  # a space is not an etagc
        ('"bad,"x", "c"', []),  # unbalanced quotes swallow the rest of the list
        ("*", []),
        ("", []),
        ('"café"', [EntityTag("café")]),  # obs-text is allowed
    ],
)
def test_parse_entity_tags(value: str, expected: list[EntityTag]) -> None:
    assert parse_entity_tags(value) == expected


# An unterminated tag after a separator: a parser that mistakes "no closing quote" for a tag can
# loop forever on these (appending tags as it goes), so they are parsed in a child process with 1 GiB
# of address space that is killed when it does not return.
_UNTERMINATED_AFTER_A_SEPARATOR = [
    (', "abc', []),
    (',W/"abc', []),
    ('\t,\t"abc', []),
    (',"', []),
    ('"ok", "abc', [EntityTag("ok")]),
    ('"ok",W/"abc', [EntityTag("ok")]),
    (' "abc', []),
]
_PARSE_IN_A_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))
from stowage.http.semantics import parse_entity_tags
print(json.dumps([[[tag.opaque, tag.weak] for tag in parse_entity_tags(value)] for value in json.load(sys.stdin)]))
"""


def test_an_unterminated_tag_after_a_separator_ends_the_parse() -> None:
    values = [value for value, _ in _UNTERMINATED_AFTER_A_SEPARATOR]
    try:
        child = subprocess.run(
            [sys.executable, "-c", _PARSE_IN_A_CHILD],
            input=json.dumps(values),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"parse_entity_tags did not return within 10 s for one of {values!r}")
    assert child.returncode == 0, f"parse_entity_tags failed for one of {values!r}:\n{child.stderr}"
    assert json.loads(child.stdout) == [
        [[tag.opaque, tag.weak] for tag in expected] for _, expected in _UNTERMINATED_AFTER_A_SEPARATOR
    ]


@given(st.lists(st.tuples(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)), st.booleans())))
def test_entity_tag_lists_round_trip(tags: list[tuple[str, bool]]) -> None:
    tags = [(opaque.replace('"', ""), weak) for opaque, weak in tags]
    header = " , ".join(f'{"W/" if weak else ""}"{opaque}"' for opaque, weak in tags)
    assert parse_entity_tags(header) == [EntityTag(opaque, weak) for opaque, weak in tags]


# ---------------------------------------------------------------------------------------------- preconditions

MODIFIED = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)  # sub-second part is below HTTP precision
AT = http_date(MODIFIED)
BEFORE = http_date(MODIFIED - timedelta(seconds=1))
AFTER = http_date(MODIFIED + timedelta(seconds=1))


def _evaluate(
    method: str = "GET", *, etag: str | None = ETAG, last_modified: datetime | None = MODIFIED, **headers: str
) -> str:
    return evaluate_preconditions(method, Preconditions(**headers), etag=etag, last_modified=last_modified)


def test_no_conditions_proceed() -> None:
    assert _evaluate() == "proceed"
    assert _evaluate("PUT", etag=None, last_modified=None) == "proceed"


@pytest.mark.parametrize(
    ("if_match", "etag", "expected"),
    [
        (ETAG, ETAG, "proceed"),
        (f"{OTHER}, {ETAG}", ETAG, "proceed"),
        (OTHER, ETAG, "precondition_failed"),
        (f"W/{ETAG}", ETAG, "precondition_failed"),  # If-Match uses the strong comparison
        (ETAG, f"W/{ETAG}", "precondition_failed"),
        ("*", ETAG, "proceed"),
        (" * ", ETAG, "proceed"),
        ("*", None, "precondition_failed"),  # the resource does not exist
        (ETAG, None, "precondition_failed"),
        ("garbage", ETAG, "precondition_failed"),
        ('"x,y"', '"x,y"', "proceed"),
        ('"x", "y"', '"x,y"', "precondition_failed"),
    ],
)
def test_if_match(if_match: str, etag: str | None, expected: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        assert _evaluate(method, etag=etag, if_match=if_match) == expected


def test_blank_headers_are_absent() -> None:
    assert _evaluate("PUT", if_match="", if_none_match=" ", if_unmodified_since="", if_modified_since="") == "proceed"


@pytest.mark.parametrize(
    ("if_unmodified_since", "last_modified", "expected"),
    [
        (AT, MODIFIED, "proceed"),  # equal at second precision
        (AFTER, MODIFIED, "proceed"),
        (BEFORE, MODIFIED, "precondition_failed"),
        ("not a date", MODIFIED, "proceed"),  # an invalid date is ignored
        (f"{AT}, {AT}", MODIFIED, "proceed"),  # so is a list
        (BEFORE, None, "proceed"),  # no modification date: ignored
    ],
)
def test_if_unmodified_since(if_unmodified_since: str, last_modified: datetime | None, expected: str) -> None:
    for method in ("GET", "PUT"):
        assert _evaluate(method, last_modified=last_modified, if_unmodified_since=if_unmodified_since) == expected


def test_if_match_takes_precedence_over_if_unmodified_since() -> None:
    assert _evaluate("PUT", if_match=ETAG, if_unmodified_since=BEFORE) == "proceed"
    assert _evaluate("PUT", if_match=OTHER, if_unmodified_since=AFTER) == "precondition_failed"


@pytest.mark.parametrize(
    ("if_none_match", "etag", "matched"),
    [
        (ETAG, ETAG, True),
        (f"W/{ETAG}", ETAG, True),  # If-None-Match uses the weak comparison
        (ETAG, f"W/{ETAG}", True),
        (f'{OTHER}, "x,y", {ETAG}', ETAG, True),
        (OTHER, ETAG, False),
        ("*", ETAG, True),
        ("*", None, False),  # nothing exists, so "*" does not match: create-only PUT proceeds
        (ETAG, None, False),
        ('"x,y"', '"x,y"', True),
        ('"x", "y"', '"x,y"', False),
        ("junk", ETAG, False),
    ],
)
def test_if_none_match(if_none_match: str, etag: str | None, matched: bool) -> None:
    for method in ("GET", "HEAD"):
        assert _evaluate(method, etag=etag, if_none_match=if_none_match) == ("not_modified" if matched else "proceed")
    for method in ("PUT", "POST", "DELETE", "get"):  # methods are case-sensitive
        expected = "precondition_failed" if matched else "proceed"
        assert _evaluate(method, etag=etag, if_none_match=if_none_match) == expected


@pytest.mark.parametrize(
    ("if_modified_since", "last_modified", "expected"),
    [
        (AT, MODIFIED, "not_modified"),
        (AFTER, MODIFIED, "not_modified"),
        (BEFORE, MODIFIED, "proceed"),
        ("Sunday, 06-Nov-94 08:49:37 GMT", MODIFIED, "proceed"),
        ("garbage", MODIFIED, "proceed"),
        (AT, None, "proceed"),
    ],
)
def test_if_modified_since(if_modified_since: str, last_modified: datetime | None, expected: str) -> None:
    for method in ("GET", "HEAD"):
        assert _evaluate(method, last_modified=last_modified, if_modified_since=if_modified_since) == expected
    # Only GET and HEAD look at If-Modified-Since.
    assert _evaluate("PUT", last_modified=last_modified, if_modified_since=if_modified_since) == "proceed"


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    assert _evaluate(if_none_match=OTHER, if_modified_since=AFTER) == "proceed"
    assert _evaluate(if_none_match=ETAG, if_modified_since=BEFORE) == "not_modified"


def test_failed_if_match_wins_over_if_none_match() -> None:
    assert _evaluate(if_match=OTHER, if_none_match=ETAG) == "precondition_failed"
    assert _evaluate(if_unmodified_since=BEFORE, if_modified_since=AFTER) == "precondition_failed"
    assert _evaluate(if_match=ETAG, if_none_match=ETAG) == "not_modified"
    assert _evaluate("PUT", if_match=ETAG, if_none_match="*") == "precondition_failed"


def test_naive_last_modified_is_taken_as_utc() -> None:
    naive = MODIFIED.replace(tzinfo=None)
    assert _evaluate(last_modified=naive, if_modified_since=AT) == "not_modified"
    assert _evaluate(last_modified=naive, if_unmodified_since=BEFORE) == "precondition_failed"


def test_a_malformed_own_etag_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="entity-tag"):
        _evaluate(etag="no-quotes", if_match="*")


# ---------------------------------------------------------------------------------------------- If-Range


@pytest.mark.parametrize(
    ("if_range", "etag", "last_modified", "allowed"),
    [
        (None, ETAG, MODIFIED, True),
        (None, None, None, True),
        (ETAG, ETAG, MODIFIED, True),
        (f" {ETAG} ", ETAG, MODIFIED, True),
        (OTHER, ETAG, MODIFIED, False),
        (f"W/{ETAG}", ETAG, MODIFIED, False),  # weak tags never validate a range
        (ETAG, f"W/{ETAG}", MODIFIED, False),
        (ETAG, None, MODIFIED, False),
        (f"{ETAG}, {ETAG}", ETAG, MODIFIED, False),  # a list is not an entity-tag
        (AT, ETAG, MODIFIED, True),  # equal to the second
        (AFTER, ETAG, MODIFIED, False),  # a date only validates on an exact match
        (BEFORE, ETAG, MODIFIED, False),
        (AT, ETAG, None, False),
        ("Sun Nov  6 08:49:37 1994", ETAG, NOV_6, True),
        ("garbage", ETAG, MODIFIED, False),
        ("", ETAG, MODIFIED, False),
        ("*", ETAG, MODIFIED, False),
    ],
)
def test_if_range(if_range: str | None, etag: str | None, last_modified: datetime | None, allowed: bool) -> None:
    assert if_range_allows_partial(if_range, etag=etag, last_modified=last_modified) is allowed


# ---------------------------------------------------------------------------------------------- Content-Disposition


@pytest.mark.parametrize(
    ("filename", "inline", "expected"),
    [
        ("report.pdf", False, 'attachment; filename="report.pdf"'),
        ("report.pdf", True, 'inline; filename="report.pdf"'),
        ("my file (1).txt", False, 'attachment; filename="my file (1).txt"'),
        ("", False, "attachment"),
        ("", True, "inline"),
        ("résumé.pdf", False, "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"),
        ("日本語.txt", True, "inline; filename=\"___.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt"),
        ('say "hi".txt', False, "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt"),
        ("back\\slash", False, "attachment; filename=\"back_slash\"; filename*=UTF-8''back%5Cslash"),
        ("100%.txt", False, "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt"),
        (
            "evil\r\nSet-Cookie: x=1",
            False,
            "attachment; filename=\"evil__Set-Cookie: x=1\"; filename*=UTF-8''evil%0D%0ASet-Cookie%3A%20x%3D1",
        ),
        ("nul\x00.txt", False, "attachment; filename=\"nul_.txt\"; filename*=UTF-8''nul%00.txt"),
        ("tab\t.txt", False, "attachment; filename=\"tab_.txt\"; filename*=UTF-8''tab%09.txt"),
        ("del\x7f", False, "attachment; filename=\"del_\"; filename*=UTF-8''del%7F"),
        ("a!#$&+^`|~-._b", False, 'attachment; filename="a!#$&+^`|~-._b"'),
        ("a!#$&+^`|~-._é", False, "attachment; filename=\"a!#$&+^`|~-.__\"; filename*=UTF-8''a!#$&+^`|~-._%C3%A9"),
    ],
)
def test_content_disposition(filename: str, inline: bool, expected: str) -> None:
    assert content_disposition(filename, inline=inline) == expected


def _filename_star(header: str) -> str | None:
    _, found, encoded = header.partition("; filename*=UTF-8''")
    return unquote(encoded, encoding="utf-8", errors="strict") if found else None


@settings(max_examples=300)
@given(filename=st.text(min_size=1), inline=st.booleans())
def test_content_disposition_is_header_safe_and_lossless(filename: str, inline: bool) -> None:
    header = content_disposition(filename, inline=inline)
    assert not set(header) & {"\r", "\n", "\x00"}
    assert header.isascii()
    assert header.startswith("inline; " if inline else "attachment; ")
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert len(fallback) == len(filename)
    assert not set(fallback) & {'"', "\\", "%"}
    decoded = _filename_star(header)
    assert (decoded if decoded is not None else fallback) == filename


# ---------------------------------------------------------------------------------------------- digests

DIGEST = hashlib.sha256(b"hello").digest()
DIGEST_512 = hashlib.sha512(b"hello").digest()
B64 = base64.b64encode(DIGEST).decode()
B64_512 = base64.b64encode(DIGEST_512).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, {}),
        ("", {}),
        ("  ", {}),
        (f"sha-256=:{B64}:", {"sha-256": DIGEST}),
        (f"  sha-256=:{B64}:  ", {"sha-256": DIGEST}),
        (f"sha-256=:{B64.rstrip('=')}:", {"sha-256": DIGEST}),  # padding is optional
        (f"sha-512=:{B64_512}:, sha-256=:{B64}:", {"sha-512": DIGEST_512, "sha-256": DIGEST}),
        (f"sha-512=:{B64_512}:,sha-256=:{B64}:", {"sha-512": DIGEST_512, "sha-256": DIGEST}),
        (f'sha-256=:{B64}:;a=1;b;c="x,y";d=:AA==:;e=?0;f=tok/en, md5=:AAAA:', {"sha-256": DIGEST, "md5": b"\0\0\0"}),
        (f"sha-256=:{base64.b64encode(bytes(32)).decode()}:, sha-256=:{B64}:", {"sha-256": DIGEST}),  # last wins
        (f"sha-256=:{B64}:;  a=1", {"sha-256": DIGEST}),  # spaces may follow the semicolon
        (f"sha-256=:{B64}:; a=1", {"sha-256": DIGEST}),  # one space as well as two
        (f"sha-256=:{B64}:;   a=1;b", {"sha-256": DIGEST}),  # and three
        (f"sha-256=:{B64}: ,md5=:AAAA:", {"sha-256": DIGEST, "md5": b"\0\0\0"}),  # OWS before the comma
        (f"sha-256=:{B64}:\t, md5=:AAAA:", {"sha-256": DIGEST, "md5": b"\0\0\0"}),
        (f"sha-256=:{B64}:   ,   md5=:AAAA:", {"sha-256": DIGEST, "md5": b"\0\0\0"}),
        (
            f"sha-256=:{B64}:;a=1 ,md5=:AAAA:; b=?1 , unixsum=:AA==:",
            {"sha-256": DIGEST, "md5": b"\0\0\0", "unixsum": b"\0"},
        ),
        ("unixsum=:AAAA:", {"unixsum": b"\0\0\0"}),  # unknown algorithms are kept, their length unchecked
    ],
)
def test_parse_content_digest(header: str | None, expected: dict[str, bytes]) -> None:
    assert parse_content_digest(header) == expected


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (f"SHA-256=:{B64}:", "lowercase algorithm name"),  # structured-field keys are lowercase
        (f"sha-256={B64}", "byte-sequence value"),
        (f'sha-256="{B64}"', "byte-sequence value"),
        ("sha-256", "byte-sequence value"),  # a bare key is the boolean true
        ("sha-256=42", "byte-sequence value"),
        (f"sha-256=:{B64}", "no closing colon"),
        ("sha-256=:not base64!:", "not valid base64"),
        ("sha-256=:A:", "not valid base64"),
        (f"sha-256=:{B64_512}:", "32 bytes, not 64"),
        (f"sha-512=:{B64}:", "64 bytes, not 32"),
        (f"sha-256=:{B64}: sha-512=:{B64_512}:", "comma between members"),
        (f"sha-256=:{B64}:,", "trailing comma"),
        (f"sha-256=:{B64}:, ", "trailing comma"),
        (f",sha-256=:{B64}:", "lowercase algorithm name"),
        (f"sha-256=:{B64}:;", "parameter name"),
        (f"sha-256=:{B64}:;\ta=1", "parameter name"),  # only spaces may follow the semicolon
        (f"sha-256=:{B64}: ;a=1", "comma between members"),  # nothing may precede it
        (f"sha-256=:{B64}:;A=1", "parameter name"),
        (f"sha-256=:{B64}:;a=", "invalid value"),
        (f'sha-256=:{B64}:;a="unterminated', "invalid value"),
    ],
)
def test_parse_content_digest_rejects_malformed(header: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_content_digest(header)
    assert "Content-Digest" in caught.value.detail
    assert reason in caught.value.detail
    assert [error.field for error in caught.value.errors] == ["header.content-digest"]


@given(st.text(max_size=60))
def test_parse_content_digest_only_raises_invalid_input(header: str) -> None:
    try:
        result = parse_content_digest(header)
    except InvalidInput:
        return
    assert all(isinstance(value, bytes) for value in result.values())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (DIGEST.hex(), DIGEST),
        (DIGEST.hex().upper(), DIGEST),
        (f" {DIGEST.hex()} ", DIGEST),
        (B64, DIGEST),
        (B64.rstrip("="), DIGEST),
        (base64.urlsafe_b64encode(b"\xff" * 32).decode(), b"\xff" * 32),  # URL-safe alphabet
        (base64.b64encode(b"\xff" * 32).decode(), b"\xff" * 32),
    ],
)
def test_parse_sha256_header(value: str | None, expected: bytes | None) -> None:
    assert parse_sha256_header(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        DIGEST.hex()[:-1],
        DIGEST.hex() + "0",
        DIGEST.hex()[:-1] + "g",
        B64_512,
        B64[:-2],
        "=" * 44,
        f":{B64}:",
    ],
)
def test_parse_sha256_header_rejects_malformed(value: str) -> None:
    with pytest.raises(InvalidInput, match="X-Content-SHA256") as caught:
        parse_sha256_header(value)
    assert [error.field for error in caught.value.errors] == ["header.x-content-sha256"]
    with pytest.raises(InvalidInput, match="Upload-Checksum") as caught:
        parse_sha256_header(value, header="Upload-Checksum")
    assert [error.field for error in caught.value.errors] == ["header.upload-checksum"]
