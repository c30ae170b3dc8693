"""The rate-limiter contract: the decision type, the protocol every store implements, and ``check()``.

The algorithm is a **sliding-window log**: a store keeps, per key, the times of the hits it allowed
during the last ``window_seconds`` (at most ``limit`` of them, since denied hits are not recorded).
A hit is allowed when fewer than ``limit`` recorded hits are younger than the window. This is exact:
no window of ``window_seconds`` ever holds more than ``limit`` allowed hits — unlike a fixed window
(2x bursts at the boundary), the two-bucket sliding-window counter (an estimate that over-admits when
the previous window's hits were late) or GCRA (allows ``limit`` plus the steady rate per window).
Denied hits change nothing, so a client that keeps hammering is told a ``retry_after`` that only
shrinks and never exceeds the window.

Times are whole milliseconds from the store's injectable ``clock`` (seconds, like ``time.time``).
A recorded hit "in the future" (the wall clock stepped back) is treated as made now, so a clock step
cannot lock a key out for longer than one window.

The memory and SQLite stores share :func:`sliding_window_hit`; the Redis store runs the same rule in
one Lua script.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable
from typing import Protocol

import msgspec

from stowage.errors import RateLimited
from stowage.observability.logging import get_logger

LOGGER_NAME = "stowage.ratelimit"


class RateDecision(msgspec.Struct, frozen=True):
    """The outcome of one hit."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds until a request would be allowed again (0 when allowed)


class RateLimiter(Protocol):
    """Counts hits per key and says whether one more is allowed; shared by every worker process."""

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        """Record a hit on ``key`` if fewer than ``limit`` were allowed in the last ``window_seconds``."""
        ...

    async def reset(self, key: str) -> None:
        """Forget every hit on ``key`` (e.g. the per-account counter after a successful login)."""
        ...

    async def close(self) -> None:
        """Release connections and files. The limiter must not be used afterwards."""
        ...


async def check(limiter: RateLimiter, key: str, *, limit: int, window_seconds: int, what: str) -> None:
    """hit(); when not allowed raise :class:`~stowage.errors.RateLimited` naming ``what`` and when to retry.

    ``what`` completes "Too many …", e.g. ``"login attempts for this account"``.
    """
    decision = await limiter.hit(key, limit=limit, window_seconds=window_seconds)
    if decision.allowed:
        return
    seconds = decision.retry_after
    unit = "second" if seconds == 1 else "seconds"
    raise RateLimited(f"Too many {what}; try again in {seconds} {unit}.", retry_after=seconds)


def validate_limits(limit: int, window_seconds: int) -> None:
    """Reject limits that cannot mean anything; these are programming errors, not client errors."""
    if limit < 1:
        raise ValueError(f"rate limit must be at least 1, got {limit}")
    if window_seconds < 1:
        raise ValueError(f"rate limit window must be at least 1 second, got {window_seconds}")


def to_millis(seconds: float) -> int:
    return math.floor(seconds * 1000)


def retry_after_seconds(wait_ms: int, window_seconds: int) -> int:
    """Whole seconds to wait (rounded up), between 1 and the window."""
    return min(max(math.ceil(wait_ms / 1000), 1), window_seconds)


def sliding_window_hit(
    hits: Iterable[int], now_ms: int, *, limit: int, window_seconds: int
) -> tuple[list[int], RateDecision]:
    """Apply one hit to the recorded ``hits`` (ms); return the hits to store and the decision.

    The returned list is sorted, holds only hits still inside the window, and gains ``now_ms`` only
    when the hit is allowed. Store it back only when it differs from what was read.
    """
    window_ms = window_seconds * 1000
    live = sorted(min(t, now_ms) for t in hits if t > now_ms - window_ms)
    if len(live) < limit:
        bisect.insort(live, now_ms)
        return live, RateDecision(allowed=True, limit=limit, remaining=limit - len(live), retry_after=0)
    # The hit that must leave the window before one more fits (the oldest, unless the limit shrank).
    blocking = live[len(live) - limit]
    wait_ms = blocking + window_ms - now_ms
    return live, RateDecision(
        allowed=False, limit=limit, remaining=0, retry_after=retry_after_seconds(wait_ms, window_seconds)
    )


def fail_open_decision(limit: int) -> RateDecision:
    """What a store answers when its backend is unreachable: allowed, nothing counted."""
    return RateDecision(allowed=True, limit=limit, remaining=limit, retry_after=0)


class OutageReporter:
    """Logs a backend outage once per ``every_seconds`` (not once per request) and its recovery."""

    def __init__(self, backend: str, *, every_seconds: float = 60.0) -> None:
        self._backend = backend
        self._every = every_seconds
        self._last_warning: float | None = None
        self._suppressed = 0

    def failed(self, operation: str, exc: BaseException) -> None:
        now = time.monotonic()
        if self._last_warning is not None and now - self._last_warning < self._every:
            self._suppressed += 1
            return
        # Looked up on each use (rare) rather than cached, so log capture in tests always sees it.
        get_logger(LOGGER_NAME).warning(
            "rate limiter unavailable, allowing requests unchecked",
            backend=self._backend,
            operation=operation,
            error=f"{type(exc).__name__}: {exc}",
            suppressed_since_last_warning=self._suppressed,
        )
        self._last_warning = now
        self._suppressed = 0

    def succeeded(self) -> None:
        if self._last_warning is None:
            return
        get_logger(LOGGER_NAME).info(
            "rate limiter available again", backend=self._backend, suppressed_since_last_warning=self._suppressed
        )
        self._last_warning = None
        self._suppressed = 0
