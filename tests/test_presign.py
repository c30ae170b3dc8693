"""Presigned URLs: the signature scheme on its own, then minting and using URLs on SQLite and PostgreSQL.

A GET URL serves one file (Range and validators included) without an Authorization header; a PUT URL
stores one new file within its size and media-type limits, through the ordinary upload path. Any
change to a URL answers 403 problem+json, an expired one 403 (``presign: expired``), and revoking
the credential that signed it (or disabling its user) ends it on the next request.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts_helpers import (
    LOGOUT,
    access_secret,
    assert_problem,
    auth,
    concurrent_client,
    create_pat,
    login,
    make_admin,
)
from conftest import make_settings
from files_helpers import (
    API,
    Account,
    assert_unchanged,
    children,
    etag_of,
    mkdir,
    new_account,
    storage,
    upload,
)
from stowage.accounts import presign
from stowage.accounts.presign import Constraints, Presigned, Signer
from stowage.config import Settings
from stowage.errors import PermissionDenied, Unauthenticated
from stowage.files.media_types import media_type_allows
from stowage.policy import (
    Action,
    CredentialKind,
    Owned,
    Principal,
    Restriction,
    Role,
    Scope,
    authorize,
    authorize_signing,
)

CONTENT = bytes(range(256)) * 16  # 4 KiB
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
BASE = "http://testserver.local"
KEY = presign.derive_key("a test secret of at least thirty-two characters")
SIGNER = Signer(code="s", credential_id="0b8c2f5e-0000-4000-8000-000000000001", user_id="u-1")
PATH = "/api/v1/nodes/n-1/content"


# --- the scheme ------------------------------------------------------------------------------------


def _presigned(
    expires: int = 2_000_000_000, constraints: Constraints | None = None, *, method: str = "GET", path: str = PATH
) -> Presigned:
    constraints = constraints or Constraints()
    signature = presign.sign(KEY, method, path, expires=expires, signer=SIGNER, constraints=constraints)
    return Presigned(expires=expires, signer=SIGNER, signature=signature, constraints=constraints)


def test_the_key_is_derived_for_presigning_only() -> None:
    secret = "a test secret of at least thirty-two characters"
    assert presign.derive_key(secret) == KEY
    assert secret.encode() != KEY
    assert len(KEY) == 32
    assert presign.derive_key(secret + "x") != KEY


def test_a_signature_verifies_and_head_is_signed_as_get() -> None:
    signed = _presigned()
    presign.verify(KEY, "GET", PATH, signed)
    presign.verify(KEY, "HEAD", PATH, signed)
    assert len(signed.signature) == presign.SIGNATURE_LENGTH


@pytest.mark.parametrize(
    ("method", "path", "change"),
    [
        ("PUT", PATH, {}),
        ("DELETE", PATH, {}),
        ("GET", "/api/v1/nodes/n-2/content", {}),
        ("GET", PATH, {"expires": 2_000_000_001}),
        ("GET", PATH, {"signer": Signer(code="p", credential_id=SIGNER.credential_id, user_id="u-1")}),
        ("GET", PATH, {"signer": Signer(code="s", credential_id=SIGNER.credential_id, user_id="u-2")}),
        ("GET", PATH, {"constraints": Constraints(max_size=10)}),
        ("GET", PATH, {"constraints": Constraints(media_type="image/*")}),
        ("GET", PATH, {"constraints": Constraints(on_conflict="replace")}),
    ],
)
def test_every_part_is_covered(method: str, path: str, change: dict[str, Any]) -> None:
    original = _presigned()
    changed = Presigned(
        expires=change.get("expires", original.expires),
        signer=change.get("signer", original.signer),
        signature=original.signature,
        constraints=change.get("constraints", original.constraints),
    )
    with pytest.raises(PermissionDenied, match="signature does not match"):
        presign.verify(KEY, method, path, changed)


def test_another_key_does_not_verify() -> None:
    with pytest.raises(PermissionDenied):
        presign.verify(presign.derive_key("another secret of at least thirty-two chars"), "GET", PATH, _presigned())


def test_the_signed_parts_cannot_run_into_each_other() -> None:
    """Moving text between parts changes what is signed (the parts are a JSON array, not joined text)."""
    a = presign.canonical("GET", "/a", expires=1, signer=SIGNER, constraints=Constraints(media_type="b"))
    b = presign.canonical("GET", "/a", expires=1, signer=SIGNER, constraints=Constraints(on_conflict="b"))
    c = presign.canonical("GET", '/a","b', expires=1, signer=SIGNER, constraints=Constraints())
    assert len({a, b, c}) == 3


def test_the_query_round_trips() -> None:
    constraints = Constraints(on_conflict="fail", max_size=1024, media_type="image/*")
    signed = _presigned(constraints=constraints, method="PUT", path="/api/v1/nodes/f/children/a b.png")
    query = presign.query(signed.expires, SIGNER, constraints, signed.signature)
    assert "X-Stowage-Media-Type=image/*" in query
    assert presign.parse(query) == signed
    assert presign.parse(query.encode()) == signed


@pytest.mark.parametrize("key", [KEY, b"", b"k" * 64, b"long key " * 20])
def test_the_batch_hmac_is_hmac_sha256(key: bytes) -> None:
    mac = presign._hmac_sha256(key)
    for message in (b"", b"a", b"x" * 1000):
        assert mac(message) == hmac.digest(key, message, "sha256")


def test_listing_urls_are_the_urls_sign_and_query_make() -> None:
    """The batch signer of listings makes exactly what signing each URL on its own makes."""
    ids = ["3f1c0a9e-0000-4000-8000-00000000000a", "b-2", "odd id/é"]
    urls = presign.download_urls(KEY, "https://h.example/x/", ids, expires=1_800_000_000, signer=SIGNER)
    for node_id, url in zip(ids, urls, strict=True):
        path = presign.download_path(node_id)
        signature = presign.sign(KEY, "GET", path, expires=1_800_000_000, signer=SIGNER, constraints=Constraints())
        expected_query = presign.query(1_800_000_000, SIGNER, Constraints(), signature)
        assert url == f"https://h.example/x/api/v1/nodes/{quote(node_id, safe='')}/content?{expected_query}"
        parsed = presign.parse(urlsplit(url).query)
        assert parsed is not None
        presign.verify(KEY, "GET", path, parsed)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "download=true",
        "on_conflict=replace",
        "X-Stowage-Unknown=1",
    ],
)
def test_a_query_without_presign_parameters_is_not_presigned(query: str) -> None:
    assert presign.parse(query) is None


def _good_query() -> str:
    signed = _presigned()
    return presign.query(signed.expires, SIGNER, Constraints(), signed.signature)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("X-Stowage-Signature=" + "A" * 43, "X-Stowage-Expires is missing"),
        (_good_query().replace("X-Stowage-Expires=2000000000", "X-Stowage-Expires=soon"), "whole number"),
        (_good_query().replace("X-Stowage-Expires=2000000000", "X-Stowage-Expires=-5"), "whole number"),
        (_good_query() + "&X-Stowage-Expires=1", "more than once"),
        (_good_query().replace("X-Stowage-Credential=s.", "X-Stowage-Credential=x."), "malformed"),
        (_good_query().replace(".u-1", ".u.1"), "malformed"),
        (_good_query().rsplit("=", 1)[0] + "=short", "malformed"),
        (_good_query().split("&X-Stowage-Credential")[0], "X-Stowage-Credential is missing"),
    ],
)
def test_a_broken_presign_query_is_refused(query: str, message: str) -> None:
    with pytest.raises(PermissionDenied, match=message):
        presign.parse(query)


@hypothesis_settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.sampled_from("0123456789abcdefABCDEF-_.sp"))
def test_any_changed_character_of_the_query_is_refused(position: int, replacement: str) -> None:
    """Change one character anywhere in a valid query: it parses to something that does not verify, or
    not at all — never to a request that passes."""
    query = _good_query()
    index = position % len(query)
    changed = query[:index] + replacement + query[index + 1 :]
    if changed == query:
        return
    try:
        parsed = presign.parse(changed)
    except PermissionDenied:
        return
    if parsed is None:
        return
    with pytest.raises(PermissionDenied):
        presign.verify(KEY, "GET", PATH, parsed)


def test_restrictions_follow_the_url() -> None:
    download = presign.restriction_for("HEAD", PATH, _presigned())
    assert download == Restriction(action=Action.FILE_READ, node_id="n-1")
    upload = presign.restriction_for(
        "PUT",
        "/api/v1/nodes/f-1/children/a.png",
        _presigned(constraints=Constraints(on_conflict="fail", max_size=5, media_type="image/png")),
    )
    assert upload == Restriction(
        action=Action.FILE_WRITE, node_id="f-1", name="a.png", max_size=5, media_type="image/png", on_conflict="fail"
    )
    for method, path in [("GET", "/api/v1/nodes/n-1"), ("PUT", PATH), ("POST", "/api/v1/nodes/f/children/a")]:
        with pytest.raises(PermissionDenied, match="only GET a file's content or one thumbnail of it, PUT one new"):
            presign.restriction_for(method, path, _presigned())


def test_thumbnail_urls_sign_their_transform() -> None:
    """A thumbnail URL reads its file through the thumbnail route only, with exactly the signed parameters;
    a download URL signs as before (no transform part) and cannot be stretched to a thumbnail."""
    thumbnail_path = presign.thumbnail_path("n-1")
    transform = presign.transform_text({"w": 256, "format": "webp"})
    assert transform == "w=256&h=&fit=&q=&format=webp"
    signed = Constraints(transform=transform)
    assert presign.restriction_for("GET", thumbnail_path, _presigned(constraints=signed)) == Restriction(
        action=Action.FILE_READ, node_id="n-1"
    )
    for path, constraints in [
        (thumbnail_path, Constraints()),  # no transform: not a thumbnail URL
        (PATH, signed),  # a transform on the content route
        (thumbnail_path, Constraints(transform=transform, max_size=5)),
    ]:
        with pytest.raises(PermissionDenied):
            presign.restriction_for("GET", path, _presigned(constraints=constraints))
    with pytest.raises(PermissionDenied):
        presign.restriction_for("PUT", "/api/v1/nodes/f-1/children/a.png", _presigned(constraints=signed))
    # The query carries the parameters; parsing it back gives the same transform, in any order.
    expires, signature = (
        2_000_000_000,
        presign.sign(KEY, "GET", thumbnail_path, expires=2_000_000_000, signer=SIGNER, constraints=signed),
    )
    query = presign.query(expires, SIGNER, signed, signature)
    assert query.startswith("w=256&format=webp&X-Stowage-Expires=")
    reordered = "&".join(reversed(query.split("&")))
    parsed = presign.parse(reordered)
    assert parsed is not None
    assert parsed.constraints == signed
    presign.verify(KEY, "GET", thumbnail_path, parsed)
    # A transform is a tenth element: never confused with a tus URL's folder (the ninth).
    tus_like = presign.canonical(
        "GET", thumbnail_path, expires=1, signer=SIGNER, constraints=Constraints(folder_id=transform)
    )
    assert presign.canonical("GET", thumbnail_path, expires=1, signer=SIGNER, constraints=signed) != tus_like
    for changed in ("w=257", "format=png", "q=1"):
        name = changed.split("=")[0]
        tampered = "&".join(p for p in query.split("&") if not p.startswith(name + "=")) + "&" + changed
        parsed_tampered = presign.parse(tampered)
        assert parsed_tampered is not None
        with pytest.raises(PermissionDenied):
            presign.verify(KEY, "GET", thumbnail_path, parsed_tampered)


@pytest.mark.parametrize("kind", list(CredentialKind))
def test_only_a_session_or_a_personal_token_may_sign(kind: CredentialKind) -> None:
    """A presigned URL or a share link cannot lend itself to a new URL; the action's scope still counts."""
    caller = Principal(
        user_id="u-1",
        role=Role.USER,
        scopes=frozenset({Scope.READ}),
        kind=kind,
        credential_id="c-1",
        restriction=Restriction(action=Action.FILE_READ, node_id="n-1") if kind is CredentialKind.PRESIGNED else None,
        share_id="s-1" if kind is CredentialKind.SHARE_LINK else None,
    )
    if kind in {CredentialKind.SESSION, CredentialKind.PERSONAL_TOKEN}:
        assert authorize_signing(caller, Action.FILE_READ) is caller
        with pytest.raises(PermissionDenied, match="'write' scope"):
            authorize_signing(caller, Action.FILE_WRITE)
    else:
        with pytest.raises(PermissionDenied, match="minted with a session or a personal access token"):
            authorize_signing(caller, Action.FILE_READ)
    with pytest.raises(Unauthenticated):
        authorize_signing(None, Action.FILE_READ)


