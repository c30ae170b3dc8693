"""Shared helpers for the files-and-folders HTTP tests: accounts with their root folder, upload and
folder shortcuts, and a snapshot of everything storage-related (node, version and blob rows, each
user's usage, blob files and upload spools on disk) so a test can assert that a refused request left
nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
import zipfile
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select, update

from accounts_helpers import assert_problem, auth, database, lock_held, signup
from stowage.config import Settings
from stowage.db.tables import Blob, Node, User, Version

API = "/api/v1"
ROOT = f"{API}/files/root"
TRASH = f"{API}/trash"


# --- accounts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A signed-up user with a session access token and the id of their root folder."""

    email: str
    user_id: str
    token: str
    root_id: str

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)


async def new_account(client: httpx.AsyncClient, email: str) -> Account:
    pair = await signup(client, email)
    response = await client.get(ROOT, headers=auth(pair["access_token"]))
    assert response.status_code == 200, response.text
    return Account(email=email, user_id=pair["user"]["id"], token=pair["access_token"], root_id=response.json()["id"])


# --- content --------------------------------------------------------------------------------------


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def etag_of(content: bytes) -> str:
    return f'"{sha256_hex(content)}"'


def content_digest(content: bytes) -> str:
    """An RFC 9530 ``Content-Digest`` value for ``content``."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(content).digest()).decode()}:"


def node_path(node_id: str, suffix: str = "") -> str:
    return f"{API}/nodes/{node_id}{suffix}"


def child_path(folder_id: str, name: str) -> str:
    """The raw-upload URL for ``name`` in a folder (the name percent-encoded as one segment)."""
    return f"{API}/nodes/{folder_id}/children/{quote(name, safe='')}"


def by_path(kind: str, path: str) -> str:
    """``/api/v1/{paths|content}/a/b`` with each segment percent-encoded."""
    return f"{API}/{kind}/" + "/".join(quote(part, safe="") for part in path.strip("/").split("/"))


async def put_raw(
    client: httpx.AsyncClient,
    account: Account,
    folder_id: str,
    name: str,
    content: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    **params: Any,
) -> httpx.Response:
    return await client.put(
        child_path(folder_id, name),
        content=content,
        headers={**account.headers, **(headers or {})},
        params=params or None,
    )


async def upload(
    client: httpx.AsyncClient, account: Account, folder_id: str, name: str, content: bytes, **params: Any
) -> dict[str, Any]:
    """Upload a new file (asserting 201) and return its node."""
    response = await put_raw(client, account, folder_id, name, content, **params)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def mkdir(
    client: httpx.AsyncClient, account: Account, parent_id: str, name: str, *, expect: int = 201, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        node_path(parent_id, "/folders"), json={"name": name, **extra}, headers=account.headers
    )
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


async def children(client: httpx.AsyncClient, account: Account, folder_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every live child of a folder (all pages)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(node_path(folder_id, "/children"), params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def names_in(client: httpx.AsyncClient, account: Account, folder_id: str) -> list[str]:
    return [item["name"] for item in await children(client, account, folder_id)]


async def download(client: httpx.AsyncClient, account: Account, node_id: str, **headers: str) -> httpx.Response:
    return await client.get(node_path(node_id, "/content"), headers={**account.headers, **headers})


def multipart_body(parts: list[tuple[str, str | None, bytes]], boundary: str = "stowage-test-boundary") -> bytes:
    """A multipart/form-data body from (field name, filename or None, content) parts."""
    out = io.BytesIO()
    for name, filename, content in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if filename is not None:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n")
        out.write(content)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def multipart_headers(boundary: str = "stowage-test-boundary") -> dict[str, str]:
    return {"content-type": f"multipart/form-data; boundary={boundary}"}


def read_zip(data: bytes) -> dict[str, bytes]:
    """Every member of a ZIP archive: name → content (folders map to b"")."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


# --- races ---------------------------------------------------------------------------------------------


