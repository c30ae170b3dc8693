"""Hostile request bodies: every one is a 4xx problem, decided in one place for every route.

- A JSON body nested deeper than the decoder can recurse (``[[[[…``, ``{"a":{"a":…``) is a 400 on
  every JSON route, public or protected, never a 500 (``api/requests.py``).
- A protected route authenticates before it reads or validates its body: no credentials, or bad
  ones, get 401 whatever the body holds — malformed JSON, the wrong shape, binary bytes, a form
  without a boundary, a body over the size limit (``accounts/authn.authenticate_first``).

- An answer sent before the body was read to its end (401, 409, 413, 507, 408) carries
  ``Connection: close`` and the server closes the connection, while answers after a whole body keep
  it (``observability/middleware.py``); checked on a real server over raw sockets.
- A body that stops arriving is cut off after ``body_idle_timeout``: 408, spool removed, nothing
  stored, connection closed, logged, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from accounts_helpers import (
    LOGIN,
    PASSWORD,
    REFRESH,
    SIGNUP,
    assert_problem,
    auth,
    create_pat,
    table_counts,
)
from files_helpers import API, Storage, assert_unchanged, by_path, child_path, new_account, node_path, storage, upload
from stowage.blobs.local import SPOOL_BUFFER_BYTES
from stowage.config import Settings
from support import PROBLEM_TYPE_PREFIX
from support.raw_http import RawConnection, RawResponse, raw_connection, request_head
from support.server import running_server, wait_until
from test_authz_matrix import MATRIX, Rule, app_routes

DEPTH = 5000
DEEP_ARRAYS = b"[" * DEPTH + b"]" * DEPTH
DEEP_OBJECTS = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
NESTED_TOO_DEEPLY = "nested too deeply"
SIGN_IN_FIRST = "Sign in first: send Authorization: Bearer <access token or personal token>."
_PARAM = re.compile(r"\{(\w+):\w+\}")


@dataclass(frozen=True)
class Garbage:
    """A body no route can use, with the content type it claims."""

    name: str
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)


JSON = {"content-type": "application/json"}
GARBAGE = [
    Garbage("malformed-json", b'{"name": "x", ', JSON),
    Garbage("deep-arrays", DEEP_ARRAYS, JSON),
    Garbage("deep-objects", DEEP_OBJECTS, JSON),
    Garbage("wrong-shape", b'[1, "two", {"three": null}]', JSON),
    Garbage("binary", bytes(range(256)) * 8, {"content-type": "application/octet-stream"}),
    Garbage("form-without-boundary", b"--x\r\nnot a form", {"content-type": "multipart/form-data"}),
    Garbage("over-the-size-limit", b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}', JSON),
]
# Callers that must be told to sign in: none at all, a token the server never issued, another scheme.
DEAD_CREDENTIALS: dict[str, dict[str, str]] = {
    "anonymous": {},
    "garbage-token": auth("not-a-token-this-server-issued"),
    "basic-scheme": {"authorization": "Basic dXNlcjpwYXNzd29yZA=="},
}


def concrete(template: str) -> str:
    """A path for a route template: fresh ids (nothing they name exists) and plain names."""
    values = {"path": "some/folder/file.txt", "name": "file.txt", "file_path": "swagger-ui.css"}
    return _PARAM.sub(lambda match: values.get(match.group(1), str(uuid.uuid4())), template)


async def snapshot(settings: Settings) -> tuple[Storage, dict[str, int]]:
    return await storage(settings), await table_counts(settings)


# --- deeply nested JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
async def test_deeply_nested_json_is_a_400_on_public_routes(
    client: httpx.AsyncClient, settings: Settings, body: bytes
) -> None:
    await new_account(client, "ann@example.com")
    before = await snapshot(settings)

    for path in (LOGIN, SIGNUP, REFRESH, "/api/v1/auth/password/forgot"):
        response = await client.post(path, content=body, headers=JSON)

        problem = assert_problem(response, 400, "invalid-input", detail_contains=NESTED_TOO_DEEPLY, field="body")
        assert problem["instance"] == path

    storage_after, counts_after = await snapshot(settings)
    assert_unchanged(before[0], storage_after)
    assert counts_after == before[1]
    # The account is untouched and still signs in.
    assert (await client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD})).status_code == 200


@pytest.mark.parametrize("body", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
async def test_deeply_nested_json_is_a_400_for_a_signed_in_caller(
    client: httpx.AsyncClient, settings: Settings, body: bytes
) -> None:
    ann = await new_account(client, "ann@example.com")
    token = await create_pat(client, ann.token, ["read", "write"])
    before = await snapshot(settings)

    calls = [
        ("POST", f"{API}/folders", ann.headers),
        ("PATCH", node_path(ann.root_id), ann.headers),
        ("POST", node_path(ann.root_id, "/folders"), auth(token["token"])),
        ("POST", f"{API}/batch/move", auth(token["token"])),
        ("POST", "/api/v1/me/tokens", ann.headers),
        ("PATCH", "/api/v1/me", ann.headers),
    ]
    for method, path, headers in calls:
        response = await client.request(method, path, content=body, headers={**headers, **JSON})

        assert_problem(response, 400, "invalid-input", detail_contains=NESTED_TOO_DEEPLY, field="body")

    storage_after, counts_after = await snapshot(settings)
    assert_unchanged(before[0], storage_after)
    assert counts_after == before[1]


async def test_moderately_nested_json_still_gets_its_ordinary_validation_error(client: httpx.AsyncClient) -> None:
    """Nesting the decoder can handle is not refused for its depth: the schema names what is wrong."""
    response = await client.post(LOGIN, content=b'{"email":' + b"[" * 50 + b"]" * 50 + b"}", headers=JSON)

    problem = assert_problem(response, 400, "invalid-input")
    assert NESTED_TOO_DEEPLY not in problem["detail"]
    assert problem["errors"][0]["field"] == "body.email"


# --- authentication comes before the body ------------------------------------------------------------


def protected_routes(settings: Settings) -> list[tuple[str, str]]:
    """Every protected (method, path template) of the application; the matrix test keeps MATRIX complete."""
    routes = sorted(key for key in app_routes(settings) if Rule.PUBLIC not in MATRIX[key])
    assert len(routes) >= 50, routes
    return routes


async def test_garbage_bodies_without_valid_credentials_are_401_on_every_protected_route(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ann = await new_account(client, "ann@example.com")
    before = await snapshot(settings)

    refused = 0
    for method, template in protected_routes(settings):
        path = concrete(template)
        for garbage in GARBAGE:
            for caller, credentials in DEAD_CREDENTIALS.items():
                response = await client.request(
                    method, path, content=garbage.content, headers={**garbage.headers, **credentials}
                )

                where = f"{caller} {garbage.name} {method} {template}"
                assert response.status_code == 401, f"{where}: {response.status_code} {response.text[:300]}"
                if method == "HEAD":  # no body (tus offsets): the status and the challenge are the answer
                    assert response.headers.get("www-authenticate") == 'Bearer realm="stowage"', where
                else:
                    problem = assert_problem(response, 401, "unauthenticated")
                    if caller == "anonymous":
                        assert problem["detail"] == SIGN_IN_FIRST, where
                refused += 1

    storage_after, counts_after = await snapshot(settings)
    assert_unchanged(before[0], storage_after)
    assert counts_after == before[1]
    assert refused == len(protected_routes(settings)) * len(GARBAGE) * len(DEAD_CREDENTIALS)
    # The refusals did not disturb the signed-in user.
    assert (await client.get(f"{API}/nodes/{ann.root_id}/children", headers=ann.headers)).json()["items"] == []


async def test_an_upload_without_credentials_or_a_form_is_401_not_400(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The issue's case: authentication is decided before the multipart body is even looked at."""
    ann = await new_account(client, "ann@example.com")
    before = await storage(settings)

    no_form = await client.post(node_path(ann.root_id, "/upload"), content=b"just bytes")
    signed_in = await client.post(node_path(ann.root_id, "/upload"), content=b"just bytes", headers=ann.headers)

    assert_problem(no_form, 401, "unauthenticated", detail=SIGN_IN_FIRST)
    assert_problem(signed_in, 400, "invalid-input", field="header.content-type")
    assert_unchanged(before, await storage(settings))


