"""A worker's memory of recent credential checks, so a busy client is not looked up on every request.

A bearer credential (access token or personal token) that passed the database check is remembered
with its ``Principal`` for at most ``principal_cache_seconds`` (≤ 1 s), and never past the
credential's own expiry. Every committed change to users, sessions or API keys — a logout, a revoked
token, a disabled or deleted account, a role change — bumps a counter shared by all workers of this
machine (``db.epoch.SharedEpoch``); an entry remembered under an older count is not used. So a
revocation takes effect on the next request on this machine, and within the cache's lifetime on
others (several nodes sharing one database: the lifetime counts from when the check began, so a slow
check does not stretch it).

When an entry expires under load, every request in flight for that credential misses at once; they
share one database check instead of queueing dozens of identical ones (which showed as 70 ms stalls
every second in the W1 benchmark). A request joins a check only if no revocation was counted since
that check began; with the cache off (lifetime 0) every request checks for itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from stowage.config import Settings
from stowage.db.epoch import SharedEpoch
from stowage.policy import Principal

MAX_ENTRIES = 10_000
CREDENTIAL_TABLES = frozenset({"users", "sessions", "api_keys"})


def credentials_epoch(settings: Settings) -> SharedEpoch:
    """The revocation counter of the installation in ``settings.data_dir`` (shared by its processes)."""
    return SharedEpoch(settings.data_dir.resolve() / "run" / "credentials.epoch")


class _Entry(NamedTuple):
    principal: Principal
    epoch: int
    fresh_until: float  # monotonic: the cache's own lifetime
    valid_until: float  # wall clock: the credential's expiry (token, session or key)


class _Pending(NamedTuple):
    epoch: int  # the counter when the check began
    result: asyncio.Future[Principal]


class _Abandoned(Exception):
    """The request running a shared check was cancelled: those waiting on it check for themselves."""


Check = Callable[[], Awaitable[tuple[Principal, float]]]


class CredentialCache:
    def __init__(self, epoch: SharedEpoch, lifetime: float) -> None:
        self.epoch = epoch
        self.lifetime = lifetime
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._pending: dict[str, _Pending] = {}

    async def check_and_remember(self, key: str, check: Check) -> Principal:
        """Run ``check`` (the database check: the principal and the credential's expiry) for a ``key``
        that ``get`` did not know, and remember its answer — or share the answer of the same check
        already running, if it began after the last revocation. Errors are shared the same way."""
        epoch = self.epoch.value()  # before the database is asked: see ``put``
        began = time.monotonic()  # the answer is as old as the question (see ``put``)
        if self.lifetime > 0:
            while (running := self._pending.get(key)) is not None and running.epoch == epoch:
                try:
                    return await asyncio.shield(running.result)
                except _Abandoned:
                    # Its request was cancelled: join whoever took over, or take over ourselves.
                    if self._pending.get(key) is running:
                        break
            pending = _Pending(epoch, asyncio.get_running_loop().create_future())
            self._pending[key] = pending
        else:
            pending = None
        try:
            principal, valid_until = await check()
        except Exception as exc:
            _settle(pending, exc)
            raise
        except BaseException:
            _settle(pending, _Abandoned())
            raise
        finally:
            if pending is not None and self._pending.get(key) is pending:
                del self._pending[key]
        if pending is not None:
            pending.result.set_result(principal)
        self.put(key, principal, epoch=epoch, valid_until=valid_until, checked_at=began)
        return principal

    def get(self, key: str) -> Principal | None:
        """The remembered principal for ``key``, if still fresh, unexpired and not older than a revocation."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if (
            entry.fresh_until < time.monotonic()
            or entry.valid_until <= time.time()
            or entry.epoch != self.epoch.value()
        ):
            del self._entries[key]
            return None
        return entry.principal

    def put(
        self, key: str, principal: Principal, *, epoch: int, valid_until: float, checked_at: float | None = None
    ) -> None:
        """Remember a check that began when the counter read ``epoch`` (read *before* the database was
        asked, so a revocation committed during the check on this machine makes the entry stale at once).

        The entry stays fresh for the lifetime counted from ``checked_at`` (monotonic; default now), when
        the check began: a revocation committed on another machine, which no counter here announces,
        is then honoured within ``principal_cache_seconds`` of its commit, however slow the check was."""
        if self.lifetime <= 0:
            return
        start = time.monotonic() if checked_at is None else checked_at
        self._entries[key] = _Entry(principal, epoch, start + self.lifetime, valid_until)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def revoked(self) -> None:
        """Something that can end a credential has been committed: no worker may use older checks."""
        self._entries.clear()
        self.epoch.bump()


def _settle(pending: _Pending | None, error: BaseException) -> None:
    """Hand ``error`` to the requests waiting on a check (marked as seen: nobody may be waiting)."""
    if pending is not None and not pending.result.done():
        pending.result.set_exception(error)
        pending.result.exception()
