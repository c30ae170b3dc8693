"""Group commit for SQLite: concurrent hand-written write transactions share one COMMIT (and one fsync).

With ``synchronous=FULL`` every SQLite commit waits for the disk, and SQLite has one writer at a time,
so committing each upload on its own caps a busy server at one upload per fsync — and spends a
worker-thread hop on each. Here the units of work that are ready together run one after another on
the writer connection inside one transaction, each in a ``SAVEPOINT`` of its own, and the batch
commits once: every client still gets its answer only after the commit that made its change durable.

* A unit's statements run in the event loop (SQLite answers from cached pages). If its body raises,
  only its savepoint is rolled back: the others in the batch are unaffected.
* The batch commits on the next turn of the event loop after its last open unit finished, with the
  fsync in a worker thread. Units arriving meanwhile wait and form the next batch.
* If the COMMIT fails (a full disk, an I/O error), every unit of the batch gets that error; nothing of
  theirs was acknowledged, so nothing acknowledged is lost.
* The writer connection comes from the write engine's pool (one connection), so ORM write
  transactions and batches take turns on it; other processes are waited for asynchronously.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from stowage.db.direct import DirectTransaction

Checkout = Callable[[], AbstractAsyncContextManager[sqlite3.Connection]]


class _Batch:
    __slots__ = ("closed", "committed", "lock", "open_units", "raw", "release", "scheduled")

    def __init__(self, raw: sqlite3.Connection, release: Callable[[], Awaitable[None]]) -> None:
        self.raw = raw
        self.release = release
        self.open_units = 0  # joined and not finished (running, or waiting for ``lock``)
        # One unit at a time: savepoints nest, so a unit that paused mid-way must not have another's
        # statements land inside its savepoint (its rollback would take them along).
        self.lock = asyncio.Lock()
        self.closed = False  # committing: no unit may join any more
        self.scheduled = False
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class GroupCommitter:
    def __init__(self, checkout: Checkout, begin: Callable[[sqlite3.Connection], Awaitable[None]]) -> None:
        """``checkout`` lends the writer connection for one batch; ``begin`` starts its transaction."""
        self._checkout = checkout
        self._begin = begin
        self._batch: _Batch | None = None
        self._opening: asyncio.Future[_Batch] | None = None
        self._names = itertools.count()

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[DirectTransaction]:
        """One unit of work in the current batch; returns once the batch holding it has committed."""
        batch = await self._join()
        batch.open_units += 1
        try:
            async with batch.lock:
                savepoint = f"unit_{next(self._names)}"
                raw = batch.raw
                raw.execute(f"SAVEPOINT {savepoint}")
                try:
                    yield DirectTransaction(sqlite=raw)
                except BaseException:
                    raw.execute(f"ROLLBACK TO {savepoint}")
                    raw.execute(f"RELEASE {savepoint}")
                    raise
                raw.execute(f"RELEASE {savepoint}")
        finally:
            self._finish_unit(batch)
        await asyncio.shield(batch.committed)

    async def _join(self) -> _Batch:
        """The open batch, or a new one once the previous has committed and handed the connection back."""
        while True:
            batch = self._batch
            if batch is not None and not batch.closed:
                return batch
            if self._opening is not None:
                await asyncio.shield(self._opening)
                continue
            if batch is not None:  # committing: wait for it (its outcome is its units' business)
                await asyncio.wait([batch.committed])
                continue
            return await self._open()

    async def _open(self) -> _Batch:
        opening: asyncio.Future[_Batch] = asyncio.get_running_loop().create_future()
        self._opening = opening
        try:
            holder = self._checkout()
            raw = await holder.__aenter__()
            try:
                await self._begin(raw)
            except BaseException as exc:
                await holder.__aexit__(type(exc), exc, exc.__traceback__)
                raise

            async def release() -> None:
                await holder.__aexit__(None, None, None)

            batch = _Batch(raw, release)
        except BaseException as exc:
            opening.set_exception(exc)
            opening.exception()  # retrieved here; joiners waiting on it get the same error
            self._opening = None
            raise
        self._batch = batch
        self._opening = None
        opening.set_result(batch)
        return batch

    def _finish_unit(self, batch: _Batch) -> None:
        batch.open_units -= 1
        if batch.open_units == 0 and not batch.scheduled:
            batch.scheduled = True
            # On the next turn of the loop: units that became ready meanwhile join this batch first.
            asyncio.get_running_loop().call_soon(self._maybe_commit, batch)

    def _maybe_commit(self, batch: _Batch) -> None:
        batch.scheduled = False
        if batch.open_units == 0 and not batch.closed:
            batch.closed = True
            task = asyncio.get_running_loop().create_task(self._commit(batch))
            _keep(task)

    async def _commit(self, batch: _Batch) -> None:
        error: BaseException | None = None
        try:
            await asyncio.to_thread(batch.raw.commit)  # the fsync waits in a thread, not in the loop
        except BaseException as exc:
            error = exc
            if batch.raw.in_transaction:
                batch.raw.rollback()
        try:
            await batch.release()
        finally:
            if self._batch is batch:
                self._batch = None
            if error is None:
                batch.committed.set_result(None)
            else:
                batch.committed.set_exception(error)
                batch.committed.exception()  # every unit re-raises it; none is left unretrieved


_tasks: set[asyncio.Task[Any]] = set()


def _keep(task: asyncio.Task[Any]) -> None:
    """Hold a reference to a background task until it is done (the loop keeps only weak ones)."""
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
