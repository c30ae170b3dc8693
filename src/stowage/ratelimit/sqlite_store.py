"""Rate limiter in a SQLite file shared by every worker process on this machine.

Each hit is one ``BEGIN IMMEDIATE`` transaction (read the key's recent hits, decide, write back), so
two processes can never both take the last free slot: the second waits for the first's write lock
(``busy_timeout``) and then sees its hit. The file is in WAL mode; ``synchronous=NORMAL`` because a
power cut losing the last few counted hits is harmless. Blocking sqlite3 calls run in a worker thread.

Keys are stored as their SHA-256 digest (fixed size, no user input in the file) and always passed as
bound parameters. Rows whose hits have all left the window are purged at most once per
``purge_interval_seconds`` by each process, inside a hit's transaction.

When the file cannot be used (locked past the busy timeout, disk full, I/O error, unwritable folder)
the limiter **fails open**: the request is allowed and a warning logged (throttled), because an
outage of the limiter must not lock every user out.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stowage.ratelimit.limiter import (
    OutageReporter,
    RateDecision,
    fail_open_decision,
    sliding_window_hit,
    to_millis,
    validate_limits,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_limit_hits (
    key BLOB PRIMARY KEY,        -- SHA-256 of the limiter key
    hits BLOB NOT NULL,          -- allowed hits: little-endian int64 milliseconds, oldest first
    expires_at INTEGER NOT NULL  -- milliseconds when every hit has left the window
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_limit_hits_expires_at ON rate_limit_hits (expires_at);
"""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _pack(hits: list[int]) -> bytes:
    return struct.pack(f"<{len(hits)}q", *hits)


def _unpack(blob: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(blob) // 8}q", blob))


class SQLiteRateLimiter:
    """Sliding-window log in ``path`` (see the module docstring); one connection per process."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_seconds: float = 5.0,
        purge_interval_seconds: float = 60.0,
    ) -> None:
        self.path = path
        self._clock = clock
        self._busy_timeout = busy_timeout_seconds
        self._purge_interval_ms = to_millis(purge_interval_seconds)
        self._next_purge_ms: int | None = None
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        # The asyncio lock keeps waiting hits on the event loop instead of in executor threads; the
        # thread lock keeps the connection to one transaction at a time even when an awaiting task is
        # cancelled while its thread is still running.
        self._queue = asyncio.Lock()
        self._connection_lock = threading.Lock()
        self._outage = OutageReporter(f"sqlite:{path}")

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        validate_limits(limit, window_seconds)
        digest = _digest(key)
        try:
            async with self._queue:
                decision = await asyncio.to_thread(self._hit_sync, digest, limit, window_seconds)
        except (sqlite3.OperationalError, OSError) as exc:
            self._outage.failed("hit", exc)
            return fail_open_decision(limit)
        self._outage.succeeded()
        return decision

    async def reset(self, key: str) -> None:
        digest = _digest(key)
        try:
            async with self._queue:
                await asyncio.to_thread(self._reset_sync, digest)
        except (sqlite3.OperationalError, OSError) as exc:
            self._outage.failed("reset", exc)

    async def close(self) -> None:
        async with self._queue:
            await asyncio.to_thread(self._close_sync)

    # --- blocking parts, run in a worker thread ---------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("the rate limiter is closed")
        if self._connection is not None:
            return self._connection
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # ``timeout`` is SQLite's busy timeout: how long to wait for another process's write lock.
        connection = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._enable_wal(connection)
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _enable_wal(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL (a no-op once it is). Unlike other statements this fails at once,
        without the busy timeout, while another process holds the file (workers starting together),
        so retry it for up to the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
            else:
                return

    def _drop_connection(self) -> None:
        """Forget a connection that failed, so the next call starts afresh."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _hit_sync(self, digest: bytes, limit: int, window_seconds: int) -> RateDecision:
        with self._connection_lock:
            connection = self._connect()
            now_ms = to_millis(self._clock())
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    decision = self._hit_in_transaction(connection, digest, now_ms, limit, window_seconds)
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError:
                self._drop_connection()
                raise
            return decision

    def _hit_in_transaction(
        self, connection: sqlite3.Connection, digest: bytes, now_ms: int, limit: int, window_seconds: int
    ) -> RateDecision:
        if self._next_purge_ms is None or now_ms >= self._next_purge_ms:
            connection.execute("DELETE FROM rate_limit_hits WHERE expires_at <= ?", (now_ms,))
            self._next_purge_ms = now_ms + self._purge_interval_ms
        row = connection.execute("SELECT hits FROM rate_limit_hits WHERE key = ?", (digest,)).fetchone()
        stored = _unpack(row[0]) if row is not None else []
        live, decision = sliding_window_hit(stored, now_ms, limit=limit, window_seconds=window_seconds)
        if not live:
            if row is not None:
                connection.execute("DELETE FROM rate_limit_hits WHERE key = ?", (digest,))
        elif live != stored:
            connection.execute(
                "INSERT INTO rate_limit_hits (key, hits, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET hits = excluded.hits, expires_at = excluded.expires_at",
                (digest, _pack(live), live[-1] + window_seconds * 1000),
            )
        return decision

    def _reset_sync(self, digest: bytes) -> None:
        with self._connection_lock:
            connection = self._connect()
            try:
                connection.execute("DELETE FROM rate_limit_hits WHERE key = ?", (digest,))
            except sqlite3.OperationalError:
                self._drop_connection()
                raise

    def _close_sync(self) -> None:
        with self._connection_lock:
            self._closed = True
            self._drop_connection()
