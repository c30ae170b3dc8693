"""Crash loop: SIGKILL a real ``stowage serve`` while uploads are in flight, restart it, check nothing was lost.

DESIGN.md, principle 3: "A 2xx for a write means the bytes are fsynced and the metadata is committed. A
crash at any instant leaves either the old state or the new one, never a half file." Each cycle:

1. start the server (``python -m stowage serve``) on the data folder (and database) of the run;
2. run ``--uploaders`` concurrent clients that PUT random files (0..``--max-size`` bytes, some with the same
   content to exercise deduplication, some replacing an earlier file of their own) and record every
   attempt, and whether it was acknowledged with a 2xx;
3. after a random delay, SIGKILL the Granian master and all its workers at once;
4. restart on the same data, and verify:
   * every acknowledged upload downloads byte-identical (or as a later, unacknowledged attempt at the
     same path, which may have committed just before the kill);
   * a path never acknowledged is absent or holds one complete intended content (its ETag, size and
     downloaded bytes agree) — and the listings hold nothing else;
   * ``fsck`` (re-hashing every blob) reports no problem at all (orphan blob files of killed uploads are
     younger than its grace period, so they are not problems).

``tests/test_crash.py`` runs a few cycles of this in the test suite; run the long version by hand::

    .venv/bin/python bench/crash_loop.py --cycles 200
    .venv/bin/python bench/crash_loop.py --cycles 50 --database-url postgresql://postgres@127.0.0.1/test \\
        --schema crash_loop

The data folder (``--data-dir``, default a fresh temporary one) is kept, with the server's logs in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

MIB = 1024 * 1024
PASSWORD = "tidal orchard pebble ninety"  # noqa: S105 - a throwaway account on a throwaway server
EMAIL = "crash-loop@example.com"
GRACE_SECONDS = 3600.0
CHUNK = 256 * 1024

Log = Callable[[str], None]


# --- configuration and results ---------------------------------------------------------------------


@dataclass
class CrashConfig:
    data_dir: Path
    cycles: int = 200
    uploaders: int = 6
    max_size: int = 2 * MIB
    database_url: str | None = None
    schema: str | None = None
    workers: int = 1
    min_delay: float = 0.05
    max_delay: float = 1.0
    seed: int | None = None
    rehash_every: int = 1  # fsck re-hashes every blob every N cycles (the other cycles: rows and sizes only)
    sample_old: int = 25  # earlier paths re-verified each cycle (all of them at the end)
    overwrite_ratio: float = 0.15
    dedup_ratio: float = 0.2
    start_timeout: float = 60.0
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Attempt:
    sha256: str
    size: int
    acked: bool = False


@dataclass
class Summary:
    cycles: int = 0
    kills: int = 0
    attempts: int = 0
    acknowledged: int = 0
    interrupted: int = 0  # requests cut by the kill
    unacknowledged_found: set[int] = field(default_factory=set, repr=False)  # ids of such attempts
    verified_downloads: int = 0
    bytes_acknowledged: int = 0
    fsck_runs: int = 0
    bytes_rehashed: int = 0
    temp_spools: set[str] = field(default_factory=set, repr=False)  # spools of killed uploads seen in tmp/
    processes_killed: int = 0  # Granian master and workers, over all kills
    orphan_blobs: int = 0  # blob files without a row at the end (killed uploads; gc collects them)
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seed: int = 0
    seconds: float = 0.0

    @property
    def temp_leftovers(self) -> int:
        """Spool files of killed uploads found in tmp/ (gc collects them)."""
        return len(self.temp_spools)

    @property
    def committed_unacknowledged(self) -> int:
        """Attempts found committed although the client never saw their 2xx (killed before the response)."""
        return len(self.unacknowledged_found)

    def lines(self) -> list[str]:
        return [
            f"cycles {self.cycles} (server killed {self.kills} times, {self.processes_killed} processes), "
            f"seed {self.seed}, {self.seconds:.1f}s",
            f"uploads: {self.attempts} attempted, {self.acknowledged} acknowledged "
            f"({self.bytes_acknowledged / MIB:.1f} MiB), {self.interrupted} cut by a kill, "
            f"{self.committed_unacknowledged} committed without the client seeing the 2xx",
            f"verified: {self.verified_downloads} downloads; fsck {self.fsck_runs} runs, "
            f"{self.bytes_rehashed / MIB:.1f} MiB re-hashed",
            f"leftovers of killed uploads: {self.temp_leftovers} temp spools seen, "
            f"{self.orphan_blobs} unrecorded blob files at the end (younger than the gc grace period)",
            f"HTTP statuses while the server was up: {dict(sorted(self.statuses.items()))}",
            f"problems: {len(self.problems)}",
            *(f"  - {p}" for p in self.problems[:50]),
        ]


# --- the server process ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc/<pid>/task/<tid>/children`` (Linux), depth first."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in (int(c) for c in text.split()):
            found.append(child)
            found.extend(descendants(child))
    return found


def is_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}


class Server:
    """``python -m stowage serve`` in its own session, logs appended to files in the data folder."""

    def __init__(self, env: Mapping[str, str], data_dir: Path, *, start_timeout: float) -> None:
        self.env = dict(env)
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "crash-loop-server.log"
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = free_port()
        self.starts += 1
        command = [sys.executable, "-m", "stowage", "serve", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.starts} on port {self.port} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter; spawning returns at once
                command, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log_path}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"server did not answer /healthz in {self.start_timeout}s; see {self.log_path}")
                await asyncio.sleep(0.05)

    def kill(self) -> list[int]:
        """SIGKILL the master and every worker at once; return the pids killed."""
        if self.process is None:
            return []
        pid = self.process.pid
        victims = [pid, *descendants(pid)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # the whole session at the same instant...
        for victim in victims:  # ...and any process that left the group
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        return victims

    async def kill_and_wait(self, timeout: float = 30.0) -> list[int]:  # noqa: ASYNC109 - one deadline for all
        """SIGKILL everything and wait until every process is gone; return their pids."""
        assert self.process is not None
        victims = self.kill()
        await asyncio.to_thread(self.process.wait, timeout)
        deadline = time.monotonic() + timeout
        while not all(is_gone(v) for v in victims):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {[v for v in victims if not is_gone(v)]} survived SIGKILL")
            await asyncio.sleep(0.02)
        self.process = None
        return victims

    async def stop(self, timeout: float = 20.0) -> None:  # noqa: ASYNC109 - mirrors Popen.wait
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            await self.kill_and_wait()
        self.process = None


def server_env(config: CrashConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOWAGE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "STOWAGE_DATA_DIR": str(config.data_dir),
            "STOWAGE_LOG_LEVEL": "warning",
            "STOWAGE_LOG_FORMAT": "json",
            "STOWAGE_WORKERS": str(config.workers),
            "STOWAGE_RATE_LIMIT_AUTH_PER_IP": "100000",
            "STOWAGE_RATE_LIMIT_AUTH_PER_ACCOUNT": "100000",
            "STOWAGE_MAX_UPLOAD_BYTES": str(max(config.max_size, MIB) * 4),
        }
    )
    if config.database_url:
        env["STOWAGE_DATABASE_URL"] = config.database_url
    if config.schema:
        env["STOWAGE_DATABASE_SCHEMA"] = config.schema
    env.update(config.extra_env)
    return env


# --- the workload ----------------------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def url_of(path: str) -> str:
    return "/api/v1/content/" + quote(path)


class Ledger:
    """Every upload attempt per path, in order (one uploader owns a path, so attempts never overlap)."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[Attempt]] = {}
        self.by_uploader: dict[int, list[str]] = {}
        self.touched: set[str] = set()  # paths attempted since the last ``take_touched``

    def begin(self, uploader: int, path: str, content: bytes) -> Attempt:
        attempt = Attempt(sha256=hashlib.sha256(content).hexdigest(), size=len(content))
        if path not in self.attempts:
            self.attempts[path] = []
            self.by_uploader.setdefault(uploader, []).append(path)
        self.attempts[path].append(attempt)
        self.touched.add(path)
        return attempt

    def take_touched(self) -> set[str]:
        touched, self.touched = self.touched, set()
        return touched

    def allowed(self, path: str) -> tuple[list[Attempt], bool]:
        """(contents the path may hold now, whether it may be absent)."""
        attempts = self.attempts[path]
        last_acked = max((i for i, a in enumerate(attempts) if a.acked), default=None)
        if last_acked is None:
            return attempts, True
        return attempts[last_acked:], False