def name_checks_lined_up(settings: Settings) -> AbstractAsyncContextManager[Callable[[int], Awaitable[None]]]:
    """Make concurrent requests all check a name before any of them inserts it.

    PostgreSQL: ``LOCK TABLE nodes IN SHARE MODE`` (reads go on, every INSERT INTO nodes waits);
    ``wait_for(n)`` counts an INSERT INTO nodes, or the usage UPDATE queued behind one. SQLite: the
    write lock of the whole database; ``wait_for(n)`` counts requests inside a write unit of work
    (see ``lock_held``). Checks made before the unit of work (an upload's) have then all been made;
    checks inside it are serialised by SQLite's single writer anyway.
    """
    return lock_held(
        settings,
        postgres_lock="LOCK TABLE nodes IN SHARE MODE",
        waiting=["INSERT INTO nodes %", "UPDATE users %"],
    )


async def race(settings: Settings, calls: list[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """Run requests concurrently, lined up so that all of them have checked the name before any inserts."""
    async with name_checks_lined_up(settings) as wait_for:
        tasks = [asyncio.ensure_future(call) for call in calls]
        await wait_for(len(tasks))
    return list(await asyncio.gather(*tasks))


def expected_listing_order(items: list[dict[str, Any]], sort: str, descending: bool) -> list[str]:
    """Names in the order listings and search promise: folders first, then the key, name and id."""

    def key(item: dict[str, Any]) -> Any:
        if sort == "size":
            return item["size"]
        if sort == "modified":
            return datetime.fromisoformat(item["modified_at"])
        if sort == "type":
            return item["media_type"] or ""
        return item["name"]

    ordered: list[str] = []
    for kind in ("folder", "file"):  # folders first, whatever the order
        group = [i for i in items if i["kind"] == kind]
        group.sort(key=lambda i: (key(i), i["name"], i["id"]), reverse=descending)
        ordered += [i["name"] for i in group]
    return ordered


# --- the storage snapshot -------------------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """Everything storage-related, to compare before and after a request.

    ``nodes`` rows are (id, name, parent_id, kind, trashed_at, sha256, size); ``versions`` rows are
    (id, node_id, sha256, size); ``blobs`` rows are (sha256, size, refcount)."""

    nodes: list[tuple[Any, ...]]
    versions: list[tuple[Any, ...]]
    blobs: list[tuple[Any, ...]]
    usage: dict[str, int]
    blob_files: frozenset[str]
    spools: frozenset[str]


def blob_files(settings: Settings) -> frozenset[str]:
    """The SHA-256 names of every blob file under ``data_dir/blobs``."""
    root = Path(settings.data_dir) / "blobs"
    if not root.exists():
        return frozenset()
    return frozenset(p.name for p in root.rglob("*") if p.is_file())


def spool_files(settings: Settings) -> frozenset[str]:
    root = Path(settings.data_dir) / "tmp"
    if not root.exists():
        return frozenset()
    return frozenset(p.name for p in root.iterdir())


async def collect_garbage(settings: Settings) -> None:
    """Run the garbage collector as housekeeping would, with no grace period: purges delete blob
    *rows* at once, blob *files* only here (DESIGN.md: unreferenced blobs are removed by gc)."""
    from stowage.blobs import LocalBlobStore
    from stowage.maintenance.fsck import fsck

    async with database(settings) as db:
        await fsck(db, LocalBlobStore(settings.data_dir.resolve()), rehash=False, repair=True, grace_seconds=0)


async def fsck_problems(settings: Settings) -> list[tuple[str, str]]:
    """What a full check (re-hashing every blob, no grace period) finds, as (kind, subject); [] when clean."""
    from stowage.blobs import LocalBlobStore
    from stowage.maintenance.fsck import fsck

    async with database(settings) as db:
        report = await fsck(db, LocalBlobStore(settings.data_dir.resolve()), rehash=True, grace_seconds=0)
    return [(p.kind, p.subject) for p in report.problems]


async def storage(settings: Settings) -> Storage:
    async with database(settings) as db, db.session() as session:
        nodes = (
            await session.execute(
                select(Node.id, Node.name, Node.parent_id, Node.kind, Node.trashed_at, Node.sha256, Node.size)
            )
        ).all()
        versions = (await session.execute(select(Version.id, Version.node_id, Version.sha256, Version.size))).all()
        blobs = (await session.execute(select(Blob.sha256, Blob.size, Blob.refcount))).all()
        usage = {row[0]: row[1] for row in (await session.execute(select(User.id, User.used_bytes))).all()}
    return Storage(
        nodes=sorted(tuple(n) for n in nodes),
        versions=sorted(tuple(v) for v in versions),
        blobs=sorted(tuple(b) for b in blobs),
        usage=usage,
        blob_files=blob_files(settings),
        spools=spool_files(settings),
    )


async def used_bytes(settings: Settings, user_id: str) -> int:
    return (await storage(settings)).usage[user_id]


async def versions_of(settings: Settings, node_id: str) -> list[tuple[Any, ...]]:
    return [v for v in (await storage(settings)).versions if v[1] == node_id]


async def set_trashed_at(settings: Settings, node_ids: list[str], when: datetime) -> None:
    """Move trash timestamps (for the retention tests); the whole trash set of each root moves."""
    async with database(settings) as db, db.transaction() as session:
        await session.execute(update(Node).where(Node.trash_root_id.in_(node_ids)).values(trashed_at=when))


async def set_quota(settings: Settings, user_id: str, quota: int | None) -> None:
    async with database(settings) as db, db.transaction() as session:
        await session.execute(update(User).where(User.id == user_id).values(quota_bytes=quota))


def assert_unchanged(before: Storage, after: Storage) -> None:
    """Nothing storage-related changed: rows, usage, blob files, and no spool left behind."""
    assert after.nodes == before.nodes
    assert after.versions == before.versions
    assert after.blobs == before.blobs
    assert after.usage == before.usage
    assert after.blob_files == before.blob_files
    assert after.spools <= before.spools, f"upload spools left behind: {sorted(after.spools - before.spools)}"


__all__ = [
    "API",
    "ROOT",
    "TRASH",
    "Account",
    "Storage",
    "assert_problem",
    "assert_unchanged",
    "blob_files",
    "by_path",
    "child_path",
    "children",
    "collect_garbage",
    "content_digest",
    "download",
    "etag_of",
    "expected_listing_order",
    "fsck_problems",
    "mkdir",
    "multipart_body",
    "multipart_headers",
    "name_checks_lined_up",
    "names_in",
    "new_account",
    "node_path",
    "put_raw",
    "race",
    "read_zip",
    "set_quota",
    "set_trashed_at",
    "sha256_hex",
    "spool_files",
    "storage",
    "upload",
    "used_bytes",
    "versions_of",
]


# --- damaging blob files (integrity and fsck tests) ------------------------------------------------

# Linux stamps file times from a coarse clock (one tick is 1 to 10 ms): a change made in the same tick as
# the upload would keep the file's mtime and ctime, which ``verify_reads=changed`` relies on.
_TIMESTAMP_TICK = 0.02


def blob_file(settings: Settings, digest: str) -> Path:
    """Where the local store keeps the content named ``digest``."""
    return Path(settings.data_dir) / "blobs" / digest[:2] / digest[2:4] / digest


def flip_byte(settings: Settings, digest: str, offset: int = 0) -> bytes:
    """Damage a stored blob in place (same inode, same size, one byte inverted); returns the new content."""
    path = blob_file(settings, digest)
    time.sleep(_TIMESTAMP_TICK)
    path.chmod(0o644)
    with path.open("r+b") as handle:
        handle.seek(offset)
        original = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([original[0] ^ 0xFF]))
    path.chmod(0o444)
    return path.read_bytes()


def truncate_blob(settings: Settings, digest: str, size: int) -> None:
    """Cut a stored blob short, in place (what a crash or a full disk can leave)."""
    path = blob_file(settings, digest)
    time.sleep(_TIMESTAMP_TICK)
    path.chmod(0o644)
    with path.open("r+b") as handle:
        handle.truncate(size)
    path.chmod(0o444)


__all__ += ["blob_file", "flip_byte", "truncate_blob"]