async def test_public_routes_still_validate_their_bodies(client: httpx.AsyncClient) -> None:
    """Authentication first applies to protected routes only: sign-in routes answer their body's problem,
    even with a stray bad Authorization header."""
    response = await client.post(LOGIN, content=b'{"email": ', headers={**JSON, **auth("not-a-token")})

    assert_problem(response, 400, "invalid-input")


async def test_options_needs_no_credentials(client: httpx.AsyncClient) -> None:
    """``OPTIONS`` lists what a path allows; it reveals nothing and is answered without credentials."""
    response = await client.options(f"{API}/nodes/{uuid.uuid4()}/upload")

    assert response.status_code == 204
    assert "POST" in response.headers["allow"]


# --- on the wire, with a real server: answers before the body, bodies that stop ----------------------


def assert_raw_problem(response: RawResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_TYPE_PREFIX + code, body
    assert body["status"] == status, body
    assert body["detail"].strip(), body
    assert body["request_id"] == response.headers["x-request-id"], body
    return body


async def send_and_read(connection: RawConnection, head: bytes, body: bytes = b"") -> RawResponse:
    connection.send(head + body)
    return await connection.read_response()


@pytest.mark.slow
async def test_an_answer_sent_before_the_body_was_read_closes_the_connection(tmp_path: Path) -> None:
    """A 401, 409, 413 or 507 decided from the headers leaves the body unread on the wire: the answer says
    ``Connection: close`` and the server closes, so no client sends its next request into the leftovers."""
    env = {
        "STOWAGE_MAX_UPLOAD_BYTES": "200000",
        "STOWAGE_DEFAULT_QUOTA_BYTES": "100000",
        "STOWAGE_MAX_REQUEST_BODY_BYTES": "4096",
    }
    async with running_server(tmp_path / "server", env) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            ann = await new_account(client, "ann@example.com")
            await upload(client, ann, ann.root_id, "taken.txt", b"first")
        refusals = [
            ("no credentials", "PUT", by_path("content", "new.bin"), {}, 150_000, 401, "unauthenticated"),
            ("name taken", "PUT", child_path(ann.root_id, "taken.txt"), ann.headers, 50_000, 409, "conflict"),
            ("over the upload limit", "PUT", child_path(ann.root_id, "big.bin"), ann.headers, 300_000, 413,
             "payload-too-large"),
            ("over the quota", "PUT", child_path(ann.root_id, "big.bin"), ann.headers, 150_000, 507,
             "quota-exceeded"),
            ("JSON over the body limit", "POST", LOGIN, JSON, 100_000, 413, "payload-too-large"),
        ]  # fmt: skip

        for case, method, target, headers, size, status, code in refusals:
            async with raw_connection(server.port) as connection:
                head = request_head(method, target, {**headers, "content-length": str(size)})
                response = await send_and_read(connection, head, b"x" * size)

                assert_raw_problem(response, status, code)
                assert response.headers.get("connection") == "close", (case, response.headers)
                assert await connection.closed_by_server(), case

        # Answers given after the whole body was read keep the connection for the next request.
        async with raw_connection(server.port) as connection:
            stored = await send_and_read(
                connection,
                request_head("PUT", child_path(ann.root_id, "small.txt"), {**ann.headers, "content-length": "1000"}),
                b"y" * 1000,
            )
            login = b'{"email": "ann@example.com", "password": "not the password at all"}'
            refused = await send_and_read(
                connection, request_head("POST", LOGIN, {**JSON, "content-length": str(len(login))}), login
            )
            health = await send_and_read(connection, request_head("GET", "/healthz"))

        assert stored.status == 201, stored
        assert refused.status == 401, refused
        assert "connection" not in stored.headers
        assert "connection" not in refused.headers
        assert health.status == 200

        # A client that keeps connections (httpx) never sends a request into one the server drops.
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            for _ in range(10):
                answer = await client.put(by_path("content", "anonymous.bin"), content=b"z" * 150_000)
                assert_problem(answer, 401, "unauthenticated")
                assert answer.headers["connection"] == "close"
                assert (await client.get("/healthz")).status_code == 200

            listing = await client.get(node_path(ann.root_id, "/children"), headers=ann.headers)
        assert sorted(item["name"] for item in listing.json()["items"]) == ["small.txt", "taken.txt"]


@pytest.mark.slow
async def test_a_body_that_stops_arriving_times_out_and_leaves_nothing(tmp_path: Path) -> None:
    """16 uploads (raw, by path, multipart) and sign-ins whose bodies stop half-way: each gets a 408 and a
    closed connection once ``body_idle_timeout`` passes, its spool file is gone, nothing is stored, and
    the server serves throughout."""
    async with running_server(tmp_path / "server", {"STOWAGE_BODY_IDLE_TIMEOUT": "3"}) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            ann = await new_account(client, "ann@example.com")
        spool_dir = server.data_dir / "tmp"
        form_head = b'--cut\r\nContent-Disposition: form-data; name="file"; filename="form.bin"\r\n\r\n'
        form = {"content-type": "multipart/form-data; boundary=cut"}
        declared = {"content-length": "1000"}
        # Uploads send more than the writer gathers in memory (SPOOL_BUFFER_BYTES), so each has a spool
        # file on disk when its body stalls: the file that must be gone afterwards.
        big = {"content-length": str(3 * SPOOL_BUFFER_BYTES)}
        more = SPOOL_BUFFER_BYTES + 500
        stalls: list[tuple[bytes, bytes]] = []  # (request head, the part of the body that is sent)
        for i in range(6):
            head = request_head("PUT", child_path(ann.root_id, f"raw{i}.bin"), {**ann.headers, **big})
            stalls.append((head, b"a" * more))
        for i in range(3):
            head = request_head("PUT", by_path("content", f"path{i}.bin"), {**ann.headers, **big})
            stalls.append((head, b"b" * more))
        for _ in range(4):
            head = request_head("POST", node_path(ann.root_id, "/upload"), {**ann.headers, **form, **big})
            stalls.append((head, form_head + b"c" * more))
        uploads = len(stalls)
        for _ in range(3):
            stalls.append((request_head("POST", LOGIN, {**JSON, **declared}), b'{"email": "ann@example.com", "pass'))

        async with contextlib.AsyncExitStack() as stack:
            connections = [await stack.enter_async_context(raw_connection(server.port)) for _ in stalls]
            for connection, (head, part) in zip(connections, stalls, strict=True):
                connection.send(head + part)
            # Every upload is spooling what it got, and the server answers others meanwhile.
            await wait_until(lambda: len(list(spool_dir.iterdir())) == uploads)
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                assert (await client.get("/healthz")).status_code == 200

            responses = await asyncio.gather(*(connection.read_response() for connection in connections))
            closed = await asyncio.gather(*(connection.closed_by_server() for connection in connections))

        for (head, part), response, was_closed in zip(stalls, responses, closed, strict=True):
            problem = assert_raw_problem(response, 408, "request-timeout")
            assert problem["detail"] == (
                f"The request body stopped arriving: no byte came for 3 s after the first {len(part)}. "
                "Nothing was stored; send the request again."
            )
            assert response.headers.get("connection") == "close", (head, response.headers)
            assert was_closed, head
        assert list(spool_dir.iterdir()) == []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            listing = await client.get(node_path(ann.root_id, "/children"), headers=ann.headers)
            me = await client.get("/api/v1/me", headers=ann.headers)
            assert listing.json()["items"] == []
            assert me.json()["used_bytes"] == 0
            assert not [p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()]
            # The server keeps serving: a whole upload goes through.
            assert (await upload(client, ann, ann.root_id, "after.bin", b"complete"))["size"] == len(b"complete")

        def timeouts() -> list[dict[str, Any]]:
            return [r for r in server.log_records() if r.get("event") == "request_body_timeout"]

        await wait_until(lambda: len(timeouts()) == len(stalls))
        assert sorted(r["bytes_in"] for r in timeouts()) == sorted(len(part) for _, part in stalls)
        access = [r for r in server.log_records() if r.get("logger") == "stowage.access" and r.get("status") == 408]
        assert len(access) == len(stalls)
