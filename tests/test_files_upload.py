"""Uploads over HTTP: raw PUT into a folder or to a path, replacing a file's content, multipart forms.

Every refused upload is checked to have left nothing behind: no node, version or blob row, no blob
file under ``data_dir/blobs``, no upload spool, and the owner's usage unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from accounts_helpers import auth, concurrent_client, make_admin, open_client
from conftest import make_settings
from files_helpers import (
    API,
    assert_problem,
    assert_unchanged,
    by_path,
    child_path,
    content_digest,
    download,
    etag_of,
    multipart_body,
    multipart_headers,
    names_in,
    new_account,
    node_path,
    put_raw,
    race,
    set_quota,
    sha256_hex,
    spool_files,
    storage,
    upload,
    used_bytes,
    versions_of,
)
from stowage.config import Settings
from support.server import ServerProcess


async def test_raw_put_creates_a_file(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    before = await storage(settings)
    content = b"hello, stowage\n"

    response = await put_raw(client, alice, alice.root_id, "notes.txt", content)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "notes.txt"
    assert body["kind"] == "file"
    assert body["parent_id"] == alice.root_id
    assert body["size"] == len(content)
    assert body["media_type"] == "text/plain"
    assert body["etag"] == etag_of(content) == f'"{sha256_hex(content)}"'
    assert response.headers["etag"] == body["etag"]
    assert body["id"]

    after = await storage(settings)
    assert after.usage[alice.user_id] == before.usage[alice.user_id] + len(content)
    assert after.blob_files == before.blob_files | {sha256_hex(content)}
    assert [v[2:] for v in await versions_of(settings, body["id"])] == [(sha256_hex(content), len(content))]
    downloaded = await download(client, alice, body["id"])
    assert downloaded.content == content


async def test_replace_adds_a_version_and_charges_its_size(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    first = await upload(client, alice, alice.root_id, "report.txt", b"first draft")
    usage = await used_bytes(settings, alice.user_id)
    second = b"the second, longer draft"

    response = await put_raw(client, alice, alice.root_id, "report.txt", second, on_conflict="replace")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == first["id"]
    assert body["etag"] == etag_of(second) == response.headers["etag"]
    assert body["size"] == len(second)
    assert len(await versions_of(settings, first["id"])) == 2
    assert await used_bytes(settings, alice.user_id) == usage + len(second)
    assert (await download(client, alice, first["id"])).content == second
    assert await names_in(client, alice, alice.root_id) == ["report.txt"]


async def test_rename_policy_numbers_the_new_file(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    original = await upload(client, alice, alice.root_id, "photo.txt", b"one")

    second = await put_raw(client, alice, alice.root_id, "photo.txt", b"two", on_conflict="rename")
    third = await put_raw(client, alice, alice.root_id, "photo.txt", b"three", on_conflict="rename")

    assert second.status_code == 201, second.text
    assert third.status_code == 201, third.text
    assert second.json()["name"] == "photo (2).txt"
    assert third.json()["name"] == "photo (3).txt"
    assert second.json()["id"] != original["id"]
    assert sorted(await names_in(client, alice, alice.root_id)) == ["photo (2).txt", "photo (3).txt", "photo.txt"]
    assert (await download(client, alice, original["id"])).content == b"one"


@pytest.mark.parametrize("params", [{}, {"on_conflict": "fail"}])
async def test_fail_policy_refuses_a_taken_name(
    client: httpx.AsyncClient, settings: Settings, params: dict[str, str]
) -> None:
    alice = await new_account(client, "alice@example.com")
    existing = await upload(client, alice, alice.root_id, "taken.txt", b"already here")
    before = await storage(settings)

    response = await put_raw(client, alice, alice.root_id, "taken.txt", b"a brand new body", **params)

    body = assert_problem(response, 409, "conflict", detail_contains="'taken.txt' already exists")
    assert body["conflicting_id"] == existing["id"]
    assert_unchanged(before, await storage(settings))


async def test_if_none_match_star_creates_only(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    created = await put_raw(client, alice, alice.root_id, "once.txt", b"first", headers={"if-none-match": "*"})
    assert created.status_code == 201, created.text
    before = await storage(settings)

    # The precondition is decided before the body: a digest the body would fail does not matter.
    refused = await put_raw(
        client,
        alice,
        alice.root_id,
        "once.txt",
        b"second",
        headers={"if-none-match": "*", "x-content-sha256": sha256_hex(b"something else")},
        on_conflict="replace",
    )

    assert_problem(refused, 412, "precondition-failed", detail_contains="once.txt")
    assert_unchanged(before, await storage(settings))
    # Only * is meaningful for an upload.
    tag = created.json()["etag"]
    other_tag = await put_raw(client, alice, alice.root_id, "twice.txt", b"x", headers={"if-none-match": tag})
    assert_problem(other_tag, 400, "invalid-input", field="header.if-none-match")
    assert_unchanged(before, await storage(settings))


async def test_if_match_replaces_only_the_named_version(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "doc.txt", b"version one")
    stale = node["etag"]

    replaced = await put_raw(client, alice, alice.root_id, "doc.txt", b"version two", headers={"if-match": stale})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == node["id"]
    assert replaced.json()["etag"] == etag_of(b"version two")
    before = await storage(settings)

    lost_update = await put_raw(client, alice, alice.root_id, "doc.txt", b"version 2b", headers={"if-match": stale})
    assert_problem(lost_update, 412, "precondition-failed")
    missing = await put_raw(client, alice, alice.root_id, "nothing.txt", b"x", headers={"if-match": stale})
    assert_problem(missing, 412, "precondition-failed", detail_contains="nothing.txt")
    assert_unchanged(before, await storage(settings))

    # The same by id: PUT /nodes/{id}/content.
    current = replaced.json()["etag"]
    by_id = await client.put(
        node_path(node["id"], "/content"), content=b"version three", headers={**alice.headers, "if-match": current}
    )
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["etag"] == etag_of(b"version three")
    before = await storage(settings)
    stale_by_id = await client.put(
        node_path(node["id"], "/content"), content=b"version 3b", headers={**alice.headers, "if-match": current}
    )
    assert_problem(stale_by_id, 412, "precondition-failed")
    assert_unchanged(before, await storage(settings))
    assert (await download(client, alice, node["id"])).content == b"version three"
    assert len(await versions_of(settings, node["id"])) == 3


async def test_replace_content_by_id_without_precondition(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    node = await upload(client, alice, alice.root_id, "a.txt", b"old")
    folder = await client.post(node_path(alice.root_id, "/folders"), json={"name": "dir"}, headers=alice.headers)

    response = await client.put(node_path(node["id"], "/content"), content=b"newer", headers=alice.headers)

    assert response.status_code == 200, response.text
    assert response.json()["size"] == 5
    before = await storage(settings)
    into_folder = await client.put(node_path(folder.json()["id"], "/content"), content=b"x", headers=alice.headers)
    assert_problem(into_folder, 409, "conflict", detail_contains="folder")
    assert_unchanged(before, await storage(settings))


@pytest.mark.parametrize("header", ["content-digest", "x-content-sha256"])
async def test_a_matching_digest_is_accepted(client: httpx.AsyncClient, settings: Settings, header: str) -> None:
    alice = await new_account(client, "alice@example.com")
    content = b"checked content"
    value = content_digest(content) if header == "content-digest" else sha256_hex(content)

    response = await put_raw(client, alice, alice.root_id, "checked.txt", content, headers={header: value})

    assert response.status_code == 201, response.text
    assert response.json()["etag"] == etag_of(content)


@pytest.mark.parametrize("header", ["content-digest", "x-content-sha256"])
async def test_a_mismatching_digest_stores_nothing(client: httpx.AsyncClient, settings: Settings, header: str) -> None:
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "existing.txt", b"so the replace path is exercised too")
    content = b"the bytes that were sent"
    wrong = b"the bytes the client meant to send"
    value = content_digest(wrong) if header == "content-digest" else sha256_hex(wrong)
    before = await storage(settings)

    new_name = await put_raw(client, alice, alice.root_id, "new.txt", content, headers={header: value})
    replace = await put_raw(
        client, alice, alice.root_id, "existing.txt", content, headers={header: value}, on_conflict="replace"
    )

    for response in (new_name, replace):
        assert_problem(response, 400, "invalid-input", detail_contains="digest", field="header.content-digest")
    after = await storage(settings)
    assert_unchanged(before, after)
    assert sha256_hex(content) not in after.blob_files


@pytest.mark.parametrize(
    ("header", "value", "field"),
    [
        ("content-digest", "sha-256=abc", "header.content-digest"),
        ("content-digest", "sha-256=:AAAA:", "header.content-digest"),
        ("content-digest", "sha-256=:not base64!:", "header.content-digest"),
        ("content-digest", "SHA-256=:AAAA:", "header.content-digest"),
        ("x-content-sha256", "not-a-digest", "header.x-content-sha256"),
    ],
)
async def test_a_malformed_digest_header_is_refused(
    client: httpx.AsyncClient, settings: Settings, header: str, value: str, field: str
) -> None:
    alice = await new_account(client, "alice@example.com")
    before = await storage(settings)

    response = await put_raw(client, alice, alice.root_id, "x.txt", b"content", headers={header: value})

    assert_problem(response, 400, "invalid-input", field=field)
    assert_unchanged(before, await storage(settings))


async def test_upload_by_path_creates_missing_folders(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")

    response = await client.put(by_path("content", "A/B/c.txt"), content=b"deep", headers=alice.headers)

    assert response.status_code == 201, response.text
    assert response.headers["etag"] == etag_of(b"deep")
    found = await client.get(by_path("paths", "A/B/c.txt"), headers=alice.headers)
    assert found.status_code == 200
    assert found.json()["id"] == response.json()["id"]
    folder = (await client.get(by_path("paths", "A"), headers=alice.headers)).json()
    assert (folder["path"], folder["files"], folder["folders"], folder["bytes"]) == ("/A", 1, 1, 4)

    # The same path again: a taken name; replace makes a new version; missing folders reuse existing ones.
    again = await client.put(by_path("content", "A/B/c.txt"), content=b"other", headers=alice.headers)
    assert_problem(again, 409, "conflict", detail_contains="c.txt")
    replaced = await client.put(
        by_path("content", "A/B/c.txt"), content=b"other", headers=alice.headers, params={"on_conflict": "replace"}
    )
    assert replaced.status_code == 200, replaced.text
    sibling = await client.put(
        by_path("content", "A/B/d.txt"), content=b"d", headers=alice.headers, params={"create_parents": "false"}
    )
    assert sibling.status_code == 201, sibling.text
    assert await names_in(client, alice, alice.root_id) == ["A"]


async def test_upload_by_path_without_create_parents_needs_the_folders(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "file.txt", b"a file, not a folder")
    before = await storage(settings)

    missing = await client.put(
        by_path("content", "X/Y/d.txt"), content=b"d", headers=alice.headers, params={"create_parents": "false"}
    )
    under_file = await client.put(
        by_path("content", "file.txt/inner.txt"),
        content=b"d",
        headers=alice.headers,
        params={"create_parents": "false"},
    )
    no_name = await client.put(f"{API}/content/", content=b"d", headers=alice.headers)

    assert_problem(missing, 404, "not-found", detail_contains="/X")
    assert_problem(under_file, 409, "conflict", detail_contains="'file.txt' is a file")
    # An empty path names no resource: no route matches, so it is the router's 404, not the upload's.
    assert_problem(no_name, 404, "not-found", detail_contains=f"No resource at {API}/content/;")
    assert_unchanged(before, await storage(settings))


async def test_multipart_upload_stores_every_file(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    await upload(client, alice, alice.root_id, "b.txt", b"already there")
    body = multipart_body(
        [
            ("on_conflict", None, b"rename"),
            ("files", "a.txt", b"first file"),
            ("files", "b.txt", b"second file"),
        ]
    )

    response = await client.post(
        node_path(alice.root_id, "/upload"), content=body, headers={**alice.headers, **multipart_headers()}
    )

    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [item["name"] for item in items] == ["a.txt", "b (2).txt"]
    assert [item["etag"] for item in items] == [etag_of(b"first file"), etag_of(b"second file")]
    for item, content in zip(items, (b"first file", b"second file"), strict=True):
        assert (await download(client, alice, item["id"])).content == content
    assert sorted(await names_in(client, alice, alice.root_id)) == ["a.txt", "b (2).txt", "b.txt"]


async def test_multipart_query_policy_and_taken_name(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    existing = await upload(client, alice, alice.root_id, "same.txt", b"v1")
    body = multipart_body([("file", "same.txt", b"v2")])

    refused = await client.post(
        node_path(alice.root_id, "/upload"), content=body, headers={**alice.headers, **multipart_headers()}
    )
    assert_problem(refused, 409, "conflict", detail_contains="same.txt")
    replaced = await client.post(
        node_path(alice.root_id, "/upload"),
        content=body,
        headers={**alice.headers, **multipart_headers()},
        params={"on_conflict": "replace"},
    )

    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["items"][0]["id"] == existing["id"]
    assert (await download(client, alice, existing["id"])).content == b"v2"


FIELD_ONLY = b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n--B--\r\n'
TRUNCATED = b'--B\r\nContent-Disposition: form-data; name="f"; filename="f.txt"\r\n\r\nabc'


@pytest.mark.parametrize(
    ("content_type", "body", "detail"),
    [
        ("multipart/form-data; boundary=B", FIELD_ONLY, "no file"),
        ("multipart/form-data; boundary=B", b"this is not a multipart body", "malformed"),
        ("multipart/form-data; boundary=B", TRUNCATED, "ended"),
        ("multipart/form-data", b"--B--\r\n", "boundary"),
        ("application/octet-stream", b"raw bytes", "multipart/form-data"),
    ],
    ids=["no-file", "garbage", "truncated", "no-boundary", "not-multipart"],
)  # fmt: skip
async def test_a_bad_form_is_refused(
    client: httpx.AsyncClient, settings: Settings, content_type: str, body: bytes, detail: str
) -> None:
    alice = await new_account(client, "alice@example.com")
    before = await storage(settings)

    response = await client.post(
        node_path(alice.root_id, "/upload"), content=body, headers={**alice.headers, "content-type": content_type}
    )

    assert_problem(response, 400, "invalid-input", detail_contains=detail)
    assert_unchanged(before, await storage(settings))


# --- limits ------------------------------------------------------------------------------------------


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_the_upload_size_limit(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, max_upload_bytes=1000)
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        before = await storage(settings)

        declared = await put_raw(client, alice, alice.root_id, "big.bin", b"x" * 1001)
        streamed = await client.put(
            child_path(alice.root_id, "big.bin"), content=_chunks(b"x" * 600, b"y" * 600), headers=alice.headers
        )
        in_form = await client.post(
            node_path(alice.root_id, "/upload"),
            content=multipart_body([("file", "big.bin", b"z" * 2000)]),
            headers={**alice.headers, **multipart_headers()},
        )

        for response in (declared, streamed, in_form):
            assert_problem(response, 413, "payload-too-large", detail_contains="1000 bytes")
        assert_unchanged(before, await storage(settings))
        exactly = await put_raw(client, alice, alice.root_id, "limit.bin", b"x" * 1000)
        assert exactly.status_code == 201, exactly.text


async def test_the_quota_set_by_an_administrator(
    client: httpx.AsyncClient, settings: Settings, settings_env: dict[str, str]
) -> None:
    alice = await new_account(client, "alice@example.com")
    admin = await make_admin(client, settings, "root@example.com")
    patched = await client.patch(
        f"{API}/admin/users/{alice.user_id}", json={"quota_bytes": 1000}, headers=auth(admin["access_token"])
    )
    assert patched.status_code == 200, patched.text
    await upload(client, alice, alice.root_id, "first.bin", b"a" * 600)
    before = await storage(settings)

    declared = await put_raw(client, alice, alice.root_id, "second.bin", b"b" * 500)
    replace = await put_raw(client, alice, alice.root_id, "first.bin", b"c" * 401, on_conflict="replace")
    in_form = await client.post(
        node_path(alice.root_id, "/upload"),
        content=multipart_body([("file", "third.bin", b"d" * 500)]),
        headers={**alice.headers, **multipart_headers()},
    )
    async with concurrent_client(settings) as streaming:
        streamed = await streaming.put(
            child_path(alice.root_id, "fourth.bin"), content=_chunks(b"e" * 300, b"e" * 200), headers=alice.headers
        )

    for response in (declared, replace, in_form, streamed):
        body = assert_problem(response, 507, "quota-exceeded", detail_contains="quota")
        assert body["quota"] == "storage", body
        assert body["needed_bytes"] >= 401, body
    assert_unchanged(before, await storage(settings))

    fits = await put_raw(client, alice, alice.root_id, "fits.bin", b"f" * 400)
    assert fits.status_code == 201, fits.text
    assert await used_bytes(settings, alice.user_id) == 1000
    full = await put_raw(client, alice, alice.root_id, "one-more.bin", b"g")
    assert_problem(full, 507, "quota-exceeded")


async def test_a_quota_refusal_reports_usage_and_limit(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    await set_quota(settings, alice.user_id, 1000)
    await upload(client, alice, alice.root_id, "first.bin", b"a" * 600)

    response = await put_raw(client, alice, alice.root_id, "second.bin", b"b" * 500)

    body = assert_problem(response, 507, "quota-exceeded")
    assert (body.get("used_bytes"), body.get("limit_bytes"), body.get("needed_bytes")) == (600, 1000, 500), body


async def test_the_default_quota_applies_to_copies_too(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, default_quota_bytes=1000)
    async with open_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        node = await upload(client, alice, alice.root_id, "a.bin", b"a" * 600)
        before = await storage(settings)

        copy = await client.post(
            node_path(node["id"], "/copy"), json={"parent_id": alice.root_id, "name": "b.bin"}, headers=alice.headers
        )

        body = assert_problem(copy, 507, "quota-exceeded")
        assert (body["used_bytes"], body["limit_bytes"], body["needed_bytes"]) == (600, 1000, 600)
        assert_unchanged(before, await storage(settings))


async def test_concurrent_uploads_cannot_exceed_the_quota(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, default_quota_bytes=1000)
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")

        # Every upload has checked the free room (1000 bytes) before any is recorded.
        responses = await race(
            settings, [put_raw(client, alice, alice.root_id, f"part{i}.bin", bytes([i]) * 400) for i in range(4)]
        )

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 201, 507, 507], [r.text for r in responses]
        for response in responses:
            if response.status_code == 507:
                body = assert_problem(response, 507, "quota-exceeded")
                # Refused when recorded (the usual case here): the problem names the usage and the limit.
                assert (body.get("used_bytes", 800), body.get("limit_bytes", 1000)) == (800, 1000), body
        state = await storage(settings)
        assert state.usage[alice.user_id] == 800
        files = [n for n in state.nodes if n[3] == "file"]
        assert len(files) == 2
        assert sorted(b[0] for b in state.blobs) == sorted(n[5] for n in files)


async def test_concurrent_uploads_of_one_new_name(
    settings: Settings, backend: str, request: pytest.FixtureRequest
) -> None:
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")

        responses = await race(
            settings, [put_raw(client, alice, alice.root_id, "same.txt", f"writer {i}".encode()) for i in range(3)]
        )

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409, 409], [r.text[:200] for r in responses]
        winner = next(r for r in responses if r.status_code == 201).json()
        for response in responses:
            if response.status_code == 409:
                body = assert_problem(response, 409, "conflict", detail_contains="same.txt")
                assert body["conflicting_id"] == winner["id"]
        state = await storage(settings)
        assert [n[1] for n in state.nodes if n[3] == "file"] == ["same.txt"]
        assert len(state.versions) == 1
        assert state.usage[alice.user_id] == winner["size"]


async def test_concurrent_uploads_with_the_rename_policy(
    settings: Settings, backend: str, request: pytest.FixtureRequest
) -> None:
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")

        responses = await race(
            settings,
            [put_raw(client, alice, alice.root_id, "scan.pdf", b"page %d" % i, on_conflict="rename") for i in range(2)],
        )

        assert [r.status_code for r in responses] == [201, 201], [r.text[:200] for r in responses]
        names = sorted(r.json()["name"] for r in responses)
        assert names == ["scan (2).pdf", "scan.pdf"]
        assert sorted(await names_in(client, alice, alice.root_id)) == names


async def test_concurrent_uploads_by_path_share_new_folders(
    settings: Settings, backend: str, request: pytest.FixtureRequest
) -> None:
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")

        responses = await race(
            settings,
            [
                client.put(by_path("content", f"Camera/img{i}.jpg"), content=b"img %d" % i, headers=alice.headers)
                for i in range(2)
            ],
        )

        assert [r.status_code for r in responses] == [201, 201], [r.text[:200] for r in responses]
        camera = (await client.get(by_path("paths", "Camera"), headers=alice.headers)).json()
        assert (camera["folders"], camera["files"]) == (0, 2)
        assert await names_in(client, alice, alice.root_id) == ["Camera"]


async def test_a_short_body_stores_nothing(settings: Settings) -> None:
    """Content-Length promises more than arrives: nothing is published."""
    async with concurrent_client(settings) as client:
        alice = await new_account(client, "alice@example.com")
        before = await storage(settings)

        response = await put_raw(
            client, alice, alice.root_id, "short.txt", b"0123456789", headers={"content-length": "100"}
        )

        assert_problem(response, 400, "invalid-input", detail_contains="Content-Length")
        assert_unchanged(before, await storage(settings))


# --- names -----------------------------------------------------------------------------------------------


BAD_NAMES = [
    (".", "reserved"),
    ("..", "reserved"),
    ("a/b", "'/'"),
    ("line\nbreak", "control characters"),
    ("tab\there", "control characters"),
    ("é" * 128, "255 bytes"),
    ("   ", "only spaces"),
]


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES, ids=[repr(n[0])[:12] for n in BAD_NAMES])
async def test_bad_names_are_refused_everywhere(
    client: httpx.AsyncClient, settings: Settings, name: str, problem: str
) -> None:
    alice = await new_account(client, "alice@example.com")
    before = await storage(settings)

    folder = await client.post(node_path(alice.root_id, "/folders"), json={"name": name}, headers=alice.headers)
    assert_problem(folder, 400, "invalid-input", detail_contains=problem, field="body.name")
    if "/" not in name:  # a "/" cannot be sent inside one path segment or a multipart filename
        raw = await client.put(
            f"{API}/nodes/{alice.root_id}/children/{_segment(name)}", content=b"x", headers=alice.headers
        )
        assert_problem(raw, 400, "invalid-input", detail_contains=problem)
    if "\n" not in name and "\t" not in name:
        form = await client.post(
            node_path(alice.root_id, "/upload"),
            content=multipart_body([("file", name, b"x")]),
            headers={**alice.headers, **multipart_headers()},
        )
        # The form parser (email.message) strips a filename of blanks, so "   " arrives empty.
        assert_problem(form, 400, "invalid-input", detail_contains="empty" if name.isspace() else problem)
    assert_unchanged(before, await storage(settings))


def _segment(name: str) -> str:
    # Percent-encode every byte so "." and ".." reach the server as a name, not as dot-segments.
    return "".join(f"%{byte:02X}" for byte in name.encode())


async def test_empty_names_are_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    before = await storage(settings)

    folder = await client.post(node_path(alice.root_id, "/folders"), json={"name": ""}, headers=alice.headers)
    form = await client.post(
        node_path(alice.root_id, "/upload"),
        content=multipart_body([("file", "", b"x")]),
        headers={**alice.headers, **multipart_headers()},
    )
    mkdir_p = await client.post(f"{API}/folders", json={"path": "/"}, headers=alice.headers)

    assert_problem(folder, 400, "invalid-input", field="body.name")
    assert_problem(form, 400, "invalid-input", detail_contains="empty")
    assert_problem(mkdir_p, 400, "invalid-input", field="body.path")
    assert_unchanged(before, await storage(settings))


async def test_the_longest_name_fits(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    name = "é" * 125 + "x.txt"  # 255 bytes in UTF-8

    response = await put_raw(client, alice, alice.root_id, name, b"x")

    assert response.status_code == 201, response.text
    assert response.json()["name"] == name
    renamed = await put_raw(client, alice, alice.root_id, name, b"y", on_conflict="rename")
    assert renamed.status_code == 201, renamed.text
    assert len(renamed.json()["name"].encode()) <= 255
    assert renamed.json()["name"].startswith("ééé")


async def test_renaming_a_long_name_keeps_its_extension(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    name = "é" * 125 + "x.txt"  # 255 bytes in UTF-8
    await upload(client, alice, alice.root_id, name, b"x")

    renamed = await put_raw(client, alice, alice.root_id, name, b"y", on_conflict="rename")

    assert renamed.status_code == 201, renamed.text
    assert renamed.json()["name"].endswith(" (2).txt"), renamed.json()["name"]


async def test_names_are_nfc_normalised(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    decomposed = "e\u0301t\u00e9.txt".replace("\u00e9", "e\u0301")  # "été.txt" in NFD

    created = await put_raw(client, alice, alice.root_id, decomposed, b"summer")

    assert created.status_code == 201, created.text
    assert created.json()["name"] == "été.txt"
    for spelling in ("été.txt", decomposed):
        found = await client.get(by_path("paths", spelling), headers=alice.headers)
        assert found.status_code == 200, found.text
        assert found.json()["id"] == created.json()["id"]
    clash = await put_raw(client, alice, alice.root_id, "été.txt", b"winter")
    assert_problem(clash, 409, "conflict")
    assert await names_in(client, alice, alice.root_id) == ["été.txt"]


# --- media types ------------------------------------------------------------------------------------------


async def test_content_decides_the_media_type(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64

    disguised = await upload(client, alice, alice.root_id, "cat.jpg", html)
    bare = await upload(client, alice, alice.root_id, "IMG_0001", jpeg)

    assert disguised["media_type"] == "text/html"
    assert bare["media_type"] == "image/jpeg"
    served = await download(client, alice, disguised["id"])
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/html")
    assert served.headers["content-disposition"].startswith("attachment")
    assert served.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in served.headers["content-security-policy"]
    assert served.content == html
    image = await download(client, alice, bare["id"])
    assert image.headers["content-type"] == "image/jpeg"
    assert image.headers["content-disposition"].startswith("inline")


# --- who may upload where ------------------------------------------------------------------------------------


async def test_uploads_into_someone_elses_folder_are_not_found(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    mallory = await new_account(client, "mallory@example.com")
    file = await upload(client, alice, alice.root_id, "private.txt", b"alice's")
    before = await storage(settings)

    attempts = [
        await put_raw(client, mallory, alice.root_id, "planted.txt", b"x"),
        await client.put(node_path(file["id"], "/content"), content=b"x", headers=mallory.headers),
        await client.post(
            node_path(alice.root_id, "/upload"),
            content=multipart_body([("file", "planted.txt", b"x")]),
            headers={**mallory.headers, **multipart_headers()},
        ),
        await put_raw(client, mallory, "00000000-0000-0000-0000-000000000000", "x.txt", b"x"),
    ]

    for response in attempts:
        assert_problem(response, 404, "not-found")
    assert_unchanged(before, await storage(settings))
    into_file = await put_raw(client, alice, file["id"], "inner.txt", b"x")
    assert_problem(into_file, 409, "conflict", detail_contains="file")
    assert_unchanged(before, await storage(settings))


async def test_a_file_cannot_replace_a_folder(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")
    folder = await client.post(node_path(alice.root_id, "/folders"), json={"name": "docs"}, headers=alice.headers)
    assert folder.status_code == 201
    before = await storage(settings)

    response = await put_raw(client, alice, alice.root_id, "docs", b"x", on_conflict="replace")

    assert_problem(response, 409, "conflict", detail_contains="folder")
    assert_unchanged(before, await storage(settings))


async def test_x_modified_at_sets_the_modification_time(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await new_account(client, "alice@example.com")

    response = await put_raw(
        client, alice, alice.root_id, "old.txt", b"x", headers={"x-modified-at": "2001-02-03T04:05:06Z"}
    )
    bad = await put_raw(client, alice, alice.root_id, "bad.txt", b"x", headers={"x-modified-at": "yesterday"})

    assert response.status_code == 201, response.text
    assert response.json()["modified_at"].startswith("2001-02-03T04:05:06")
    assert_problem(bad, 400, "invalid-input", field="header.x-modified-at")


@pytest.mark.slow
async def test_a_client_that_hangs_up_mid_body_leaves_nothing(settings_env: dict[str, str], tmp_path: Path) -> None:
    """Against the real server: a raw socket promises 100 kB, sends 1 kB and closes its side."""
    server = ServerProcess(tmp_path / "server", env=settings_env)
    settings = make_settings(settings_env)
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            alice = await new_account(client, "alice@example.com")
            before = await storage(settings)

            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            head = (
                f"PUT {child_path(alice.root_id, 'cut.bin')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {alice.token}\r\nContent-Length: 100000\r\n\r\n"
            )
            writer.write(head.encode() + b"x" * 1000)
            await writer.drain()
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), timeout=10)
            writer.close()

            assert not answer.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")), answer[:200]
            for _ in range(100):  # the server drops the spool once it notices the hang-up
                if not spool_files(settings) - before.spools:
                    break
                await asyncio.sleep(0.05)
            assert_unchanged(before, await storage(settings))
            assert await names_in(client, alice, alice.root_id) == []
            # The server is fine afterwards.
            assert (await put_raw(client, alice, alice.root_id, "cut.bin", b"whole")).status_code == 201
    finally:
        await server.stop(timeout=15)