class Workload:
    def __init__(self, config: CrashConfig, rng: random.Random, ledger: Ledger, summary: Summary) -> None:
        self.config = config
        self.rng = rng
        self.ledger = ledger
        self.summary = summary
        self.pool: list[bytes] = []

    def content(self) -> bytes:
        rng = self.rng
        if self.pool and rng.random() < self.config.dedup_ratio:
            return rng.choice(self.pool)
        roll = rng.random()
        if roll < 0.05:
            size = 0
        elif roll < 0.3:
            size = rng.randint(1, min(64 * 1024, self.config.max_size))
        else:
            size = rng.randint(0, self.config.max_size)
        data = rng.randbytes(size)
        if len(self.pool) < 8 or rng.random() < 0.1:
            self.pool.append(data)
            del self.pool[:-8]
        return data

    async def uploader(self, number: int, cycle: int, base_url: str, token: str, stopping: asyncio.Event) -> None:
        counter = 0
        async with httpx.AsyncClient(base_url=base_url, timeout=60.0, headers=auth(token)) as client:
            while not stopping.is_set():
                own = self.ledger.by_uploader.get(number, [])
                overwrite = bool(own) and self.rng.random() < self.config.overwrite_ratio
                if overwrite:
                    path = self.rng.choice(own)
                else:
                    path = f"crash/c{cycle:04d}/u{number}/f{counter:04d}.bin"
                    counter += 1
                content = self.content()
                attempt = self.ledger.begin(number, path, content)
                self.summary.attempts += 1
                try:
                    response = await client.put(
                        url_of(path), content=content, params={"on_conflict": "replace" if overwrite else "fail"}
                    )
                except httpx.TransportError as exc:
                    if stopping.is_set():
                        self.summary.interrupted += 1
                        return
                    self.summary.problems.append(f"cycle {cycle}: PUT {path} failed while the server was up: {exc!r}")
                    return
                self.summary.statuses[response.status_code] += 1
                if response.status_code not in (200, 201):
                    self.summary.problems.append(
                        f"cycle {cycle}: PUT {path} answered {response.status_code}: {response.text[:300]}"
                    )
                    continue
                etag = response.json().get("etag")
                if etag != f'"{attempt.sha256}"':
                    self.summary.problems.append(f"cycle {cycle}: PUT {path} acknowledged with ETag {etag}")
                    continue
                attempt.acked = True
                self.summary.acknowledged += 1
                self.summary.bytes_acknowledged += attempt.size


