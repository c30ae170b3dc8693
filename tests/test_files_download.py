"""Downloads over HTTP, by id and by path: validators, HEAD, ranges, conditional requests, dispositions."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import httpx
import pytest

from files_helpers import (
    Account,
    assert_problem,
    by_path,
    etag_of,
    mkdir,
    new_account,
    node_path,
    upload,
)
from stowage.config import Settings

CONTENT = b"0123456789abcdefghij"  # 20 bytes
NAME = "résumé 2024.txt"

Fetch = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture(params=["id", "path"])
def addressing(request: pytest.FixtureRequest) -> str:
    """Every download test runs against /nodes/{id}/content and /content/{path}."""
    value: str = request.param
    return value


def fetcher(client: httpx.AsyncClient, account: Account, node: dict[str, str], addressing: str) -> Fetch:
    url = node_path(node["id"], "/content") if addressing == "id" else by_path("content", f"docs/{node['name']}")

    async def fetch(method: str = "GET", headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
        return await client.request(method, url, headers={**account.headers, **(headers or {})}, params=params or None)

    return fetch


async def _setup(client: httpx.AsyncClient, content: bytes = CONTENT, name: str = NAME) -> tuple[Account, dict]:
    alice = await new_account(client, "alice@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    node = await upload(client, alice, docs["id"], name, content)
    return alice, node


async def test_full_download_headers(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client)
    fetch = fetcher(client, alice, node, addressing)

    response = await fetch()

    assert response.status_code == 200
    assert response.content == CONTENT
    headers = response.headers
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == str(len(CONTENT))
    assert headers["etag"] == etag_of(CONTENT) == node["etag"]
    assert headers["accept-ranges"] == "bytes"
    modified = parsedate_to_datetime(headers["last-modified"])
    assert abs(modified - datetime.fromisoformat(node["modified_at"])) < timedelta(seconds=1)
    assert headers["content-disposition"] == (
        "inline; filename=\"r_sum_ 2024.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.txt"
    )
    assert headers["x-content-type-options"] == "nosniff"
    assert "private" in headers["cache-control"]


async def test_head_has_the_headers_and_no_body(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client)
    fetch = fetcher(client, alice, node, addressing)
    full = await fetch()

    response = await fetch("HEAD")

    assert response.status_code == 200
    assert response.content == b""
    for header in ("content-type", "content-length", "etag", "last-modified", "accept-ranges", "content-disposition"):
        assert response.headers[header] == full.headers[header], header


SINGLE_RANGES = [
    ("bytes=0-4", 0, 4),
    ("bytes=-3", 17, 19),
    ("bytes=5-", 5, 19),
    ("bytes=15-99", 15, 19),
    ("bytes=7-7", 7, 7),
]


async def test_single_ranges(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client)
    fetch = fetcher(client, alice, node, addressing)

    for range_header, start, end in SINGLE_RANGES:
        response = await fetch(headers={"range": range_header})

        assert response.status_code == 206, (range_header, response.text)
        assert response.content == CONTENT[start : end + 1], range_header
        assert response.headers["content-range"] == f"bytes {start}-{end}/{len(CONTENT)}"
        assert response.headers["content-length"] == str(end - start + 1)
        assert response.headers["etag"] == node["etag"]
    head = await fetch("HEAD", headers={"range": "bytes=0-4"})
    assert head.status_code == 206
    assert head.content == b""
    assert head.headers["content-range"] == f"bytes 0-4/{len(CONTENT)}"


async def test_an_unsatisfiable_range(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client)
    fetch = fetcher(client, alice, node, addressing)

    response = await fetch(headers={"range": "bytes=999999-"})

    assert_problem(response, 416, "range-not-satisfiable", detail_contains="past the end")
    assert response.headers["content-range"] == f"bytes */{len(CONTENT)}"


async def test_ranges_we_do_not_serve_get_the_whole_file(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client)
    fetch = fetcher(client, alice, node, addressing)

    for range_header in ("bytes=0-1,4-5", "items=0-4", "bytes=5-2", "bytes=abc"):
        response = await fetch(headers={"range": range_header})

        assert response.status_code == 200, range_header
        assert response.content == CONTENT
        assert "content-range" not in response.headers


async def test_conditional_requests(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client)
    fetch = fetcher(client, alice, node, addressing)
    etag = node["etag"]
    future = format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)

    not_modified = await fetch(headers={"if-none-match": etag})
    weak = await fetch(headers={"if-none-match": f'"other", W/{etag}'})
    since_future = await fetch(headers={"if-modified-since": future})
    since_past = await fetch(headers={"if-modified-since": past})
    other_etag = await fetch(headers={"if-none-match": '"something-else"', "if-modified-since": future})
    head_not_modified = await fetch("HEAD", headers={"if-none-match": etag})

    for response in (not_modified, weak, since_future, head_not_modified):
        assert response.status_code == 304, response.text
        assert response.content == b""
        assert response.headers["etag"] == etag
    assert since_past.status_code == 200
    assert since_past.content == CONTENT
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    assert other_etag.status_code == 200
    assert other_etag.content == CONTENT

    failed = await fetch(headers={"if-match": '"stale"'})
    assert_problem(failed, 412, "precondition-failed")
    matched = await fetch(headers={"if-match": etag})
    assert matched.status_code == 200


async def test_if_range(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client)
    fetch = fetcher(client, alice, node, addressing)

    stale = await fetch(headers={"range": "bytes=0-4", "if-range": etag_of(b"an older version")})
    current = await fetch(headers={"range": "bytes=0-4", "if-range": node["etag"]})
    by_date = await fetch(headers={"range": "bytes=0-4", "if-range": current.headers["last-modified"]})

    assert stale.status_code == 200
    assert stale.content == CONTENT
    assert current.status_code == 206
    assert current.content == CONTENT[:5]
    assert by_date.status_code == 206


async def test_download_true_forces_an_attachment(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client, name="plain.txt")
    fetch = fetcher(client, alice, node, addressing)

    inline = await fetch()
    attachment = await fetch(download="true")

    assert inline.headers["content-disposition"] == 'inline; filename="plain.txt"'
    assert attachment.headers["content-disposition"] == 'attachment; filename="plain.txt"'
    assert attachment.content == CONTENT


async def test_an_empty_file(client: httpx.AsyncClient, addressing: str) -> None:
    alice, node = await _setup(client, content=b"", name="empty.txt")
    fetch = fetcher(client, alice, node, addressing)

    response = await fetch()
    ranged = await fetch(headers={"range": "bytes=0-"})

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert response.headers["etag"] == etag_of(b"")
    assert_problem(ranged, 416, "range-not-satisfiable")
    assert ranged.headers["content-range"] == "bytes */0"


async def test_ranges_across_chunk_boundaries(client: httpx.AsyncClient) -> None:
    content = os.urandom(700 * 1024)  # the store reads in 256 KiB chunks
    alice, node = await _setup(client, content=content, name="random.bin")

    whole = await client.get(node_path(node["id"], "/content"), headers=alice.headers)
    middle = await client.get(
        node_path(node["id"], "/content"), headers={**alice.headers, "range": "bytes=262000-530000"}
    )

    assert whole.content == content
    assert whole.headers["content-type"] == "application/octet-stream"
    assert middle.status_code == 206
    assert middle.content == content[262000:530001]


async def test_what_cannot_be_downloaded(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, node = await _setup(client, name="mine.txt")
    mallory = await new_account(client, "mallory@example.com")
    docs = (await client.get(by_path("paths", "docs"), headers=alice.headers)).json()["node"]

    folder_by_id = await client.get(node_path(docs["id"], "/content"), headers=alice.headers)
    folder_by_path = await client.get(by_path("content", "docs"), headers=alice.headers)
    assert_problem(folder_by_id, 409, "conflict", detail_contains="ZIP")
    assert_problem(folder_by_path, 409, "conflict", detail_contains="ZIP")

    foreign_id = await client.get(node_path(node["id"], "/content"), headers=mallory.headers)
    foreign_head = await client.head(node_path(node["id"], "/content"), headers=mallory.headers)
    foreign_path = await client.get(by_path("content", "docs/mine.txt"), headers=mallory.headers)
    unknown = await client.get(node_path("00000000-0000-0000-0000-000000000000", "/content"), headers=alice.headers)
    anonymous = await client.get(node_path(node["id"], "/content"))
    assert_problem(foreign_id, 404, "not-found")
    assert foreign_head.status_code == 404
    assert_problem(foreign_path, 404, "not-found", detail_contains="/docs")
    assert_problem(unknown, 404, "not-found")
    assert_problem(anonymous, 401, "unauthenticated")

    trashed = await client.delete(node_path(node["id"]), headers=alice.headers)
    assert trashed.status_code == 200, trashed.text
    assert_problem(await client.get(node_path(node["id"], "/content"), headers=alice.headers), 404, "not-found")
    assert_problem(await client.get(by_path("content", "docs/mine.txt"), headers=alice.headers), 404, "not-found")
    assert_problem(await client.get(node_path(node["id"]), headers=alice.headers), 404, "not-found")
