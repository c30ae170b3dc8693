"""How apps call the API: Expo's uploadAsync (POST raw bodies), multipart forms in any field order,
browsers (CORS preflights, OPTIONS), and JSON bodies read as strictly as the OpenAPI document says.

Upload tests run on SQLite and PostgreSQL (``client`` fixture); CORS and OPTIONS touch no database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from accounts_helpers import assert_problem, auth
from files_helpers import (
    API,
    Account,
    child_path,
    etag_of,
    multipart_body,
    multipart_headers,
    names_in,
    new_account,
    node_path,
)
from stowage.app import create_app
from stowage.config import DEFAULT_CORS_ALLOW_HEADERS, ConfigError, load_settings
from support import asgi_client

ORIGIN = "https://app.example.com"


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> Account:
    return await new_account(client, "owner@example.com")


# --- Expo: uploadAsync sends POST ---------------------------------------------------------------------


async def test_post_uploads_a_raw_body_into_a_folder_like_put(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.post(child_path(owner.root_id, "beach.jpg"), content=b"jpeg bytes", headers=owner.headers)

    assert response.status_code == 201, response.text
    node = response.json()
    assert node["name"] == "beach.jpg"
    assert response.headers["etag"] == etag_of(b"jpeg bytes")
    assert response.headers["location"] == f"{API}/nodes/{node['id']}"
    fetched = await client.get(response.headers["location"], headers=owner.headers)
    assert fetched.json()["id"] == node["id"]
    again = await client.post(
        child_path(owner.root_id, "beach.jpg") + "?on_conflict=replace", content=b"v2", headers=owner.headers
    )
    assert again.status_code == 200, again.text
    assert "location" not in again.headers
    assert again.headers["etag"] == etag_of(b"v2")


async def test_post_uploads_to_a_path_like_put(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.post(f"{API}/content/Photos/2026/a.txt", content=b"by path", headers=owner.headers)

    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{API}/nodes/{response.json()['id']}"
    downloaded = await client.get(f"{API}/content/Photos/2026/a.txt", headers=owner.headers)
    assert downloaded.content == b"by path"


async def test_post_replaces_a_files_content_like_put(client: httpx.AsyncClient, owner: Account) -> None:
    created = await client.put(child_path(owner.root_id, "notes.txt"), content=b"one", headers=owner.headers)
    file_id = created.json()["id"]

    response = await client.post(
        node_path(file_id, "/content"), content=b"two", headers={**owner.headers, "if-match": etag_of(b"one")}
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == etag_of(b"two")
    stale = await client.post(
        node_path(file_id, "/content"), content=b"three", headers={**owner.headers, "if-match": etag_of(b"one")}
    )
    assert_problem(stale, 412, "precondition-failed")
    assert (await client.get(node_path(file_id, "/content"), headers=owner.headers)).content == b"two"


async def test_put_answers_location_only_when_it_creates(client: httpx.AsyncClient, owner: Account) -> None:
    created = await client.put(f"{API}/content/x.txt", content=b"1", headers=owner.headers)
    replaced = await client.put(f"{API}/content/x.txt?on_conflict=replace", content=b"2", headers=owner.headers)

    assert created.status_code == 201
    assert created.headers["location"] == f"{API}/nodes/{created.json()['id']}"
    assert replaced.status_code == 200
    assert "location" not in replaced.headers


# --- multipart: fields before files, or a clear 400 -------------------------------------------------------


async def test_a_field_before_the_files_applies_to_them(client: httpx.AsyncClient, owner: Account) -> None:
    await client.put(child_path(owner.root_id, "a.txt"), content=b"old", headers=owner.headers)
    body = multipart_body([("on_conflict", None, b"rename"), ("file", "a.txt", b"new")])

    response = await client.post(
        node_path(owner.root_id, "/upload"), content=body, headers={**owner.headers, **multipart_headers()}
    )

    assert response.status_code == 201, response.text
    assert [item["name"] for item in response.json()["items"]] == ["a (2).txt"]


async def test_a_field_after_a_file_is_refused_not_ignored(client: httpx.AsyncClient, owner: Account) -> None:
    await client.put(child_path(owner.root_id, "b.txt"), content=b"old", headers=owner.headers)
    body = multipart_body(
        [("file", "first.txt", b"1"), ("on_conflict", None, b"replace"), ("file", "b.txt", b"would replace")]
    )

    response = await client.post(
        node_path(owner.root_id, "/upload"), content=body, headers={**owner.headers, **multipart_headers()}
    )

    problem = assert_problem(response, 400, "invalid-input")
    assert problem["errors"] == [{"field": "body.on_conflict", "message": "must come before the file parts"}]
    assert "before the files" in problem["detail"]
    assert "'first.txt'" in problem["detail"]
    # The file before the field was stored as sent; nothing after it was.
    assert await names_in(client, owner, owner.root_id) == ["b.txt", "first.txt"]
    b_file = next(
        item
        for item in (await client.get(node_path(owner.root_id, "/children"), headers=owner.headers)).json()["items"]
        if item["name"] == "b.txt"
    )
    assert (await client.get(node_path(b_file["id"], "/content"), headers=owner.headers)).content == b"old"


async def test_an_unknown_on_conflict_value_is_refused(client: httpx.AsyncClient, owner: Account) -> None:
    body = multipart_body([("on_conflict", None, b"overwrite"), ("file", "c.txt", b"c")])

    response = await client.post(
        node_path(owner.root_id, "/upload"), content=body, headers={**owner.headers, **multipart_headers()}
    )

    problem = assert_problem(response, 400, "invalid-input")
    assert problem["errors"][0]["field"] == "body.on_conflict"
    assert await names_in(client, owner, owner.root_id) == []


async def test_other_fields_anywhere_change_nothing(client: httpx.AsyncClient, owner: Account) -> None:
    body = multipart_body([("file", "d.txt", b"d"), ("description", None, b"holiday"), ("file", "e.txt", b"e")])

    response = await client.post(
        node_path(owner.root_id, "/upload"), content=body, headers={**owner.headers, **multipart_headers()}
    )

    assert response.status_code == 201, response.text
    assert [item["name"] for item in response.json()["items"]] == ["d.txt", "e.txt"]


# --- JSON bodies are read as the document types them -----------------------------------------------------


async def test_a_number_is_not_a_boolean(client: httpx.AsyncClient, owner: Account) -> None:
    created = await client.put(child_path(owner.root_id, "f.txt"), content=b"f", headers=owner.headers)
    file_id = created.json()["id"]

    response = await client.patch(node_path(file_id), json={"starred": 1}, headers=owner.headers)

    problem = assert_problem(response, 400, "invalid-input")
    assert problem["errors"] == [{"field": "body.starred", "message": "Expected `bool | null`, got `int`"}]
    assert (await client.get(node_path(file_id), headers=owner.headers)).json()["starred"] is False
    assert (await client.patch(node_path(file_id), json={"starred": True}, headers=owner.headers)).status_code == 200


async def test_a_whole_number_written_with_a_point_is_an_integer(client: httpx.AsyncClient, owner: Account) -> None:
    # JSON Schema counts 30.0 as an integer; so does the server. 30.5 is not one.
    whole = await client.post(
        f"{API}/me/tokens", json={"name": "t", "scopes": ["read"], "expires_in_days": 30.0}, headers=owner.headers
    )
    fraction = await client.post(
        f"{API}/me/tokens", json={"name": "u", "scopes": ["read"], "expires_in_days": 30.5}, headers=owner.headers
    )

    assert whole.status_code == 201, whole.text
    problem = assert_problem(fraction, 400, "invalid-input")
    assert problem["errors"][0]["field"] == "body.expires_in_days"
    names = [token["name"] for token in (await client.get(f"{API}/me/tokens", headers=owner.headers)).json()]
    assert names == ["t"]


async def test_invalid_bodies_keep_their_usual_errors(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.post(f"{API}/nodes/{owner.root_id}/folders", json={}, headers=owner.headers)

    problem = assert_problem(response, 400, "invalid-input")
    assert problem["errors"] == [{"field": "body.name", "message": "Object missing required field `name`"}]


# --- browsers: CORS and OPTIONS ------------------------------------------------------------------------------


@pytest.fixture
async def browser_app(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        {
            "STOWAGE_DATA_DIR": str(tmp_path / "data"),
            "STOWAGE_CORS_ALLOW_ORIGINS": ORIGIN,
            "STOWAGE_LOG_LEVEL": "warning",
        }
    )
    async with asgi_client(create_app(settings)) as http:
        yield http


def preflight(method: str, headers: str, origin: str = ORIGIN) -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": method, "access-control-request-headers": headers}


async def test_preflight_allows_every_documented_header(browser_app: httpx.AsyncClient) -> None:
    response = await browser_app.options(
        f"{API}/content/a.txt",
        headers=preflight("POST", ", ".join(DEFAULT_CORS_ALLOW_HEADERS)),
    )

    assert response.status_code == 204, response.text
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {h.lower() for h in DEFAULT_CORS_ALLOW_HEADERS} <= allowed
    assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_a_refused_origin_gets_a_problem(browser_app: httpx.AsyncClient) -> None:
    response = await browser_app.options(f"{API}/me", headers=preflight("GET", "authorization", "https://evil.example"))

    problem = assert_problem(response, 403, "permission-denied")
    assert "cors_allow_origins" in problem["detail"]
    assert "access-control-allow-origin" not in response.headers


async def test_a_refused_header_gets_a_problem_naming_it(browser_app: httpx.AsyncClient) -> None:
    response = await browser_app.options(f"{API}/me", headers=preflight("GET", "authorization, x-secret-sauce"))

    problem = assert_problem(response, 400, "invalid-input")
    assert problem["errors"] == [
        {"field": "header.access-control-request-headers", "message": "not allowed: x-secret-sauce"}
    ]


async def test_allowed_headers_are_a_setting(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "STOWAGE_DATA_DIR": str(tmp_path / "data"),
            "STOWAGE_CORS_ALLOW_ORIGINS": ORIGIN,
            "STOWAGE_CORS_ALLOW_HEADERS": "Authorization,X-Tenant",
            "STOWAGE_LOG_LEVEL": "warning",
        }
    )
    async with asgi_client(create_app(settings)) as http:
        tenant = await http.options(f"{API}/me", headers=preflight("GET", "x-tenant"))
        digest = await http.options(f"{API}/me", headers=preflight("GET", "x-content-sha256"))

    assert tenant.status_code == 204
    assert_problem(digest, 400, "invalid-input")


def test_allowed_headers_must_be_header_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cors_allow_headers"):
        load_settings({"STOWAGE_DATA_DIR": str(tmp_path), "STOWAGE_CORS_ALLOW_HEADERS": "X-Ok,Bad Header"})


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/v1/me", "DELETE, GET, OPTIONS, PATCH"),
        ("/api/v1/content/a/b.txt", "GET, HEAD, OPTIONS, POST, PUT"),
        ("/api/v1/nodes/x/content", "GET, HEAD, OPTIONS, POST, PUT"),
        ("/api/v1/nodes/x", "DELETE, GET, OPTIONS, PATCH"),
        ("/api/v1/trash", "DELETE, GET, OPTIONS"),
    ],
)
async def test_options_lists_every_method_of_a_path(tmp_path: Path, path: str, methods: str) -> None:
    settings = load_settings({"STOWAGE_DATA_DIR": str(tmp_path / "data"), "STOWAGE_LOG_LEVEL": "warning"})
    async with asgi_client(create_app(settings)) as http:
        response = await http.options(path)

    assert response.status_code == 204
    assert response.headers["allow"] == methods


async def test_a_wrong_method_names_the_post_uploads(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.patch(f"{API}/content/a.txt", json={}, headers=auth(owner.token))

    problem = assert_problem(response, 405, "method-not-allowed")
    assert set(problem["allowed_methods"]) >= {"GET", "HEAD", "POST", "PUT"}


@pytest.mark.parametrize("value", ["0.5", "1700000000", "yesterday", "2026-13-01"])
async def test_search_dates_are_iso_8601_only(client: httpx.AsyncClient, owner: Account, value: str) -> None:
    response = await client.get(f"{API}/search", params={"modified_before": value}, headers=owner.headers)

    problem = assert_problem(response, 400, "invalid-input")
    assert [error["field"] for error in problem["errors"]] == ["query.modified_before"]


async def test_search_dates_may_be_a_day(client: httpx.AsyncClient, owner: Account) -> None:
    await client.put(child_path(owner.root_id, "g.txt"), content=b"g", headers=owner.headers)

    response = await client.get(f"{API}/search", params={"modified_after": "2000-01-01"}, headers=owner.headers)

    assert response.status_code == 200, response.text
    assert [item["name"] for item in response.json()["items"]] == ["g.txt"]
