"""Thumbnails in the hot-read lane (``api.hot_thumbnails``): answered exactly as the Litestar routes
answer them — by the owner, a presigned URL, a link visitor — and declined when the query is anything
Litestar would validate itself. Each request goes through the full application and through Litestar
alone (the pattern of tests/test_hot_reads.py); status, headers (but the request id and date) and body
must be equal, and the lane must have answered exactly the requests it claims."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

import image_samples as samples
from files_helpers import API, Account, new_account, upload
from sharing_helpers import create_link
from stowage.app import create_app, litestar_of, observed
from stowage.config import Settings
from support.lanes import LitestarSpy, answers_alike


@dataclass
class Lanes:
    full: httpx.AsyncClient
    plain: httpx.AsyncClient
    spy: LitestarSpy
    alice: Account
    bob: Account
    photo: str
    text: str
    link: str
    presigned: str


@asynccontextmanager
async def open_lanes(settings: Settings) -> AsyncIterator[Lanes]:
    app = create_app(settings)
    litestar = litestar_of(app)
    spy = LitestarSpy(litestar)
    app.app.app = spy  # type: ignore[attr-defined]
    base = "http://testserver.local"
    async with (
        litestar.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as full,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=observed(litestar, settings, None)), base_url=base
        ) as plain,
    ):
        alice = await new_account(full, "alice@example.com")
        bob = await new_account(full, "bob@example.com")
        photo = await upload(full, alice, alice.root_id, "photo.jpg", samples.jpeg(orientation=6))
        text = await upload(full, alice, alice.root_id, "notes.txt", b"text")
        link = await create_link(full, alice, photo["id"])
        minted = await full.post(
            f"{API}/nodes/{photo['id']}/presign/thumbnail", json={"w": 40, "format": "webp"}, headers=alice.headers
        )
        assert minted.status_code == 200, minted.text
        yield Lanes(
            full,
            plain,
            spy,
            alice,
            bob,
            photo["id"],
            text["id"],
            link["token"],
            minted.json()["url"].removeprefix(base),
        )


async def _both(lanes: Lanes, method: str, url: str, headers: dict[str, str]) -> tuple[httpx.Response, bool]:
    return await answers_alike(lanes.full, lanes.plain, lanes.spy, method=method, url=url, headers=headers)


CASES: list[tuple[str, str, str, str, int, bool]] = [
    # (name, method, url with {photo} {text} {link}, who, status, answered by the lane)
    ("default tile", "GET", "/nodes/{photo}/thumbnail", "alice", 200, True),
    ("every parameter", "GET", "/nodes/{photo}/thumbnail?w=32&h=20&fit=contain&q=70&format=jpeg", "alice", 200, True),
    ("negotiated", "GET", "/nodes/{photo}/thumbnail?w=32", "alice+webp", 200, True),
    ("HEAD", "HEAD", "/nodes/{photo}/thumbnail?w=32&format=png", "alice", 200, True),
    ("cached again", "GET", "/nodes/{photo}/thumbnail?w=32&h=20&fit=contain&q=70&format=jpeg", "alice", 200, True),
    ("revalidated", "GET", "/nodes/{photo}/thumbnail?w=32&format=png", "alice+etag", 304, True),
    ("anonymous", "GET", "/nodes/{photo}/thumbnail?w=32", "none", 401, True),
    ("another user", "GET", "/nodes/{photo}/thumbnail?w=32", "bob", 404, True),
    ("not an image", "GET", "/nodes/{text}/thumbnail?w=32", "alice", 415, True),
    ("over the output limit", "GET", "/nodes/{photo}/thumbnail?w=9000", "alice", 400, True),
    ("link visitor", "GET", "/s/{link}/thumbnail?w=24&format=webp", "none", 200, True),
    ("unknown link", "GET", "/s/nope/thumbnail?w=24", "none", 404, True),
    # Declined: Litestar's own validation answers these.
    ("bad width", "GET", "/nodes/{photo}/thumbnail?w=abc", "alice", 400, False),
    ("zero width", "GET", "/nodes/{photo}/thumbnail?w=0", "alice", 400, False),
    ("leading zero", "GET", "/nodes/{photo}/thumbnail?w=032", "alice", 400, False),
    ("unknown fit", "GET", "/nodes/{photo}/thumbnail?fit=fill", "alice", 400, False),
    ("repeated", "GET", "/nodes/{photo}/thumbnail?w=1&w=2", "alice", 200, False),
    ("other parameter", "GET", "/nodes/{photo}/thumbnail?size=2", "alice", 200, False),
    ("grant in the query", "GET", "/s/{link}/thumbnail?grant=x", "none", 200, False),
    ("grant too long", "HEAD", "/s/{link}/thumbnail?w=24", "long grant", 400, False),
]


def _headers(lanes: Lanes, who: str, etag: str) -> dict[str, str]:
    return {
        "alice": lanes.alice.headers,
        "alice+webp": {**lanes.alice.headers, "accept": "image/avif,image/webp,*/*"},
        "alice+etag": {**lanes.alice.headers, "if-none-match": etag},
        "bob": lanes.bob.headers,
        "none": {},
        "long grant": {"x-share-grant": "g" * 301, "if-match": '"other"'},
    }[who]


async def test_both_lanes_answer_thumbnails_alike(settings: Settings) -> None:
    failures: list[str] = []
    async with open_lanes(settings) as lanes:
        png = await lanes.full.get(f"{API}/nodes/{lanes.photo}/thumbnail?w=32&format=png", headers=lanes.alice.headers)
        etag = png.headers["etag"]
        for name, method, url, who, status, by_lane in CASES:
            target = API + url.format(photo=lanes.photo, text=lanes.text, link=lanes.link)
            try:
                response, answered_by_lane = await _both(lanes, method, target, _headers(lanes, who, etag))
                assert response.status_code == status, response.text
                assert answered_by_lane is by_lane
            except AssertionError as error:
                failures.append(f"{name}: {error}")
    assert not failures, "\n\n".join(failures)


async def test_presigned_thumbnails_in_the_lane(settings: Settings) -> None:
    async with open_lanes(settings) as lanes:
        response, by_lane = await _both(lanes, "GET", lanes.presigned, {})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/webp"
        assert by_lane
        tampered, by_lane = await _both(lanes, "GET", lanes.presigned.replace("w=40", "w=400"), {})
        assert tampered.status_code == 403
        assert by_lane
