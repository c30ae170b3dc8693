"""The hot-read lane (``api.hot_reads``) answers downloads exactly as the Litestar routes do.

Every request below is sent twice against one started application: once through the full
application (where the lane answers what it recognises) and once through the same Litestar
application wrapped only in the outermost layer (no lane). Status, headers (but the request id
and the date) and body must be equal, and the lane must have answered exactly the requests it
claims — the rest reached Litestar. Errors included: unknown files, other users' files, missing
or bad credentials, failed preconditions, bad ranges, invalid paths and parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from accounts_helpers import auth, create_pat
from files_helpers import API, Account, by_path, etag_of, mkdir, new_account, upload
from stowage.app import create_app, litestar_of, observed
from stowage.config import Settings
from support import capture_logs
from support.lanes import LitestarSpy, answers_alike, comparable

CONTENT = bytes(range(256)) * 8  # 2,048 bytes


@dataclass
class Lanes:
    full: httpx.AsyncClient  # the application as served
    plain: httpx.AsyncClient  # Litestar alone inside the outermost layer
    spy: LitestarSpy
    alice: Account
    bob: Account
    report_id: str
    docs_id: str
    pat: str
    presigned: str = ""  # a presigned GET URL of the report (path and query)


@asynccontextmanager
async def open_lanes(settings: Settings) -> AsyncIterator[Lanes]:
    app = create_app(settings)
    litestar = litestar_of(app)
    spy = LitestarSpy(litestar)
    app.app.app = spy  # type: ignore[attr-defined]  # the lane's inner application
    plain = observed(litestar, settings, None)
    base = "http://testserver.local"
    async with (
        litestar.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as full,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url=base) as plain_client,
    ):
        alice = await new_account(full, "alice@example.com")
        bob = await new_account(full, "bob@example.com")
        docs = await mkdir(full, alice, alice.root_id, "docs")
        report = await upload(full, alice, docs["id"], "report.txt", CONTENT)
        await upload(full, alice, docs["id"], "été 2026 #1.txt", b"summer")
        await upload(full, alice, alice.root_id, ".hidden", b"dot file")
        await upload(full, alice, alice.root_id, "empty.bin", b"")
        pat = (await create_pat(full, alice.token, ["read"]))["token"]
        minted = await full.post(f"{API}/nodes/{report['id']}/presign", json={}, headers=alice.headers)
        assert minted.status_code == 200, minted.text
        presigned = minted.json()["url"].removeprefix(base)
        yield Lanes(full, plain_client, spy, alice, bob, report["id"], docs["id"], pat, presigned)


async def _both(lanes: Lanes, method: str, url: str, headers: dict[str, str]) -> tuple[httpx.Response, bool]:
    return await answers_alike(lanes.full, lanes.plain, lanes.spy, method=method, url=url, headers=headers)


def _report(lanes: Lanes) -> str:
    return f"{API}/nodes/{lanes.report_id}/content"


CASES: list[tuple[str, str, str, str, int, bool]] = [
    # (name, method, url (with {report} {docs}), credential, status, answered by the lane)
    ("by path", "GET", "/content/docs/report.txt", "alice", 200, True),
    ("by path, HEAD", "HEAD", "/content/docs/report.txt", "alice", 200, True),
    ("by path, personal token", "GET", "/content/docs/report.txt", "pat", 200, True),
    ("by id", "GET", "/nodes/{report}/content", "alice", 200, True),
    ("by id, HEAD", "HEAD", "/nodes/{report}/content", "alice", 200, True),
    ("encoded name", "GET", "/content/docs/%C3%A9t%C3%A9%202026%20%231.txt", "alice", 200, True),
    ("dot file", "GET", "/content/.hidden", "alice", 200, True),
    ("empty file", "GET", "/content/empty.bin", "alice", 200, True),
    ("as attachment", "GET", "/content/docs/report.txt?download=true", "alice", 200, True),
    ("as attachment, 1", "GET", "/nodes/{report}/content?download=1", "alice", 200, True),
    ("inline, false", "GET", "/content/docs/report.txt?download=false", "alice", 200, True),
    ("inline, 0", "GET", "/content/docs/report.txt?download=0", "alice", 200, True),
    ("anonymous", "GET", "/content/docs/report.txt", "none", 401, True),
    ("anonymous HEAD", "HEAD", "/nodes/{report}/content", "none", 401, True),
    ("not bearer", "GET", "/content/docs/report.txt", "basic", 401, True),
    ("unknown token", "GET", "/nodes/{report}/content", "bogus", 401, True),
    ("another user's file by id", "GET", "/nodes/{report}/content", "bob", 404, True),
    ("another user's path", "GET", "/content/docs/report.txt", "bob", 404, True),
    ("missing file", "GET", "/content/docs/nothing.txt", "alice", 404, True),
    ("missing parent", "GET", "/content/nowhere/report.txt", "alice", 404, True),
    ("missing id", "GET", "/nodes/00000000-0000-0000-0000-000000000000/content", "alice", 404, True),
    ("missing id, HEAD", "HEAD", "/nodes/00000000-0000-0000-0000-000000000000/content", "alice", 404, True),
    ("a folder by path", "GET", "/content/docs", "alice", 409, True),
    ("a folder by id", "GET", "/nodes/{docs}/content", "alice", 409, True),
    ("dot-dot", "GET", "/content/docs/%2E%2E/docs/report.txt", "alice", 400, True),
    ("dot segment", "GET", "/content/docs/%2E/report.txt", "alice", 400, True),
    ("control character", "GET", "/content/docs/a%01b", "alice", 400, True),
    # Declined: Litestar answers these (its parameter validation, its path normalisation).
    ("bad download flag", "GET", "/content/docs/report.txt?download=maybe", "alice", 400, False),
    ("other query", "GET", "/nodes/{report}/content?x=1", "alice", 200, False),
    ("doubled slash", "GET", "/content/docs//report.txt", "alice", 200, False),
    ("trailing slash", "GET", "/content/docs/report.txt/", "alice", 200, False),
    ("a version's content", "GET", "/nodes/{report}/versions/none/content", "alice", 404, False),
    ("not a read", "DELETE", "/content/docs/report.txt", "alice", 405, False),
    ("odd host header", "GET", "/content/docs/report.txt", "alice+host", 400, False),
]


def _credential(lanes: Lanes, which: str) -> dict[str, str]:
    return {
        "alice": lanes.alice.headers,
        "bob": lanes.bob.headers,
        "pat": auth(lanes.pat),
        "none": {},
        "basic": {"authorization": "Basic YWxpY2U6c2VjcmV0"},
        "bogus": auth("stw_pat_not-a-real-token"),
        "alice+host": {**lanes.alice.headers, "host": "bad host"},
    }[which]


async def _check_case(lanes: Lanes, *, method: str, url: str, who: str, status: int, by_lane: bool) -> None:
    target = API + url.format(report=lanes.report_id, docs=lanes.docs_id)
    response, answered_by_lane = await _both(lanes, method, target, _credential(lanes, who))
    assert response.status_code == status, response.text
    assert answered_by_lane is by_lane
    if status == 200 and method == "GET" and "report" in url:
        assert response.content == CONTENT
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        if method == "GET":
            assert response.json()["status"] == status


async def test_both_lanes_answer_alike(settings: Settings) -> None:
    """Every case, on one application; each failure is reported with its case name."""
    failures: list[str] = []
    async with open_lanes(settings) as lanes:
        for name, method, url, who, status, by_lane in CASES:
            try:
                await _check_case(lanes, method=method, url=url, who=who, status=status, by_lane=by_lane)
            except AssertionError as error:
                failures.append(f"{name}: {error}")
    assert not failures, "\n\n".join(failures)


CONDITIONAL_CASES: list[tuple[dict[str, str], int]] = [
    ({"range": "bytes=0-99"}, 206),
    ({"range": "bytes=2000-"}, 206),
    ({"range": "bytes=-10"}, 206),
    ({"range": "bytes=5000-"}, 416),
    ({"range": "pages=1"}, 200),
    ({"if-none-match": etag_of(CONTENT)}, 304),
    ({"if-none-match": '"other"'}, 200),
    ({"if-match": '"other"'}, 412),
    ({"if-match": etag_of(CONTENT)}, 200),
    ({"if-modified-since": "Tue, 01 Jan 2999 00:00:00 GMT"}, 304),
    ({"if-unmodified-since": "Mon, 01 Jan 2001 00:00:00 GMT"}, 412),
    ({"range": "bytes=0-9", "if-range": etag_of(CONTENT)}, 206),
    ({"range": "bytes=0-9", "if-range": '"stale"'}, 200),
]


async def test_conditional_and_range_requests_answer_alike(settings: Settings) -> None:
    failures: list[str] = []
    async with open_lanes(settings) as lanes:
        for method in ("GET", "HEAD"):
            for headers, status in CONDITIONAL_CASES:
                try:
                    response, answered_by_lane = await _both(
                        lanes, method, _report(lanes), {**lanes.alice.headers, **headers}
                    )
                    assert answered_by_lane
                    assert response.status_code == status, response.text
                    if method == "GET" and headers.get("range") == "bytes=0-99":
                        assert response.content == CONTENT[:100]
                except AssertionError as error:
                    failures.append(f"{method} {headers}: {error}")
    assert not failures, "\n\n".join(failures)


async def test_the_lane_logs_and_counts_under_the_routes_names(settings: Settings) -> None:
    """Access-log lines (and so metrics, which take the same route label) name the Litestar route."""
    async with open_lanes(settings) as lanes:
        with capture_logs(settings) as logs:
            await _both(lanes, "GET", _report(lanes), lanes.alice.headers)
            await _both(lanes, "GET", f"{API}/content/docs/report.txt", lanes.alice.headers)
    routes = [(line["route"], line["user_id"]) for line in logs.events("request")]
    by_id, by_path_template = "/api/v1/nodes/{node_id}/content", "/api/v1/content/{path}"
    assert routes == [(t, lanes.alice.user_id) for t in (by_id, by_id, by_path_template, by_path_template)]


async def test_cross_origin_requests_are_left_to_litestars_cors_layer(settings_env: dict[str, str]) -> None:
    from conftest import make_settings

    settings = make_settings(settings_env, cors_allow_origins="https://app.example")
    app = create_app(settings)
    litestar = litestar_of(app)
    spy = LitestarSpy(litestar)
    app.app.app = spy  # type: ignore[attr-defined]
    async with (
        litestar.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as client,
    ):
        alice = await new_account(client, "alice@example.com")
        await upload(client, alice, alice.root_id, "a.txt", b"a")
        path = by_path("content", "a.txt")
        spy.paths.clear()
        same_origin = await client.get(path, headers=alice.headers)
        assert same_origin.status_code == 200
        assert spy.paths == []  # no Origin: the lane answered
        cross = await client.get(path, headers={**alice.headers, "origin": "https://app.example"})
        assert cross.status_code == 200
        assert spy.paths == ["/api/v1/content/a.txt"]
        assert cross.headers["access-control-allow-origin"] == "https://app.example"


async def test_share_link_content_answers_alike_in_both_lanes(settings: Settings) -> None:
    """GET and HEAD of ``/api/v1/s/<token>/content`` go through the lane with the visitor service; a grant
    in the query string (and anything unusual) is left to Litestar. Both answer alike."""
    async with open_lanes(settings) as lanes:

        async def link(node_id: str, **body: Any) -> str:
            response = await lanes.full.post(f"{API}/nodes/{node_id}/links", json=body, headers=lanes.alice.headers)
            assert response.status_code == 201, response.text
            token: str = response.json()["token"]
            return token

        plain = await link(lanes.report_id)
        locked = await link(lanes.report_id, password="letters and words")
        folder = await link(lanes.docs_id)
        drop = await link(lanes.docs_id, drop=True)
        unlocked = await lanes.full.post(f"{API}/s/{locked}/unlock", json={"password": "letters and words"})
        grant = unlocked.json()["grant"]
        cases: list[tuple[str, str, dict[str, str], int, bool]] = [
            ("GET", f"/s/{plain}/content", {}, 200, True),
            ("HEAD", f"/s/{plain}/content", {}, 200, True),
            ("GET", f"/s/{plain}/content?download=true", {}, 200, True),
            ("GET", f"/s/{plain}/content", {"range": "bytes=0-99"}, 206, True),
            ("GET", f"/s/{plain}/content", {"if-none-match": etag_of(CONTENT)}, 304, True),
            ("GET", f"/s/{plain}/content", {"if-match": '"other"'}, 412, True),
            ("GET", f"/s/{plain}/content", lanes.bob.headers, 200, True),  # a bearer token changes nothing
            ("GET", "/s/shl_unknown/content", {}, 404, True),
            ("HEAD", "/s/shl_unknown/content", {}, 404, True),
            ("GET", f"/s/{folder}/content", {}, 409, True),
            ("GET", f"/s/{drop}/content", {}, 404, True),
            ("GET", f"/s/{locked}/content", {}, 403, True),
            ("GET", f"/s/{locked}/content", {"x-share-grant": grant}, 200, True),
            ("GET", f"/s/{locked}/content", {"x-share-grant": grant + "x"}, 403, True),
            ("GET", f"/s/{locked}/content?grant={grant}", {}, 200, False),
            ("GET", f"/s/{plain}/content?x=1", {}, 200, False),
            ("GET", f"/s/{plain}/content/", {}, 200, False),
        ]
        failures: list[str] = []
        for method, url, headers, status, by_lane in cases:
            try:
                response, answered_by_lane = await _both(lanes, method, API + url, headers)
                assert response.status_code == status, response.text
                assert answered_by_lane is by_lane
                if status == 200 and method == "GET":
                    assert response.content == CONTENT
            except AssertionError as error:
                failures.append(f"{method} {url} {headers}: {error}")
        assert not failures, "\n\n".join(failures)


async def test_the_lane_counts_a_link_download_limit(settings: Settings) -> None:
    async with open_lanes(settings) as lanes:
        response = await lanes.full.post(
            f"{API}/nodes/{lanes.report_id}/links", json={"max_downloads": 1}, headers=lanes.alice.headers
        )
        token = response.json()["token"]
        lanes.spy.paths.clear()

        first = await lanes.full.get(f"{API}/s/{token}/content")
        second = await lanes.full.get(f"{API}/s/{token}/content")
        through_litestar = await lanes.plain.get(f"{API}/s/{token}/content")

        assert lanes.spy.paths == []
        assert first.status_code == 200
        assert first.content == CONTENT
        assert comparable(second) == comparable(through_litestar)
        assert second.status_code == 404
        assert "download limit" in second.json()["detail"]


def _tampered(url: str, name: str, value: str) -> str:
    """``url`` with one query parameter's value replaced."""
    path, _, query = url.partition("?")
    pairs = [pair.split("=", 1) for pair in query.split("&")]
    return path + "?" + "&".join(f"{k}={value if k == name else v}" for k, v in pairs)