# --- verification ----------------------------------------------------------------------------------


async def download_sha256(client: httpx.AsyncClient, path: str) -> tuple[int, str, int]:
    hasher = hashlib.sha256()
    size = 0
    async with client.stream("GET", url_of(path)) as response:
        async for chunk in response.aiter_bytes(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
        return response.status_code, hasher.hexdigest(), size


async def verify_path(client: httpx.AsyncClient, ledger: Ledger, path: str, summary: Summary, cycle: int) -> None:
    allowed, may_be_absent = ledger.allowed(path)
    response = await client.get("/api/v1/paths/" + quote(path))
    if response.status_code == 404:
        if not may_be_absent:
            summary.problems.append(f"cycle {cycle}: acknowledged {path} is gone")
        return
    if response.status_code != 200:
        summary.problems.append(f"cycle {cycle}: GET paths/{path} answered {response.status_code}")
        return
    node = response.json()
    etag = node.get("etag") or ""
    match = next((a for a in allowed if etag == f'"{a.sha256}"'), None)
    if match is None:
        expected = "an acknowledged content" if not may_be_absent else "an intended content"
        summary.problems.append(f"cycle {cycle}: {path} holds {etag} ({node.get('size')} bytes), not {expected}")
        return
    if node.get("size") != match.size:
        summary.problems.append(f"cycle {cycle}: {path} says {node.get('size')} bytes, its content has {match.size}")
    if not match.acked:
        summary.unacknowledged_found.add(id(match))
    status, digest, size = await download_sha256(client, path)
    summary.verified_downloads += 1
    if status != 200 or digest != match.sha256 or size != match.size:
        summary.problems.append(
            f"cycle {cycle}: GET {path} gave {status}, {size} bytes hashing to {digest}; expected {match.sha256}"
        )


async def list_folder(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]] | None:
    response = await client.get("/api/v1/paths/" + quote(path))
    if response.status_code == 404:
        return None
    response.raise_for_status()
    folder_id = response.json()["node"]["id"]
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = await client.get(f"/api/v1/nodes/{folder_id}/children", params=params)
        page.raise_for_status()
        body = page.json()
        items.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return items


