"""Image facts (width, height, capture time, BlurHash) of stored content: when they are computed.

* **After an upload commits**, whatever protocol it came by (``UploadService.record_blob`` schedules
  it): a bounded queue in each worker process, drained by one background task, so the 2xx never
  waits for an image to be decoded. A full queue drops the request (a listing schedules it again).
* **On first need**: a listing that finds images without facts schedules them (this is also what
  picks up work lost in a restart: the queue lives in memory only), and a file's metadata request
  waits a short time (``image_facts_wait_seconds``) for its facts and answers without them after that.

Each content is computed at most once at a time in a process (single flight: the metadata request
and the queue share one computation), in a worker thread, at most ``image_facts_concurrency`` at once
per process; a thread that overruns ``image_transform_timeout`` keeps its slot until it ends, so slow
images cannot pile up threads. Content that is not a readable image (not an image, damaged, over the
decode limits) gets a row with a failure marker and is never computed again. A computation that ran
out of time stores nothing (the image may only have met a busy server): the process leaves it alone for
``TIMEOUT_RETRY_SECONDS``, after which a listing or the hourly backfill tries it again. Errors that say
nothing about the content (the blob store, the database) store nothing: the next listing retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import structlog

from stowage import images
from stowage.blobs import BlobNotFound
from stowage.db.base import utcnow
from stowage.db.direct import DirectTransaction
from stowage.errors import UnprocessableContent
from stowage.files import facts_repository
from stowage.files.facts_repository import FactsRow
from stowage.files.schemas import ImageOut
from stowage.files.services._common import FileDeps
from stowage.files.services._image_content import local_copy

log = structlog.get_logger("stowage.files.facts")

T = TypeVar("T")

TIMEOUT_FAILURE = "image-timeout"
# How long a process waits before it computes again the facts of content whose computation timed out.
TIMEOUT_RETRY_SECONDS = 3600.0
# How long shutting down waits for cancelled computations to end.
CLOSE_SECONDS = 5.0
_TIMEOUTS_REMEMBERED = 10_000

Compute = Callable[[Path], FactsRow]


def compute_facts(path: Path, limits: images.ImageLimits) -> FactsRow:
    """The facts of the image at ``path`` (blocking), or a failure row for content that is not a usable
    image; other errors propagate (they say nothing about the content)."""
    try:
        found = images.image_facts(path, limits)
    except UnprocessableContent as exc:
        return FactsRow(width=None, height=None, taken_at=None, placeholder=None, failure=exc.code)
    return FactsRow(
        width=found.width, height=found.height, taken_at=found.taken_at, placeholder=found.blurhash, failure=None
    )


class FactsService:
    def __init__(self, deps: FileDeps, compute: Compute | None = None) -> None:
        self.deps = deps
        self.db = deps.database
        self.store = deps.store
        settings = deps.settings
        limits = images.limits_from(settings)
        self._compute: Compute = compute or (lambda path: compute_facts(path, limits))
        self._timeout = settings.image_transform_timeout
        self._queue_size = settings.image_facts_queue
        self._concurrency = settings.image_facts_concurrency
        self._queue: asyncio.Queue[str] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._queued: set[str] = set()
        self._running: dict[str, asyncio.Task[FactsRow | None]] = {}
        self._drainer: asyncio.Task[None] | None = None
        self._timed_out: OrderedDict[str, float] = OrderedDict()  # content -> when it last timed out
        self.computed = 0  # contents computed by this process (tests and metrics read it)

    # --- scheduling ----------------------------------------------------------------------------------

    def schedule(self, hashes: Iterable[str]) -> None:
        """Queue contents for their facts, without waiting; ones queued or running already are skipped,
        and what does not fit in the queue is dropped (the next listing that shows it asks again)."""
        for sha256 in hashes:
            if sha256 in self._queued or sha256 in self._running or self._resting(sha256):
                continue
            if self._queue is None:  # started by the first work, in the loop that serves requests
                self._queue = asyncio.Queue(self._queue_size)
                self._drainer = asyncio.get_running_loop().create_task(self._drain(self._queue))
            try:
                self._queue.put_nowait(sha256)
            except asyncio.QueueFull:
                log.warning("image_facts_queue_full", size=self._queue_size)
                return
            self._queued.add(sha256)

    async def backfill(self) -> int:
        """Schedule image contents that have no facts (as many as the queue takes); how many were
        found. Housekeeping runs it hourly, so nothing stays without facts for long, listed or not."""
        async with self.db.session(offload=True) as db:
            missing = await facts_repository.without_facts(db, self._queue_size)
        self.schedule(missing)
        return len(missing)

    async def _drain(self, queue: asyncio.Queue[str]) -> None:
        while True:
            sha256 = await queue.get()
            try:
                with contextlib.suppress(Exception):  # logged in ``_compute_and_store``; the queue goes on
                    await self._computation(sha256)
            finally:
                self._queued.discard(sha256)
                queue.task_done()

    async def idle(self) -> None:
        """Wait until every queued content has been handled (tests, and an orderly shutdown)."""
        if self._queue is not None:
            await self._queue.join()
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def close(self) -> None:
        """Stop the background work (the lifespan's end); unfinished contents are picked up by listings."""
        tasks = [*self._running.values(), *([self._drainer] if self._drainer is not None else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a computation stuck in I/O (a remote blob's copy) must not hold the shutdown.
            await asyncio.wait(tasks, timeout=CLOSE_SECONDS)
        self._queue = None
        self._drainer = None
        self._queued.clear()

    # --- recording ------------------------------------------------------------------------------------

    async def recorded(self, tx: DirectTransaction, node_id: str, sha256: str) -> FactsRow | None:
        """In the transaction that points a file at image content: the content's facts when known (its
        copy elsewhere: deduplication), with the capture time copied into the node; None when they are
        still to be computed (``schedule`` it once the transaction has committed)."""
        known = (await facts_repository.facts_of(tx, [sha256])).get(sha256)
        if known is not None and known.taken_at is not None:
            await facts_repository.set_taken_at(tx, node_id, known.taken_at)
        return known

    # --- reading -------------------------------------------------------------------------------------

    async def images_of(self, hashes: Iterable[str | None]) -> dict[str, ImageOut]:
        """The ``image`` member of each content that has facts (one query for a page), scheduling the
        images among them that have none yet: pass the hashes of files whose type ``has_image_facts``."""
        wanted = [sha for sha in dict.fromkeys(hashes) if sha is not None]
        if not wanted:
            return {}
        found = await facts_repository.facts_of(self.db.direct, wanted)
        self.schedule(sha for sha in wanted if sha not in found)
        return {sha: image for sha, row in found.items() if (image := row.image()) is not None}

    async def image_of(self, sha256: str, *, wait: float) -> ImageOut | None:
        """One content's ``image`` member; when its facts are missing, computed now (or joined, when
        already under way) for at most ``wait`` seconds — then None, and the work goes on."""
        found = await facts_repository.facts_of(self.db.direct, [sha256])
        if sha256 in found:
            return found[sha256].image()
        if wait <= 0:
            self.schedule([sha256])
            return None
        try:
            row = await asyncio.wait_for(asyncio.shield(self._computation(sha256)), wait)
        except Exception:
            return None
        return row.image() if row is not None else None

    # --- computing -------------------------------------------------------------------------------------

    def _computation(self, sha256: str) -> asyncio.Task[FactsRow | None]:
        """The one computation of this content in this process, started if none is running (single flight)."""
        task = self._running.get(sha256)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._compute_and_store(sha256))
            self._running[sha256] = task
            task.add_done_callback(functools.partial(self._finished, sha256))
        return task

    def _finished(self, sha256: str, task: asyncio.Task[FactsRow | None]) -> None:
        if self._running.get(sha256) is task:
            del self._running[sha256]
        if not task.cancelled():
            task.exception()  # retrieved (and logged where it happened) even when nobody waited for it

    async def _compute_and_store(self, sha256: str) -> FactsRow | None:
        """Compute and store one content's facts (or repair its nodes' capture-time copy when the facts
        exist already); the row, or None when the content is gone."""
        try:
            existing = (await facts_repository.facts_of(self.db.direct, [sha256])).get(sha256)
            if existing is not None:
                if existing.taken_at is not None:
                    async with self.db.direct_transaction() as tx:
                        await facts_repository.fill_taken_at(tx, sha256, existing.taken_at)
                return existing
            row = await self._facts_of_content(sha256)
            if row is not None and row.failure != TIMEOUT_FAILURE:
                async with self.db.direct_transaction() as tx:
                    await facts_repository.store(tx, sha256, row, utcnow())
                self.computed += 1
        except Exception:
            log.exception("image_facts_failed", sha256=sha256)
            raise
        return row

    async def _facts_of_content(self, sha256: str) -> FactsRow | None:
        """Compute the facts from the stored bytes (a local file, or a temporary copy of a remote blob)."""
        try:
            async with local_copy(self.store, self.deps.settings.data_dir, sha256) as path:
                return await self._in_thread(lambda: self._compute(path))
        except BlobNotFound:
            return None  # purged meanwhile: nothing to describe
        except TimeoutError:
            log.warning("image_facts_timeout", sha256=sha256, seconds=self._timeout)
            self._timed_out[sha256] = time.monotonic()
            self._timed_out.move_to_end(sha256)
            while len(self._timed_out) > _TIMEOUTS_REMEMBERED:
                self._timed_out.popitem(last=False)
            return FactsRow(width=None, height=None, taken_at=None, placeholder=None, failure=TIMEOUT_FAILURE)

    def _resting(self, sha256: str) -> bool:
        """The content's computation timed out less than ``TIMEOUT_RETRY_SECONDS`` ago in this process."""
        when = self._timed_out.get(sha256)
        return when is not None and time.monotonic() - when < TIMEOUT_RETRY_SECONDS

    async def _in_thread(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a worker thread holding one of the process's slots until the thread ends,
        even when the wait for it times out."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._concurrency)
        await self._slots.acquire()
        slots = self._slots
        future = asyncio.ensure_future(asyncio.to_thread(work))
        future.add_done_callback(lambda _: slots.release())
        return await asyncio.wait_for(asyncio.shield(future), self._timeout)
