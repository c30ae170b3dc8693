"""tus 1.0 over HTTP (``/api/v1/uploads/``), on SQLite and PostgreSQL: discovery, creation, chunks,
offsets, content types, checksums, deferred lengths, creation with upload, termination, expiry,
concatenation, limits and quota, conflicts and targets, the PATCH lease, and who may do what.

Each refused request is checked to have changed nothing: the stored offset and the staged bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from accounts_helpers import auth, concurrent_client, create_pat, make_admin, open_client
from conftest import make_settings
from files_helpers import (
    API,
    Account,
    assert_problem,
    download,
    mkdir,
    names_in,
    new_account,
    put_raw,
    set_quota,
    storage,
    used_bytes,
)
from stowage.config import Settings
from stowage.db.base import utcnow
from tus_helpers import (
    TUS,
    UPLOADS,
    checksum,
    create,
    head,
    metadata,
    new_upload,
    offset_of,
    patch,
    served,
    set_upload,
    staged_bytes,
    terminate,
    upload_id,
    upload_row,
    upload_url,
)

DATA = bytes(range(256)) * 64  # 16 KiB


# --- discovery ----------------------------------------------------------------------------------------


async def test_options_advertises_exactly_what_is_supported(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.options(f"{UPLOADS}/")  # no credentials, no Tus-Resumable: discovery is open
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-extension"].split(",") == [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
        "concatenation",
    ]
    assert response.headers["tus-max-size"] == str(settings.max_upload_bytes)
    assert response.headers["tus-checksum-algorithm"] == "sha1,sha256,md5"


# --- the whole way ------------------------------------------------------------------------------------


async def test_an_upload_in_chunks_becomes_a_file_with_the_uploads_id(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    meta = metadata(filename="photo.bin", filetype="application/x-test")
    created = await create(client, alice, len(DATA), meta=meta)
    url = upload_url(created)
    assert created.headers["tus-resumable"] == "1.0.0"
    assert "upload-expires" in created.headers
    uid = upload_id(url)

    state = await head(client, alice, url)
    assert state.status_code == 200
    assert state.headers["upload-offset"] == "0"
    assert state.headers["upload-length"] == str(len(DATA))
    assert state.headers["upload-metadata"] == meta
    assert state.headers["cache-control"] == "no-store"
    assert state.headers["tus-resumable"] == "1.0.0"
    assert "stowage-node-id" not in state.headers

    for offset in range(0, len(DATA), 5000):
        chunk = DATA[offset : offset + 5000]
        response = await patch(client, alice, url, offset, chunk)
        assert response.status_code == 204, response.text
        assert response.headers["upload-offset"] == str(offset + len(chunk))
        assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["stowage-node-id"] == uid
    assert "upload-expires" not in response.headers  # finished: it will not expire

    got = await download(client, alice, uid)
    assert got.status_code == 200
    assert got.content == DATA
    node = (await client.get(f"{API}/nodes/{uid}", headers=alice.headers)).json()
    assert node["name"] == "photo.bin"
    assert node["parent_id"] == alice.root_id
    assert node["media_type"] == "application/x-test"  # the content says nothing more specific
    assert await used_bytes(settings, alice.user_id) == len(DATA)
    assert staged_bytes(settings, uid) is None

    done = await head(client, alice, url)
    assert done.headers["upload-offset"] == done.headers["upload-length"] == str(len(DATA))
    assert done.headers["stowage-node-id"] == uid


async def test_the_content_type_is_sniffed_and_a_missing_name_is_made_up(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    response = await create(client, alice, len(png), body=png, meta=metadata(filetype="text/html"))
    uid = upload_id(upload_url(response))
    assert response.headers["stowage-node-id"] == uid
    node = (await client.get(f"{API}/nodes/{uid}", headers=alice.headers)).json()
    assert node["media_type"] == "image/png"  # the bytes win over the declared type
    assert node["name"] == f"upload-{uid}"


async def test_an_empty_upload_is_a_file_at_creation(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    response = await create(client, alice, 0, meta=metadata(filename="empty.txt"))
    uid = upload_id(upload_url(response))
    assert response.headers["upload-offset"] == "0"
    assert response.headers["stowage-node-id"] == uid
    assert (await download(client, alice, uid)).content == b""


# --- protocol checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0.1"])
async def test_an_unsupported_tus_version_is_412_and_nothing_is_done(
    client: httpx.AsyncClient, settings: Settings, version: str | None
) -> None:
    alice = await new_account(client, "alice@example.com")
    headers = {**alice.headers, "Upload-Length": "10"}
    if version is not None:
        headers["Tus-Resumable"] = version
    response = await client.post(f"{UPLOADS}/", headers=headers)
    assert_problem(response, 412, "tus-version")
    assert response.headers["tus-version"] == "1.0.0"
    url = await new_upload(client, alice, 5)
    patched = await client.patch(
        url,
        headers={**alice.headers, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
        content=b"hello",
    )
    assert_problem(patched, 412, "tus-version")
    assert await offset_of(client, alice, url) == 0
    assert staged_bytes(settings, upload_id(url)) in (None, b"")


async def test_a_wrong_offset_is_409_with_the_stored_offset(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    assert (await patch(client, alice, url, 0, b"hello")).status_code == 204
    for wrong in (0, 3, 7):
        response = await patch(client, alice, url, wrong, b"xx")
        body = assert_problem(response, 409, "upload-offset-mismatch")
        assert response.headers["upload-offset"] == "5"
        assert body["upload_offset"] == 5
    assert await offset_of(client, alice, url) == 5
    assert staged_bytes(settings, upload_id(url)) == b"hello"


async def test_a_patch_of_another_content_type_is_415(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    for content_type in ("text/plain", "application/octet-stream"):
        response = await patch(client, alice, url, 0, b"hello", headers={"Content-Type": content_type})
        assert_problem(response, 415, "unsupported-media-type")
    assert await offset_of(client, alice, url) == 0


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({}, "header.upload-length"),
        ({"Upload-Length": "10", "Upload-Defer-Length": "1"}, "header.upload-length"),
        ({"Upload-Length": "-1"}, "header.upload-length"),
        ({"Upload-Length": "ten"}, "header.upload-length"),
        ({"Upload-Defer-Length": "2"}, "header.upload-defer-length"),
        ({"Upload-Length": "3", "Upload-Metadata": "filename not-base64!"}, "header.upload-metadata"),
        ({"Upload-Length": "3", "Upload-Metadata": "a YQ==,a YQ=="}, "header.upload-metadata"),
        ({"Upload-Length": "3", "Upload-Metadata": metadata(on_conflict="overwrite")}, "header.upload-metadata"),
        ({"Upload-Length": "3", "Upload-Concat": "sideways"}, "header.upload-concat"),
    ],
)
async def test_malformed_creation_headers_are_400_and_create_nothing(
    client: httpx.AsyncClient, settings: Settings, headers: dict[str, str], field: str
) -> None:
    alice = await new_account(client, "alice@example.com")
    response = await client.post(f"{UPLOADS}/", headers={**TUS, **alice.headers, **headers})
    body = assert_problem(response, 400, "invalid-input")
    assert field in [e["field"] for e in body["errors"]]
    assert "location" not in response.headers


async def test_a_patch_without_an_offset_is_400(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    response = await client.patch(
        url, headers={**TUS, **alice.headers, "Content-Type": "application/offset+octet-stream"}, content=b"x"
    )
    assert_problem(response, 400, "invalid-input", field="header.upload-offset")


# --- checksum -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
async def test_a_matching_checksum_is_accepted(client: httpx.AsyncClient, algorithm: str) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    response = await patch(client, alice, url, 0, b"hello", headers={"Upload-Checksum": checksum(algorithm, b"hello")})
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "5"


async def test_a_checksum_mismatch_is_460_and_the_chunk_is_discarded(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    assert (await patch(client, alice, url, 0, b"hello")).status_code == 204
    bad = await patch(client, alice, url, 5, b"world", headers={"Upload-Checksum": checksum("sha1", b"WORLD")})
    assert_problem(bad, 460, "checksum-mismatch", field="header.upload-checksum")
    assert bad.headers["tus-resumable"] == "1.0.0"
    assert await offset_of(client, alice, url) == 5
    assert staged_bytes(settings, upload_id(url)) == b"hello"
    unknown = await patch(client, alice, url, 5, b"world", headers={"Upload-Checksum": "crc32 AAAAAA=="})
    assert_problem(unknown, 400, "invalid-input", field="header.upload-checksum")
    malformed = await patch(client, alice, url, 5, b"world", headers={"Upload-Checksum": "sha1"})
    assert_problem(malformed, 400, "invalid-input", field="header.upload-checksum")
    assert await offset_of(client, alice, url) == 5
    good = await patch(client, alice, url, 5, b"world", headers={"Upload-Checksum": checksum("sha1", b"world")})
    assert good.status_code == 204
    assert (await download(client, alice, good.headers["stowage-node-id"])).content == b"helloworld"


# --- deferred length, creation with upload --------------------------------------------------------------


async def test_a_deferred_length_is_declared_once_by_a_patch(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, None, defer=True, meta=metadata(filename="late.txt"))
    state = await head(client, alice, url)
    assert state.headers["upload-defer-length"] == "1"
    assert "upload-length" not in state.headers
    assert (await patch(client, alice, url, 0, b"abc")).status_code == 204
    assert (await head(client, alice, url)).headers["upload-defer-length"] == "1"
    too_short = await patch(client, alice, url, 3, b"d", headers={"Upload-Length": "2"})
    assert_problem(too_short, 400, "invalid-input", field="header.upload-length")
    done = await patch(client, alice, url, 3, b"def", headers={"Upload-Length": "6"})
    assert done.status_code == 204
    assert done.headers["upload-length"] == "6"
    assert (await download(client, alice, done.headers["stowage-node-id"])).content == b"abcdef"
    changed = await patch(client, alice, url, 6, b"", headers={"Upload-Length": "7"})
    assert_problem(changed, 400, "invalid-input", field="header.upload-length")


async def test_creation_with_upload_stores_the_first_bytes(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    response = await create(client, alice, 11, body=b"hello")
    url = upload_url(response)
    assert response.headers["upload-offset"] == "5"
    assert await offset_of(client, alice, url) == 5
    ignored = await create(client, alice, 11, headers={"Content-Type": "text/plain"}, body=None)
    assert ignored.status_code == 201
    assert ignored.headers["upload-offset"] == "0"


# --- termination and expiry ------------------------------------------------------------------------------


async def test_termination_removes_the_upload_and_its_bytes(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    assert (await patch(client, alice, url, 0, b"hello")).status_code == 204
    response = await terminate(client, alice, url)
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    gone = await head(client, alice, url)
    assert gone.status_code == 404
    assert "upload-offset" not in gone.headers
    assert staged_bytes(settings, upload_id(url)) is None
    assert_problem(await patch(client, alice, url, 5, b"world"), 404, "not-found")
    assert (await terminate(client, alice, url)).status_code == 404


async def test_terminating_a_finished_upload_keeps_its_file(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    response = await create(client, alice, 5, body=b"hello", meta=metadata(filename="kept.txt"))
    url = upload_url(response)
    assert (await terminate(client, alice, url)).status_code == 204
    assert (await download(client, alice, upload_id(url))).content == b"hello"


async def test_an_expired_upload_is_410_then_removed_by_housekeeping(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        url = await new_upload(client, alice, 10)
        assert (await patch(client, alice, url, 0, b"hello")).status_code == 204
        uid = upload_id(url)
        await set_upload(settings, uid, expires_at=utcnow() - timedelta(seconds=1))
        expired = await head(client, alice, url)
        assert expired.status_code == 410
        assert "upload-offset" not in expired.headers
        assert_problem(await patch(client, alice, url, 5, b"world"), 410, "upload-gone")
        assert staged_bytes(settings, uid) == b"hello"  # refused without touching the bytes

        assert await runtime.uploads.sessions.remove_expired() == 1
        assert await upload_row(settings, uid) is None
        assert staged_bytes(settings, uid) is None
        assert (await head(client, alice, url)).status_code == 404


async def test_housekeeping_removes_stagings_whose_upload_is_gone(settings: Settings) -> None:
    async with served(settings) as (client, runtime):
        alice = await new_account(client, "alice@example.com")
        live = await new_upload(client, alice, 10)
        assert (await patch(client, alice, live, 0, b"kept")).status_code == 204
        orphan = "0f0f0f0f-0000-4000-8000-000000000000"
        staging = settings.data_dir / "staging" / orphan
        staging.write_bytes(b"left behind")
        sessions = runtime.uploads.sessions
        assert await sessions.remove_expired() == 0
        assert staging.exists()  # recent: spared (an upload may be on its way)
        assert await sessions.remove_expired(orphan_seconds=0) == 0
        assert not staging.exists()
        assert staged_bytes(settings, upload_id(live)) == b"kept"


# --- limits and quota -------------------------------------------------------------------------------


@pytest.fixture
async def small_limit_client(settings_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server that accepts uploads of at most 1000 bytes."""
    async with open_client(make_settings(settings_env, max_upload_bytes=1000)) as client:
        yield client


