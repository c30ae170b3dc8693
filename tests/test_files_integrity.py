"""Re-hash on read: damaged content is refused with a logged 500 before any byte goes out, never served.

Content is uploaded through the API, then damaged behind the server's back in the data folder
(``files_helpers.flip_byte`` / ``truncate_blob``: same inode, the file's mtime and ctime change as any
real write changes them). ``verify_reads`` decides what a read checks: ``changed`` (default) re-hashes
content this process has not verified since it last changed on disk, ``always`` every time, ``off``
only that the file exists. A missing blob answers 500 ``blob-not-found`` the same way (tested here
too: ``test_files_download`` covers the intact paths only).

Log lines are checked as ``test_problems`` does: ``support.capture_logs`` configures logging as the
server does and keeps every JSON line.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.exceptions import LitestarException

from accounts_helpers import database, open_client
from conftest import make_settings
from files_helpers import (
    API,
    Account,
    assert_problem,
    blob_file,
    by_path,
    download,
    etag_of,
    flip_byte,
    mkdir,
    new_account,
    node_path,
    put_raw,
    read_zip,
    sha256_hex,
    spool_files,
    truncate_blob,
    upload,
)
from stowage.blobs import BlobCorrupt, LocalBlobStore
from stowage.config import Settings
from stowage.maintenance.fsck import fsck
from support import LogCapture, capture_logs
from support.server import ServerProcess

# Recognisable bytes: a refused response must not contain any of them.
SECRET = b"confidential-ledger-line;"
CONTENT = SECRET * 2000  # 50,000 bytes
OTHER = b"an intact neighbour\n" * 100


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every digest ``LocalBlobStore.verify`` re-hashes (the server's reads and fsck alike), in order."""
    calls: list[str] = []
    original = LocalBlobStore.verify

    async def counting(self: LocalBlobStore, sha256: str) -> bool:
        calls.append(sha256)
        return await original(self, sha256)

    monkeypatch.setattr(LocalBlobStore, "verify", counting)
    return calls


@pytest.fixture
def local_env(data_dir: Path) -> dict[str, str]:
    """SQLite only: for what the blob store alone decides, the metadata engine plays no part."""
    return {"STOWAGE_DATA_DIR": str(data_dir), "STOWAGE_LOG_FORMAT": "json"}


@pytest.fixture
def local_settings(local_env: dict[str, str]) -> Settings:
    return make_settings(local_env)


