"""Rate limiting shared by every worker process: Redis when configured, else a SQLite file.

Build one limiter in the application's lifespan with :func:`create_rate_limiter`, pass it to the
services that need it, and ``await limiter.close()`` on shutdown. Services call :func:`check`.
"""

from __future__ import annotations

from stowage.config import Settings
from stowage.observability.logging import get_logger
from stowage.ratelimit.limiter import RateDecision, RateLimiter, check
from stowage.ratelimit.memory_store import MemoryRateLimiter
from stowage.ratelimit.redis_store import RedisRateLimiter
from stowage.ratelimit.sqlite_store import SQLiteRateLimiter

SQLITE_FILE_NAME = "ratelimit.db"

__all__ = [
    "SQLITE_FILE_NAME",
    "MemoryRateLimiter",
    "RateDecision",
    "RateLimiter",
    "RedisRateLimiter",
    "SQLiteRateLimiter",
    "check",
    "create_rate_limiter",
]


def create_rate_limiter(settings: Settings) -> RateLimiter:
    """RedisRateLimiter when ``settings.redis_url`` is set; otherwise SQLiteRateLimiter on
    ``<data_dir>/ratelimit.db`` (a file shared by all worker processes on this machine). Several nodes
    need Redis to share one count; on PostgreSQL without it a warning says so at start.

    Nothing is connected or opened until the first hit.
    """
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url)
    if not settings.is_sqlite:
        # PostgreSQL suggests several nodes; each would count only the attempts it saw itself.
        get_logger("stowage.ratelimit").warning(
            "rate limits are counted per node: set redis_url so that every node shares one count",
            node=settings.effective_node_name,
        )
    return SQLiteRateLimiter(settings.data_dir.resolve() / SQLITE_FILE_NAME)