async def test_a_length_over_the_limit_is_413(small_limit_client: httpx.AsyncClient) -> None:
    client = small_limit_client
    alice = await new_account(client, "alice@example.com")
    response = await create(client, alice, 1001)
    body = assert_problem(response, 413, "payload-too-large")
    assert body["max_size"] == 1000
    deferred = await new_upload(client, alice, None, defer=True)
    assert (await patch(client, alice, deferred, 0, b"x" * 600)).status_code == 204
    over = await patch(client, alice, deferred, 600, b"x" * 401)
    assert_problem(over, 413, "payload-too-large")
    assert await offset_of(client, alice, deferred) == 600


async def test_a_chunk_past_the_declared_length_is_413_and_discarded(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 5)
    response = await patch(client, alice, url, 0, b"hello world")
    assert_problem(response, 413, "payload-too-large")
    assert await offset_of(client, alice, url) == 0
    assert staged_bytes(settings, upload_id(url)) in (None, b"")


async def test_quota_is_checked_at_creation_and_while_bytes_arrive(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    await set_quota(settings, alice.user_id, 100)
    before = await storage(settings)
    refused = await create(client, alice, 101)
    body = assert_problem(refused, 507, "quota-exceeded")
    assert body["limit_bytes"] == 100
    assert "location" not in refused.headers
    deferred = await new_upload(client, alice, None, defer=True)
    assert (await patch(client, alice, deferred, 0, b"x" * 60)).status_code == 204
    over = await patch(client, alice, deferred, 60, b"x" * 41)
    assert_problem(over, 507, "quota-exceeded")
    assert await offset_of(client, alice, deferred) == 60
    assert staged_bytes(settings, upload_id(deferred)) == b"x" * 60
    after = await storage(settings)
    assert after.nodes == before.nodes
    assert after.usage == before.usage


# --- targets and conflicts ----------------------------------------------------------------------------


async def test_the_target_folder_by_id_or_by_path(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    folder = (await mkdir(client, alice, alice.root_id, "inbox"))["id"]
    by_id = await create(client, alice, 1, body=b"a", meta=metadata(filename="a.txt", folder=folder))
    assert by_id.status_code == 201
    by_path = await create(client, alice, 1, body=b"b", meta=metadata(filename="b.txt", path="/photos/2026"))
    assert by_path.status_code == 201
    assert await names_in(client, alice, folder) == ["a.txt"]
    node = (await client.get(f"{API}/content/photos/2026/b.txt", headers=alice.headers)).content
    assert node == b"b"
    both = await create(client, alice, 1, meta=metadata(folder=folder, path="/x"))
    assert_problem(both, 400, "invalid-input")
    missing = await create(client, alice, 1, meta=metadata(folder="00000000-0000-4000-8000-000000000000"))
    assert_problem(missing, 404, "not-found")


async def test_a_taken_name_follows_on_conflict(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    existing = (await put_raw(client, alice, alice.root_id, "a.txt", b"old")).json()["id"]
    refused = await create(client, alice, 3, meta=metadata(filename="a.txt"))
    assert_problem(refused, 409, "conflict")
    renamed = await create(client, alice, 3, body=b"new", meta=metadata(filename="a.txt", on_conflict="rename"))
    assert renamed.headers["stowage-node-id"] == upload_id(upload_url(renamed))
    assert sorted(await names_in(client, alice, alice.root_id)) == ["a (2).txt", "a.txt"]
    replaced = await create(client, alice, 3, body=b"rep", meta=metadata(filename="a.txt", on_conflict="replace"))
    assert replaced.headers["stowage-node-id"] == existing  # a new version of the file that was there
    assert (await download(client, alice, existing)).content == b"rep"


async def test_a_name_taken_before_the_last_byte_is_retried_until_it_is_free(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The last chunk's 409 keeps the bytes: once the name is free again, HEAD records the file."""
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 5, meta=metadata(filename="race.txt"))
    assert (await patch(client, alice, url, 0, b"hel")).status_code == 204
    winner = (await put_raw(client, alice, alice.root_id, "race.txt", b"winner")).json()["id"]
    last = await patch(client, alice, url, 3, b"lo")
    assert_problem(last, 409, "conflict")
    assert (await head(client, alice, url)).status_code == 409
    row = await upload_row(settings, upload_id(url))
    assert row is not None
    assert row.received_bytes == 5
    assert row.sha256 is not None
    assert row.completed_at is None
    assert (await client.delete(f"{API}/nodes/{winner}", headers=alice.headers)).status_code == 200
    state = await head(client, alice, url)
    assert state.status_code == 200
    assert state.headers["stowage-node-id"] == upload_id(url)
    assert (await download(client, alice, upload_id(url))).content == b"hello"


# --- concatenation -------------------------------------------------------------------------------------


async def test_partial_uploads_are_joined_in_order(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    first = await new_upload(client, alice, 5, concat="partial")
    second = await new_upload(client, alice, 6, concat="partial")
    assert (await patch(client, alice, second, 0, b" world")).status_code == 204
    assert (await patch(client, alice, first, 0, b"hello")).status_code == 204
    part = await head(client, alice, first)
    assert part.headers["upload-concat"] == "partial"
    assert part.headers["upload-offset"] == "5"
    assert "stowage-node-id" not in part.headers  # parts never become files

    final = await create(
        client, alice, concat=f"final;{first} http://elsewhere.example{second}", meta=metadata(filename="joined.txt")
    )
    url = upload_url(final)
    uid = upload_id(url)
    assert final.headers["stowage-node-id"] == uid
    state = await head(client, alice, url)
    assert state.headers["upload-length"] == state.headers["upload-offset"] == "11"
    assert state.headers["upload-concat"] == f"final;{first} {second}"
    assert (await download(client, alice, uid)).content == b"hello world"
    refused = await patch(client, alice, url, 11, b"x")
    assert_problem(refused, 403, "upload-final")
    assert (await head(client, alice, first)).status_code == 404  # joined parts are removed
    assert staged_bytes(settings, upload_id(first)) is None


async def test_a_final_upload_needs_complete_partial_uploads_of_the_caller(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    incomplete = await new_upload(client, alice, 5, concat="partial")
    single = await new_upload(client, alice, 1, body=None)
    bobs = await new_upload(client, bob, 1, concat="partial")
    assert (await patch(client, bob, bobs, 0, b"b")).status_code == 204
    assert_problem(await create(client, alice, concat=f"final;{incomplete}"), 409, "conflict")
    assert_problem(await create(client, alice, concat=f"final;{single}"), 409, "conflict")
    assert_problem(await create(client, alice, concat=f"final;{bobs}"), 404, "not-found")
    with_length = await create(client, alice, 5, concat=f"final;{incomplete}")
    assert_problem(with_length, 400, "invalid-input")
    assert_problem(await create(client, alice, concat="final;/elsewhere/x"), 400, "invalid-input")
    assert await offset_of(client, bob, bobs) == 1  # untouched


# --- who may do what ------------------------------------------------------------------------------------


async def test_authorisation_anonymous_owner_other_user_and_admin(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    admin_pair = await make_admin(client, settings, "root@example.com")
    admin = Account("root@example.com", admin_pair["user"]["id"], admin_pair["access_token"], "")
    url = await new_upload(client, alice, 10)
    assert (await patch(client, alice, url, 0, b"hello")).status_code == 204

    anonymous = await create(client, None, 10)
    assert_problem(anonymous, 401, "unauthenticated")
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="stowage"'
    assert (await head(client, None, url)).status_code == 401
    assert_problem(await patch(client, None, url, 5, b"x"), 401, "unauthenticated")
    assert_problem(await terminate(client, None, url), 401, "unauthenticated")
    bad = await client.head(url, headers={**TUS, **auth("not-a-token")})
    assert bad.status_code == 401

    assert (await head(client, bob, url)).status_code == 404  # not revealed
    assert_problem(await patch(client, bob, url, 5, b"world"), 404, "not-found")
    assert_problem(await terminate(client, bob, url), 404, "not-found")
    assert await offset_of(client, alice, url) == 5

    assert (await head(client, admin, url)).status_code == 200
    assert (await head(client, alice, url)).headers["upload-offset"] == "5"


async def test_a_presigned_query_is_no_way_into_a_tus_upload(client: httpx.AsyncClient) -> None:
    """The caller is resolved as on every route: a presign query decides alone, and no URL is signed for
    tus, so a real signature borrowed from a file's URL is refused (403) even next to a valid bearer."""
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    assert (await patch(client, alice, url, 0, b"hello")).status_code == 204
    done = await patch(client, alice, await new_upload(client, alice, 2), 0, b"ok")
    minted = await client.post(
        f"/api/v1/nodes/{done.headers['stowage-node-id']}/presign", json={"expires_in": 600}, headers=alice.headers
    )
    assert minted.status_code == 200, minted.text
    borrowed = f"{url}?{minted.json()['url'].split('?', 1)[1]}"

    refused = await client.patch(
        borrowed,
        content=b"world",
        headers={**TUS, **alice.headers, "upload-offset": "5", "content-type": "application/offset+octet-stream"},
    )
    assert_problem(refused, 403, "permission-denied")
    assert (await client.head(borrowed, headers={**TUS, **alice.headers})).status_code == 403
    assert await offset_of(client, alice, url) == 5


async def test_personal_tokens_need_the_write_scope(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    reader = Account(alice.email, alice.user_id, (await create_pat(client, alice.token, ["read"]))["token"], "")
    writer = Account(alice.email, alice.user_id, (await create_pat(client, alice.token, ["write"]))["token"], "")
    assert_problem(await create(client, reader, 3), 403, "permission-denied")
    url = await new_upload(client, writer, 3, meta=metadata(filename="pat.txt"))
    assert_problem(await patch(client, reader, url, 0, b"abc"), 403, "permission-denied")
    done = await patch(client, writer, url, 0, b"abc")
    assert done.status_code == 204
    assert (await download(client, alice, done.headers["stowage-node-id"])).content == b"abc"


# --- the PATCH lease -------------------------------------------------------------------------------------


async def test_concurrent_patches_one_wins_the_other_is_told_it_is_locked(settings: Settings) -> None:
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        url = await new_upload(client, alice, 10)
        holding = asyncio.Event()
        release = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b"hel"
            holding.set()
            await release.wait()
            yield b"lo"

        first = asyncio.ensure_future(patch(client, alice, url, 0, slow_body()))
        await asyncio.wait_for(holding.wait(), 10)
        await asyncio.sleep(0.2)  # the first request is inside its lease, waiting for its body
        second = await patch(client, alice, url, 0, b"HELLO")
        body = assert_problem(second, 423, "upload-locked")
        assert int(second.headers["retry-after"]) >= 1
        assert body["retry_after"] >= 1
        release.set()
        won = await first
        assert won.status_code == 204
        assert won.headers["upload-offset"] == "5"
        assert staged_bytes(settings, upload_id(url)) == b"hello"
        assert (await patch(client, alice, url, 5, b"world")).status_code == 204  # the lease was released


async def test_a_lease_that_ran_out_can_be_taken_over(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    uid = upload_id(url)
    await set_upload(settings, uid, lock_token="dead-process", locked_until=utcnow() + timedelta(seconds=30))
    assert_problem(await patch(client, alice, url, 0, b"hello"), 423, "upload-locked")
    assert_problem(await terminate(client, alice, url), 423, "upload-locked")
    await set_upload(settings, uid, locked_until=utcnow() - timedelta(seconds=1))
    assert (await patch(client, alice, url, 0, b"hello")).status_code == 204
    row = await upload_row(settings, uid)
    assert row is not None
    assert row.lock_token is None


async def test_an_interrupted_body_keeps_what_arrived(settings: Settings) -> None:
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        url = await new_upload(client, alice, 10)

        async def broken_body() -> AsyncIterator[bytes]:
            yield b"hel"
            raise ConnectionResetError("the phone went into a tunnel")

        broken = await patch(client, alice, url, 0, broken_body())
        body = assert_problem(broken, 408, "request-timeout")
        assert "3 bytes that arrived are stored" in body["detail"]
        assert await offset_of(client, alice, url) == 3
        assert staged_bytes(settings, upload_id(url)) == b"hel"
        assert (await patch(client, alice, url, 3, b"lo worl")).status_code == 204


async def test_an_interrupted_body_with_a_checksum_is_discarded(settings: Settings) -> None:
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        url = await new_upload(client, alice, 10)

        async def broken_body() -> AsyncIterator[bytes]:
            yield b"hel"
            raise ConnectionResetError("gone")

        sha1 = {"Upload-Checksum": checksum("sha1", b"hello")}
        broken = await patch(client, alice, url, 0, broken_body(), headers=sha1)
        assert_problem(broken, 408, "request-timeout", detail_contains="discarded")
        assert await offset_of(client, alice, url) == 0
        assert staged_bytes(settings, upload_id(url)) == b""


async def test_a_request_that_lost_its_lease_stores_nothing_more(settings: Settings) -> None:
    """A PATCH that stalls past its lease, while another request takes the upload, is refused at its next
    write: every write names the lease's token."""
    async with served(settings) as (client, runtime):
        runtime.uploads.core.lease_seconds = 0.3  # renewed after 0.1 s
        alice = await new_account(client, "alice@example.com")
        url = await new_upload(client, alice, 10)
        uid = upload_id(url)
        holding, release = asyncio.Event(), asyncio.Event()

        async def stalling_body() -> AsyncIterator[bytes]:
            yield b"hel"
            holding.set()
            await release.wait()
            yield b"lo"

        first = asyncio.ensure_future(patch(client, alice, url, 0, stalling_body()))
        await asyncio.wait_for(holding.wait(), 10)
        await set_upload(settings, uid, lock_token="another-request", locked_until=utcnow() + timedelta(seconds=30))
        await asyncio.sleep(0.2)
        release.set()
        lost = await first
        assert_problem(lost, 409, "conflict", detail_contains="another request took over")
        row = await upload_row(settings, uid)
        assert row is not None
        assert row.received_bytes == 0
        assert row.lock_token == "another-request"  # the loser did not release what it no longer holds


async def test_a_refused_final_upload_leaves_its_parts_to_join_again(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    await put_raw(client, alice, alice.root_id, "joined.txt", b"already here")
    part = await new_upload(client, alice, 5, concat="partial")
    assert (await patch(client, alice, part, 0, b"hello")).status_code == 204
    refused = await create(client, alice, concat=f"final;{part}", meta=metadata(filename="joined.txt"))
    assert_problem(refused, 409, "conflict")
    assert (await head(client, alice, part)).headers["upload-offset"] == "5"  # the part can be joined again
    joined = await create(
        client, alice, concat=f"final;{part}", meta=metadata(filename="joined.txt", on_conflict="rename")
    )
    node_id = joined.headers["stowage-node-id"]
    assert (await download(client, alice, node_id)).content == b"hello"


async def test_other_methods_are_405_and_unknown_ids_404(client: httpx.AsyncClient) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    wrong = await client.get(url, headers={**TUS, **alice.headers})  # refused by the router, before tus
    body = assert_problem(wrong, 405, "method-not-allowed")
    assert set(body["allowed_methods"]) >= {"HEAD", "PATCH", "DELETE"}
    for unknown in ("not-an-id", "00000000-0000-4000-8000-000000000000"):
        missing = await patch(client, alice, f"{UPLOADS}/{unknown}", 0, b"x")
        assert_problem(missing, 404, "not-found")
        assert missing.headers["tus-resumable"] == "1.0.0"
        assert (await head(client, alice, f"{UPLOADS}/{unknown}")).status_code == 404


async def test_a_browser_tus_client_may_send_and_read_the_tus_headers(settings_env: dict[str, str]) -> None:
    origin = "https://app.example.com"
    async with open_client(make_settings(settings_env, cors_allow_origins=origin)) as client:
        alice = await new_account(client, "alice@example.com")
        sent = "authorization, content-type, tus-resumable, upload-offset, upload-checksum, upload-length"
        preflight = await client.options(
            f"{UPLOADS}/x",
            headers={
                "origin": origin,
                "access-control-request-method": "PATCH",
                "access-control-request-headers": sent,
            },
        )
        assert preflight.status_code == 204, preflight.text
        allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert set(sent.split(", ")) <= allowed
        created = await create(client, alice, 5, body=b"hello", headers={"origin": origin})
        exposed = {h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")}
        assert {
            "location",
            "upload-offset",
            "upload-length",
            "upload-expires",
            "tus-resumable",
            "stowage-node-id",
        } <= exposed


async def test_x_http_method_override_is_used_as_the_method(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    url = await new_upload(client, alice, 10)
    chunk = {**TUS, **alice.headers, "Content-Type": "application/offset+octet-stream"}
    patched = await client.post(
        url, headers={**chunk, "X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0"}, content=b"hello"
    )
    assert patched.status_code == 204
    assert patched.headers["upload-offset"] == "5"
    state = await client.post(url, headers={**TUS, **alice.headers, "X-HTTP-Method-Override": "HEAD"})
    assert state.status_code == 200
    assert state.headers["upload-offset"] == "5"
    assert state.content == b""
    plain = await client.post(url, headers={**chunk, "Upload-Offset": "5"}, content=b"world")
    assert_problem(plain, 405, "method-not-allowed")
    assert await offset_of(client, alice, url) == 5
    terminated = await client.post(url, headers={**TUS, **alice.headers, "X-HTTP-Method-Override": "DELETE"})
    assert terminated.status_code == 204
    assert (await head(client, alice, url)).status_code == 404
    assert staged_bytes(settings, upload_id(url)) is None


async def test_a_refused_first_chunk_still_creates_the_upload(client: httpx.AsyncClient, settings: Settings) -> None:
    """creation-with-upload: the creation succeeded, so the answer is 201 with the upload's URL and the offset
    that was stored; the client learns why its bytes were refused when it sends them again."""
    alice = await new_account(client, "alice@example.com")
    response = await create(client, alice, 5, body=b"hello", headers={"Upload-Checksum": checksum("sha1", b"HELLO")})
    url = upload_url(response)
    assert response.headers["upload-offset"] == "0"
    assert staged_bytes(settings, upload_id(url)) == b""
    again = await patch(client, alice, url, 0, b"hello", headers={"Upload-Checksum": checksum("sha1", b"HELLO")})
    assert_problem(again, 460, "checksum-mismatch")
