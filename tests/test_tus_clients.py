"""tus with real clients against a real ``stowage serve``, on SQLite and PostgreSQL.

- tuspy (the Python tus client) uploads a file in chunks, with checksums, and the file is in the tree;
- an upload interrupted by a server restart resumes from the stored offset (tuspy asks HEAD);
- two concurrent PATCHes of one upload on a server with two worker processes: one stores its chunk,
  the other is told the upload is locked (the lease is in the database, not in a process);
- ``../shared/conformance/tus/run.sh`` (tus-js-client plus raw probes of the protocol's MUSTs, the
  checksum and concatenation probes included) reports "N passed, 0 failed". It needs node and npm;
  without them it skips — and fails under ``STOWAGE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from accounts_helpers import PASSWORD
from conftest import require_capability, require_tool
from support.server import ServerProcess, clean_environ

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# The shared conformance check lives outside the project: next to the checkout normally, or where
# TUS_CONFORMANCE_DIR says; a clone elsewhere (CI's, for one) falls back to the workspace's copy.
CONFORMANCE_CANDIDATES = [
    *([Path(os.environ["TUS_CONFORMANCE_DIR"])] if os.environ.get("TUS_CONFORMANCE_DIR") else []),
    ROOT.parent / "shared" / "conformance" / "tus",
    Path("/work/shared/conformance/tus"),
]
DATA = os.urandom(3 * 1024 * 1024 + 12345)


async def account_token(base_url: str, email: str = "tus@example.com") -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        token: str = response.json()["access_token"]
        return token


async def downloaded(base_url: str, token: str, node_id: str) -> bytes:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        response = await client.get(f"/api/v1/nodes/{node_id}/content", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return response.content


def uploader(base_url: str, token: str, *, url: str | None = None, **options: object) -> object:
    tus = tus_client.TusClient(f"{base_url}/api/v1/uploads/", headers={"Authorization": f"Bearer {token}"})
    return tus.uploader(file_stream=io.BytesIO(DATA), url=url, **options)


@pytest.fixture
async def server(tmp_path: Path, settings_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path / "server", env=settings_env)
    try:
        await process.start()
        yield process
    finally:
        await process.stop(timeout=15)


async def test_tuspy_uploads_a_file_in_chunks_with_checksums(server: ServerProcess) -> None:
    token = await account_token(server.base_url)
    upload = uploader(
        server.base_url, token, chunk_size=256 * 1024, metadata={"filename": "tuspy.bin"}, upload_checksum=True
    )
    await asyncio.to_thread(upload.upload)  # type: ignore[attr-defined]
    node_id = upload.url.rsplit("/", 1)[-1]  # type: ignore[attr-defined]
    assert await downloaded(server.base_url, token, node_id) == DATA
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        node = (await client.get(f"/api/v1/nodes/{node_id}", headers={"Authorization": f"Bearer {token}"})).json()
    assert node["name"] == "tuspy.bin"
    assert node["size"] == len(DATA)


async def test_an_upload_resumes_from_the_stored_offset_after_a_restart(
    tmp_path: Path, settings_env: dict[str, str]
) -> None:
    first = ServerProcess(tmp_path / "server", env=settings_env)
    await first.start()
    try:
        token = await account_token(first.base_url)
        upload = uploader(first.base_url, token, chunk_size=1024 * 1024, metadata={"filename": "restart.bin"})
        for _ in range(2):
            await asyncio.to_thread(upload.upload_chunk)  # type: ignore[attr-defined]
        url: str = upload.url  # type: ignore[attr-defined]
    finally:
        await first.stop(timeout=15)
    second = ServerProcess(tmp_path / "server", env=settings_env, port=first.port)  # same data, same URL
    await second.start()
    try:
        resumed = uploader(second.base_url, token, url=url, chunk_size=1024 * 1024)
        assert await asyncio.to_thread(resumed.get_offset) == 2 * 1024 * 1024  # type: ignore[attr-defined]
        await asyncio.to_thread(resumed.upload)  # type: ignore[attr-defined]
        assert await downloaded(second.base_url, token, url.rsplit("/", 1)[-1]) == DATA
    finally:
        await second.stop(timeout=15)


async def test_tuspy_with_only_a_presigned_creation_url(server: ServerProcess) -> None:
    """The client holds nothing but the creation URL: no header at all. It creates the upload, sends two
    chunks, and a second client resumes it from the Location alone (HEAD, then PATCH), with checksums."""
    token = await account_token(server.base_url)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        minted = await client.post(
            "/api/v1/presign/tus",
            json={"path": "/", "max_size": len(DATA), "expires_in": 600},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert minted.status_code == 200, minted.text
    creation_url = minted.json()["url"]
    tus = tus_client.TusClient(creation_url)  # no headers
    first = tus.uploader(
        file_stream=io.BytesIO(DATA),
        chunk_size=1024 * 1024,
        metadata={"filename": "presigned.bin"},
        upload_checksum=True,
    )
    for _ in range(2):
        await asyncio.to_thread(first.upload_chunk)
    upload_url: str = first.url
    assert "X-Stowage-Signature=" in upload_url
    resumed = tus.uploader(file_stream=io.BytesIO(DATA), url=upload_url, chunk_size=1024 * 1024, upload_checksum=True)
    assert await asyncio.to_thread(resumed.get_offset) == 2 * 1024 * 1024
    await asyncio.to_thread(resumed.upload)
    node_id = upload_url.split("?", maxsplit=1)[0].rsplit("/", 1)[-1]
    assert await downloaded(server.base_url, token, node_id) == DATA
    # A tampered upload URL is refused (tuspy asks the offset as it opens an upload URL).
    broken = upload_url.replace("Max-Size=", "Max-Size=1")
    with pytest.raises(TusCommunicationError, match="403"):
        await asyncio.to_thread(tus.uploader, file_stream=io.BytesIO(DATA), url=broken)


async def trickle(started: asyncio.Event, release: asyncio.Event) -> AsyncIterator[bytes]:
    """A chunk whose second half waits until the test releases it."""
    yield b"hello"
    started.set()
    await release.wait()
    yield b"world"


async def test_concurrent_patches_across_two_worker_processes(tmp_path: Path, settings_env: dict[str, str]) -> None:
    """Each round: a PATCH holds the upload while its body trickles in; a second PATCH on another
    connection (so possibly another worker) is refused with 423 and changes nothing."""
    server = ServerProcess(tmp_path / "server", env={**settings_env, "STOWAGE_WORKERS": "2"})
    await server.start()
    try:
        token = await account_token(server.base_url)
        headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
        chunk = {**headers, "Content-Type": "application/offset+octet-stream"}
        for round_ in range(4):
            async with (
                httpx.AsyncClient(base_url=server.base_url, timeout=30) as one,
                httpx.AsyncClient(base_url=server.base_url, timeout=30) as two,
            ):
                created = await one.post("/api/v1/uploads/", headers={**headers, "Upload-Length": "10"})
                url = created.headers["location"]
                started, release = asyncio.Event(), asyncio.Event()

                first = asyncio.ensure_future(
                    one.patch(url, headers={**chunk, "Upload-Offset": "0"}, content=trickle(started, release))
                )
                await asyncio.wait_for(started.wait(), 10)
                await asyncio.sleep(0.5)  # the first request holds the lease now
                second = await two.patch(url, headers={**chunk, "Upload-Offset": "0"}, content=b"HELLOWORLD")
                assert second.status_code == 423, (round_, second.status_code, second.text)
                assert second.json()["type"] == "urn:stowage:problem:upload-locked"
                release.set()
                won = await first
                assert won.status_code == 204, won.text
                node_id = won.headers["stowage-node-id"]
                assert await downloaded(server.base_url, token, node_id) == b"helloworld"
    finally:
        await server.stop(timeout=15)


async def test_the_tus_conformance_check_passes(server: ServerProcess) -> None:
    require_tool("node", package="nodejs")
    require_tool("npm")
    found = next((path for path in CONFORMANCE_CANDIDATES if (path / "run.sh").is_file()), None)
    missing = None if found else "no run.sh in " + ", ".join(map(str, CONFORMANCE_CANDIDATES))
    require_capability("the shared tus conformance check", missing)
    assert found is not None
    token = await account_token(server.base_url)
    command = [
        "bash",
        str(found / "run.sh"),
        "--endpoint",
        f"{server.base_url}/api/v1/uploads/",
        "--auth",
        f"Bearer {token}",
        "--download",
        f"{server.base_url}/api/v1/nodes/{{id}}/content",
    ]
    result = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=900, check=False, env=clean_environ()
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert re.fullmatch(r"[1-9][0-9]* passed, 0 failed, [0-9]+ skipped", summary), result.stdout + result.stderr
    assert "SKIP" not in result.stdout, result.stdout  # every probe applies: all extensions are advertised
