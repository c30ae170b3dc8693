"""In-process rate limiter: the reference implementation, for unit tests and single-process tools.

Not shared between worker processes, so never used by a server with several workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from stowage.ratelimit.limiter import RateDecision, sliding_window_hit, to_millis, validate_limits


class MemoryRateLimiter:
    """Sliding-window log in a dict, guarded by an asyncio lock; expired keys are purged periodically."""

    def __init__(self, *, clock: Callable[[], float] = time.time, purge_interval_seconds: float = 60.0) -> None:
        self._clock = clock
        self._purge_interval_ms = to_millis(purge_interval_seconds)
        self._lock = asyncio.Lock()
        # key -> (time in ms when every hit has left the window, allowed hits in ms, oldest first)
        self._entries: dict[str, tuple[int, list[int]]] = {}
        self._next_purge_ms: int | None = None

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        validate_limits(limit, window_seconds)
        async with self._lock:
            now_ms = to_millis(self._clock())
            self._purge(now_ms)
            _, hits = self._entries.get(key, (0, []))
            live, decision = sliding_window_hit(hits, now_ms, limit=limit, window_seconds=window_seconds)
            if live:
                self._entries[key] = (live[-1] + window_seconds * 1000, live)
            else:
                self._entries.pop(key, None)
            return decision

    async def reset(self, key: str) -> None:
        async with self._lock:
            self._entries.pop(key, None)

    async def close(self) -> None:
        async with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """Number of keys held (expired ones included until the next purge)."""
        return len(self._entries)

    def _purge(self, now_ms: int) -> None:
        if self._next_purge_ms is not None and now_ms < self._next_purge_ms:
            return
        self._next_purge_ms = now_ms + self._purge_interval_ms
        expired = [key for key, (expires_at, _) in self._entries.items() if expires_at <= now_ms]
        for key in expired:
            del self._entries[key]
