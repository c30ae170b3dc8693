"""Rate limiter: one contract suite for every store, cross-process exactness, fail-open behaviour.

Redis tests use ``STOWAGE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) with a unique key
prefix per test. When Redis is unreachable they skip with the reason — unless
``STOWAGE_REQUIRE_SERVICES=1``, which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from stowage.config import Settings
from stowage.errors import RateLimited
from stowage.ratelimit import (
    MemoryRateLimiter,
    RateDecision,
    RateLimiter,
    RedisRateLimiter,
    SQLiteRateLimiter,
    check,
    create_rate_limiter,
)
from stowage.ratelimit.limiter import to_millis

REDIS_URL = os.environ.get("STOWAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("STOWAGE_REQUIRE_SERVICES") == "1"
WINDOW = 60
START = 1_700_000_000.0
UNAVAILABLE = "rate limiter unavailable, allowing requests unchecked"


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_redis_problem: list[str | None] = []


def redis_unavailable_reason() -> str | None:
    """Why Redis cannot be used (checked once per run), or None when it can."""
    if not _redis_problem:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
            _redis_problem.append(None)
        except redis.RedisError as exc:
            _redis_problem.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()
    return _redis_problem[0]


def require_redis() -> None:
    reason = redis_unavailable_reason()
    if reason is None:
        return
    message = f"Redis at {REDIS_URL} is unreachable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; STOWAGE_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message)


async def _delete_redis_keys(prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        async for name in client.scan_iter(match=prefix + "*"):
            await client.delete(name)
    finally:
        await client.aclose()


def _test_prefix() -> str:
    return f"stowage:test:{secrets.token_hex(6)}:rl:"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    require_redis()
    prefix = _test_prefix()
    yield prefix
    asyncio.run(_delete_redis_keys(prefix))


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def limiter(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[RateLimiter]:
    """Every store, on a fake clock; Redis with a key prefix of its own."""
    store: RateLimiter
    prefix = None
    if request.param == "memory":
        store = MemoryRateLimiter(clock=clock)
    elif request.param == "sqlite":
        store = SQLiteRateLimiter(tmp_path / "ratelimit.db", clock=clock)
    else:
        require_redis()
        prefix = _test_prefix()
        store = RedisRateLimiter(REDIS_URL, key_prefix=prefix, clock=clock)
    try:
        yield store
    finally:
        await store.close()
        if prefix is not None:
            await _delete_redis_keys(prefix)


async def hits(store: RateLimiter, key: str, count: int, *, limit: int, window: int = WINDOW) -> list[RateDecision]:
    return [await store.hit(key, limit=limit, window_seconds=window) for _ in range(count)]


# --- the contract every store passes ------------------------------------------------------------


async def test_allows_exactly_limit_then_denies(limiter: RateLimiter) -> None:
    decisions = await hits(limiter, "ip:192.0.2.1", 4, limit=3)

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    assert [d.retry_after for d in decisions[:3]] == [0, 0, 0]
    assert 1 <= decisions[3].retry_after <= WINDOW
    assert decisions[3].retry_after == WINDOW  # all three hits were made just now


async def test_hammering_does_not_extend_the_penalty(limiter: RateLimiter, clock: FakeClock) -> None:
    await hits(limiter, "k", 2, limit=2)
    clock.advance(10)
    denied = await hits(limiter, "k", 20, limit=2)

    assert {(d.allowed, d.retry_after) for d in denied} == {(False, WINDOW - 10)}
    clock.advance(WINDOW - 10 - 0.001)
    assert (await limiter.hit("k", limit=2, window_seconds=WINDOW)).retry_after == 1
    clock.advance(0.001)
    assert (await limiter.hit("k", limit=2, window_seconds=WINDOW)).allowed


async def test_different_keys_are_independent(limiter: RateLimiter) -> None:
    await hits(limiter, "account:alice@example.com", 2, limit=2)

    assert not (await limiter.hit("account:alice@example.com", limit=2, window_seconds=WINDOW)).allowed
    assert (await limiter.hit("account:bob@example.com", limit=2, window_seconds=WINDOW)).allowed
    assert (await limiter.hit("ip:alice@example.com", limit=2, window_seconds=WINDOW)).allowed


async def test_allowed_again_once_the_window_has_passed(limiter: RateLimiter, clock: FakeClock) -> None:
    await hits(limiter, "k", 3, limit=3)
    clock.advance(WINDOW)

    decisions = await hits(limiter, "k", 4, limit=3)

    assert [d.allowed for d in decisions] == [True, True, True, False]


async def test_window_slides(limiter: RateLimiter, clock: FakeClock) -> None:
    first = await limiter.hit("k", limit=2, window_seconds=10)
    clock.advance(5)
    second = await limiter.hit("k", limit=2, window_seconds=10)
    clock.advance(4)  # t=9
    third = await limiter.hit("k", limit=2, window_seconds=10)
    clock.advance(1)  # t=10: the first hit has left the window
    fourth = await limiter.hit("k", limit=2, window_seconds=10)
    clock.advance(1)  # t=11: hits at 5 and 10 are inside
    fifth = await limiter.hit("k", limit=2, window_seconds=10)

    assert (first.allowed, second.allowed, third.allowed, fourth.allowed, fifth.allowed) == (
        True,
        True,
        False,
        True,
        False,
    )
    assert third.retry_after == 1
    assert fifth.retry_after == 4


async def test_lowered_limit_waits_for_enough_hits_to_expire(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(5):
        await limiter.hit("k", limit=5, window_seconds=WINDOW)
        clock.advance(1)  # hits at 0..4, now t=5

    decision = await limiter.hit("k", limit=2, window_seconds=WINDOW)

    assert not decision.allowed
    assert decision.retry_after == 3 + WINDOW - 5  # the hit at t=3 must leave so only one remains


async def test_clock_stepping_back_locks_out_for_at_most_one_window(limiter: RateLimiter, clock: FakeClock) -> None:
    await limiter.hit("k", limit=1, window_seconds=WINDOW)
    clock.advance(-3600)

    denied = await limiter.hit("k", limit=1, window_seconds=WINDOW)
    clock.advance(WINDOW)

    assert not denied.allowed
    assert denied.retry_after == WINDOW
    assert (await limiter.hit("k", limit=1, window_seconds=WINDOW)).allowed


async def test_reset_clears_the_key(limiter: RateLimiter) -> None:
    await hits(limiter, "account:alice", 2, limit=2)
    await hits(limiter, "account:bob", 2, limit=2)

    await limiter.reset("account:alice")
    await limiter.reset("never-seen")

    assert [d.remaining for d in await hits(limiter, "account:alice", 2, limit=2)] == [1, 0]
    assert not (await limiter.hit("account:bob", limit=2, window_seconds=WINDOW)).allowed


async def test_check_raises_rate_limited_with_retry_after(limiter: RateLimiter, clock: FakeClock) -> None:
    await check(limiter, "k", limit=1, window_seconds=WINDOW, what="login attempts for this account")
    clock.advance(15)

    with pytest.raises(RateLimited) as caught:
        await check(limiter, "k", limit=1, window_seconds=WINDOW, what="login attempts for this account")

    assert caught.value.retry_after == 45
    assert caught.value.extra == {"retry_after": 45}
    assert caught.value.detail == "Too many login attempts for this account; try again in 45 seconds."


@pytest.mark.parametrize(
    "key",
    [
        "'; DROP TABLE rate_limit_hits; --",
        "account:ÜBER@exämple.com",
        "ip:2001:db8::1",
        "*",
        "",
        "surrogate:\ud800",
        "x" * 10_000,
    ],
)
async def test_keys_may_hold_arbitrary_user_input(limiter: RateLimiter, key: str) -> None:
    assert [d.allowed for d in await hits(limiter, key, 2, limit=1)] == [True, False]
    assert (await limiter.hit(key + "!", limit=1, window_seconds=WINDOW)).allowed
    await limiter.reset(key)
    assert (await limiter.hit(key, limit=1, window_seconds=WINDOW)).allowed


async def test_concurrent_hits_in_one_process_are_exact(limiter: RateLimiter) -> None:
    decisions = await asyncio.gather(*(limiter.hit("k", limit=7, window_seconds=WINDOW) for _ in range(25)))

    assert sum(d.allowed for d in decisions) == 7


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (-1, 60), (1, 0)])
async def test_nonsense_limits_are_programming_errors(limiter: RateLimiter, limit: int, window: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await limiter.hit("k", limit=limit, window_seconds=window)


# --- the reference implementation, property-tested ----------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=6),
    window=st.integers(min_value=1, max_value=10),
    gaps_ms=st.lists(st.integers(min_value=0, max_value=4_000), max_size=80),
)
def test_memory_never_allows_more_than_limit_in_any_window(limit: int, window: int, gaps_ms: list[int]) -> None:
    clock = FakeClock()
    store = MemoryRateLimiter(clock=clock, purge_interval_seconds=3)
    allowed_at: list[int] = []
    denied: list[tuple[int, RateDecision]] = []

    async def run() -> None:
        for gap in gaps_ms:
            clock.advance(gap / 1000)
            decision = await store.hit("k", limit=limit, window_seconds=window)
            if decision.allowed:
                allowed_at.append(to_millis(clock()))
            else:
                denied.append((to_millis(clock()), decision))
        await store.close()

    asyncio.run(run())

    window_ms = window * 1000
    for start in allowed_at:  # the fullest window starts at an allowed hit
        assert sum(start <= t < start + window_ms for t in allowed_at) <= limit
    for at, decision in denied:  # and a denial is always deserved, with an honest retry_after
        inside = [t for t in allowed_at if at - window_ms < t <= at]
        assert len(inside) == limit
        assert 1 <= decision.retry_after <= window
        assert decision.retry_after * 1000 >= inside[0] + window_ms - at > (decision.retry_after - 1) * 1000


async def test_memory_purges_expired_keys(clock: FakeClock) -> None:
    store = MemoryRateLimiter(clock=clock, purge_interval_seconds=30)
    for index in range(10):
        await store.hit(f"k{index}", limit=1, window_seconds=10)
    assert len(store) == 10

    clock.advance(30)
    await store.hit("other", limit=1, window_seconds=10)

    assert len(store) == 1
    await store.close()


# --- SQLite specifics ----------------------------------------------------------------------------


def _rows(path: Path) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT key, expires_at FROM rate_limit_hits").fetchall()
    finally:
        connection.close()


async def test_sqlite_is_shared_between_limiters_on_one_file(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "nested" / "ratelimit.db"
    first = SQLiteRateLimiter(path, clock=clock)
    second = SQLiteRateLimiter(path, clock=clock)
    try:
        await hits(first, "k", 2, limit=3)
        decision = await second.hit("k", limit=3, window_seconds=WINDOW)
        assert (decision.allowed, decision.remaining) == (True, 0)
        assert not (await first.hit("k", limit=3, window_seconds=WINDOW)).allowed
        connection = sqlite3.connect(path)
        try:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            connection.close()
    finally:
        await first.close()
        await second.close()


async def test_sqlite_stores_hashed_keys_and_purges_expired_rows(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ratelimit.db"
    store = SQLiteRateLimiter(path, clock=clock, purge_interval_seconds=30)
    try:
        for index in range(5):
            await store.hit(f"account:user{index}@example.com", limit=3, window_seconds=10)
        rows = _rows(path)
        assert len(rows) == 5
        assert all(isinstance(key, bytes) and len(key) == 32 for key, _ in rows)
        assert b"example.com" not in path.read_bytes() + (tmp_path / "ratelimit.db-wal").read_bytes()

        clock.advance(30)
        await store.hit("fresh", limit=3, window_seconds=10)

        assert [expires_at for _, expires_at in _rows(path)] == [to_millis(clock()) + 10_000]
    finally:
        await store.close()


async def test_sqlite_fails_open_when_the_file_cannot_be_used(tmp_path: Path, clock: FakeClock) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    store = SQLiteRateLimiter(blocker / "ratelimit.db", clock=clock)
    try:
        with capture_logs() as logs:
            decisions = await hits(store, "k", 3, limit=1)
            await store.reset("k")

        assert all(d.allowed for d in decisions)
        warnings = [entry for entry in logs if entry["log_level"] == "warning"]
        assert [entry["event"] for entry in warnings] == [UNAVAILABLE]  # throttled: one, not four
    finally:
        await store.close()


async def test_sqlite_refuses_use_after_close(tmp_path: Path) -> None:
    store = SQLiteRateLimiter(tmp_path / "ratelimit.db")
    await store.hit("k", limit=1, window_seconds=WINDOW)
    await store.close()

    with pytest.raises(RuntimeError, match="closed"):
        await store.hit("k", limit=1, window_seconds=WINDOW)


# --- Redis specifics -----------------------------------------------------------------------------


async def test_redis_key_is_hashed_and_expires_with_the_window(redis_prefix: str) -> None:
    store = RedisRateLimiter(REDIS_URL, key_prefix=redis_prefix)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await store.hit("account:alice@example.com", limit=5, window_seconds=WINDOW)
        names = [name async for name in client.scan_iter(match=redis_prefix + "*")]
        ttl = await client.pttl(store.redis_key("account:alice@example.com"))
    finally:
        await store.close()
        await client.aclose()

    assert names == [store.redis_key("account:alice@example.com").encode()]
    assert b"alice" not in names[0]
    assert 0 < ttl <= WINDOW * 1000


async def test_redis_reloads_the_script_after_a_flush(redis_prefix: str) -> None:
    store = RedisRateLimiter(REDIS_URL, key_prefix=redis_prefix)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await store.hit("k", limit=2, window_seconds=WINDOW)
        await client.script_flush()
        decisions = await hits(store, "k", 2, limit=2)
    finally:
        await store.close()
        await client.aclose()

    assert [d.allowed for d in decisions] == [True, False]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_redis_down_fails_open_quickly_and_warns(clock: FakeClock) -> None:
    store = RedisRateLimiter(f"redis://:hunter2@127.0.0.1:{_closed_port()}/0", clock=clock)
    try:
        with capture_logs() as logs:
            started = time.perf_counter()
            decisions = await hits(store, "k", 3, limit=1)
            await check(store, "k", limit=1, window_seconds=WINDOW, what="attempts")
            await store.reset("k")
            elapsed = time.perf_counter() - started
    finally:
        await store.close()

    assert all(d.allowed for d in decisions)
    assert elapsed < 1
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [entry["event"] for entry in warnings] == [UNAVAILABLE]  # once per minute, not per request
    assert "hunter2" not in str(warnings)
    assert "ConnectionError" in warnings[0]["error"]


async def test_redis_that_never_answers_fails_open_within_a_second(clock: FakeClock) -> None:
    with socket.socket() as silent:  # accepts connections (in its backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        store = RedisRateLimiter(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", clock=clock)
        try:
            with capture_logs() as logs:
                started = time.perf_counter()
                decision = await store.hit("k", limit=1, window_seconds=WINDOW)
                elapsed = time.perf_counter() - started
        finally:
            await store.close()

    assert decision.allowed
    assert elapsed < 1.5
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [UNAVAILABLE]


async def test_redis_recovery_is_logged(redis_prefix: str, clock: FakeClock) -> None:
    store = RedisRateLimiter(REDIS_URL, key_prefix=redis_prefix, clock=clock)
    try:
        with capture_logs() as logs:
            store._outage.failed("hit", ConnectionError("simulated"))
            await store.hit("k", limit=1, window_seconds=WINDOW)
            await store.hit("k", limit=1, window_seconds=WINDOW)
    finally:
        await store.close()

    assert [entry["event"] for entry in logs] == [UNAVAILABLE, "rate limiter available again"]


# --- across real worker processes ---------------------------------------------------------------


def _hammer(*, kind: str, target: str, count: int, limit: int, barrier: Barrier, results: Queue[int]) -> None:
    """Child process: wait for the other child, then make ``count`` concurrent hits on one key."""

    async def run() -> int:
        store: RateLimiter = (
            SQLiteRateLimiter(Path(target)) if kind == "sqlite" else RedisRateLimiter(REDIS_URL, key_prefix=target)
        )
        try:
            barrier.wait(timeout=20)
            decisions = await asyncio.gather(
                *(store.hit("account:shared", limit=limit, window_seconds=WINDOW) for _ in range(count))
            )
        finally:
            await store.close()
        return sum(d.allowed for d in decisions)

    results.put(asyncio.run(run()))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_two_worker_processes_share_the_limit_exactly(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue("redis_prefix") if kind == "redis" else str(tmp_path / "ratelimit.db")
    count, limit = 40, 50
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results: Queue[int] = context.Queue()
    workers = [
        context.Process(
            target=_hammer,
            kwargs={
                "kind": kind,
                "target": target,
                "count": count,
                "limit": limit,
                "barrier": barrier,
                "results": results,
            },
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    allowed = [results.get(timeout=25) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)

    assert [worker.exitcode for worker in workers] == [0, 0]
    assert sum(allowed) == limit


# --- building the limiter from settings ---------------------------------------------------------


async def test_create_rate_limiter_uses_sqlite_in_the_data_folder(tmp_path: Path) -> None:
    store = create_rate_limiter(Settings(data_dir=tmp_path))
    try:
        assert isinstance(store, SQLiteRateLimiter)
        assert store.path == tmp_path / "ratelimit.db"  # pytest's tmp_path is already resolved
        assert (await store.hit("k", limit=1, window_seconds=WINDOW)).allowed
        assert store.path.exists()
    finally:
        await store.close()


async def test_create_rate_limiter_uses_redis_when_configured(tmp_path: Path) -> None:
    store = create_rate_limiter(Settings(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{_closed_port()}/0"))
    try:
        assert isinstance(store, RedisRateLimiter)
        assert not (tmp_path / "ratelimit.db").exists()
    finally:
        await store.close()


async def test_on_postgresql_without_redis_the_start_warns_that_limits_are_per_node(tmp_path: Path) -> None:
    """Several nodes share PostgreSQL; without Redis each would count only its own attempts."""
    postgres = "postgresql://stowage@127.0.0.1:5432/stowage"  # only its spelling matters: nothing connects
    for configured, warned in (
        (Settings(data_dir=tmp_path, database_url=postgres, node_name="node-a"), True),
        (Settings(data_dir=tmp_path), False),
        (Settings(data_dir=tmp_path, database_url=postgres, redis_url=f"redis://127.0.0.1:{_closed_port()}/0"), False),
    ):
        with capture_logs() as logs:
            store = create_rate_limiter(configured)
        await store.close()
        warnings = [log for log in logs if log["log_level"] == "warning"]
        if warned:
            assert len(warnings) == 1, logs
            assert "set redis_url" in warnings[0]["event"]
            assert warnings[0]["node"] == "node-a"
        else:
            assert warnings == [], logs