# (name, method, how to change the report's presigned URL, credential, status, answered by the lane)
PRESIGNED_CASES: list[tuple[str, str, Callable[[Lanes], str], str, int, bool]] = [
    ("presigned GET", "GET", lambda lanes: lanes.presigned, "none", 200, True),
    ("presigned HEAD", "HEAD", lambda lanes: lanes.presigned, "none", 200, True),
    ("presigned, as attachment", "GET", lambda lanes: lanes.presigned + "&download=true", "none", 200, True),
    ("presigned, download first", "GET", lambda lanes: lanes.presigned.replace("?", "?download=0&"), "none", 200, True),
    ("presigned, another user's header", "GET", lambda lanes: lanes.presigned, "bob", 200, True),
    ("presigned, bad header", "GET", lambda lanes: lanes.presigned, "bogus", 200, True),
    (
        "presigned, signature changed",
        "GET",
        lambda lanes: _tampered(lanes.presigned, "X-Stowage-Signature", "A" * 43),
        "none",
        403,
        True,
    ),
    (
        "presigned, expiry changed",
        "GET",
        lambda lanes: _tampered(lanes.presigned, "X-Stowage-Expires", "4102444800"),
        "alice",
        403,
        True,
    ),
    (
        "presigned, another node",
        "GET",
        lambda lanes: lanes.presigned.replace(lanes.report_id, lanes.docs_id),
        "none",
        403,
        True,
    ),
    (
        "presigned, signature missing",
        "GET",
        lambda lanes: lanes.presigned.split("&X-Stowage-Signature")[0],
        "none",
        403,
        True,
    ),
    # Declined: Litestar answers these, the same way.
    ("presigned, other parameter", "GET", lambda lanes: lanes.presigned + "&x=1", "none", 200, False),
    ("presigned, bad download flag", "GET", lambda lanes: lanes.presigned + "&download=maybe", "none", 400, False),
    (
        "presigned, repeated parameter",
        "GET",
        lambda lanes: lanes.presigned + "&download=1&download=0",
        "none",
        200,
        False,
    ),
    (
        "presigned query on a path",
        "GET",
        lambda lanes: f"{API}/content/docs/report.txt?" + lanes.presigned.partition("?")[2],
        "none",
        403,
        False,
    ),
]


