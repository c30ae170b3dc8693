"""``deploy/nginx/stowage.conf`` in front of a real Stowage, with Debian's nginx started by the test.

The shipped file is used as it is, with only its addresses and certificate paths pointed at the test's
(every substitution is checked to hit exactly once, so an edit of the file cannot silently escape the
test). nginx runs in the foreground with a private prefix, TLS on a self-signed certificate, and:

* a large upload is streamed: the server's spool file grows while the client is still holding back
  the rest of the body (with request buffering nginx would wait for the whole body first), and nginx
  writes no temp file;
* X-Forwarded-For is honoured through ``trusted_proxies``: the session records the client's address
  (the test client connects from 127.0.0.2), and a forged header from the client is not believed;
* whole-file (pathsend) and Range downloads arrive byte for byte;
* a tus upload (tuspy) works through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import require_tool
from support.server import ServerProcess, free_port, self_signed_certificate, wait_until

pytestmark = pytest.mark.slow
CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "stowage.conf"
PASSWORD = "nginx proxy test, correct horse"
CLIENT_ADDRESS = "127.0.0.2"  # any 127/8 address is loopback on Linux; the proxy is 127.0.0.1


def substituted(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} should occur once in {CONF.name}"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def nginx(prefix: Path, upstream_port: int) -> Iterator[int]:
    """nginx with the shipped server blocks, in the foreground; yields its HTTPS port."""
    binary = require_tool("nginx")
    prefix.mkdir(parents=True, exist_ok=True)
    port, plain_port = free_port(), free_port()
    cert, key = self_signed_certificate(prefix, require_tool("openssl"))
    site = substituted(
        CONF.read_text(),
        {
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream_port};",
            "listen 80;": f"listen 127.0.0.1:{plain_port};",
            "    listen [::]:80;\n": "",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{port} ssl http2;",
            "    listen [::]:443 ssl http2;\n": "",
            "/etc/letsencrypt/live/files.example.com/fullchain.pem": str(cert),
            "/etc/letsencrypt/live/files.example.com/privkey.pem": str(key),
        },
    )
    (prefix / "stowage.conf").write_text(site)
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    (prefix / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {prefix}/stowage.conf;
}}
"""
    )
    with (prefix / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, (prefix / "stderr.log").read_text() + (prefix / "error.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=1)  # noqa: S501 - self-signed
                break
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
async def proxied(tmp_path: Path, data_dir: Path) -> AsyncIterator[tuple[ServerProcess, httpx.AsyncClient, Path]]:
    server = ServerProcess(
        tmp_path / "stowage",
        env={
            "STOWAGE_DATA_DIR": str(data_dir),
            "STOWAGE_TRUSTED_PROXIES": "127.0.0.1/32",
            "STOWAGE_LOG_FORMAT": "json",
            "STOWAGE_LOG_LEVEL": "info",
        },
    )
    await server.start()
    try:
        with nginx(tmp_path / "nginx", server.port) as port:
            transport = httpx.AsyncHTTPTransport(local_address=CLIENT_ADDRESS, verify=False)
            async with httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{port}", transport=transport, timeout=60
            ) as client:
                yield server, client, tmp_path / "nginx"
    finally:
        await server.stop()


async def signed_up(client: httpx.AsyncClient, **headers: str) -> tuple[str, str]:
    response = await client.post(
        "/api/v1/auth/signup", json={"email": "proxy@example.com", "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["access_token"]
    root = await client.get("/api/v1/files/root", headers={"Authorization": f"Bearer {token}"})
    return token, root.json()["id"]


async def test_a_large_upload_streams_through_without_buffering(
    proxied: tuple[ServerProcess, httpx.AsyncClient, Path],
) -> None:
    server, client, prefix = proxied
    token, root = await signed_up(client)
    chunk = os.urandom(1024 * 1024)
    total_chunks = 48
    spool = server.data_dir / "tmp"
    seen_while_sending: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for index in range(total_chunks):
            yield chunk
            if index == 15:
                # Hold the rest back until Stowage has spooled part of what was sent: only possible
                # when nginx forwards the body as it arrives.
                deadline = time.monotonic() + 20
                while not any(p.stat().st_size >= 4 * 1024 * 1024 for p in files_in(spool)):
                    assert time.monotonic() < deadline, "Stowage saw nothing while the client was sending"
                    await asyncio.sleep(0.05)
                seen_while_sending.append(max(p.stat().st_size for p in files_in(spool)))
                assert files_in(prefix / "client_body") == []  # nginx keeps no copy of the body

    response = await client.put(
        f"/api/v1/nodes/{root}/children/big.bin",
        content=body(),
        headers={"Authorization": f"Bearer {token}", "Content-Length": str(total_chunks * len(chunk))},
    )

    assert response.status_code == 201, response.text
    assert seen_while_sending
    assert seen_while_sending[0] < total_chunks * len(chunk)
    expected = hashlib.sha256(chunk * total_chunks).hexdigest()
    assert response.json()["etag"].strip('"') == expected
    assert files_in(prefix / "client_body") == []


async def test_forwarded_for_is_honoured_through_trusted_proxies(
    proxied: tuple[ServerProcess, httpx.AsyncClient, Path],
) -> None:
    server, client, _prefix = proxied
    # The client claims to be someone else: nginx appends the real peer, and Stowage takes the last
    # address that is not a trusted proxy, so the claim is ignored.
    token, _root = await signed_up(client, **{"X-Forwarded-For": "203.0.113.7"})

    sessions = await client.get("/api/v1/me/sessions", headers={"Authorization": f"Bearer {token}"})

    assert sessions.status_code == 200, sessions.text
    assert [item["ip"] for item in sessions.json()] == [CLIENT_ADDRESS]
    await wait_until(lambda: any(r.get("path") == "/api/v1/me/sessions" for r in server.log_records()))
    logged = [r for r in server.log_records() if r.get("path") in {"/api/v1/auth/signup", "/api/v1/me/sessions"}]
    assert [r["client"] for r in logged] == [CLIENT_ADDRESS, CLIENT_ADDRESS]  # the access log, too


async def test_whole_and_range_downloads_are_intact(proxied: tuple[ServerProcess, httpx.AsyncClient, Path]) -> None:
    _server, client, prefix = proxied
    token, root = await signed_up(client)
    auth = {"Authorization": f"Bearer {token}"}
    data = os.urandom(5 * 1024 * 1024 + 777)
    uploaded = await client.put(f"/api/v1/nodes/{root}/children/data.bin", content=data, headers=auth)
    assert uploaded.status_code == 201, uploaded.text
    node = uploaded.json()["id"]

    whole = await client.get(f"/api/v1/nodes/{node}/content", headers=auth)
    ranged = await client.get(f"/api/v1/nodes/{node}/content", headers={**auth, "Range": "bytes=1000-2000999"})
    tail = await client.get(f"/api/v1/nodes/{node}/content", headers={**auth, "Range": "bytes=-777"})

    assert whole.status_code == 200
    assert whole.content == data
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 1000-2000999/{len(data)}"
    assert ranged.content == data[1000:2001000]
    assert tail.status_code == 206
    assert tail.content == data[-777:]
    assert files_in(prefix / "proxy") == []  # streamed, not spooled by nginx


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")  # tuspy (requests) to the self-signed proxy
async def test_tus_uploads_through_the_proxy(proxied: tuple[ServerProcess, httpx.AsyncClient, Path]) -> None:
    from tusclient import client as tus_client

    _server, client, _prefix = proxied
    token, _root = await signed_up(client)
    data = os.urandom(3 * 1024 * 1024 + 99)
    tus = tus_client.TusClient(f"{client.base_url}/api/v1/uploads/", headers={"Authorization": f"Bearer {token}"})
    uploader = tus.uploader(
        file_stream=io.BytesIO(data),
        chunk_size=1024 * 1024,
        metadata={"filename": "through-nginx.bin"},
        verify_tls_cert=False,
    )

    await asyncio.to_thread(uploader.upload)

    node_id = uploader.url.rsplit("/", 1)[-1]
    downloaded = await client.get(f"/api/v1/nodes/{node_id}/content", headers={"Authorization": f"Bearer {token}"})
    assert downloaded.status_code == 200
    assert downloaded.content == data
