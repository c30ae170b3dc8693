"""Who may read a thumbnail: exactly who may read the file (the read path opens it), on SQLite and
PostgreSQL — anonymous 401, the owner, another user 404, an administrator, a share recipient (until
the share ends), a link visitor (file link, folder link, password), and presigned URLs whose transform
parameters are signed (any change 403; a content URL's signature does not open thumbnails)."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient
from PIL import Image

import image_samples as samples
from accounts_helpers import assert_problem, auth, create_pat, make_admin, open_client
from files_helpers import API, mkdir, new_account, node_path, upload
from sharing_helpers import create_link, share_with, unlock, visitor
from stowage.accounts.services import PresignService
from stowage.app import create_app, litestar_of
from stowage.config import Settings

SMALL = {"w": 24, "h": 24, "format": "png"}


def thumb(node_id: str) -> str:
    return node_path(node_id, "/thumbnail")


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def assert_thumbnail(response: httpx.Response, size: tuple[int, int] = (24, 24)) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/")
    assert Image.open(io.BytesIO(response.content)).size == size


@pytest.fixture
async def client(settings: Settings):  # type: ignore[no-untyped-def]
    async with open_client(settings) as test_client:
        yield test_client


@pytest.fixture
async def world(client: httpx.AsyncClient) -> dict[str, Any]:
    owner = await new_account(client, "owner@example.com")
    other = await new_account(client, "other@example.com")
    folder = await mkdir(client, owner, owner.root_id, "photos")
    node = await upload(client, owner, folder["id"], "a.jpg", samples.jpeg())
    return {"owner": owner, "other": other, "folder": folder, "node": node}


async def test_owner_other_anonymous_admin(
    client: httpx.AsyncClient, settings: Settings, world: dict[str, Any]
) -> None:
    node, owner, other = world["node"], world["owner"], world["other"]
    assert_thumbnail(await client.get(thumb(node["id"]), params=SMALL, headers=owner.headers))
    assert_problem(await client.get(thumb(node["id"]), params=SMALL), 401, "unauthenticated")
    assert_problem(await client.get(thumb(node["id"]), params=SMALL, headers=auth("garbage")), 401, "unauthenticated")
    assert_problem(await client.get(thumb(node["id"]), params=SMALL, headers=other.headers), 404, "not-found")
    assert_problem(await client.get(thumb("no-such-node"), params=SMALL, headers=owner.headers), 404, "not-found")
    admin = await make_admin(client, settings, "admin@example.com")
    assert_thumbnail(await client.get(thumb(node["id"]), params=SMALL, headers=auth(admin["access_token"])))
    # A read-only personal token reads thumbnails like downloads.
    read_pat = await create_pat(client, owner.token, scopes=["read"])
    assert_thumbnail(await client.get(thumb(node["id"]), params=SMALL, headers=auth(read_pat["token"])))
    # A folder has no thumbnail.
    assert_problem(await client.get(thumb(world["folder"]["id"]), params=SMALL, headers=owner.headers), 409, "conflict")


async def test_share_recipient_until_the_share_ends(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    owner, other, node = world["owner"], world["other"], world["node"]
    share = await share_with(client, owner, world["folder"]["id"], other)
    assert_thumbnail(await client.get(thumb(node["id"]), params=SMALL, headers=other.headers))
    revoked = await client.delete(f"{API}/shares/{share['id']}", headers=owner.headers)
    assert revoked.status_code == 204
    assert_problem(await client.get(thumb(node["id"]), params=SMALL, headers=other.headers), 404, "not-found")


async def test_link_visitors(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    owner, node, folder = world["owner"], world["node"], world["folder"]
    file_link = await create_link(client, owner, node["id"])
    assert_thumbnail(await client.get(visitor(file_link["token"], "/thumbnail"), params=SMALL))
    folder_link = await create_link(client, owner, folder["id"], password="open sesame 12")
    inside = visitor(folder_link["token"], f"/nodes/{node['id']}/thumbnail")
    assert_problem(await client.get(inside, params=SMALL), 403, "permission-denied")
    grant = (await unlock(client, folder_link["token"], "open sesame 12")).json()["grant"]
    assert_thumbnail(await client.get(inside, params=SMALL, headers={"x-share-grant": grant}))
    assert_thumbnail(await client.get(inside, params={**SMALL, "grant": grant}))
    # Nothing outside the shared folder; a wrong token is not found.
    elsewhere = await upload(client, owner, owner.root_id, "b.jpg", samples.jpeg())
    outside = visitor(folder_link["token"], f"/nodes/{elsewhere['id']}/thumbnail")
    assert_problem(await client.get(outside, params=SMALL, headers={"x-share-grant": grant}), 404, "not-found")
    assert_problem(await client.get(visitor("x" * 43, "/thumbnail"), params=SMALL), 404, "not-found")
    # Revoking the link ends its thumbnails on the next request.
    links = (await client.get(node_path(node["id"], "/links"), headers=owner.headers)).json()["items"]
    for link in links:
        assert (await client.delete(f"{API}/links/{link['id']}", headers=owner.headers)).status_code == 204
    assert_problem(await client.get(visitor(file_link["token"], "/thumbnail"), params=SMALL), 404, "not-found")


async def test_presigned_thumbnail_urls_sign_their_parameters(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    owner, other, node = world["owner"], world["other"], world["node"]
    minted = await client.post(node_path(node["id"], "/presign/thumbnail"), json=SMALL, headers=owner.headers)
    assert minted.status_code == 200, minted.text
    url = relative(minted.json()["url"])
    assert url.startswith(f"{API}/nodes/{node['id']}/thumbnail?")
    assert_thumbnail(await client.get(url))
    assert (await client.head(url)).status_code == 200
    # Any change to a signed parameter, an added one, or reusing the signature elsewhere: 403.
    query = dict(parse_qsl(urlsplit(url).query))
    for changed in ({"w": "2400"}, {"format": "jpeg"}, {"q": "10"}, {"fit": "inside"}):
        tampered = f"{API}/nodes/{node['id']}/thumbnail?{urlencode({**query, **changed})}"
        assert_problem(await client.get(tampered), 403, "permission-denied")
    as_content = f"{API}/nodes/{node['id']}/content?{urlencode(query)}"
    assert_problem(await client.get(as_content), 403, "permission-denied")
    # A content URL's signature does not open a thumbnail.
    content_url = relative(
        (await client.post(node_path(node["id"], "/presign"), json={}, headers=owner.headers)).json()["url"]
    )
    content_query = urlsplit(content_url).query
    assert_problem(await client.get(f"{thumb(node['id'])}?{content_query}"), 403, "permission-denied")
    assert_problem(await client.get(f"{thumb(node['id'])}?w=24&{content_query}"), 403, "permission-denied")
    # Only who may read the file mints one; bad parameters are refused when minting.
    refused = await client.post(node_path(node["id"], "/presign/thumbnail"), json=SMALL, headers=other.headers)
    assert_problem(refused, 404, "not-found")
    assert_problem(await client.post(node_path(node["id"], "/presign/thumbnail"), json=SMALL), 401, "unauthenticated")
    bad = await client.post(node_path(node["id"], "/presign/thumbnail"), json={"w": 99999}, headers=owner.headers)
    assert_problem(bad, 400, "invalid-input")
    # Trashing the file ends the URL.
    assert (await client.delete(node_path(node["id"]), headers=owner.headers)).status_code == 200
    assert_problem(await client.get(url), 404, "not-found")


async def test_thumbnail_urls_for_listings(settings: Settings) -> None:
    """``PresignService.thumbnail_urls`` (what a listing with presign=true uses): one signed URL per file."""
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:  # type: ignore[arg-type]
        owner = await new_account(client, "owner@example.com")
        node = await upload(client, owner, owner.root_id, "a.jpg", samples.jpeg())
        runtime = litestar_of(app).state.runtime
        presign: PresignService = runtime.presign
        principal = await runtime.accounts.auth.authenticate(owner.token)
        transform = {"w": 24, "h": 24, "format": "png"}
        [url] = presign.thumbnail_urls(principal, [node["id"]], transform, 600, "http://testserver")
        assert_thumbnail(await client.get(relative(url)))
