"""The client address behind reverse proxies (``observability.forwarded``): believed only from trusted
proxies, and only as far back as the last hop that is not one of them."""

from __future__ import annotations

import pytest

from stowage.observability.forwarded import client_address, forwarded_for_header

TRUSTED = ("127.0.0.1/32", "10.0.0.0/8")


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", TRUSTED, "203.0.113.9"),  # not from a proxy: the header is ignored
        ("127.0.0.1", "198.51.100.1", (), "127.0.0.1"),  # no trusted proxies configured
        ("127.0.0.1", "198.51.100.1", TRUSTED, "198.51.100.1"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", TRUSTED, "198.51.100.1"),  # what the client sent is not believed
        ("127.0.0.1", "198.51.100.1, 10.1.2.3", TRUSTED, "198.51.100.1"),  # through two proxies
        ("127.0.0.1", "10.1.2.3", TRUSTED, "127.0.0.1"),  # only proxies: the nearest one
        ("127.0.0.1", None, TRUSTED, "127.0.0.1"),
        ("127.0.0.1", "not-an-address", TRUSTED, "not-an-address"),  # an unparseable hop is not a proxy
        ("::1", "2001:db8::5", ("::1/128",), "2001:db8::5"),
    ],
)
def test_client_address(peer: str, header: str | None, trusted: tuple[str, ...], expected: str) -> None:
    assert client_address(peer, header, trusted) == expected


def test_several_header_lines_are_read_in_order() -> None:
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"host", b"x"), (b"X-Forwarded-For", b"198.51.100.1")]

    joined = forwarded_for_header(headers)

    assert joined == "6.6.6.6, 198.51.100.1"
    assert client_address("127.0.0.1", joined, TRUSTED) == "198.51.100.1"
    assert forwarded_for_header([(b"host", b"x")]) is None