def test_a_presigned_principal_is_confined_to_its_operation() -> None:
    """The signer's rights, for the one signed action on the one signed node (also for an administrator)."""
    restriction = Restriction(action=Action.FILE_READ, node_id="n-1")
    holder = Principal(
        user_id="u-1",
        role=Role.ADMIN,
        scopes=frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
        kind=CredentialKind.PRESIGNED,
        credential_id="c-1",
        restriction=restriction,
    )
    assert authorize(holder, Action.FILE_READ, Owned(owner_id="u-1", node_id="n-1")) is holder
    refused = [
        (Action.FILE_WRITE, Owned(owner_id="u-1", node_id="n-1")),
        (Action.FILE_READ, Owned(owner_id="u-1", node_id="n-2")),
        (Action.FILE_READ, Owned(owner_id="u-1")),
        (Action.ADMIN_USERS_READ, None),
        (Action.ACCOUNT_READ, None),
    ]
    for action, resource in refused:
        with pytest.raises(PermissionDenied):
            authorize(holder, action, resource)
    upload = Restriction(action=Action.FILE_WRITE, node_id="f-1", name="a.png", on_conflict="fail")
    upload.check_name("a.png")
    with pytest.raises(PermissionDenied, match=r"uploads only 'a\.png'"):
        upload.check_name("b.png")
    upload.check_conflict_policy("fail", replaces_version=False)
    with pytest.raises(PermissionDenied, match="on_conflict=fail only"):
        upload.check_conflict_policy("replace", replaces_version=False)
    with pytest.raises(PermissionDenied, match="does not replace"):
        upload.check_conflict_policy("fail", replaces_version=True)
    replacing = Restriction(action=Action.FILE_WRITE, node_id="f-1", name="a.png", on_conflict="replace")
    replacing.check_conflict_policy("replace", replaces_version=True)


