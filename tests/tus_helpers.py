"""Shortcuts for the tus tests: raw tus requests (create, PATCH, HEAD, DELETE), Upload-Metadata and
checksum values, and the upload's stored state (row, staging file) to assert that a refused request
changed nothing."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from accounts_helpers import database
from files_helpers import Account
from stowage.app import create_app, litestar_of
from stowage.config import Settings
from stowage.db.tables import Upload
from stowage.runtime import Runtime

UPLOADS = "/api/v1/uploads"
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK_TYPE = {"Content-Type": "application/offset+octet-stream"}


def metadata(**values: str) -> str:
    """An Upload-Metadata value: ``key base64(value)`` pairs."""
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def upload_url(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith(f"{UPLOADS}/"), location
    return location


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


async def create(
    client: httpx.AsyncClient,
    account: Account | None,
    length: int | None = None,
    *,
    defer: bool = False,
    meta: str | None = None,
    concat: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {**TUS, **(account.headers if account else {})}
    if length is not None:
        sent["Upload-Length"] = str(length)
    if defer:
        sent["Upload-Defer-Length"] = "1"
    if meta is not None:
        sent["Upload-Metadata"] = meta
    if concat is not None:
        sent["Upload-Concat"] = concat
    if body is not None:
        sent.update(CHUNK_TYPE)
    sent.update(headers or {})
    return await client.post(f"{UPLOADS}/", headers=sent, content=body)


async def new_upload(client: httpx.AsyncClient, account: Account, length: int | None, **kwargs: Any) -> str:
    return upload_url(await create(client, account, length, **kwargs))


async def patch(
    client: httpx.AsyncClient,
    account: Account | None,
    url: str,
    offset: int,
    data: bytes | Any,
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {**TUS, **CHUNK_TYPE, **(account.headers if account else {}), "Upload-Offset": str(offset)}
    sent.update(headers or {})
    return await client.patch(url, headers=sent, content=data)


async def head(client: httpx.AsyncClient, account: Account | None, url: str) -> httpx.Response:
    return await client.head(url, headers={**TUS, **(account.headers if account else {})})


async def terminate(client: httpx.AsyncClient, account: Account | None, url: str) -> httpx.Response:
    return await client.delete(url, headers={**TUS, **(account.headers if account else {})})


async def offset_of(client: httpx.AsyncClient, account: Account, url: str) -> int:
    response = await head(client, account, url)
    assert response.status_code == 200, response.headers
    return int(response.headers["upload-offset"])


async def upload_row(settings: Settings, upload_id: str) -> Upload | None:
    async with database(settings) as db, db.session() as session:
        found: Upload | None = await session.scalar(select(Upload).where(Upload.id == upload_id))
        return found


async def set_upload(settings: Settings, upload_id: str, **values: Any) -> None:
    async with database(settings) as db, db.transaction() as session:
        await session.execute(update(Upload).where(Upload.id == upload_id).values(**values))


def staged_bytes(settings: Settings, upload_id: str) -> bytes | None:
    path = Path(settings.data_dir) / "staging" / upload_id
    return path.read_bytes() if path.exists() else None


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """A client whose requests run in the test's event loop, with the application's runtime, so a test
    can call services (housekeeping) on the same engines the requests use."""
    app = create_app(settings)
    inner = litestar_of(app)
    async with (
        inner.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as client,
    ):
        runtime: Runtime = inner.state.runtime
        yield client, runtime
