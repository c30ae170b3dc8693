"""tus authorised by presigned URLs, on SQLite and PostgreSQL.

A creation URL (``POST /api/v1/presign/tus``) lets a client with no credential create uploads in one
folder; each creation answers a ``Location`` presigned for that upload alone, so HEAD, PATCH and DELETE
need no header either. The unhappy paths: a changed URL, an upload URL used for another upload or as a
creation URL (and the other way round), a folder other than the signed one, concatenation, a length
over the signed maximum (413), a media type other than the signed one (415, declared or sniffed), an
expired URL, and a revoked signer — each refused with nothing changed.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import msgspec
import pytest

from accounts_helpers import LOGOUT, assert_problem, auth, create_pat, login
from files_helpers import API, Account, children, download, mkdir, new_account, upload, used_bytes
from sharing_helpers import share_with
from stowage.accounts import presign
from stowage.accounts.presign import Constraints, Presigned, Signer
from stowage.config import Settings
from stowage.errors import PayloadTooLarge, PermissionDenied
from stowage.policy import (
    Action,
    CredentialKind,
    Owned,
    Principal,
    Restriction,
    Role,
    Scope,
    authorize,
    confined_to_upload,
)
from test_presign import BASE, relative, with_query
from tus_helpers import CHUNK_TYPE, TUS, UPLOADS, metadata, upload_row

PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


async def mint(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post(f"{API}/presign/tus", json=body, headers=headers)


async def creation_url(client: httpx.AsyncClient, account: Account, **body: Any) -> str:
    body.setdefault("folder_id", account.root_id)
    response = await mint(client, account.headers, **body)
    assert response.status_code == 200, response.text
    minted = response.json()
    assert minted["method"] == "POST"
    url = relative(minted["url"])
    assert url.startswith(f"{UPLOADS}/?"), url
    return url


async def create(
    client: httpx.AsyncClient,
    url: str,
    length: int | None,
    *,
    meta: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A creation request with no Authorization header."""
    sent = dict(TUS)
    if length is None:
        sent["Upload-Defer-Length"] = "1"
    else:
        sent["Upload-Length"] = str(length)
    if meta is not None:
        sent["Upload-Metadata"] = meta
    if body is not None:
        sent.update(CHUNK_TYPE)
    sent.update(headers or {})
    return await client.post(url, headers=sent, content=body)


