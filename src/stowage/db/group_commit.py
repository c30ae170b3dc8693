"""Group commit for SQLite: concurrent hand-written write transactions share one COMMIT (and one fsync).

With ``synchronous=FULL`` every SQLite commit waits for the disk, and SQLite has one writer at a time,
so committing each upload on its own caps a busy server at one upload per fsync — and spends a
worker-thread hop on each. Here the units of work that are ready together run one after another on
the writer connection inside one transaction, each in a ``SAVEPOINT`` of its own, and the batch
commits once: every client still gets its answer only after the commit that made its change durable.

* A unit's statements run in the event loop (SQLite answers from cached pages). If its body raises,
  only its savepoint is rolled back: the others in the batch are unaffected — unless SQLite ended the
  whole transaction (a full disk while spilling, an I/O error): then the batch is lost, and every unit
  of it, including those already finished, gets that error. Nothing lost is ever acknowledged.
* The batch commits on the next turns of the event loop after its last open unit finished, with the
  fsync in a worker thread. Units arriving meanwhile wait and form the next batch.
* If the COMMIT fails, every unit of the batch gets that error.
* A batch is opened by a task of its own, so a client that goes away while waiting for the writer
  cancels only its own request, not the others waiting with it.
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
    __slots__ = ("broken", "closed", "committed", "committing", "lock", "open_units", "raw", "release", "scheduled")

    def __init__(self, raw: sqlite3.Connection, release: Callable[[], Awaitable[None]]) -> None:
        self.raw = raw
        self.release = release
        self.open_units = 0  # joined and not finished (running, or waiting for ``lock``)
        # One unit at a time: savepoints nest, so a unit that paused mid-way must not have another's
        # statements land inside its savepoint (its rollback would take them along).
        self.lock = asyncio.Lock()
        self.closed = False  # committing: no unit may join any more
        self.broken: BaseException | None = None  # SQLite ended the whole transaction: all is lost
        self.scheduled = False
        self.committing = False
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class GroupCommitter:
    def __init__(self, checkout: Checkout, begin: Callable[[sqlite3.Connection], Awaitable[None]]) -> None:
        """``checkout`` lends the writer connection for one batch; ``begin`` starts its transaction."""
        self._checkout = checkout
        self._begin = begin
        self._batch: _Batch | None = None
        self._opening: asyncio.Task[_Batch] | None = None
        self._joining = 0  # units waiting for a batch to open
        self._names = itertools.count()

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[DirectTransaction]:
        """One unit of work in the current batch; returns once the batch holding it has committed."""
        batch = await self._join()
        batch.open_units += 1
        try:
            async with batch.lock:
                if batch.broken is not None:
                    raise batch.broken
                raw = batch.raw
                savepoint = f"unit_{next(self._names)}"
                raw.execute(f"SAVEPOINT {savepoint}")
                try:
                    yield DirectTransaction(sqlite=raw)
                except BaseException as exc:
                    self._undo(batch, savepoint, exc)
                    raise
                raw.execute(f"RELEASE {savepoint}")
        finally:
            self._finish_unit(batch)
        await asyncio.shield(batch.committed)

    @staticmethod
    def _undo(batch: _Batch, savepoint: str, error: BaseException) -> None:
        """Roll back one unit's savepoint — or, when SQLite has already rolled back the whole transaction,
        mark the batch lost (its finished units must not be reported as committed)."""
        raw = batch.raw
        if raw.in_transaction:
            try:
                raw.execute(f"ROLLBACK TO {savepoint}")
                raw.execute(f"RELEASE {savepoint}")
            except sqlite3.Error:
                batch.broken = error
            else:
                return
        else:
            batch.broken = error
        batch.closed = True  # nobody may start anything on a connection outside the batch's transaction

    async def _join(self) -> _Batch:
        """The open batch, or a new one once the previous has committed and handed the connection back."""
        while True:
            batch = self._batch
            if batch is not None and not batch.closed:
                return batch
            if batch is not None:  # committing: wait for it (its outcome is its units' business)
                await asyncio.wait([batch.committed])
                continue
            if self._opening is None:
                self._opening = asyncio.get_running_loop().create_task(self._open())
                self._opening.add_done_callback(self._opened)
            # Counted while waiting, so the new batch is not committed before its units get to join it.
            self._joining += 1
            try:
                await asyncio.shield(self._opening)
            finally:
                self._joining -= 1
                if self._joining == 0 and self._batch is not None:
                    self._schedule_commit(self._batch)  # in case every waiter went away

    async def _open(self) -> _Batch:
        holder = self._checkout()
        raw = await holder.__aenter__()
        try:
            await self._begin(raw)
        except BaseException as exc:
            await holder.__aexit__(type(exc), exc, exc.__traceback__)
            raise

        async def release() -> None:
            await holder.__aexit__(None, None, None)

        self._batch = _Batch(raw, release)
        return self._batch

    def _opened(self, opening: asyncio.Task[_Batch]) -> None:
        self._opening = None
        if not opening.cancelled() and opening.exception() is None and self._joining == 0:
            self._schedule_commit(opening.result())  # nobody is waiting for it any more: give it back

    def _finish_unit(self, batch: _Batch) -> None:
        batch.open_units -= 1
        self._schedule_commit(batch)

    def _schedule_commit(self, batch: _Batch) -> None:
        if batch.open_units == 0 and not batch.scheduled:
            batch.scheduled = True
            # On the next turn of the loop: units that became ready meanwhile join this batch first.
            asyncio.get_running_loop().call_soon(self._maybe_commit, batch)

    def _maybe_commit(self, batch: _Batch) -> None:
        batch.scheduled = False
        if batch.open_units == 0 and self._joining == 0 and not batch.committing:
            batch.closed = batch.committing = True
            _keep(asyncio.get_running_loop().create_task(self._commit(batch)))

    async def _commit(self, batch: _Batch) -> None:
        error: BaseException | None = batch.broken
        if error is None and not batch.raw.in_transaction:
            error = sqlite3.OperationalError("the batch's transaction ended before its commit")
        if error is None:
            try:
                await asyncio.to_thread(batch.raw.commit)  # the fsync waits in a thread, not in the loop
            except BaseException as exc:
                error = exc
        if error is not None and batch.raw.in_transaction:
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
