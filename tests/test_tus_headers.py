"""tus header syntax (``protocols/tus/headers.py``): integers, Upload-Metadata, Upload-Concat and
Upload-Checksum, with property tests where the inputs are unbounded."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stowage.errors import InvalidInput
from stowage.protocols.tus.headers import parse_checksum, parse_concat, parse_integer, parse_metadata, target_of

KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=20)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_integers_round_trip(value: int) -> None:
    assert parse_integer("Upload-Offset", str(value)) == value
    assert parse_integer("Upload-Offset", f" {value} ") == value


@pytest.mark.parametrize("value", ["", "-1", "+1", "1.5", "1e3", "0x10", "12345678901234567890", "٣"])
def test_non_integers_are_refused_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_integer("Upload-Offset", value)
    assert refused.value.errors[0].field == "header.upload-offset"


@given(st.dictionaries(KEYS, st.binary(max_size=40), max_size=6))
def test_metadata_round_trips(pairs: dict[str, bytes]) -> None:
    header = ",".join(f"{key} {base64.b64encode(value).decode()}" if value else key for key, value in pairs.items())
    assert parse_metadata(header) == pairs


@pytest.mark.parametrize(
    "header",
    ["a !!!", "a YQ==,a Yg==", "bad key YQ==", "é YQ==", "a YQ", "a Y==="],
)
def test_malformed_metadata_is_refused(header: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_metadata(header)
    assert refused.value.errors[0].field == "header.upload-metadata"


def encode(**values: str) -> dict[str, bytes]:
    return {key: value.encode() for key, value in values.items()}


def test_the_target_comes_from_the_keys_stowage_reads() -> None:
    target = target_of(encode(filename="a.txt", filetype="text/plain", folder="f1", on_conflict="rename"))
    assert (target.name, target.media_type, target.folder_id, target.folder_path, target.on_conflict) == (
        "a.txt",
        "text/plain",
        "f1",
        None,
        "rename",
    )
    uppy = target_of(encode(name="b.jpg", type="image/jpeg", path="/photos"))
    assert (uppy.name, uppy.media_type, uppy.folder_path, uppy.on_conflict) == (
        "b.jpg",
        "image/jpeg",
        "/photos",
        None,  # not said: the service applies the default (a presigned URL's policy, else fail)
    )
    assert target_of({}).name is None
    assert target_of(encode(filename="")).name is None
    with pytest.raises(InvalidInput):
        target_of(encode(on_conflict="overwrite"))
    with pytest.raises(InvalidInput):
        target_of({"filename": b"\xff\xfe"})


def test_concat_partial_and_final() -> None:
    assert parse_concat("partial", "/api/v1/uploads") == ("partial", ())
    kind, parts = parse_concat(
        "final;/api/v1/uploads/a https://host.example/api/v1/uploads/b/ /api/v1/uploads/c", "/api/v1/uploads"
    )
    assert kind == "final"
    assert parts == ("a", "b", "c")


@pytest.mark.parametrize(
    "value", ["final", "final;", "whole", "final;/elsewhere/a", "final;/api/v1/uploads/a/b", "final;/api/v1/uploadsX/a"]
)
def test_malformed_concat_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_concat(value, "/api/v1/uploads")
    assert refused.value.errors[0].field == "header.upload-concat"


@given(st.sampled_from(["sha1", "SHA256", "md5"]), st.binary(min_size=1, max_size=64))
def test_checksums_round_trip(algorithm: str, digest: bytes) -> None:
    assert parse_checksum(f"{algorithm} {base64.b64encode(digest).decode()}") == (algorithm.lower(), digest)


@pytest.mark.parametrize("value", ["sha1", "sha1 ", " AAAA", "sha1 !!!!", "sha1 AAA"])
def test_malformed_checksums_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_checksum(value)
    assert refused.value.errors[0].field == "header.upload-checksum"
