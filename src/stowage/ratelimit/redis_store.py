"""Rate limiter in Redis, shared by every worker process on every machine that uses the same server.

Each key is a sorted set ``<prefix><sha256 of the key>`` (default prefix ``stowage:rl:``) of the hits
allowed in the last window, scored by time in milliseconds. One Lua script per hit drops expired
hits, counts, and adds the new one only when it fits; Redis runs scripts atomically, so concurrent
workers can never over-admit. The script is sent by SHA (``EVALSHA``) with a fallback that loads it
after a ``NOSCRIPT`` reply (redis-py's ``register_script``). The key expires one window after its
newest hit. Times come from the limiter's clock, so the machines' clocks should be kept in sync
(NTP); a skew only shifts a window by that much.

**Fails open:** when Redis cannot be reached or answers with an error (down, timeout after
``timeout_seconds``, out of memory, read-only replica…) the hit is *allowed* and a warning logged
(throttled to one per minute), because an outage of the limiter must not lock every user out.
Commands are not retried, so an outage costs each request at most ``timeout_seconds``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from stowage.config import redact_url
from stowage.ratelimit.limiter import (
    OutageReporter,
    RateDecision,
    fail_open_decision,
    retry_after_seconds,
    to_millis,
    validate_limits,
)

DEFAULT_KEY_PREFIX = "stowage:rl:"

# KEYS[1]: the sorted set.  ARGV: now_ms, cutoff_ms (now - window), window_ms, limit, new member.
# Returns {allowed (1/0), remaining, ms until a hit would be allowed (when denied)}.
_HIT_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[2])
-- Hits recorded "in the future" (a clock stepped back) count as made now.
local future = redis.call('ZRANGEBYSCORE', key, '(' .. ARGV[1], '+inf')
for _, member in ipairs(future) do
    redis.call('ZADD', key, ARGV[1], member)
end
local count = redis.call('ZCARD', key)
if count < limit then
    redis.call('ZADD', key, ARGV[1], ARGV[5])
    redis.call('PEXPIRE', key, window)
    return {1, limit - count - 1, 0}
end
local blocking = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
return {0, 0, tonumber(blocking[2]) + window - now}
"""


class RedisRateLimiter:
    """Sliding-window log in Redis (see the module docstring). Owns its client; ``close()`` it."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = redis.asyncio.Redis.from_url(
            url,
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._client.register_script(_HIT_SCRIPT)
        self._prefix = key_prefix
        self._clock = clock
        self._outage = OutageReporter(f"redis:{redact_url(url)}")

    def redis_key(self, key: str) -> str:
        """The Redis key holding ``key``'s hits (user input is hashed, never embedded)."""
        return self._prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> RateDecision:
        validate_limits(limit, window_seconds)
        now_ms = to_millis(self._clock())
        window_ms = window_seconds * 1000
        args = (now_ms, now_ms - window_ms, window_ms, limit, secrets.token_hex(8))
        try:
            allowed, remaining, wait_ms = await self._script(keys=[self.redis_key(key)], args=args)
        except RedisError as exc:
            self._outage.failed("hit", exc)
            return fail_open_decision(limit)
        self._outage.succeeded()
        if allowed:
            return RateDecision(allowed=True, limit=limit, remaining=int(remaining), retry_after=0)
        return RateDecision(
            allowed=False, limit=limit, remaining=0, retry_after=retry_after_seconds(int(wait_ms), window_seconds)
        )

    async def reset(self, key: str) -> None:
        try:
            await self._client.delete(self.redis_key(key))
        except RedisError as exc:
            self._outage.failed("reset", exc)

    async def close(self) -> None:
        await self._client.aclose()