async def verify_listing(client: httpx.AsyncClient, ledger: Ledger, folder: str, summary: Summary, cycle: int) -> None:
    """Every file listed in ``folder`` is one this run tried to upload there, complete."""
    items = await list_folder(client, folder)
    for item in items or []:
        path = f"{folder}/{item['name']}"
        attempts = ledger.attempts.get(path)
        if attempts is None:
            summary.problems.append(f"cycle {cycle}: {path} is listed but was never uploaded")
            continue
        if not any(item.get("etag") == f'"{a.sha256}"' and item.get("size") == a.size for a in attempts):
            summary.problems.append(f"cycle {cycle}: {path} is listed as {item.get('etag')}/{item.get('size')}")


async def run_fsck(config: CrashConfig, env: Mapping[str, str], *, rehash: bool) -> tuple[list[str], int]:
    """fsck of the run's installation: (problem lines, bytes re-hashed)."""
    from stowage.blobs import LocalBlobStore
    from stowage.config import load_settings
    from stowage.db.engine import Database
    from stowage.maintenance.fsck import fsck

    settings = load_settings({k: v for k, v in env.items() if k.startswith("STOWAGE_")})
    database = Database(settings)
    try:
        report = await fsck(database, LocalBlobStore(config.data_dir), rehash=rehash, grace_seconds=GRACE_SECONDS)
    finally:
        await database.dispose()
    return [f"fsck {p.kind} {p.subject}: {p.detail}" for p in report.problems], report.bytes_hashed


def file_names(directory: Path) -> set[str]:
    try:
        return {entry.name for entry in directory.iterdir() if entry.is_file()}
    except FileNotFoundError:
        return set()


async def orphan_count(config: CrashConfig, env: Mapping[str, str]) -> int:
    """Blob files without a row (what killed uploads leave for gc)."""
    from sqlalchemy import select

    from stowage.blobs import LocalBlobStore
    from stowage.config import load_settings
    from stowage.db.engine import Database
    from stowage.db.tables import Blob

    settings = load_settings({k: v for k, v in env.items() if k.startswith("STOWAGE_")})
    database = Database(settings)
    try:
        async with database.session() as db:
            rows = set((await db.scalars(select(Blob.sha256))).all())
        return len([h async for h in LocalBlobStore(config.data_dir).iter_hashes() if h not in rows])
    finally:
        await database.dispose()


# --- the loop --------------------------------------------------------------------------------------


