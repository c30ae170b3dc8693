"""The name and path rules every protocol shares (``files/names.py``), at their boundaries.

The test audit found these rules exercised only through HTTP and several boundaries unpinned: the
depth limit, surrounding spaces, dot-files under "rename", the exact length after truncation and the
control characters at the edges of the refused range."""

from __future__ import annotations

import unicodedata

import pytest

from stowage.errors import InvalidInput
from stowage.files.names import MAX_NAME_BYTES, MAX_PATH_DEPTH, normalise_name, split_path, with_suffix_number


def _refused(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_name(raw, field="body.name")
    assert caught.value.errors[0].field == "body.name"
    assert message in caught.value.errors[0].message
    assert repr(raw) in caught.value.detail


@pytest.mark.parametrize("name", ["a.txt", " a.txt", "a.txt ", "  spaced  ", "...", ".bashrc", "naïve", "日本語.pdf"])
def test_ordinary_names_are_kept_as_given(name: str) -> None:
    assert normalise_name(name) == name


def test_names_are_stored_in_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "café.txt")
    assert decomposed != "café.txt"
    assert normalise_name(decomposed) == "café.txt"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "cannot be empty"),
        (".", "reserved"),
        ("..", "reserved"),
        ("a/b", "'/'"),
        ("a\x00b", "control characters"),
        ("a\x1fb", "control characters"),  # the last C0 control
        ("a\x7fb", "control characters"),  # DEL
        ("tab\there", "control characters"),
        ("   ", "only spaces"),
    ],
)
def test_bad_names_are_refused_with_the_reason(raw: str, message: str) -> None:
    _refused(raw, message)


def test_the_first_characters_after_the_controls_are_allowed() -> None:
    assert normalise_name("a b") == "a b"  # U+0020
    assert normalise_name("a\x80b") == "a\x80b"  # C1 is not refused (valid in UTF-8 names)


def test_a_name_may_have_exactly_255_bytes_not_256() -> None:
    assert normalise_name("a" * MAX_NAME_BYTES) == "a" * MAX_NAME_BYTES
    _refused("a" * (MAX_NAME_BYTES + 1), f"at most {MAX_NAME_BYTES} bytes")
    four = "\U0001f600"  # 4 bytes in UTF-8
    assert normalise_name(four * 63 + "abc") == four * 63 + "abc"  # 252 + 3 = 255 bytes
    _refused(four * 64, "bytes")  # 256 bytes in 64 characters: counted in bytes, not characters


def test_a_path_may_have_64_levels_not_65() -> None:
    assert split_path("/".join(["d"] * MAX_PATH_DEPTH)) == ["d"] * MAX_PATH_DEPTH
    with pytest.raises(InvalidInput) as caught:
        split_path("/".join(["d"] * (MAX_PATH_DEPTH + 1)), field="path")
    assert caught.value.errors[0].field == "path"
    assert "too many levels" in caught.value.errors[0].message


def test_paths_tolerate_extra_slashes_but_refuse_dot_segments() -> None:
    assert split_path("//Photos///2026/") == ["Photos", "2026"]
    assert split_path("") == []
    assert split_path("/") == []
    with pytest.raises(InvalidInput):
        split_path("Photos/../secrets")


@pytest.mark.parametrize(
    ("name", "number", "expected"),
    [
        ("beach.jpg", 2, "beach (2).jpg"),
        ("README", 3, "README (3)"),
        (".bashrc", 2, ".bashrc (2)"),  # a dot-file has no extension to keep
        ("archive.tar.gz", 2, "archive.tar (2).gz"),
    ],
)
def test_a_free_name_keeps_the_extension(name: str, number: int, expected: str) -> None:
    assert with_suffix_number(name, number) == expected


def test_a_long_name_loses_characters_from_its_stem_and_ends_at_exactly_255_bytes() -> None:
    long_name = "x" * 251 + ".jpg"  # 255 bytes
    renamed = with_suffix_number(long_name, 2)
    assert renamed.endswith(" (2).jpg")
    assert len(renamed.encode("utf-8")) == MAX_NAME_BYTES
    assert normalise_name(renamed) == renamed