async def test_presigned_urls_answer_alike(settings: Settings) -> None:
    """A presigned GET URL is answered by the lane (no Authorization header needed; one sent is not
    consulted), a changed one is refused alike in both lanes, and what the lane declines Litestar answers."""
    failures: list[str] = []
    async with open_lanes(settings) as lanes:
        for name, method, url_of, who, status, by_lane in PRESIGNED_CASES:
            try:
                response, answered_by_lane = await _both(lanes, method, url_of(lanes), _credential(lanes, who))
                assert response.status_code == status, response.text
                assert answered_by_lane is by_lane
                if status == 200 and method == "GET":
                    assert response.content == CONTENT
                if status >= 400 and method == "GET":
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.json()["status"] == status
            except AssertionError as error:
                failures.append(f"{name}: {error}")
    assert not failures, "\n\n".join(failures)


async def test_presigned_conditional_and_range_requests_answer_alike(settings: Settings) -> None:
    failures: list[str] = []
    async with open_lanes(settings) as lanes:
        for method in ("GET", "HEAD"):
            for headers, status in CONDITIONAL_CASES:
                try:
                    response, answered_by_lane = await _both(lanes, method, lanes.presigned, headers)
                    assert answered_by_lane
                    assert response.status_code == status, response.text
                    if method == "GET" and headers.get("range") == "bytes=0-99":
                        assert response.content == CONTENT[:100]
                except AssertionError as error:
                    failures.append(f"{method} {headers}: {error}")
    assert not failures, "\n\n".join(failures)
