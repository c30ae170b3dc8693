"""A worker's memory of recent credential checks, so a busy client is not looked up on every request.

A bearer credential (access token or personal token) that passed the database check is remembered
with its ``Principal`` for at most ``principal_cache_seconds`` (≤ 1 s), and never past the
credential's own expiry. Every committed change to users, sessions or API keys — a logout, a revoked
token, a disabled or deleted account, a role change — bumps a counter shared by all workers of this
machine (``db.epoch.SharedEpoch``); an entry remembered under an older count is not used. So a
revocation takes effect on the next request on this machine, and within the cache's lifetime on
others.
"""

from __future__ import annotations

import time
from collections import OrderedDict
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


class CredentialCache:
    def __init__(self, epoch: SharedEpoch, lifetime: float) -> None:
        self.epoch = epoch
        self.lifetime = lifetime
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

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

    def put(self, key: str, principal: Principal, *, epoch: int, valid_until: float) -> None:
        """Remember a check that began when the counter read ``epoch`` (read *before* the database was
        asked, so a revocation committed during the check makes the entry stale at once)."""
        if self.lifetime <= 0:
            return
        self._entries[key] = _Entry(principal, epoch, time.monotonic() + self.lifetime, valid_until)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def revoked(self) -> None:
        """Something that can end a credential has been committed: no worker may use older checks."""
        self._entries.clear()
        self.epoch.bump()
