"""Two ``stowage serve`` nodes as one service: real processes sharing PostgreSQL, Redis and an S3 store.

Each node has its own port and data folder (nothing on disk is shared); both get the same secret key,
a fresh PostgreSQL schema, a Redis database and a bucket on moto's S3 server. The scenario sends
consecutive requests of one client to alternating nodes, as a load balancer without sticky sessions
would: a file uploaded through one is listed, downloaded (with Range) and deleted through the other; a
tus upload begun on one is finished on the other; a session refreshed elsewhere; a token revoked on one
is refused by the other within ``principal_cache_seconds``; a rate limit and a quota hold across both;
a third node with another secret key is refused at start; and housekeeping runs on one node at a
time — the holder of the maintenance lease is killed with SIGKILL mid-pass (held there by a table lock
the test takes) and the other takes over after the lease's expiry, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from accounts_helpers import PASSWORD, auth, create_pat, login, signup
from conftest import POSTGRES_URL, _asyncpg_dsn, _drop_schema, require_capability, require_postgres
from files_helpers import API, ROOT, Account, child_path, node_path, sha256_hex
from sharing_helpers import create_link, unlock
from support.server import ServerProcess
from tus_helpers import TUS, UPLOADS, metadata, patch, upload_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# The test's Redis server, database 14: the nodes' rate-limit keys stay apart from other tests' keys.
REDIS_URL = urlsplit(os.environ.get("STOWAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))._replace(path="/14").geturl()
LEASE = "maintenance"
LEASE_SECONDS = 2.0
ACCOUNT_LIMIT = 4  # sign-in attempts per account (and password attempts per share link) per window


@dataclass
class Cluster:
    nodes: list[ServerProcess]
    clients: list[httpx.AsyncClient]
    schema: str
    env: dict[str, str]

    def other(self, index: int) -> int:
        return 1 - index


def _require_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
        reason = None
    except redis.RedisError as exc:
        reason = f"unreachable ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    require_capability(f"Redis at {REDIS_URL}", reason)


@pytest.fixture
def services() -> None:
    """PostgreSQL and Redis are reachable (checked outside the event loop); moto comes with ``s3_env``."""
    require_postgres()
    _require_redis()


@pytest.fixture
async def cluster(tmp_path: Path, s3_env: dict[str, str], services: None) -> AsyncIterator[Cluster]:
    schema = f"t_{secrets.token_hex(6)}"
    shared = {
        **s3_env,
        "STOWAGE_DATABASE_URL": POSTGRES_URL,
        "STOWAGE_DATABASE_SCHEMA": schema,
        "STOWAGE_REDIS_URL": REDIS_URL,
        "STOWAGE_SECRET_KEY": secrets.token_urlsafe(48),  # the same on every node
        "STOWAGE_LOG_FORMAT": "json",
        "STOWAGE_PRINCIPAL_CACHE_SECONDS": "1",
        "STOWAGE_RATE_LIMIT_AUTH_PER_ACCOUNT": str(ACCOUNT_LIMIT),
        "STOWAGE_RATE_LIMIT_AUTH_PER_IP": "100000",  # every request comes from 127.0.0.1
        "STOWAGE_HOUSEKEEPING_INTERVAL_SECONDS": "2",
        "STOWAGE_MAINTENANCE_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    nodes = [ServerProcess(tmp_path / name, env={**shared, "STOWAGE_NODE_NAME": name}) for name in ("node-a", "node-b")]
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(_drop_schema, schema)
        for node in nodes:
            stack.push_async_callback(node.stop, 15)
        await asyncio.gather(*(node.start(timeout=60) for node in nodes))
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=node.base_url, timeout=30)) for node in nodes
        ]
        assert nodes[0].data_dir != nodes[1].data_dir
        yield Cluster(nodes=nodes, clients=clients, schema=schema, env=shared)


def _email(name: str) -> str:
    """A new address each run: the per-account rate limits live in Redis for a window after the test."""
    return f"{name}-{secrets.token_hex(4)}@example.com"


async def _account(client: httpx.AsyncClient, email: str) -> Account:
    pair = await signup(client, email)
    response = await client.get(ROOT, headers=auth(pair["access_token"]))
    assert response.status_code == 200, response.text
    return Account(email=email, user_id=pair["user"]["id"], token=pair["access_token"], root_id=response.json()["id"])


async def _sql(cluster: Cluster, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), server_settings={"search_path": cluster.schema})
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query, *args)
        return rows
    finally:
        await connection.close()


def _events(node: ServerProcess, event: str) -> list[dict[str, Any]]:
    return [record for record in node.log_records() if record.get("event") == event]


async def test_two_nodes_behave_as_one_service(cluster: Cluster) -> None:
    a, b = cluster.clients
    alice = await _account(a, _email("alice"))

    # --- files: uploaded through one node, listed, downloaded (Range too) and deleted through the other ---
    content = secrets.token_bytes(300_000)
    response = await a.put(child_path(alice.root_id, "photo.bin"), content=content, headers=alice.headers)
    assert response.status_code == 201, response.text
    file_id = response.json()["id"]
    listing = await b.get(node_path(alice.root_id, "/children"), headers=alice.headers)
    assert [item["name"] for item in listing.json()["items"]] == ["photo.bin"]
    whole = await b.get(node_path(file_id, "/content"), headers=alice.headers)
    assert whole.status_code == 200
    assert sha256_hex(whole.content) == sha256_hex(content)
    ranged = await b.get(node_path(file_id, "/content"), headers={**alice.headers, "Range": "bytes=1000-66535"})
    assert ranged.status_code == 206
    assert ranged.content == content[1000:66536]
    assert ranged.headers["content-range"] == f"bytes 1000-66535/{len(content)}"

    # A presigned URL minted on one node works on the other (every node derives the key from one secret).
    minted = await a.post(f"{API}/nodes/{file_id}/presign", json={}, headers=alice.headers)
    assert minted.status_code == 200, minted.text
    signed = httpx.URL(minted.json()["url"])
    via_b = await b.get(signed.raw_path.decode())
    assert via_b.status_code == 200
    assert hashlib.sha256(via_b.content).hexdigest() == sha256_hex(content)

    assert (await b.delete(node_path(file_id), headers=alice.headers)).status_code == 200
    assert (await a.get(node_path(alice.root_id, "/children"), headers=alice.headers)).json()["items"] == []
    assert (await a.get(node_path(file_id, "/content"), headers=alice.headers)).status_code == 404

    # --- a tus upload created on node A, continued on B, finished on A ---
    parts = [secrets.token_bytes(120_000), secrets.token_bytes(80_000), secrets.token_bytes(50_000)]
    total = b"".join(parts)
    created = await a.post(
        f"{UPLOADS}/",
        headers={
            **TUS,
            **alice.headers,
            "Upload-Length": str(len(total)),
            "Upload-Metadata": metadata(filename="resumed.bin"),
        },
    )
    url = upload_url(created)
    offset = 0
    for index, part in enumerate(parts):
        client = (a, b, a)[index]
        answer = await patch(client, alice, url, offset, part)
        assert answer.status_code == 204, answer.text
        offset += len(part)
        assert int(answer.headers["upload-offset"]) == offset
    head = await b.head(url, headers={**TUS, **alice.headers})
    assert head.headers["upload-offset"] == str(len(total))
    node_id = head.headers["stowage-node-id"]
    resumed = await b.get(node_path(node_id, "/content"), headers=alice.headers)
    assert sha256_hex(resumed.content) == sha256_hex(total)

    # --- sessions need no stickiness: signed in on A, refreshed on B, used on A ---
    pair = await login(a, alice.email)
    refreshed = await b.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert (await a.get(f"{API}/me", headers=auth(refreshed.json()["access_token"]))).status_code == 200

    # --- revocation on one node is honoured by the other within principal_cache_seconds (1 s) ---
    token = await create_pat(a, alice.token, ["read"])
    assert (await b.get(f"{API}/me", headers=auth(token["token"]))).status_code == 200  # now cached on B
    session = await login(b, alice.email)
    assert (await a.get(f"{API}/me", headers=auth(session["access_token"]))).status_code == 200  # cached on A
    revoked = await a.delete(f"{API}/me/tokens/{token['details']['id']}", headers=alice.headers)
    assert revoked.status_code == 204, revoked.text
    logged_out = await b.post(f"{API}/auth/logout", headers=auth(session["access_token"]))
    assert logged_out.status_code == 204, logged_out.text
    done = time.monotonic()
    await asyncio.sleep(max(0.0, done + 1.0 - time.monotonic()) + 0.05)
    assert (await b.get(f"{API}/me", headers=auth(token["token"]))).status_code == 401
    assert (await a.get(f"{API}/me", headers=auth(session["access_token"]))).status_code == 401

    # --- one rate limit, counted on both nodes (Redis) ---
    bob = await _account(b, _email("bob"))
    statuses = []
    for attempt in range(ACCOUNT_LIMIT + 2):
        client = (a, b)[attempt % 2]
        statuses.append(
            (await client.post(f"{API}/auth/login", json={"email": bob.email, "password": "wrong"})).status_code
        )
    assert statuses == [401] * ACCOUNT_LIMIT + [429, 429]
    # ... and a share link's password attempts too.
    shared = await b.put(child_path(bob.root_id, "note.txt"), content=b"for friends", headers=bob.headers)
    link = await create_link(b, bob, shared.json()["id"], password="open sesame")
    statuses = [(await unlock((a, b)[i % 2], link["token"], "wrong")).status_code for i in range(ACCOUNT_LIMIT + 1)]
    assert statuses == [403] * ACCOUNT_LIMIT + [429]
    assert (await login(a, alice.email, PASSWORD))["access_token"]  # another account's limit is its own

    # --- a quota that holds when both nodes write at once ---
    carol = await _account(a, _email("carol"))
    size = 10_000
    await _sql(cluster, "UPDATE users SET quota_bytes = $1 WHERE id = $2", 10 * size, carol.user_id)
    writes = [
        (a, b)[i % 2].put(child_path(carol.root_id, f"f{i:02}.bin"), content=os.urandom(size), headers=carol.headers)
        for i in range(20)
    ]
    answers = await asyncio.gather(*writes)
    assert sorted(r.status_code for r in answers) == [201] * 10 + [507] * 10, [r.text for r in answers]
    usage = await _sql(cluster, "SELECT used_bytes FROM users WHERE id = $1", carol.user_id)
    assert usage[0]["used_bytes"] == 10 * size
    listed = await b.get(node_path(carol.root_id, "/children"), headers=carol.headers, params={"limit": 100})
    assert len(listed.json()["items"]) == 10

    # --- a third node configured with another secret is refused at start, with the reason ---
    stray = ServerProcess(
        cluster.nodes[0].workdir.parent / "node-c",
        env={**cluster.env, "STOWAGE_NODE_NAME": "node-c", "STOWAGE_SECRET_KEY": secrets.token_urlsafe(48)},
    )
    try:
        with pytest.raises(RuntimeError, match="server exited with 1"):
            await stray.start(timeout=60)
    finally:
        stray.kill()
    refused = _events(stray, "start_refused")
    assert refused, stray.stderr_text()[-2000:]
    assert refused[0]["reason"] == "secret_key_mismatch"

    await _housekeeping_survives_the_death_of_its_node(cluster)


async def _housekeeping_survives_the_death_of_its_node(cluster: Cluster) -> None:
    """A table lock holds the next pass before it records itself: its node keeps renewing the lease, the
    other runs no pass; SIGKILL the holder, and the other takes the lease once it has expired."""
    admin_email = (await _sql(cluster, "SELECT email FROM users ORDER BY created_at LIMIT 1"))[0]["email"]
    await _sql(cluster, "UPDATE users SET role = 'admin' WHERE email = $1", admin_email)
    admin = auth((await login(cluster.clients[0], admin_email))["access_token"])
    blocker = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), server_settings={"search_path": cluster.schema})
    transaction = blocker.transaction()
    await transaction.start()
    try:
        await blocker.execute("LOCK TABLE maintenance_runs IN EXCLUSIVE MODE")  # reads pass, inserts wait
        locked_at = time.time()
        first: dict[str, Any] = {}

        async def lease() -> dict[str, Any] | None:
            rows = await _sql(
                cluster, "SELECT holder, node, acquired_at, expires_at FROM leases WHERE name = 'maintenance'"
            )
            return dict(rows[0]) if rows else None

        # A pass held by the lock: the same holder keeps a live lease, renewed, for twice its lifetime
        # (a pass that was under way when the lock was taken may be the one; a free pass takes ~0.1 s).
        since = time.time()

        async def pass_blocked() -> bool:
            nonlocal since
            row = await lease()
            if row is None or row["expires_at"].timestamp() <= time.time():
                first.clear()
                return False
            if first.get("holder") != row["holder"] or first.get("acquired_at") != row["acquired_at"]:
                first.clear()
                first.update(row)
                since = time.time()
                return False
            return time.time() - since >= 2 * LEASE_SECONDS and row["expires_at"] > first["expires_at"]

        await _poll(pass_blocked, within=30)
        holder = 0 if first["node"] == "node-a" else 1
        survivor = cluster.other(holder)
        assert not [e for e in _events(cluster.nodes[survivor], "housekeeping_started") if _at(e) >= since], (
            "a second pass started while the lease was held"
        )
        # The administrators' view, asked of the other node, says where the pass runs.
        shown = (await cluster.clients[survivor].get(f"{API}/admin/maintenance", headers=admin)).json()
        assert shown["running"]["node"] == first["node"]

        cluster.nodes[holder].kill()  # SIGKILL to the node and its worker
        killed = await lease()
        assert killed is not None

        async def taken_over() -> bool:
            row = await lease()
            return row is not None and row["holder"] != first["holder"]

        await _poll(taken_over, within=LEASE_SECONDS + 10)
        after = await lease()
        assert after is not None
        assert after["node"] == cluster.nodes[survivor].env["STOWAGE_NODE_NAME"]
        assert after["acquired_at"] >= killed["expires_at"]  # not before the dead node's lease expired
    finally:
        await transaction.rollback()
        await blocker.close()

    async def survivor_recorded() -> bool:
        rows = await _sql(
            cluster,
            "SELECT node FROM maintenance_runs WHERE trigger = 'housekeeping' AND started_at >= to_timestamp($1)",
            locked_at,
        )
        return [r["node"] for r in rows] == [after["node"]]

    await _poll(survivor_recorded, within=15)
    # The administrators' view names the node that ran the pass.
    runs = (await cluster.clients[survivor].get(f"{API}/admin/maintenance", headers=admin)).json()
    assert runs["gc"]["trigger"] == "housekeeping"
    assert runs["gc"]["node"] == after["node"]
    assert {run["node"] for run in runs["recent"]} <= {"node-a", "node-b"}


def _at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


async def _poll(condition: Any, *, within: float) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.1)