@pytest.mark.parametrize(
    ("pattern", "media_type", "allowed"),
    [
        ("image/png", "image/png", True),
        ("image/png", "IMAGE/PNG; charset=x", True),
        ("image/*", "image/heic", True),
        ("image/*", "image/", False),
        ("image/*", "text/html", False),
        ("image/png", "image/pngx", False),
        ("text/plain", "text/plain;charset=utf-8", True),
    ],
)
def test_media_type_constraints(pattern: str, media_type: str, allowed: bool) -> None:
    assert media_type_allows(pattern, media_type) is allowed


# --- through the application -------------------------------------------------------------------------


def relative(url: str) -> str:
    assert url.startswith(BASE + "/api/v1/"), url
    return url.removeprefix(BASE)


def with_query(url: str, **changes: str | None) -> str:
    """``url`` with query parameters replaced (None removes one); the order is kept."""
    parts = urlsplit(url)
    pairs = [(k, changes.get(k, v)) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    pairs += [(k, v) for k, v in changes.items() if v is not None and k not in dict(parse_qsl(parts.query))]
    query = urlencode([(k, v) for k, v in pairs if v is not None], safe="*/")
    return f"{parts.path}?{query}"


async def mint_download(client: httpx.AsyncClient, account: Account | dict[str, str], node_id: str,
                        **body: Any) -> httpx.Response:  # fmt: skip
    headers = account.headers if isinstance(account, Account) else account
    return await client.post(f"{API}/nodes/{node_id}/presign", json=body, headers=headers)


async def download_url(client: httpx.AsyncClient, account: Account, node_id: str, **body: Any) -> str:
    response = await mint_download(client, account, node_id, **body)
    assert response.status_code == 200, response.text
    return relative(response.json()["url"])


async def upload_url(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> str:
    response = await client.post(f"{API}/presign/upload", json=body, headers=headers)
    assert response.status_code == 200, response.text
    minted = response.json()
    assert minted["method"] == "PUT"
    return relative(minted["url"])


def refused(response: httpx.Response, reason: str | None = None, *, contains: str = "") -> dict[str, Any]:
    body = assert_problem(response, 403, "permission-denied", detail_contains=contains)
    if reason is not None:
        assert body.get("presign") == reason, body
    return body


async def test_a_get_url_serves_the_file_without_a_header(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "photo.bin", CONTENT)
    minted = await mint_download(client, alice, node["id"], expires_in=600)
    assert minted.status_code == 200, minted.text
    body = minted.json()
    assert body["method"] == "GET"
    url = relative(body["url"])
    assert url.startswith(f"{API}/nodes/{node['id']}/content?X-Stowage-Expires=")
    expires = int(dict(parse_qsl(urlsplit(url).query))["X-Stowage-Expires"])
    assert abs(expires - (time.time() + 600)) < 5
    assert body["expires_at"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(expires)))

    whole = await client.get(url)
    assert whole.status_code == 200
    assert whole.content == CONTENT
    assert whole.headers["etag"] == etag_of(CONTENT)
    head = await client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(CONTENT))
    ranged = await client.get(url, headers={"range": "bytes=100-199"})
    assert ranged.status_code == 206
    assert ranged.content == CONTENT[100:200]
    assert ranged.headers["content-range"] == f"bytes 100-199/{len(CONTENT)}"
    cached = await client.get(url, headers={"if-none-match": etag_of(CONTENT)})
    assert cached.status_code == 304
    attachment = await client.get(url + "&download=true")
    assert attachment.status_code == 200
    assert attachment.headers["content-disposition"].startswith("attachment")