@pytest.fixture
async def local_client(local_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(local_settings) as client:
        yield client


@pytest.fixture
def logs(local_settings: Settings) -> Iterator[LogCapture]:
    """Every log line, as the server writes it (the JSON format is all ``capture_logs`` needs)."""
    with capture_logs(local_settings) as capture:
        yield capture


@dataclass(frozen=True)
class Stored:
    """alice with docs/report.bin (CONTENT) and docs/other.txt (OTHER)."""

    alice: Account
    docs: dict[str, Any]
    report: dict[str, Any]
    other: dict[str, Any]


def root_cause(error: BaseException) -> BaseException:
    """The first exception of a ``raise … from`` chain (Litestar wraps once per exception-handling layer)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


async def _stored(client: httpx.AsyncClient) -> Stored:
    alice = await new_account(client, "alice@example.com")
    docs = await mkdir(client, alice, alice.root_id, "docs")
    report = await upload(client, alice, docs["id"], "report.bin", CONTENT)
    other = await upload(client, alice, docs["id"], "other.txt", OTHER)
    return Stored(alice, docs, report, other)


def assert_refused(response: httpx.Response, code: str = "blob-corrupt") -> None:
    """A 500 problem naming the damage, carrying the request id, and not one byte of the file."""
    body = assert_problem(response, 500, code, detail_contains="fsck")
    assert body["request_id"]
    assert SECRET not in response.content
    assert SECRET[:8] not in response.content
    assert sha256_hex(CONTENT) not in response.text  # the hash is for the log, not the client
    for header in ("content-range", "content-disposition", "etag", "accept-ranges"):
        assert header not in response.headers, header


def assert_logged(logs: LogCapture, responses: list[httpx.Response], digest: str, code: str = "blob-corrupt") -> None:
    """Each refused request logged an error naming the content's hash, under that request's id."""
    request_ids = [r.headers["x-request-id"] for r in responses]
    errors = [e for e in logs.events("server_error") if e.get("code") == code]
    assert [e["request_id"] for e in errors] == request_ids
    for event in errors:
        assert event["level"] == "error"
        assert event["sha256"] == digest
    if code == "blob-corrupt":
        corrupt = logs.events("blob_corrupt")
        assert [e["request_id"] for e in corrupt] == request_ids
        for event in corrupt:
            assert event["level"] == "error"
            assert event["sha256"] == digest
            assert event["path"].endswith(digest)
    access = {line["request_id"]: line for line in logs.access_lines()}
    for request_id in request_ids:
        assert access[request_id]["status"] == 500


# --- refused before any byte ---------------------------------------------------------------------


async def test_corrupted_content_is_a_logged_500_by_id_path_and_range(
    client: httpx.AsyncClient, settings: Settings, logs: LogCapture
) -> None:
    stored = await _stored(client)
    alice, report = stored.alice, stored.report
    digest = sha256_hex(CONTENT)
    damaged = flip_byte(settings, digest, offset=12_345)
    assert len(damaged) == len(CONTENT)
    assert blob_file(settings, digest).stat().st_size == report["size"]

    logs.clear()
    by_id = await download(client, alice, report["id"])
    by_name = await client.get(by_path("content", "docs/report.bin"), headers=alice.headers)
    attachment = await client.get(
        node_path(report["id"], "/content"), params={"download": "true"}, headers=alice.headers
    )
    # A range far from the damage is refused too: the whole content is checked, not the span.
    ranged = await download(client, alice, report["id"], range="bytes=0-99")
    suffix = await download(client, alice, report["id"], range="bytes=-10")

    responses = [by_id, by_name, attachment, ranged, suffix]
    for response in responses:
        assert_refused(response)
    assert_logged(logs, responses, digest)
    other = await client.get(by_path("content", "docs/other.txt"), headers=alice.headers)
    assert other.status_code == 200
    assert other.content == OTHER


async def test_a_corrupted_old_version_is_refused_and_the_current_one_served(
    client: httpx.AsyncClient, settings: Settings, logs: LogCapture
) -> None:
    stored = await _stored(client)
    alice, docs, report = stored.alice, stored.docs, stored.report
    newer = b"the second edition\n" * 50
    replaced = await put_raw(client, alice, docs["id"], "report.bin", newer, on_conflict="replace")
    assert replaced.status_code == 200, replaced.text
    versions = (await client.get(node_path(report["id"], "/versions"), headers=alice.headers)).json()["items"]
    [old] = [v for v in versions if not v["current"]]
    assert old["sha256"] == sha256_hex(CONTENT)
    flip_byte(settings, old["sha256"], offset=len(CONTENT) - 1)  # the very last byte

    logs.clear()
    url = node_path(report["id"], f"/versions/{old['id']}/content")
    whole = await client.get(url, headers=alice.headers)
    ranged = await client.get(url, headers={**alice.headers, "range": "bytes=100-199"})

    assert_refused(whole)
    assert_refused(ranged)
    assert_logged(logs, [whole, ranged], old["sha256"])
    current = await download(client, alice, report["id"])
    assert current.status_code == 200
    assert current.content == newer


async def test_head_and_not_modified_only_need_the_content_to_exist(
    local_client: httpx.AsyncClient, local_settings: Settings, logs: LogCapture, verified: list[str]
) -> None:
    client, settings = local_client, local_settings
    stored = await _stored(client)
    alice, report = stored.alice, stored.report
    digest = sha256_hex(CONTENT)
    flip_byte(settings, digest)

    logs.clear()
    head = await client.head(node_path(report["id"], "/content"), headers=alice.headers)
    not_modified = await download(client, alice, report["id"], **{"if-none-match": etag_of(CONTENT)})

    assert head.status_code == 200  # no byte is sent, so nothing damaged can be
    assert head.content == b""
    assert head.headers["content-length"] == str(len(CONTENT))
    assert head.headers["etag"] == etag_of(CONTENT)
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert verified == []
    assert logs.events("blob_corrupt") == []
    assert logs.events("server_error") == []
    assert_refused(await download(client, alice, report["id"]))


async def test_a_zip_reaching_corrupted_content_is_aborted_not_completed(
    client: httpx.AsyncClient, settings: Settings, logs: LogCapture
) -> None:
    """The application has sent its 200 start before the archive reaches the damaged entry, so it can
    only break the stream off: it raises, and the ASGI server drops the connection (or answers 500 if
    no byte had left yet; see the end-to-end test). The stream never ends cleanly."""
    stored = await _stored(client)
    alice, docs, report = stored.alice, stored.docs, stored.report
    digest = sha256_hex(CONTENT)
    intact = await client.get(node_path(docs["id"], "/zip"), headers=alice.headers)
    assert read_zip(intact.content) == {"docs/": b"", "docs/other.txt": OTHER, "docs/report.bin": CONTENT}
    flip_byte(settings, digest, offset=7)

    logs.clear()
    with pytest.raises(LitestarException, match="after response started") as caught:
        await client.get(node_path(docs["id"], "/zip"), headers=alice.headers)
    with pytest.raises(LitestarException, match="after response started"):
        await client.post(f"{API}/zip", json={"ids": [report["id"]]}, headers=alice.headers)

    assert isinstance(root_cause(caught.value), BlobCorrupt)
    corrupt = logs.events("blob_corrupt")
    assert [e["sha256"] for e in corrupt] == [digest, digest]
    failures = logs.events("unhandled_exception_outside_framework")
    assert len(failures) == 2
    assert all("BlobCorrupt" in e["exception"] for e in failures)
    assert [e["request_id"] for e in failures] == [e["request_id"] for e in corrupt]
    aborted = [r for r in logs.records if r.get("logger") == "stowage.access" and r.get("event") == "request_aborted"]
    assert [r["request_id"] for r in aborted] == [e["request_id"] for e in corrupt]
    assert all(r["status"] == 200 for r in aborted)  # what the application had started
    assert logs.access_lines() == []  # no request was logged as a normal, complete one
    # A ZIP of intact content is unaffected.
    other = stored.other
    fine = await client.post(f"{API}/zip", json={"ids": [other["id"]]}, headers=alice.headers)
    assert read_zip(fine.content) == {"other.txt": OTHER}


# --- what is re-hashed when ----------------------------------------------------------------------


async def test_intact_files_keep_downloading_and_a_verified_read_is_not_rehashed(
    local_client: httpx.AsyncClient, local_settings: Settings, verified: list[str]
) -> None:
    client, settings = local_client, local_settings
    stored = await _stored(client)
    alice, docs, report = stored.alice, stored.docs, stored.report
    damaged = await upload(client, alice, docs["id"], "damaged.bin", b"soon to be damaged " * 10)
    flip_byte(settings, sha256_hex(b"soon to be damaged " * 10))

    first = await download(client, alice, report["id"])
    second = await download(client, alice, report["id"])
    ranged = await download(client, alice, report["id"], range="bytes=25-49")
    assert_refused(await download(client, alice, damaged["id"]))
    third = await download(client, alice, report["id"])

    for response in (first, second, third):
        assert response.status_code == 200
        assert response.content == CONTENT
    assert ranged.status_code == 206
    assert ranged.content == CONTENT[25:50]
    # This process wrote the intact file and nothing changed it since: served without re-hashing.
    # The damaged one changed on disk after it was written, so its read re-hashed it.
    assert verified == [sha256_hex(b"soon to be damaged " * 10)]


async def test_content_from_before_a_restart_is_hashed_once_then_trusted(
    local_settings: Settings, verified: list[str], logs: LogCapture
) -> None:
    settings = local_settings
    async with open_client(settings) as client:
        stored = await _stored(client)
        alice, report = stored.alice, stored.report
    assert verified == []
    other = blob_file(settings, sha256_hex(OTHER))
    inode = other.stat().st_ino

    async with open_client(settings) as restarted:  # a new process has verified nothing yet
        first = await download(restarted, alice, report["id"])
        second = await download(restarted, alice, report["id"])
        # A deduplicating upload trusts the copy this process has just verified, without hashing again.
        again = await upload(restarted, alice, alice.root_id, "again.bin", CONTENT)
        # One it has not verified it re-hashes (outside ``verify``), finds intact and keeps.
        copy = await upload(restarted, alice, alice.root_id, "copy.txt", OTHER)

    assert first.content == second.content == CONTENT
    assert again["etag"] == etag_of(CONTENT)
    assert copy["etag"] == etag_of(OTHER)
    assert verified == [sha256_hex(CONTENT)]
    assert other.stat().st_ino == inode  # kept, not replaced
    assert logs.events("blob_corrupt_replaced") == []


async def test_corruption_after_a_verified_read_is_still_caught(
    local_settings: Settings, verified: list[str], logs: LogCapture
) -> None:
    settings = local_settings
    """``changed`` remembers what it verified by inode, size, mtime and ctime: writing to the file
    changes its times, so the next read re-hashes it even though the same process verified it."""
    async with open_client(settings) as client:
        stored = await _stored(client)
        alice, report = stored.alice, stored.report
    digest = sha256_hex(CONTENT)
    async with open_client(settings) as client:
        good = await download(client, alice, report["id"])
        assert good.content == CONTENT
        assert verified == [digest]  # verified, and remembered
        flip_byte(settings, digest, offset=40_000)

        logs.clear()
        refused = await download(client, alice, report["id"])

    assert_refused(refused)
    assert_logged(logs, [refused], digest)
    assert verified == [digest, digest]


@pytest.mark.parametrize("mode", ["changed", "always", "off"])
async def test_verify_reads_modes(local_env: dict[str, str], mode: str, verified: list[str], logs: LogCapture) -> None:
    settings = make_settings(local_env, verify_reads=mode)
    async with open_client(settings) as client:
        stored = await _stored(client)
        alice, report = stored.alice, stored.report
        other = stored.other
        damaged = flip_byte(settings, sha256_hex(CONTENT), offset=3)
        reads = [await download(client, alice, other["id"]) for _ in range(2)]
        response = await download(client, alice, report["id"])

    for read in reads:
        assert read.content == OTHER
    if mode == "off":
        # The trade-off of "off": no re-hashing at all, so damaged bytes go out as if they were intact.
        assert response.status_code == 200
        assert response.content == damaged != CONTENT
        assert response.headers["etag"] == etag_of(CONTENT)  # ...under the ETag of the real content
        assert verified == []
        assert logs.events("blob_corrupt") == []
    else:
        assert_refused(response)
        assert [e["sha256"] for e in logs.events("blob_corrupt")] == [sha256_hex(CONTENT)]
        expected = {"changed": [], "always": [sha256_hex(OTHER)] * 2}[mode]
        assert verified == [*expected, sha256_hex(CONTENT)]


# --- healing, truncation, loss -------------------------------------------------------------------


async def test_uploading_the_content_again_heals_a_corrupted_blob(
    client: httpx.AsyncClient, settings: Settings, logs: LogCapture
) -> None:
    stored = await _stored(client)
    alice, report = stored.alice, stored.report
    digest = sha256_hex(CONTENT)
    path = blob_file(settings, digest)
    inode = path.stat().st_ino
    flip_byte(settings, digest, offset=999)
    assert_refused(await download(client, alice, report["id"]))

    logs.clear()
    copy = await upload(client, alice, alice.root_id, "copy of report.bin", CONTENT)

    assert copy["etag"] == etag_of(CONTENT)
    [replaced] = logs.events("blob_corrupt_replaced")
    assert replaced["sha256"] == digest
    assert replaced["level"] == "error"
    assert path.read_bytes() == CONTENT
    assert path.stat().st_ino != inode  # a fresh file took the damaged one's place
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert spool_files(settings) == frozenset()
    healed = await download(client, alice, report["id"])
    assert healed.status_code == 200
    assert healed.content == CONTENT
    async with database(settings) as db:
        checked = await fsck(db, LocalBlobStore(settings.data_dir))
    assert [p for p in checked.problems if p.kind == "corrupt_blob"] == []
    assert checked.problems == []


async def test_a_truncated_blob_is_refused_then_healed(
    local_client: httpx.AsyncClient, local_settings: Settings, logs: LogCapture
) -> None:
    client, settings = local_client, local_settings
    stored = await _stored(client)
    alice, report = stored.alice, stored.report
    digest = sha256_hex(CONTENT)
    truncate_blob(settings, digest, 1000)

    logs.clear()
    whole = await download(client, alice, report["id"])
    inside = await download(client, alice, report["id"], range="bytes=0-99")  # bytes still on disk
    past = await download(client, alice, report["id"], range="bytes=2000-2999")

    for response in (whole, inside, past):
        assert_refused(response)
    assert_logged(logs, [whole, inside, past], digest)
    again = await put_raw(client, alice, alice.root_id, "re-upload.bin", CONTENT)
    assert again.status_code == 201, again.text
    assert blob_file(settings, digest).stat().st_size == len(CONTENT)
    healed = await download(client, alice, report["id"])
    assert healed.content == CONTENT


async def test_without_checks_a_truncated_blob_breaks_the_stream_off(local_env: dict[str, str]) -> None:
    """With ``verify_reads=off`` nothing is re-hashed, but a file shorter than its recorded size still
    cannot pass for the whole file: the body stops short and the response is never completed."""
    settings = make_settings(local_env, verify_reads="off")
    async with open_client(settings) as client:
        stored = await _stored(client)
        truncate_blob(settings, sha256_hex(CONTENT), 1000)
        # The error escapes the application after the headers went out: the server drops the connection.
        with pytest.raises(Exception) as whole:  # noqa: PT011 - its root cause is checked below
            await download(client, stored.alice, stored.report["id"])
        with pytest.raises(Exception) as tail:  # noqa: PT011
            await download(client, stored.alice, stored.report["id"], range="bytes=500-1999")
        inside = await download(client, stored.alice, stored.report["id"], range="bytes=0-99")

    for caught in (whole, tail):
        assert isinstance(root_cause(caught.value), BlobCorrupt)
    assert inside.status_code == 206
    assert inside.content == CONTENT[:100]  # bytes still on disk are served: nothing checks them


@pytest.mark.parametrize("mode", ["changed", "off"])
async def test_a_missing_blob_is_a_logged_500_in_every_mode(
    local_env: dict[str, str], mode: str, logs: LogCapture
) -> None:
    settings = make_settings(local_env, verify_reads=mode)
    async with open_client(settings) as client:
        stored = await _stored(client)
        alice, docs, report = stored.alice, stored.docs, stored.report
        digest = sha256_hex(CONTENT)
        blob_file(settings, digest).unlink()
        logs.clear()
        whole = await download(client, alice, report["id"])
        ranged = await download(client, alice, report["id"], range="bytes=0-9")
        head = await client.head(node_path(report["id"], "/content"), headers=alice.headers)
        with pytest.raises(LitestarException, match="after response started"):
            await client.get(node_path(docs["id"], "/zip"), headers=alice.headers)

    assert_refused(whole, "blob-not-found")
    assert_refused(ranged, "blob-not-found")
    assert head.status_code == 500  # HEAD needs the content to exist
    assert head.content == b""
    assert_logged(logs, [whole, ranged, head], digest, code="blob-not-found")
    assert logs.events("blob_corrupt") == []
    [failure] = logs.events("unhandled_exception_outside_framework")
    assert "BlobNotFound" in failure["exception"]


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_real_client_never_gets_a_complete_response_for_damaged_content(tmp_path: Path) -> None:
    """Over TCP with Granian (which sends whole files with ``pathsend``). A damaged file is a 500
    before any byte. A ZIP checks each entry when the archive reaches it: if archive bytes already
    went out, the connection is cut short of the announced Content-Length; if none had (the archive
    buffers its first 64 KiB), Granian still answers 500. Either way no client can take what it got
    for a whole archive."""
    server = ServerProcess(tmp_path / "server")
    await server.start()
    large = os.urandom(300_000)  # sorts first in the archive and fills several 64 KiB pieces
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            stored = await _stored(client)
            alice, docs, report = stored.alice, stored.docs, stored.report
            await upload(client, alice, docs["id"], "a-large.bin", large)
            assert (await download(client, alice, report["id"])).content == CONTENT
            flip_byte(make_settings({"STOWAGE_DATA_DIR": str(server.data_dir)}), sha256_hex(CONTENT), offset=5)

            refused = await download(client, alice, report["id"])
            received = bytearray()
            with pytest.raises(httpx.RemoteProtocolError, match=r"complete message body"):  # noqa: PT012
                async with client.stream("GET", node_path(docs["id"], "/zip"), headers=alice.headers) as response:
                    assert response.status_code == 200
                    expected = int(response.headers["content-length"])
                    async for chunk in response.aiter_raw():
                        received += chunk
            alone = await client.post(f"{API}/zip", json={"ids": [report["id"]]}, headers=alice.headers)
            other = await download(client, alice, stored.other["id"])
    finally:
        await server.stop()

    assert_refused(refused)
    assert 64 * 1024 <= len(received) < expected
    assert large[:100_000] in received
    assert SECRET not in received  # report.bin comes last; not one of its bytes went out
    assert alone.status_code == 500
    assert SECRET not in alone.content
    assert other.content == OTHER
    records = server.log_records()
    digest = sha256_hex(CONTENT)
    assert [r["sha256"] for r in records if r.get("event") == "blob_corrupt"] == [digest] * 3
    aborted = [r for r in records if r.get("event") == "request_aborted"]
    assert [r["route"] for r in aborted] == ["/api/v1/nodes/{node_id}/zip", "/api/v1/zip"]
