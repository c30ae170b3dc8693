"""fsck: a clean installation is clean; each kind of damage is found, and the repairable ones are repaired.

Content is uploaded through the real API (so rows, files and usage are what the write path makes),
then damaged behind the server's back — files in the data folder, rows through a second ``Database``
on the same settings — and ``fsck`` runs against ``Database(settings)`` + ``LocalBlobStore(data_dir)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import stat
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from conftest import make_settings
from stowage.app import create_app
from stowage.blobs import BlobInfo, LocalBlobStore
from stowage.blobs.local import LocalBlobWriter
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.engine import Database
from stowage.db.tables import Blob, Node, User, Version
from stowage.maintenance import blob_files
from stowage.maintenance import fsck as fsck_module
from stowage.maintenance.fsck import fsck
from stowage.maintenance.fsck_report import FsckReport
from support import asgi_client

PASSWORD = "correct horse battery staple"
HOUR = 3600.0


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Install:
    """A running application with some content, and direct access to its database and blob store."""

    client: httpx.AsyncClient | AsyncTestClient[Any]
    settings: Settings
    database: Database
    store: LocalBlobStore
    token: str
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    async def upload(self, path: str, content: bytes, **params: str) -> dict[str, Any]:
        response = await self.client.put(
            f"/api/v1/content/{path}", content=content, headers=auth(self.token), params=params
        )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        assert body["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
        self.files[path] = content
        return body

    async def fsck(self, **options: Any) -> FsckReport:
        return await fsck(self.database, self.store, **options)

    async def execute(self, statement: Any) -> None:
        async with self.database.transaction() as db:
            await db.execute(statement)

    async def scalar(self, statement: Any) -> Any:
        async with self.database.session() as db:
            return await db.scalar(statement)


def kinds(report: FsckReport) -> list[tuple[str, str]]:
    return sorted((p.kind, p.subject) for p in report.problems)


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


async def populate(install: Install) -> None:
    """A few files: a duplicate (dedup), an empty one, a replaced one (two versions), a trashed one."""
    await install.upload("docs/a.txt", b"alpha " * 1000)
    await install.upload("docs/b.txt", b"bravo " * 3000)
    await install.upload("docs/copy-of-a.txt", b"alpha " * 1000)
    await install.upload("empty.bin", b"")
    await install.upload("photos/c.jpg", os.urandom(300_000))
    await install.upload("photos/c.jpg", os.urandom(200_000), on_conflict="replace")
    trashed = await install.upload("trash-me.txt", b"delta " * 500)
    response = await install.client.delete(f"/api/v1/nodes/{trashed['id']}", headers=auth(install.token))
    assert response.status_code == 200, response.text
    del install.files["trash-me.txt"]


async def _open(client: httpx.AsyncClient | AsyncTestClient[Any], settings: Settings) -> Install:
    response = await client.post("/api/v1/auth/signup", json={"email": "fsck@example.com", "password": PASSWORD})
    assert response.status_code == 201, response.text
    access = response.json()["access_token"]
    response = await client.post(
        "/api/v1/me/tokens", json={"name": "fsck", "scopes": ["read", "write"]}, headers=auth(access)
    )
    assert response.status_code == 201, response.text
    return Install(
        client=client,
        settings=settings,
        database=Database(settings),
        store=LocalBlobStore(settings.data_dir),
        token=response.json()["token"],
    )


@pytest.fixture
def fsck_settings(settings_env: dict[str, str]) -> Settings:
    return make_settings(settings_env, rate_limit_auth_per_ip=100_000, rate_limit_auth_per_account=100_000)


@pytest.fixture
async def install(fsck_settings: Settings) -> AsyncIterator[Install]:
    async with AsyncTestClient(app=create_app(fsck_settings)) as client:  # type: ignore[arg-type]
        installed = await _open(client, fsck_settings)
        try:
            await populate(installed)
            yield installed
        finally:
            await installed.database.dispose()


@pytest.fixture
async def live_install(fsck_settings: Settings) -> AsyncIterator[Install]:
    """Like ``install`` but the application runs in the test's event loop, so requests can overlap
    (Litestar's AsyncTestClient blocks the calling loop while a request is handled)."""
    async with asgi_client(create_app(fsck_settings)) as client:
        installed = await _open(client, fsck_settings)
        try:
            yield installed
        finally:
            await installed.database.dispose()


async def all_of(*awaitables: Any) -> list[Any]:
    """Like ``asyncio.gather`` but every task finishes before the first error is raised (a request left
    running past the test would leak its database connection into the next test)."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def make_writable(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


async def publish(store: LocalBlobStore, content: bytes) -> BlobInfo:
    """A blob file with no row: what a killed upload leaves behind."""
    async with store.writer() as writer:
        await writer.write(content)
        return await writer.commit()


# --- clean ---------------------------------------------------------------------------------------


async def test_clean_install_has_no_problems(install: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsck_module, "PAGE_SIZE", 2)  # several keyset pages of every table
    report = await install.fsck()

    assert report.problems == []
    assert report.repaired == []
    assert report.clean
    distinct = {sha(c): len(c) for c in install.files.values()} | {sha(b"delta " * 500): 3000}
    blob_rows = await install.scalar(select(func.count()).select_from(Blob))
    # The replaced photo's first version is still a blob row (history), so there is one more than listed.
    assert report.blobs_checked == blob_rows == len(distinct) + 1
    assert report.bytes_hashed == await install.scalar(select(func.sum(Blob.size)))
    assert report.started_at <= report.finished_at


async def test_without_rehash_nothing_is_hashed(install: Install) -> None:
    report = await install.fsck(rehash=False)

    assert report.problems == []
    assert report.bytes_hashed == 0
    assert report.blobs_checked > 0


# --- blob files ----------------------------------------------------------------------------------


async def test_corrupted_blob_is_reported_and_not_repaired(install: Install) -> None:
    digest = sha(install.files["docs/b.txt"])
    path = install.data_dir / "blobs" / digest[:2] / digest[2:4] / digest
    make_writable(path)
    with path.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"XXXX")

    report = await install.fsck(repair=True)

    assert kinds(report) == [("corrupt_blob", digest)]
    assert report.problems[0].repairable is False
    assert report.repaired == []
    assert not (await install.fsck(rehash=False)).problems  # the size is right: only a re-hash sees it


async def test_truncated_blob_is_corrupt_even_without_rehash(install: Install) -> None:
    digest = sha(install.files["docs/b.txt"])
    path = install.store.blob_path(digest)
    make_writable(path)
    with path.open("r+b") as handle:
        handle.truncate(10)

    report = await install.fsck(rehash=False)

    assert kinds(report) == [("corrupt_blob", digest)]
    assert "10 bytes" in report.problems[0].detail


async def test_missing_blob_is_reported(install: Install) -> None:
    digest = sha(install.files["docs/a.txt"])
    install.store.blob_path(digest).unlink()

    report = await install.fsck(repair=True)

    assert kinds(report) == [("missing_blob", digest)]
    assert report.problems[0].repairable is False
    assert report.repaired == []


# --- rows ----------------------------------------------------------------------------------------


async def test_wrong_refcount_is_repaired(install: Install) -> None:
    digest = sha(install.files["docs/a.txt"])  # referenced twice (dedup)
    await install.execute(update(Blob).where(Blob.sha256 == digest).values(refcount=7))

    report = await install.fsck()
    assert kinds(report) == [("wrong_refcount", digest)]
    assert "refcount is 7 but 2 versions" in report.problems[0].detail
    assert report.repaired == []
    assert await install.scalar(select(Blob.refcount).where(Blob.sha256 == digest)) == 7  # a check changes nothing

    repaired = await install.fsck(repair=True)
    assert [p.kind for p in repaired.repaired] == ["wrong_refcount"]
    assert await install.scalar(select(Blob.refcount).where(Blob.sha256 == digest)) == 2
    assert (await install.fsck()).problems == []


async def test_refcount_too_low_is_repaired(install: Install) -> None:
    digest = sha(install.files["docs/a.txt"])
    await install.execute(update(Blob).where(Blob.sha256 == digest).values(refcount=1))

    report = await install.fsck(repair=True)

    assert kinds(report) == [("wrong_refcount", digest)]
    assert await install.scalar(select(Blob.refcount).where(Blob.sha256 == digest)) == 2
    assert (await install.fsck()).problems == []


async def test_wrong_usage_is_repaired(install: Install) -> None:
    user_id = await install.scalar(select(User.id))
    # Trashed files still count: the trashed 3000 bytes are part of the usage.
    expected = await install.scalar(select(func.sum(Version.size)))
    assert await install.scalar(select(User.used_bytes)) == expected
    await install.execute(update(User).values(used_bytes=12345))

    report = await install.fsck()
    assert kinds(report) == [("wrong_usage", user_id)]
    assert report.problems[0].repairable

    repaired = await install.fsck(repair=True)
    assert [p.kind for p in repaired.repaired] == ["wrong_usage"]
    assert await install.scalar(select(User.used_bytes)) == expected
    assert (await install.fsck()).problems == []


async def test_node_out_of_step_with_its_version_is_repaired(install: Install) -> None:
    node_id = await install.scalar(select(Node.id).where(Node.name == "b.txt"))
    await install.execute(update(Node).where(Node.id == node_id).values(size=1, sha256="0" * 64))

    report = await install.fsck(repair=True)

    assert kinds(report) == [("node_version_mismatch", node_id)]
    assert [p.kind for p in report.repaired] == ["node_version_mismatch"]
    node = await install.scalar(select(Node).where(Node.id == node_id))
    assert (node.size, node.sha256) == (len(install.files["docs/b.txt"]), sha(install.files["docs/b.txt"]))
    assert (await install.fsck()).problems == []
    response = await install.client.get("/api/v1/content/docs/b.txt", headers=auth(install.token))
    assert response.content == install.files["docs/b.txt"]


async def test_node_pointing_at_a_foreign_version_is_pointed_at_its_newest(install: Install) -> None:
    photo = await install.scalar(select(Node).where(Node.name == "c.jpg"))
    other_version = await install.scalar(select(Version.id).where(Version.node_id != photo.id).limit(1))
    await install.execute(update(Node).where(Node.id == photo.id).values(current_version_id=other_version))

    report = await install.fsck(repair=True)

    assert kinds(report) == [("node_version_mismatch", photo.id)]
    assert report.problems[0].repairable
    # Back at the newest of its two versions: the replacement.
    repaired = await install.scalar(select(Node).where(Node.id == photo.id))
    assert repaired.current_version_id == photo.current_version_id
    assert repaired.sha256 == sha(install.files["photos/c.jpg"])
    assert (await install.fsck()).problems == []


async def test_unreferenced_blob_row_is_deleted_with_its_old_file(install: Install) -> None:
    old = await publish(install.store, b"nobody's content")
    fresh = await publish(install.store, b"an upload in flight, recorded next")
    age(install.store.blob_path(old.sha256), 2 * HOUR)
    async with install.database.transaction() as db:
        for info in (old, fresh):
            db.add(Blob(sha256=info.sha256, size=info.size, refcount=0, created_at=utcnow()))

    report = await install.fsck(repair=True)

    assert kinds(report) == sorted([("unreferenced_blob_row", old.sha256), ("unreferenced_blob_row", fresh.sha256)])
    assert len(report.repaired) == 2
    assert await install.scalar(select(func.count()).select_from(Blob).where(Blob.refcount == 0)) == 0
    assert not install.store.blob_path(old.sha256).exists()
    # The young file is kept (it may be about to be referenced again) and left to a later run.
    assert install.store.blob_path(fresh.sha256).exists()
    assert (await install.fsck(grace_seconds=HOUR)).problems == []
    orphans = await install.fsck(grace_seconds=0, repair=True)
    assert kinds(orphans) == [("orphan_blob", fresh.sha256)]
    assert not install.store.blob_path(fresh.sha256).exists()


async def test_a_second_root_folder_is_refused_by_the_schema(install: Install) -> None:
    """One root per user is a unique index (uq_nodes_owner_id_root); fsck's duplicate_root check stays
    as a guard for databases created before it, and finds nothing on a consistent install."""
    user_id = await install.scalar(select(User.id))
    now = utcnow()
    with pytest.raises(IntegrityError):
        async with install.database.transaction() as db:
            db.add(
                Node(
                    id=str(uuid.uuid4()),
                    owner_id=user_id,
                    parent_id=None,
                    kind="folder",
                    name="",
                    size=0,
                    created_at=now,
                    modified_at=now,
                )
            )

    report = await install.fsck(repair=True)

    assert kinds(report) == []


# --- orphans -------------------------------------------------------------------------------------


async def test_old_orphan_blob_is_deleted_and_a_fresh_one_left_alone(install: Install) -> None:
    old = await publish(install.store, b"left by a killed upload, long ago")
    fresh = await publish(install.store, b"published a moment ago, row on its way")
    age(install.store.blob_path(old.sha256), 2 * HOUR)

    report = await install.fsck(grace_seconds=HOUR)
    assert kinds(report) == [("orphan_blob", old.sha256)]
    assert report.problems[0].repairable
    assert install.store.blob_path(old.sha256).exists()  # a check deletes nothing

    repaired = await install.fsck(grace_seconds=HOUR, repair=True)
    assert [p.subject for p in repaired.repaired] == [old.sha256]
    assert not install.store.blob_path(old.sha256).exists()
    assert install.store.blob_path(fresh.sha256).exists()
    assert list(install.store.temp_dir.iterdir()) == []  # the quarantined copy is gone too
    assert (await install.fsck(grace_seconds=HOUR)).problems == []
    for path, content in install.files.items():  # nothing referenced was touched
        response = await install.client.get(f"/api/v1/content/{path}", headers=auth(install.token))
        assert response.content == content, path


def test_quarantine_puts_back_a_file_touched_before_the_rename(tmp_path: Path) -> None:
    """A deduplicating upload refreshes the mtime; a file found fresh after the rename goes back."""
    blob = tmp_path / "blobs" / "ab"
    blob.mkdir(parents=True)
    path = blob / ("ab" + "0" * 62)
    path.write_bytes(b"x")
    quarantine = tmp_path / "tmp"

    assert blob_files.quarantine(path, quarantine, cutoff=time.time() - HOUR) is None  # fresh: untouched
    assert path.exists()

    age(path, 2 * HOUR)
    real_rename = Path.rename

    def touch_then_rename(self: Path, target: Any) -> Path:
        os.utime(self)  # the upload's dedup refresh, racing in just before the rename
        return real_rename(self, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "rename", touch_then_rename)
        assert blob_files.quarantine(path, quarantine, cutoff=time.time() - HOUR) is None
    assert path.read_bytes() == b"x"
    assert list(quarantine.iterdir()) == []

    age(path, 2 * HOUR)
    moved = blob_files.quarantine(path, quarantine, cutoff=time.time() - HOUR)
    assert moved is not None
    assert not path.exists()
    assert moved.read_bytes() == b"x"


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace_seconds"):
        asyncio.run(fsck(None, None, grace_seconds=-1))  # type: ignore[arg-type]


# --- while the server serves ---------------------------------------------------------------------


async def test_fsck_with_repairs_while_uploads_run_changes_nothing(live_install: Install) -> None:
    """Repairs re-check inside their transaction: a check racing with writes must not 'fix' them."""
    install = live_install
    await install.upload("seed.txt", b"creates the root folder before the writers race")
    shared = os.urandom(50_000)
    stop = asyncio.Event()

    async def writer(number: int) -> None:
        count = 0
        while not stop.is_set():
            content = shared if count % 3 == 0 else os.urandom(secrets.randbelow(100_000))
            await install.upload(f"w{number}/f{count}.bin", content)
            if count % 4 == 1:
                await install.upload(f"w{number}/f{count}.bin", os.urandom(1000), on_conflict="replace")
            count += 1
            await asyncio.sleep(0)

    writers = [asyncio.create_task(writer(n)) for n in range(3)]
    reports = []
    try:
        # At least five runs, and more until the writers have stored enough to make the check meaningful
        # (a loaded machine, e.g. tests in parallel, slows them down), for at most a minute.
        deadline = time.monotonic() + 60
        while len(reports) < 5 or (len(install.files) <= 10 and time.monotonic() < deadline):
            # A grace period shorter than an upload's publish-to-commit time (which includes waiting for
            # SQLite's write lock) would let fsck collect the blob of an upload in flight: keep the default.
            reports.append(await install.fsck(repair=True, grace_seconds=HOUR))
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await all_of(*writers)

    assert [p for r in reports for p in r.problems] == []
    final = await install.fsck(grace_seconds=HOUR)
    assert final.problems == []
    assert len(install.files) > 10
    for path, content in install.files.items():
        response = await install.client.get(f"/api/v1/content/{path}", headers=auth(install.token))
        assert response.status_code == 200, (path, response.text)
        assert sha(response.content) == sha(content), path


async def test_purging_the_last_reference_while_the_same_content_is_uploaded(
    live_install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install = live_install
    content = b"the same bytes, twice " * 100
    first = await install.upload("first.txt", content)
    response = await install.client.delete(f"/api/v1/nodes/{first['id']}", headers=auth(install.token))
    assert response.status_code == 200

    published = asyncio.Event()
    proceed = asyncio.Event()
    real_publish = LocalBlobWriter._publish

    async def publish_then_pause(self: LocalBlobWriter, info: BlobInfo) -> None:
        await real_publish(self, info)  # the file exists already: dedup, nothing written
        published.set()
        await proceed.wait()  # the upload is between its blob commit and its transaction

    monkeypatch.setattr(LocalBlobWriter, "_publish", publish_then_pause)
    second = asyncio.create_task(install.upload("second.txt", content))
    await asyncio.wait_for(published.wait(), 10)
    purge = await install.client.delete(f"/api/v1/trash/{first['id']}", headers=auth(install.token))
    assert purge.status_code == 204
    proceed.set()
    await asyncio.wait_for(second, 10)  # acknowledged: 201

    report = await install.fsck()
    assert kinds(report) == []  # actual: [("missing_blob", <sha>)]
    download = await install.client.get("/api/v1/content/second.txt", headers=auth(install.token))
    assert download.content == content


async def test_first_requests_of_a_new_user_in_parallel(
    live_install: Install, backend: str, request: pytest.FixtureRequest
) -> None:
    """A new account's first uploads arrive together: they must all land in one root folder."""
    install = live_install
    contents = {f"d{i}/x.bin": os.urandom(1000) for i in range(4)}
    await all_of(*(install.upload(path, content) for path, content in contents.items()))

    report = await install.fsck()
    assert kinds(report) == []  # actual on PostgreSQL: [("duplicate_root", <user id>)]
    for path, content in contents.items():
        response = await install.client.get(f"/api/v1/content/{path}", headers=auth(install.token))
        assert response.status_code == 200, path
        assert response.content == content


async def test_concurrent_uploads_into_a_new_folder(
    live_install: Install, backend: str, request: pytest.FixtureRequest
) -> None:
    """Uploads that create the same missing parent folder at once must all succeed (or conflict), never 500."""
    install = live_install
    await install.upload("seed.txt", b"the root folder exists")
    contents: dict[str, bytes] = {}
    for round_number in range(12):  # the race is not hit every time: give it a few chances
        batch = {f"new{round_number}/f{i}.bin": os.urandom(2000) for i in range(2)}
        await all_of(*(install.upload(path, content) for path, content in batch.items()))
        contents |= batch

    assert (await install.fsck()).problems == []
    for path, content in contents.items():
        response = await install.client.get(f"/api/v1/content/{path}", headers=auth(install.token))
        assert response.content == content