async def test_a_read_only_token_mints_get_urls_but_not_upload_urls(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.txt", b"text")
    reader = auth((await create_pat(client, alice.token, ["read"]))["token"])
    minted = await mint_download(client, reader, node["id"])
    assert minted.status_code == 200, minted.text
    served = await client.get(relative(minted.json()["url"]))
    assert served.status_code == 200
    assert served.content == b"text"
    response = await client.post(
        f"{API}/presign/upload", json={"folder_id": alice.root_id, "name": "b.txt"}, headers=reader
    )
    assert_problem(response, 403, "permission-denied", detail_contains="write")


async def test_only_who_may_read_the_file_mints_its_url(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    node = await upload(client, alice, alice.root_id, "a.txt", b"text")
    assert_problem(await mint_download(client, bob, node["id"]), 404, "not-found")
    assert_problem(await mint_download(client, {}, node["id"]), 401, "unauthenticated")
    folder = await mkdir(client, alice, alice.root_id, "docs")
    assert_problem(await mint_download(client, alice, folder["id"]), 409, "conflict", detail_contains="folder")


async def test_the_lifetime_is_capped_by_the_setting(settings_env: dict[str, str]) -> None:
    from accounts_helpers import open_client

    settings = make_settings(settings_env, presign_max_seconds=3600, presign_default_seconds=120)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "a.txt", b"text")
        too_long = await mint_download(client, alice, node["id"], expires_in=3601)
        body = assert_problem(too_long, 400, "invalid-input", detail_contains="3600", field="body.expires_in")
        assert body["max_seconds"] == 3600
        longest = await mint_download(client, alice, node["id"], expires_in=3600)
        assert longest.status_code == 200
        default = await download_url(client, alice, node["id"])
        expires = int(dict(parse_qsl(urlsplit(default).query))["X-Stowage-Expires"])
        assert abs(expires - (time.time() + 120)) < 5
        upload_too_long = await client.post(
            f"{API}/presign/upload",
            json={"folder_id": alice.root_id, "name": "b.txt", "expires_in": 7200},
            headers=alice.headers,
        )
        assert_problem(upload_too_long, 400, "invalid-input", detail_contains="3600", field="body.expires_in")
        listing = await client.get(
            f"{API}/nodes/{alice.root_id}/children",
            params={"presign": "true", "presign_expires_in": "4000"},
            headers=alice.headers,
        )
        assert_problem(listing, 400, "invalid-input", field="query.presign_expires_in")


async def test_each_tampered_part_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.bin", CONTENT)
    other = await upload(client, alice, alice.root_id, "b.bin", b"other file of alice")
    url = await download_url(client, alice, node["id"])
    query = dict(parse_qsl(urlsplit(url).query))
    second_session = await login(client, "alice@example.com")
    pat = await create_pat(client, alice.token, ["read"])
    code, credential_id, user_id = query["X-Stowage-Credential"].split(".")
    signature = query["X-Stowage-Signature"]
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    tampered = {
        "node": url.replace(node["id"], other["id"]),
        "expiry": with_query(url, **{"X-Stowage-Expires": str(int(query["X-Stowage-Expires"]) + 1)}),
        "signature": with_query(url, **{"X-Stowage-Signature": flipped}),
        "session": with_query(url, **{"X-Stowage-Credential": f"s.{second_session['session_id']}.{user_id}"}),
        "token": with_query(url, **{"X-Stowage-Credential": f"p.{pat['details']['id']}.{user_id}"}),
        "added max size": with_query(url, **{"X-Stowage-Max-Size": "10"}),
        "added on_conflict": with_query(url, on_conflict="fail"),
    }
    assert code == "s"
    assert credential_id
    for what, changed in tampered.items():
        response = await client.get(changed)
        body = refused(response)
        assert "signature does not match" in body["detail"], (what, body)
        assert (await client.head(changed)).status_code == 403, what
    # The method: a GET URL does not write, whatever the body.
    before = await storage(settings)
    replaced = await client.put(url, content=b"overwritten")
    refused(replaced, contains="signature")
    assert_unchanged(before, await storage(settings))
    assert (await client.get(url)).content == CONTENT
    # Nor does it reach another route of the same node.
    metadata = await client.get(url.replace("/content?", "?"))
    refused(metadata)


async def test_an_expired_url_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    """Signed with the application's real key, but expired a second ago: 403 saying so."""
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.bin", CONTENT)
    url = await download_url(client, alice, node["id"])
    signer = Signer.parse(dict(parse_qsl(urlsplit(url).query))["X-Stowage-Credential"])
    key = presign.derive_key(access_secret(settings))
    expires = int(time.time()) - 1
    path = presign.download_path(node["id"])
    signature = presign.sign(key, "GET", path, expires=expires, signer=signer, constraints=Constraints())
    expired = f"{path}?{presign.query(expires, signer, Constraints(), signature)}"
    body = refused(await client.get(expired), "expired", contains="expired")
    assert body["expired_at"].endswith("Z")
    # The same, a minute from now: it works (so it was the expiry, nothing else).
    fresh = expires + 61
    signature = presign.sign(key, "GET", path, expires=fresh, signer=signer, constraints=Constraints())
    assert (await client.get(f"{path}?{presign.query(fresh, signer, Constraints(), signature)}")).status_code == 200


async def test_a_url_used_before_still_expires(client: httpx.AsyncClient, settings: Settings) -> None:
    """A worker remembers URLs it verified (no second HMAC), never their validity: the expiry is checked
    on every request."""
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.bin", CONTENT)
    url = await download_url(client, alice, node["id"])
    signer = Signer.parse(dict(parse_qsl(urlsplit(url).query))["X-Stowage-Credential"])
    expires = int(time.time()) + 2
    path = presign.download_path(node["id"])
    key = presign.derive_key(access_secret(settings))
    signature = presign.sign(key, "GET", path, expires=expires, signer=signer, constraints=Constraints())
    short = f"{path}?{presign.query(expires, signer, Constraints(), signature)}"
    assert (await client.get(short)).status_code == 200
    assert (await client.get(short)).status_code == 200
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    refused(await client.get(short), "expired")


async def test_revoking_the_signers_credential_ends_its_urls(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.bin", CONTENT)
    session = await login(client, "alice@example.com")
    second = Account(alice.email, alice.user_id, session["access_token"], alice.root_id)
    by_session = await download_url(client, second, node["id"])
    pat = await create_pat(client, alice.token, ["read"])
    by_token = relative((await mint_download(client, auth(pat["token"]), node["id"])).json()["url"])
    assert (await client.get(by_session)).status_code == 200
    assert (await client.get(by_token)).status_code == 200

    assert (await client.post(LOGOUT, headers=auth(session["access_token"]))).status_code == 204
    refused(await client.get(by_session), "revoked", contains="session")
    assert (await client.get(by_token)).status_code == 200  # another credential: unaffected

    revoke = await client.delete(f"{API}/me/tokens/{pat['details']['id']}", headers=alice.headers)
    assert revoke.status_code == 204
    refused(await client.get(by_token), "revoked", contains="revoked")


async def test_disabling_the_signer_ends_their_urls(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.bin", CONTENT)
    url = await download_url(client, alice, node["id"])
    assert (await client.get(url)).status_code == 200
    admin = await make_admin(client, settings, "admin@example.com")
    disabled = await client.patch(
        f"{API}/admin/users/{alice.user_id}", json={"disabled": True}, headers=auth(admin["access_token"])
    )
    assert disabled.status_code == 200, disabled.text
    # Disabling revokes every credential of the account, the session that signed the URL included.
    refused(await client.get(url), "revoked", contains="no longer works")


async def test_a_share_recipient_mints_urls_that_end_with_the_share(client: httpx.AsyncClient) -> None:
    """URLs minted by a recipient act as the recipient: they work while the share does, and a read share
    mints no upload URL."""
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    shared = await mkdir(client, alice, alice.root_id, "shared")
    node = await upload(client, alice, shared["id"], "a.bin", CONTENT)
    share = await client.post(
        f"{API}/nodes/{shared['id']}/shares",
        json={"email": "bob@example.com", "permission": "read"},
        headers=alice.headers,
    )
    assert share.status_code == 201, share.text
    url = await download_url(client, bob, node["id"])
    assert (await client.get(url)).content == CONTENT
    upload_refused = await client.post(
        f"{API}/presign/upload", json={"folder_id": shared["id"], "name": "b.bin"}, headers=bob.headers
    )
    assert_problem(upload_refused, 403, "permission-denied", detail_contains="read-only")
    revoked = await client.delete(f"{API}/shares/{share.json()['id']}", headers=alice.headers)
    assert revoked.status_code == 204, revoked.text
    assert_problem(await client.get(url), 404, "not-found")


async def test_a_trashed_file_is_gone_for_its_url(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.bin", CONTENT)
    url = await download_url(client, alice, node["id"])
    assert (await client.delete(f"{API}/nodes/{node['id']}", headers=alice.headers)).status_code == 200
    assert_problem(await client.get(url), 404, "not-found")


async def test_a_put_url_stores_one_new_file(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    photos = await mkdir(client, alice, alice.root_id, "photos")
    url = await upload_url(
        client, alice.headers, folder_id=photos["id"], name="été.png", max_size=1000, media_type="image/*"
    )
    assert f"/children/{quote('été.png', safe='')}?on_conflict=fail&X-Stowage-Max-Size=1000" in url
    stored = await client.put(url, content=PNG, headers={"content-type": "image/png"})
    assert stored.status_code == 201, stored.text
    node = stored.json()
    assert (node["name"], node["size"], node["media_type"]) == ("été.png", len(PNG), "image/png")
    assert stored.headers["location"] == f"/api/v1/nodes/{node['id']}"
    assert [item["name"] for item in await children(client, alice, photos["id"])] == ["été.png"]
    fetched = await client.get(f"{API}/nodes/{node['id']}/content", headers=alice.headers)
    assert fetched.content == PNG
    # One new file: the name is taken now, and the URL cannot replace it, not even naming its version.
    again = await client.put(url, content=PNG)
    assert_problem(again, 409, "conflict", detail_contains="already exists")
    by_version = await client.put(url, content=PNG + b"2", headers={"if-match": stored.headers["etag"]})
    refused(by_version, contains="does not replace")
    assert (await client.get(f"{API}/nodes/{node['id']}/content", headers=alice.headers)).content == PNG


async def test_a_put_url_by_path_and_with_replace(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    await upload(client, alice, docs["id"], "notes.txt", b"old")
    url = await upload_url(client, alice.headers, path="/docs/notes.txt", on_conflict="replace")
    assert url.startswith(f"{API}/nodes/{docs['id']}/children/notes.txt?on_conflict=replace&")
    replaced = await client.put(url, content=b"new")
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["size"] == 3
    missing = await client.post(f"{API}/presign/upload", json={"path": "/nowhere/a.txt"}, headers=alice.headers)
    assert_problem(missing, 404, "not-found", detail_contains="nowhere")
    both = await client.post(
        f"{API}/presign/upload", json={"path": "/docs/a.txt", "name": "a.txt"}, headers=alice.headers
    )
    assert_problem(both, 400, "invalid-input", field="body.path")
    neither = await client.post(f"{API}/presign/upload", json={"name": "a.txt"}, headers=alice.headers)
    assert_problem(neither, 400, "invalid-input", detail_contains="folder_id and name, or path")
    into_file = await client.post(
        f"{API}/presign/upload", json={"path": "/docs/notes.txt/x.txt"}, headers=alice.headers
    )
    assert_problem(into_file, 409, "conflict", detail_contains="is a file")


async def test_a_put_url_refuses_what_breaks_its_constraints(settings: Settings) -> None:
    async with concurrent_client(settings) as client:  # httpx's own ASGI transport: streams async bodies
        await _check_put_constraints(client, settings)


async def _check_put_constraints(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await upload_url(
        client, alice.headers, folder_id=alice.root_id, name="a.png", max_size=len(PNG), media_type="image/png"
    )
    before = await storage(settings)
    too_big = await client.put(url, content=PNG + b"x")
    assert_problem(too_big, 413, "payload-too-large", detail_contains=str(len(PNG)))
    assert_unchanged(before, await storage(settings))
    streamed = await client.put(url, content=_chunks(PNG + b"x" * 5000))  # no Content-Length: while streaming
    assert_problem(streamed, 413, "payload-too-large")
    assert_unchanged(before, await storage(settings))
    not_png = await client.put(url, content=b"<html><body>not an image</body></html>")
    body = assert_problem(not_png, 415, "unsupported-media-type", detail_contains="image/png")
    assert body["media_type"] == "text/html"
    assert_unchanged(before, await storage(settings))
    declared = await client.put(url, content=PNG, headers={"content-type": "text/plain"})
    assert_problem(declared, 415, "unsupported-media-type", detail_contains="text/plain")
    assert_unchanged(before, await storage(settings))
    for name, value in [("X-Stowage-Max-Size", str(len(PNG) + 1)), ("X-Stowage-Media-Type", "image/*"),
                        ("X-Stowage-Max-Size", None), ("X-Stowage-Media-Type", None), ("on_conflict", "replace"),
                        ("on_conflict", None)]:  # fmt: skip
        refused(await client.put(with_query(url, **{name: value}), content=PNG), contains="signature")
    refused(await client.put(url.replace("/a.png?", "/b.png?"), content=PNG), contains="signature")
    refused(await client.post(url, content=PNG), contains="signature")  # signed for PUT
    assert_unchanged(before, await storage(settings))
    assert (await client.put(url, content=PNG, headers={"content-type": "image/png"})).status_code == 201


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length (sent chunked): the limit is met while it streams."""
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


async def test_upload_url_limits_are_checked_when_minting(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.txt", b"a")
    limit = settings.max_upload_bytes
    too_big = await client.post(
        f"{API}/presign/upload",
        json={"folder_id": alice.root_id, "name": "b.txt", "max_size": limit + 1},
        headers=alice.headers,
    )
    assert_problem(too_big, 400, "invalid-input", field="body.max_size")
    into_file = await client.post(
        f"{API}/presign/upload", json={"folder_id": node["id"], "name": "b.txt"}, headers=alice.headers
    )
    assert_problem(into_file, 409, "conflict", detail_contains="is a file")
    bad_type = await client.post(
        f"{API}/presign/upload",
        json={"folder_id": alice.root_id, "name": "b.txt", "media_type": "image"},
        headers=alice.headers,
    )
    assert_problem(bad_type, 400, "invalid-input")
    bad_name = await client.post(
        f"{API}/presign/upload", json={"folder_id": alice.root_id, "name": ".."}, headers=alice.headers
    )
    assert_problem(bad_name, 400, "invalid-input")
    bob = await new_account(client, "bob@example.com")
    foreign = await client.post(
        f"{API}/presign/upload", json={"folder_id": alice.root_id, "name": "b.txt"}, headers=bob.headers
    )
    assert_problem(foreign, 404, "not-found")


async def test_a_listing_with_presign_carries_working_urls(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    await mkdir(client, alice, alice.root_id, "folder")
    files = {f"f{i}.bin": bytes([i]) * (i + 1) for i in range(5)}
    for name, content in files.items():
        await upload(client, alice, alice.root_id, name, content)

    plain = await client.get(f"{API}/nodes/{alice.root_id}/children", headers=alice.headers)
    assert all("url" not in item for item in plain.json()["items"])

    signed = await client.get(
        f"{API}/nodes/{alice.root_id}/children", params={"presign": "true"}, headers=alice.headers
    )
    assert signed.status_code == 200, signed.text
    items = signed.json()["items"]
    assert [item["name"] for item in items] == ["folder", *files]
    assert "url" not in items[0]
    for item in items[1:]:
        served = await client.get(relative(item["url"]))
        assert served.status_code == 200
        assert served.content == files[item["name"]]
        expires = int(dict(parse_qsl(urlsplit(item["url"]).query))["X-Stowage-Expires"])
        assert time.time() + 3600 - 5 <= expires <= time.time() + 3600 + 360  # rounded up to a 360 s step
        without = {k: v for k, v in item.items() if k != "url"}
        assert without in plain.json()["items"]
    again = await client.get(f"{API}/nodes/{alice.root_id}/children", params={"presign": "true"}, headers=alice.headers)
    # The same URLs for a while (unless the two listings straddle a step: then one step later).
    first, second = (int(dict(parse_qsl(urlsplit(page[1]["url"]).query))["X-Stowage-Expires"])
                     for page in (items, again.json()["items"]))  # fmt: skip
    assert second - first in {0, 360}
    if second == first:
        assert [i.get("url") for i in again.json()["items"]] == [i.get("url") for i in items]

    short = await client.get(
        f"{API}/nodes/{alice.root_id}/children",
        params={"presign": "1", "presign_expires_in": "60"},
        headers=alice.headers,
    )
    expires = int(dict(parse_qsl(urlsplit(short.json()["items"][1]["url"]).query))["X-Stowage-Expires"])
    assert time.time() + 60 - 5 <= expires <= time.time() + 66


async def test_urls_are_built_on_public_url(settings_env: dict[str, str]) -> None:
    """With public_url set, URLs are built on it (a proxy's address); the path signed is the server's."""
    from accounts_helpers import open_client

    settings = make_settings(settings_env, public_url="https://files.example.com/storage")
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "a.bin", CONTENT)
        minted = (await mint_download(client, alice, node["id"])).json()["url"]
        assert minted.startswith(f"https://files.example.com/storage/api/v1/nodes/{node['id']}/content?")
        served = await client.get(minted.removeprefix("https://files.example.com/storage"))
        assert served.status_code == 200
        assert served.content == CONTENT
