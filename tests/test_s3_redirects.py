"""``s3_redirect_downloads``: a whole-file GET, once Stowage has authorised it, is answered with a 307 to a
short-lived presigned URL of the object store, which then serves the bytes with the file's Content-Type
and Content-Disposition. Everything else — ranges, HEAD, refused callers, 304 — is answered as before,
and no refused caller ever sees an object-store URL. On SQLite and PostgreSQL, against moto's S3 server.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from accounts_helpers import make_admin
from conftest import make_settings
from files_helpers import API, by_path, new_account, node_path, upload
from sharing_helpers import create_link, visitor
from stowage.config import Settings

CONTENT = b"<html><script>alert('served by the object store')</script></html>\n" * 50
PRESIGN_SECONDS = 120


@pytest.fixture
def settings(settings_env: dict[str, str], s3_env: dict[str, str]) -> Settings:
    return make_settings(
        {**settings_env, **s3_env}, s3_redirect_downloads="true", s3_presign_seconds=str(PRESIGN_SECONDS)
    )


def assert_redirect(response: httpx.Response, s3_env: dict[str, str]) -> str:
    assert response.status_code == 307, response.text
    location = response.headers["location"]
    assert location.startswith(f"{s3_env['STOWAGE_S3_ENDPOINT_URL']}/{s3_env['STOWAGE_S3_BUCKET']}/blobs/")
    assert response.headers["cache-control"] == "private, no-store"
    assert response.content == b""
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == [str(PRESIGN_SECONDS)]
    return location


async def get(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
    """A GET through Stowage that does not follow a redirect (the test client would follow it to itself)."""
    return await client.get(url, headers=headers, follow_redirects=False)


async def fetch(location: str) -> httpx.Response:
    async with httpx.AsyncClient() as outside:  # the client's own trip to the object store
        return await outside.get(location)


async def test_a_whole_file_get_goes_to_the_object_store(
    client: httpx.AsyncClient, settings: Settings, s3_env: dict[str, str]
) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "page.html", CONTENT)

    for response in (
        await get(client, node_path(node["id"], "/content"), alice.headers),
        await get(client, by_path("content", "page.html"), alice.headers),
    ):
        served = await fetch(assert_redirect(response, s3_env))
        assert served.status_code == 200
        assert served.content == CONTENT
        # Stowage's own plan decides the headers: HTML is never rendered inline from a user's upload.
        assert served.headers["content-type"].startswith("text/html")
        assert served.headers["content-disposition"].startswith("attachment")

    attached = await get(client, node_path(node["id"], "/content") + "?download=true", alice.headers)
    served = await fetch(assert_redirect(attached, s3_env))
    assert 'filename="page.html"' in served.headers["content-disposition"]


async def test_ranges_head_and_revalidation_are_answered_here(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "page.html", CONTENT)

    ranged = await get(client, node_path(node["id"], "/content"), {**alice.headers, "Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.content == CONTENT[10:20]
    head = await client.head(node_path(node["id"], "/content"), headers=alice.headers)
    assert head.status_code == 200
    assert "location" not in head.headers
    revalidated = await get(
        client, node_path(node["id"], "/content"), {**alice.headers, "If-None-Match": head.headers["etag"]}
    )
    assert revalidated.status_code == 304
    empty = await upload(client, alice, alice.root_id, "empty.txt", b"")
    nothing = await get(client, node_path(empty["id"], "/content"), alice.headers)
    assert nothing.status_code == 200  # no bytes to fetch elsewhere
    assert nothing.content == b""


@pytest.mark.parametrize("caller", ["anonymous", "another user", "owner", "admin"])
async def test_only_callers_the_policy_lets_read_get_an_object_store_url(
    client: httpx.AsyncClient, settings: Settings, s3_env: dict[str, str], caller: str
) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "page.html", CONTENT)
    headers: dict[str, str] = {}
    if caller == "owner":
        headers = alice.headers
    elif caller == "another user":
        headers = (await new_account(client, "bob@example.com")).headers
    elif caller == "admin":
        pair = await make_admin(client, settings, "root@example.com")
        headers = {"Authorization": f"Bearer {pair['access_token']}"}

    response = await get(client, node_path(node["id"], "/content"), headers)

    if caller in {"owner", "admin"}:  # the policy lets an administrator read any file, as without S3
        assert (await fetch(assert_redirect(response, s3_env))).content == CONTENT
        return
    assert response.status_code == (401 if caller == "anonymous" else 404)
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_share_links_and_presigned_urls_redirect_after_their_own_checks(
    client: httpx.AsyncClient, s3_env: dict[str, str]
) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "page.html", CONTENT)
    link = await create_link(client, alice, node["id"], max_downloads=1)

    first = await get(client, visitor(link["token"], "/content"), {})
    assert (await fetch(assert_redirect(first, s3_env))).content == CONTENT
    second = await get(client, visitor(link["token"], "/content"), {})
    assert second.status_code in {403, 404, 410}  # the redirect counted as the link's one download
    assert "location" not in second.headers

    minted = await client.post(f"{API}/nodes/{node['id']}/presign", json={}, headers=alice.headers)
    assert minted.status_code == 200, minted.text
    url = urlsplit(minted.json()["url"])
    signed = await get(client, f"{url.path}?{url.query}", {})
    assert (await fetch(assert_redirect(signed, s3_env))).content == CONTENT


async def test_the_object_store_url_is_short_lived_and_signed(
    client: httpx.AsyncClient, s3_env: dict[str, str]
) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "page.html", CONTENT)
    location = assert_redirect(await get(client, node_path(node["id"], "/content"), alice.headers), s3_env)
    query = parse_qs(urlsplit(location).query)
    signed_at = time.mktime(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")) - time.timezone
    assert abs(signed_at - time.time()) < 300
    assert int(query["X-Amz-Expires"][0]) == PRESIGN_SECONDS  # short-lived: the signature says so
    # The response headers ride in the signed query (SigV4 signs the whole query string), so a client
    # cannot alter them; moto does not check signatures, so that part is the S3 server's to enforce.
    assert query["response-content-disposition"][0].startswith("attachment")
    assert query["response-content-type"][0].startswith("text/html")
    assert "X-Amz-Signature" in query
