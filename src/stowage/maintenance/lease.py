"""A lease in the metadata database that one process of the whole installation holds at a time.

Several Stowage nodes (and the workers of each) share one PostgreSQL database; work that must not run
twice at once — the housekeeping pass, ``stowage gc`` and ``stowage fsck`` — first takes the
``maintenance`` lease (``Lease.acquire``: one conditional UPDATE, or an INSERT for a name never taken),
then runs under :func:`run_holding`, which renews it every third of its lifetime while the work runs. A
holder that dies (``kill -9``, a lost machine) stops renewing, and the lease lapses at its expiry for
another process to take; a holder whose renewal finds the lease gone (it stalled past the expiry and
someone else took over) has its work cancelled, so two passes never overlap for longer than a renewal
period.

It lives in the database rather than in Redis because every configuration has a database — SQLite on a
single machine included — and one mechanism is one thing to test. Expiry times come from the nodes'
clocks, so keep them in sync (NTP); a skew of ``s`` seconds shortens or lengthens a lapse by ``s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec

from stowage.db.engine import Database
from stowage.maintenance import repository
from stowage.observability.logging import get_logger

log = get_logger("stowage.maintenance")

MAINTENANCE_LEASE = "maintenance"
T = TypeVar("T")
Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class LeaseHolder(msgspec.Struct, frozen=True):
    """Who holds a lease now (the node's name and the holder's unique id) and until when."""

    node: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


class LeaseLost(Exception):
    """The lease ran out or was taken over while its work ran; the work was cancelled."""


class Lease:
    """One process's handle on the lease ``name``; its ``holder`` id is unique to this handle."""

    def __init__(self, database: Database, name: str, *, node: str, seconds: float, clock: Clock = _now) -> None:
        self.database = database
        self.name = name
        self.node = node
        self.seconds = seconds
        self.holder = f"{node}/{os.getpid()}/{secrets.token_hex(4)}"
        self._clock = clock

    def _dialect(self) -> str:
        return "sqlite" if self.database.is_sqlite else "postgresql"

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (or it lapsed); True when this handle holds it now."""
        now = self._clock()
        async with self.database.transaction() as db:
            return await repository.take_lease(
                db,
                self.name,
                self.holder,
                self.node,
                now=now,
                until=now + timedelta(seconds=self.seconds),
                dialect=self._dialect(),
            )

    async def renew(self) -> bool:
        """Extend the lease by its lifetime from now; False when this handle no longer holds it."""
        now = self._clock()
        async with self.database.transaction() as db:
            return await repository.renew_lease(
                db, self.name, self.holder, now=now, until=now + timedelta(seconds=self.seconds)
            )

    async def release(self) -> None:
        """Give the lease up at once (nothing happens when it is no longer this handle's)."""
        async with self.database.transaction() as db:
            await repository.release_lease(db, self.name, self.holder, now=self._clock())

    async def current(self) -> LeaseHolder | None:
        """The live holder of the lease, or None when it is free."""
        async with self.database.session() as db:
            row = await repository.get_lease(db, self.name)
        if row is None or row.expires_at <= self._clock():
            return None
        return LeaseHolder(node=row.node, holder=row.holder, acquired_at=row.acquired_at, expires_at=row.expires_at)

    async def wait_and_acquire(self, *, poll_seconds: float | None = None) -> None:
        """Take the lease, waiting for the current holder to finish (or to lapse, if it died). Says once
        in the log whom it waits for."""
        poll = poll_seconds if poll_seconds is not None else max(0.2, min(5.0, self.seconds / 3))
        announced: str | None = None
        while not await self.acquire():
            holder = await self.current()
            if holder is not None and holder.holder != announced:
                announced = holder.holder
                log.warning(
                    "waiting_for_maintenance_lease",
                    lease=self.name,
                    held_by=holder.node,
                    until=holder.expires_at.isoformat(),
                )
            await asyncio.sleep(poll)


async def run_holding(lease: Lease, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` while renewing ``lease`` (already acquired) every third of its lifetime; release it at
    the end. Raise :class:`LeaseLost` (after cancelling the work) when a renewal finds the lease taken, or
    when renewals keep failing (the database unreachable) until the lease has lapsed."""
    task = asyncio.ensure_future(work())
    period = lease.seconds / 3
    loop = asyncio.get_running_loop()
    valid_until = loop.time() + lease.seconds  # by this process's clock: renewals failing since then
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=period)
            if done:
                return task.result()
            asked = loop.time()
            try:
                renewed = await lease.renew()
            except Exception as exc:  # an outage: the lease still stands until it lapses
                log.warning("maintenance_lease_not_renewed", lease=lease.name, error=f"{type(exc).__name__}: {exc}")
                renewed = loop.time() < valid_until
            else:
                if renewed:
                    valid_until = asked + lease.seconds
            if not renewed:
                raise LeaseLost(f"the {lease.name} lease of {lease.node} ran out while its work ran")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await lease.release()
        except Exception:
            log.exception("maintenance_lease_not_released", lease=lease.name)