async def create_account(base_url: str) -> str:
    """Sign up and return a personal access token (access tokens expire long before a long run ends)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        response = await client.post("/api/v1/auth/signup", json={"email": EMAIL, "password": PASSWORD})
        response.raise_for_status()
        access = response.json()["access_token"]
        response = await client.post(
            "/api/v1/me/tokens", json={"name": "crash-loop", "scopes": ["read", "write"]}, headers=auth(access)
        )
        response.raise_for_status()
        token: str = response.json()["token"]
        # Create the root folder now: on PostgreSQL concurrent first requests of a new user can each
        # create one (see the report of tests/test_fsck.py::test_first_requests_of_a_new_user_in_parallel).
        (await client.get("/api/v1/files/root", headers=auth(token))).raise_for_status()
        return token


async def create_folders(base_url: str, token: str, paths: list[str]) -> None:
    """Create the cycle's folders one by one before the uploaders start.

    Uploads create missing parents themselves, but on PostgreSQL concurrent requests creating the same
    new folder fail with 500 (see tests/test_fsck.py::test_concurrent_uploads_into_a_new_folder).
    """
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, headers=auth(token)) as client:
        for path in paths:
            (await client.post("/api/v1/folders", json={"path": path})).raise_for_status()


@contextlib.asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    try:
        yield server
    finally:
        await server.stop()


async def run_crash_loop(config: CrashConfig, log: Log = print) -> Summary:
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible from the seed
    summary = Summary(seed=seed)
    started = time.monotonic()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    env = server_env(config)
    server = Server(env, config.data_dir, start_timeout=config.start_timeout)
    ledger = Ledger()
    workload = Workload(config, rng, ledger, summary)
    async with running(server):
        await server.start()
        token = await create_account(server.base_url)
        for cycle in range(1, config.cycles + 1):
            acked_before, problems_before = summary.acknowledged, len(summary.problems)
            stopping = asyncio.Event()
            known = set(ledger.attempts)
            ledger.take_touched()
            await create_folders(server.base_url, token, [f"crash/c{cycle:04d}/u{n}" for n in range(config.uploaders)])
            tasks = [
                asyncio.create_task(workload.uploader(n, cycle, server.base_url, token, stopping))
                for n in range(config.uploaders)
            ]
            delay = rng.uniform(config.min_delay, config.max_delay)
            await asyncio.sleep(delay)
            stopping.set()
            killed = await server.kill_and_wait()
            summary.kills += 1
            summary.processes_killed += len(killed)
            await asyncio.gather(*tasks)
            summary.temp_spools |= file_names(config.data_dir / "tmp")

            await server.start()
            touched = ledger.take_touched()
            older = sorted(known - touched)
            sample = rng.sample(older, min(config.sample_old, len(older)))
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, headers=auth(token)) as client:
                for path in sorted(touched) + sample:
                    await verify_path(client, ledger, path, summary, cycle)
                for number in range(config.uploaders):
                    await verify_listing(client, ledger, f"crash/c{cycle:04d}/u{number}", summary, cycle)
            rehash = cycle % config.rehash_every == 0 or cycle == config.cycles
            problems, hashed = await run_fsck(config, env, rehash=rehash)
            summary.fsck_runs += 1
            summary.bytes_rehashed += hashed
            summary.problems.extend(f"cycle {cycle}: {p}" for p in problems)
            summary.cycles = cycle
            log(
                f"cycle {cycle}/{config.cycles}: killed {len(killed)} processes after {delay:.2f}s, "
                f"{summary.acknowledged - acked_before} acknowledged, {len(touched)} paths checked, "
                f"{len(summary.problems) - problems_before} problems"
            )

        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, headers=auth(token)) as client:
            for path in sorted(ledger.attempts):
                await verify_path(client, ledger, path, summary, config.cycles)
        summary.orphan_blobs = await orphan_count(config, env)
    summary.seconds = time.monotonic() - started
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--uploaders", type=int, default=6)
    parser.add_argument("--max-size", type=int, default=2 * MIB, help="largest file in bytes (default 2 MiB)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary folder (kept)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in the data folder)")
    parser.add_argument("--schema", default=None, help="PostgreSQL schema (created by the migrations)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rehash-every", type=int, default=10, help="fsck re-hashes all blobs every N cycles")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="stowage-crash-loop-")) / "data"
    config = CrashConfig(
        data_dir=data_dir,
        cycles=args.cycles,
        uploaders=args.uploaders,
        max_size=args.max_size,
        database_url=args.database_url,
        schema=args.schema,
        workers=args.workers,
        seed=args.seed,
        rehash_every=max(1, args.rehash_every),
    )
    print(f"data folder: {data_dir}", flush=True)  # noqa: T201 - a command-line tool
    summary = asyncio.run(run_crash_loop(config, log=lambda line: print(line, flush=True)))  # noqa: T201
    print("\n".join(summary.lines()))  # noqa: T201
    return 1 if summary.problems else 0


if __name__ == "__main__":
    sys.exit(main())