def location(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    url = response.headers["location"]
    assert url.startswith(f"{UPLOADS}/"), url
    assert "?" in url
    assert "X-Stowage-Signature=" in url
    return url


def upload_id_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


async def patch(
    client: httpx.AsyncClient, url: str, offset: int, data: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    sent = {**TUS, **CHUNK_TYPE, "Upload-Offset": str(offset), **(headers or {})}
    return await client.patch(url, headers=sent, content=data)


async def head(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.head(url, headers=TUS)


def refused(response: httpx.Response, reason: str | None = None, *, contains: str = "") -> None:
    body = assert_problem(response, 403, "permission-denied", detail_contains=contains)
    if reason is not None:
        assert body.get("presign") == reason, body


def swap_path(url: str, upload_id: str) -> str:
    """``url``'s query on another upload's path."""
    return f"{UPLOADS}/{upload_id}?{urlsplit(url).query}"


# --- the happy path ----------------------------------------------------------------------------------


async def test_a_creation_url_creates_resumes_and_finishes_without_a_header(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    inbox = await mkdir(client, alice, alice.root_id, "inbox")
    url = await creation_url(client, alice, folder_id=inbox["id"], max_size=1000, expires_in=600)
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Stowage-Folder"] == inbox["id"]
    assert query["X-Stowage-Max-Size"] == "1000"

    data = b"0123456789" * 10
    created = await create(client, url, len(data), meta=metadata(filename="notes.txt"))
    upload_url = location(created)
    assert created.headers["upload-offset"] == "0"
    assert (await patch(client, upload_url, 0, data[:40])).status_code == 204
    state = await head(client, upload_url)
    assert state.status_code == 200
    assert state.headers["upload-offset"] == "40"
    assert state.headers["upload-length"] == str(len(data))
    # A client that can send only POST: the same URL, the method overridden.
    overridden = await client.post(upload_url, headers={**TUS, "X-HTTP-Method-Override": "HEAD"})
    assert overridden.status_code == 200
    assert overridden.headers["upload-offset"] == "40"
    done = await patch(client, upload_url, 40, data[40:])
    assert done.status_code == 204, done.text
    node_id = done.headers["stowage-node-id"]
    assert node_id == upload_id_of(upload_url)

    listed = await children(client, alice, inbox["id"])
    assert [(item["name"], item["size"]) for item in listed] == [("notes.txt", len(data))]
    assert (await download(client, alice, node_id)).content == data
    row = await upload_row(settings, upload_id_of(upload_url))
    assert row is not None
    assert row.owner_id == alice.user_id


async def test_creation_with_upload_and_termination(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await creation_url(client, alice)
    created = await create(client, url, 6, meta=metadata(filename="a.txt"), body=b"abc")
    upload_url = location(created)
    assert created.headers["upload-offset"] == "3"
    gone = await client.delete(upload_url, headers=TUS)
    assert gone.status_code == 204
    assert_problem(await head_with_body(client, upload_url), 404, "not-found")
    # One creation URL creates as many uploads as its holder starts (like a drop folder), each its own.
    again = location(await create(client, url, 3, meta=metadata(filename="b.txt"), body=b"xyz"))
    assert again != upload_url
    assert [item["name"] for item in await children(client, alice, alice.root_id)] == ["b.txt"]


async def test_an_empty_upload_is_a_file_at_once(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    inbox = await mkdir(client, alice, alice.root_id, "inbox")
    url = await creation_url(client, alice, folder_id=inbox["id"])
    created = await create(client, url, 0, meta=metadata(filename="empty.txt"))
    upload_url = location(created)
    assert created.headers["stowage-node-id"] == upload_id_of(upload_url)
    assert [(item["name"], item["size"]) for item in await children(client, alice, inbox["id"])] == [("empty.txt", 0)]
    assert (await head(client, upload_url)).headers["upload-offset"] == "0"


async def head_with_body(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """HEAD has no body; a POST overriding it shows the problem."""
    return await client.post(url, headers={**TUS, "X-HTTP-Method-Override": "HEAD"})


async def test_a_read_write_recipient_mints_a_url_for_the_shared_folder(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    carol = await new_account(client, "carol@example.com")
    team = await mkdir(client, alice, alice.root_id, "team")
    await share_with(client, alice, team["id"], bob, "read_write")
    url = await creation_url(client, bob, folder_id=team["id"])
    upload_url = location(await create(client, url, 4, meta=metadata(filename="bob.txt"), body=b"bob!"))
    row = await upload_row(settings, upload_id_of(upload_url))
    assert row is not None
    assert row.owner_id == bob.user_id
    assert row.completed_at is not None
    assert [item["name"] for item in await children(client, alice, team["id"])] == ["bob.txt"]
    assert await used_bytes(settings, alice.user_id) == 4  # the folder's owner pays
    assert await used_bytes(settings, bob.user_id) == 0

    # Carol has no share: the folder does not exist for her. A read-only share cannot mint either.
    assert_problem(await mint(client, carol.headers, folder_id=team["id"]), 404, "not-found")
    await share_with(client, alice, team["id"], carol, "read")
    assert_problem(await mint(client, carol.headers, folder_id=team["id"]), 403, "permission-denied")


async def test_revoking_the_recipients_share_ends_the_urls(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    team = await mkdir(client, alice, alice.root_id, "team")
    share = await share_with(client, alice, team["id"], bob, "read_write")
    url = await creation_url(client, bob, folder_id=team["id"])
    upload_url = location(await create(client, url, 6, meta=metadata(filename="b.txt"), body=b"abc"))
    revoked = await client.delete(f"{API}/shares/{share['id']}", headers=alice.headers)
    assert revoked.status_code == 204, revoked.text
    assert_problem(await patch(client, upload_url, 3, b"def"), 404, "not-found")
    assert_problem(await create(client, url, 3, meta=metadata(filename="c.txt")), 404, "not-found")
    assert await children(client, alice, team["id"]) == []


# --- the URL is for what it was signed for ----------------------------------------------------------


async def test_an_upload_url_works_for_its_own_upload_only(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await creation_url(client, alice)
    first = location(await create(client, url, 6, meta=metadata(filename="one.txt")))
    second = location(await create(client, url, 6, meta=metadata(filename="two.txt")))
    # The first upload's signature on the second's path (or on a bearer upload's) is refused.
    bearer = await client.post(
        f"{UPLOADS}/",
        headers={**TUS, **alice.headers, "Upload-Length": "6", "Upload-Metadata": metadata(filename="own.txt")},
    )
    assert bearer.status_code == 201
    bearer_id = bearer.headers["location"].rsplit("/", 1)[-1]
    for target in (upload_id_of(second), bearer_id):
        refused(await patch(client, swap_path(first, target), 0, b"abc"), "signature")
        refused(await client.delete(swap_path(first, target), headers=TUS), "signature")
    # An upload URL is not a creation URL, and a creation URL does not continue an upload.
    refused(await create(client, f"{UPLOADS}/?{urlsplit(first).query}", 3), "signature")
    refused(await patch(client, swap_path(url, upload_id_of(first)), 0, b"abc"))
    # Nor is it a download or a raw-upload URL.
    refused(await client.get(f"{API}/nodes/{upload_id_of(first)}/content?{urlsplit(first).query}"), "signature")
    refused(
        await client.put(f"{API}/nodes/{alice.root_id}/children/x.txt?{urlsplit(url).query}", content=b"x"),
        "signature",
    )
    for upload_url in (first, second):
        assert (await head(client, upload_url)).headers["upload-offset"] == "0"
    assert (await patch(client, second, 0, b"abcdef")).status_code == 204


@pytest.mark.parametrize(
    "change",
    [
        {"X-Stowage-Folder": None},
        {"X-Stowage-Max-Size": "100000"},
        {"X-Stowage-Max-Size": None},
        {"X-Stowage-Media-Type": "image/*"},
        {"on_conflict": "replace"},
        {"X-Stowage-Expires": "4000000000"},
        {"X-Stowage-Signature": "A" * 43},
    ],
)
async def test_any_change_to_either_url_is_refused(client: httpx.AsyncClient, change: dict[str, str | None]) -> None:
    alice = await new_account(client, "alice@example.com")
    other = await mkdir(client, alice, alice.root_id, "other")
    url = await creation_url(client, alice, max_size=100)
    upload_url = location(await create(client, url, 6, meta=metadata(filename="a.txt")))
    refused(await create(client, with_query(url, **change), 6, meta=metadata(filename="b.txt")))
    refused(await patch(client, with_query(upload_url, **change), 0, b"abc"))
    refused(await create(client, with_query(url, **{"X-Stowage-Folder": other["id"]}), 3))
    assert (await head(client, upload_url)).headers["upload-offset"] == "0"
    assert [item["name"] for item in await children(client, alice, alice.root_id)] == ["other"]


async def test_uploads_go_into_the_signed_folder_only(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    inbox = await mkdir(client, alice, alice.root_id, "inbox")
    private = await mkdir(client, alice, alice.root_id, "private")
    url = await creation_url(client, alice, folder_id=inbox["id"])
    refused(await create(client, url, 3, meta=metadata(filename="a.txt", folder=private["id"])), contains="another")
    refused(await create(client, url, 3, meta=metadata(filename="a.txt", path="/private")), contains="path")
    refused(await create(client, url, 3, meta=metadata(filename="a.txt", path="/inbox/deeper")), contains="path")
    same = await create(client, url, 3, meta=metadata(filename="a.txt", folder=inbox["id"]), body=b"abc")
    assert same.status_code == 201
    assert await children(client, alice, private["id"]) == []
    assert [item["name"] for item in await children(client, alice, inbox["id"])] == ["a.txt"]
    # Concatenation could join uploads this URL did not create: refused.
    refused(await create(client, url, 3, headers={"Upload-Concat": "partial"}), contains="concatenation")


async def test_the_signed_conflict_policy_applies(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "a.txt", b"old")
    failing = await creation_url(client, alice)
    assert_problem(await create(client, failing, 3, meta=metadata(filename="a.txt")), 409, "conflict")
    refused(await create(client, failing, 3, meta=metadata(filename="a.txt", on_conflict="replace")))
    renaming = await creation_url(client, alice, on_conflict="rename")
    assert (await create(client, renaming, 3, meta=metadata(filename="a.txt"), body=b"new")).status_code == 201
    names = sorted(item["name"] for item in await children(client, alice, alice.root_id))
    assert len(names) == 2
    assert "a.txt" in names


# --- constraints -------------------------------------------------------------------------------------


async def test_the_signed_maximum_size(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await creation_url(client, alice, max_size=10)
    body = assert_problem(await create(client, url, 11, meta=metadata(filename="big.bin")), 413, "payload-too-large")
    assert body["max_size"] == 10
    # A deferred length: declaring too much, or sending more than the maximum, is refused; nothing stays.
    deferred = location(await create(client, url, None, meta=metadata(filename="d.bin")))
    assert_problem(await patch(client, deferred, 0, b"x", {"Upload-Length": "11"}), 413, "payload-too-large")
    assert_problem(await patch(client, deferred, 0, b"x" * 11), 413, "payload-too-large")
    assert (await head(client, deferred)).headers["upload-offset"] == "0"
    assert (await patch(client, deferred, 0, b"x" * 10, {"Upload-Length": "10"})).status_code == 204
    assert [item["name"] for item in await children(client, alice, alice.root_id)] == ["d.bin"]
    # The maximum is at most the server's.
    too_big = await mint(client, alice.headers, folder_id=alice.root_id, max_size=settings.max_upload_bytes + 1)
    assert_problem(too_big, 400, "invalid-input", field="body.max_size")


async def test_the_signed_media_type(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await creation_url(client, alice, media_type="image/*")
    declared = await create(client, url, len(PNG), meta=metadata(filename="a.txt", filetype="text/plain"))
    assert_problem(declared, 415, "unsupported-media-type")
    # Not declared: the content decides when the last byte arrives; nothing reaches the tree.
    text = location(await create(client, url, 5, meta=metadata(filename="b.png")))
    assert_problem(await patch(client, text, 0, b"hello"), 415, "unsupported-media-type")
    assert await children(client, alice, alice.root_id) == []
    image = location(await create(client, url, len(PNG), meta=metadata(filename="c.png", filetype="image/png")))
    assert (await patch(client, image, 0, PNG)).status_code == 204
    listed = await children(client, alice, alice.root_id)
    assert [(item["name"], item["media_type"]) for item in listed] == [("c.png", "image/png")]


# --- expiry and revocation ---------------------------------------------------------------------------


async def test_an_expired_url_is_refused(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await creation_url(client, alice, expires_in=1)
    upload_url = location(await create(client, url, 6, meta=metadata(filename="a.txt")))
    await asyncio.sleep(2.1)
    refused(await create(client, url, 3), "expired")
    refused(await patch(client, upload_url, 0, b"abc"), "expired")
    assert (await client.head(upload_url.split("?")[0], headers={**TUS, **alice.headers})).headers[
        "upload-offset"
    ] == "0"


async def test_revoking_the_signers_credential_ends_both_urls(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    session = await login(client, "alice@example.com")
    second = Account(alice.email, alice.user_id, session["access_token"], alice.root_id)
    url = await creation_url(client, second)
    upload_url = location(await create(client, url, 6, meta=metadata(filename="a.txt"), body=b"abc"))
    pat = await create_pat(client, alice.token, ["read", "write"])
    by_token = relative((await mint(client, auth(pat["token"]), folder_id=alice.root_id)).json()["url"])
    assert (await client.post(LOGOUT, headers=auth(session["access_token"]))).status_code == 204
    refused(await patch(client, upload_url, 3, b"def"), "revoked")
    refused(await create(client, url, 3), "revoked")
    # Another credential's URL is unaffected; a personal token's upload URL is signed as a token.
    token_upload = location(await create(client, by_token, 3, meta=metadata(filename="t.txt")))
    assert "X-Stowage-Credential=p." in token_upload
    assert (await patch(client, token_upload, 0, b"tok")).status_code == 204
    revoke = await client.delete(f"{API}/me/tokens/{pat['details']['id']}", headers=alice.headers)
    assert revoke.status_code == 204
    refused(await create(client, by_token, 3), "revoked")


# --- minting -----------------------------------------------------------------------------------------


async def test_minting_checks_its_input(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    inbox = await mkdir(client, alice, alice.root_id, "inbox")
    file = await upload(client, alice, alice.root_id, "a.txt", b"abc")
    by_path = await mint(client, alice.headers, path="/inbox")
    assert by_path.status_code == 200, by_path.text
    assert f"X-Stowage-Folder={inbox['id']}" in by_path.json()["url"]
    assert by_path.json()["url"].startswith(f"{BASE}{UPLOADS}/?")
    both = await mint(client, alice.headers, folder_id=inbox["id"], path="/inbox")
    assert_problem(both, 400, "invalid-input")
    assert_problem(await mint(client, alice.headers), 400, "invalid-input")
    assert_problem(await mint(client, alice.headers, folder_id=file["id"]), 409, "conflict")
    assert_problem(await mint(client, alice.headers, path="/missing"), 404, "not-found")
    assert_problem(await mint(client, {}, folder_id=inbox["id"]), 401, "unauthenticated")
    reader = auth((await create_pat(client, alice.token, ["read"]))["token"])
    assert_problem(await mint(client, reader, folder_id=inbox["id"]), 403, "permission-denied")
    # A presigned URL cannot mint another one.
    url = await creation_url(client, alice)
    minted_by_url = await client.post(f"{API}/presign/tus?{urlsplit(url).query}", json={"folder_id": inbox["id"]})
    refused(minted_by_url)


# --- the scheme and the policy, without I/O ----------------------------------------------------------

KEY = presign.derive_key("a test secret of at least thirty-two characters")
SIGNER = Signer(code="s", credential_id="c-1", user_id="u-1")
UPLOAD_PATH = "/api/v1/uploads/0b8c2f5e-0000-4000-8000-000000000001"


def _signed(method: str, path: str, constraints: Constraints) -> Presigned:
    signature = presign.sign(KEY, method, path, expires=2_000_000_000, signer=SIGNER, constraints=constraints)
    return Presigned(expires=2_000_000_000, signer=SIGNER, signature=signature, constraints=constraints)


def test_a_tus_upload_url_signs_every_method_a_client_resumes_with() -> None:
    signed = _signed(presign.TUS_METHOD, UPLOAD_PATH, Constraints(folder_id="f-1", max_size=5))
    for method in ("HEAD", "PATCH", "DELETE", "POST"):
        presign.verify(KEY, method, UPLOAD_PATH, signed)
    with pytest.raises(PermissionDenied, match="signature"):
        presign.verify(KEY, "PATCH", UPLOAD_PATH.replace("0001", "0002"), signed)
    changed = msgspec.structs.replace(signed, constraints=Constraints(folder_id="f-2", max_size=5))
    with pytest.raises(PermissionDenied, match="signature"):  # the folder is signed
        presign.verify(KEY, "PATCH", UPLOAD_PATH, changed)
    creation = _signed("POST", presign.TUS_CREATION_PATH, Constraints(folder_id="f-1"))
    presign.verify(KEY, "POST", "/api/v1/uploads", creation)  # with or without the trailing slash
    with pytest.raises(PermissionDenied, match="signature"):
        presign.verify(KEY, "PUT", presign.TUS_CREATION_PATH, creation)


def test_restrictions_of_tus_urls() -> None:
    constraints = Constraints(on_conflict="rename", max_size=5, media_type="image/*", folder_id="f-1")
    creation = presign.restriction_for(
        "POST", "/api/v1/uploads/", _signed("POST", "/api/v1/uploads/", constraints), CredentialKind.SESSION
    )
    assert creation == Restriction(
        action=Action.FILE_WRITE,
        node_id="f-1",
        max_size=5,
        media_type="image/*",
        on_conflict="rename",
        resumable="create",
        expires=2_000_000_000,
        signer_kind=CredentialKind.SESSION,
    )
    assert creation.for_upload("u-9") == msgspec.structs.replace(creation, resumable="upload", upload_id="u-9")
    upload_restriction = presign.restriction_for("PATCH", UPLOAD_PATH, _signed("TUS", UPLOAD_PATH, constraints))
    assert upload_restriction.upload_id == UPLOAD_PATH.rsplit("/", 1)[-1]
    with pytest.raises(PermissionDenied, match="Only a presigned tus creation URL"):
        upload_restriction.for_upload("u-9")
    # The folder parameter belongs to tus URLs only, and tus URLs need it.
    for method, path in [("GET", "/api/v1/nodes/n-1/content"), ("PUT", "/api/v1/nodes/f-1/children/a")]:
        with pytest.raises(PermissionDenied, match="tus upload URLs only"):
            presign.restriction_for(method, path, _signed(method, path, constraints))
    with pytest.raises(PermissionDenied, match="only GET"):
        presign.restriction_for("POST", "/api/v1/uploads/", _signed("POST", "/api/v1/uploads/", Constraints()))


def _holder(restriction: Restriction) -> Principal:
    return Principal(
        user_id="u-1",
        role=Role.USER,
        scopes=frozenset({Scope.READ, Scope.WRITE}),
        kind=CredentialKind.PRESIGNED,
        credential_id="c-1",
        restriction=restriction,
    )


def test_the_policy_confines_tus_urls() -> None:
    creation = Restriction(action=Action.FILE_WRITE, node_id="f-1", max_size=10, resumable="create")
    holder = _holder(creation)
    authorize(holder, Action.FILE_WRITE, Owned(owner_id="u-1", node_id="f-1"))
    with pytest.raises(PermissionDenied, match="another file or folder"):
        authorize(holder, Action.FILE_WRITE, Owned(owner_id="u-1", node_id="f-2"))
    with pytest.raises(PermissionDenied, match="another upload"):  # it created none of the existing ones
        authorize(holder, Action.FILE_WRITE, Owned(owner_id="u-1", upload_id="up-1"))
    with pytest.raises(PermissionDenied, match="allows only"):
        authorize(holder, Action.FILE_READ, Owned(owner_id="u-1", node_id="f-1"))
    creation.check_new_upload("single", 10, 1000, folder_path=False)
    with pytest.raises(PayloadTooLarge):
        creation.check_new_upload("single", 11, 1000, folder_path=False)
    with pytest.raises(PermissionDenied, match="concatenation"):
        creation.check_new_upload("partial", 1, 1000, folder_path=False)
    with pytest.raises(PermissionDenied, match="no path"):
        creation.check_new_upload("single", 1, 1000, folder_path=True)
    assert creation.size_limit(8) == 8
    assert creation.size_limit(1000) == 10

    upload_holder = confined_to_upload(holder, "up-1")
    authorize(upload_holder, Action.FILE_WRITE, Owned(owner_id="u-1", upload_id="up-1"))
    authorize(upload_holder, Action.FILE_WRITE, Owned(owner_id="u-1", node_id="f-1"))  # recording into its folder
    with pytest.raises(PermissionDenied, match="another upload"):
        authorize(upload_holder, Action.FILE_WRITE, Owned(owner_id="u-1", upload_id="up-2"))
    narrowed = upload_holder.restriction
    assert narrowed is not None
    with pytest.raises(PermissionDenied, match="does not create"):
        narrowed.check_new_upload("single", 1, 1000, folder_path=False)
    # A GET or PUT URL's holder reaches no upload, and a bearer caller is not confined at all.
    download = _holder(Restriction(action=Action.FILE_WRITE, node_id="f-1", name="a.txt"))
    with pytest.raises(PermissionDenied, match="another upload"):
        authorize(download, Action.FILE_WRITE, Owned(owner_id="u-1", upload_id="up-1"))
    bearer = msgspec.structs.replace(holder, kind=CredentialKind.SESSION, restriction=None)
    assert confined_to_upload(bearer, "up-1") is bearer
