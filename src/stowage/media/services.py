"""Image derivatives of stored files: look up the cache, or render once and remember.

``ThumbnailService.open`` takes content the caller has *already opened* through the read path (the
owner's or a share recipient's ``open_file``, a presigned URL's, a link visitor's ``open_content``):
authorisation stays where it is for downloads, and a thumbnail is readable exactly where its file is.

A derivative is keyed by the source's SHA-256 and the canonical parameters (``TransformParams.key``).
A hit is one indexed read (none when this worker served it in the last ``MEMO_SECONDS``); a miss
renders in a worker thread (at most ``image_concurrency`` at once in this process, identical
concurrent requests share one render), stores the result in the blob store like any content
(deduplicated, fsynced, but in nobody's quota and in no ``blobs`` row), records it, and evicts the
least recently used derivatives once the cache passes ``image_cache_max_bytes``. Evicted derivatives
lose their row at once; their blob files go with the next ``gc`` pass (after its grace period, like
every unreferenced blob file), never while a row still names them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import msgspec
import structlog

from stowage.blobs import BlobStore
from stowage.config import Settings
from stowage.db.base import utcnow
from stowage.db.engine import Database
from stowage.errors import UnsupportedMediaType
from stowage.files.schemas import FileContent
from stowage.files.services import ContentSource
from stowage.images import ImageLimits, Rendered, TransformParams, limits_from, normalise, render
from stowage.media import repository
from stowage.media.repository import DerivativeRow

log = structlog.get_logger(__name__)

# Refresh a hit's last use at most this often: LRU order to a few minutes, not a write per tile.
TOUCH_EVERY = timedelta(minutes=5)
# Hits this worker remembers (no database read), and for how long: far below gc's grace period, so a
# derivative evicted by another worker is still on disk while a memory of it may be used.
MEMO_ENTRIES = 8192
MEMO_SECONDS = 30.0
# Evict down to this share of the cap, so the next misses do not each evict again.
EVICT_TO = 0.9
EVICT_BATCH = 500
_CHUNK = 256 * 1024
# Source types that may carry transparency: ``auto`` keeps it (PNG) when the client takes neither
# WebP nor AVIF; everything else falls back to JPEG.
_ALPHA_TYPES = frozenset({"image/png", "image/gif", "image/webp", "image/avif", "image/tiff", "image/heic"})
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}


class TransformRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The raw parameters of a transform request, as the front end received them."""

    width: int | None = None
    height: int | None = None
    fit: str | None = None
    quality: int | None = None
    format: str | None = None
    accept: str | None = None

    @property
    def negotiated(self) -> bool:
        """Whether the answer depends on ``Accept`` (the response must say ``Vary: Accept``)."""
        return self.format is None or self.format == "auto"


class Derivative(msgspec.Struct, frozen=True):
    """A derivative ready to serve like any file: its content value, byte source, and whether it varies."""

    content: FileContent
    source: ContentSource
    negotiated: bool


class _Remembered:
    """A derivative this worker served lately: its row until ``until`` (monotonic seconds), and the last
    answer built from it with the content it was built for (a grid asks for the same tile again and
    again: the answer is reused while the file's content value is the same)."""

    __slots__ = ("answer", "row", "until")

    def __init__(self, until: float, row: DerivativeRow) -> None:
        self.until = until
        self.row = row
        self.answer: tuple[FileContent, Derivative] | None = None


class ThumbnailService:
    def __init__(self, database: Database, store: BlobStore, settings: Settings, data_dir: Path) -> None:
        self.database = database
        self.store = store
        self.verify = settings.verify_reads
        self.limits: ImageLimits = limits_from(settings)
        self.cache_max_bytes = settings.image_cache_max_bytes
        self.max_input_bytes = settings.image_max_input_bytes
        self.temp_dir = data_dir / "tmp"
        self._slots = asyncio.Semaphore(settings.image_concurrency)
        self._inflight: dict[tuple[str, str], asyncio.Future[DerivativeRow]] = {}
        self._memo: dict[tuple[str, str], _Remembered] = {}
        self._params: dict[tuple[TransformRequest, bool], tuple[TransformParams, str]] = {}

    def parameters(self, content: FileContent, request: TransformRequest) -> TransformParams:
        """Validate the request for this content: 415 for a non-image type, 400 for bad parameters
        (valid ones are memoised: a grid asks the same few parameters over and over)."""
        return self._parameters_and_key(content, request)[0]

    def _parameters_and_key(self, content: FileContent, request: TransformRequest) -> tuple[TransformParams, str]:
        alpha = content.media_type in _ALPHA_TYPES
        known = self._params.get((request, alpha))
        if known is not None and content.media_type.startswith("image/"):
            return known
        if not content.media_type.startswith("image/"):
            raise UnsupportedMediaType(
                f"{content.name!r} is {content.media_type}, not an image: only images have thumbnails.",
                extra={"media_type": content.media_type},
            )
        params = normalise(
            width=request.width,
            height=request.height,
            fit=request.fit,
            quality=request.quality,
            format=request.format,
            accept=request.accept,
            limits=self.limits,
            has_alpha=alpha,
        )
        if len(self._params) >= 1024:
            self._params.clear()
        known = self._params[(request, alpha)] = (params, params.key())
        return known

    async def open(
        self, opened: tuple[FileContent, ContentSource], request: TransformRequest, *, trust_memo: bool = True
    ) -> Derivative:
        """The derivative of content the caller was allowed to open: from the cache, or rendered now.

        A derivative this worker remembers is returned without looking at its file (``trust_memo``): the
        download checks the file anyway, and a caller that finds it missing there (``BlobNotFound``)
        asks again with ``trust_memo=False``, which checks the file, forgets a lost one and renders it."""
        content, source = opened
        params, key = self._parameters_and_key(content, request)
        flight = (content.sha256, key)
        remembered = self._memo.get(flight)
        if (
            remembered is not None
            and remembered.until > time.monotonic()
            and (trust_memo or await self._stored(remembered.row.sha256))
        ):
            answer = remembered.answer
            negotiated = request.negotiated
            if answer is None or answer[0] != content or answer[1].negotiated != negotiated:
                answer = remembered.answer = (content, self._derivative(content, remembered.row, negotiated=negotiated))
            return answer[1]
        row = await repository.find(self.database.direct, *flight)
        if row is not None and not await self._stored(row.sha256):
            # The row outlived its file (lost, or removed by hand): forget it and make it again.
            async with self.database.direct_transaction() as db:
                await repository.delete(db, [flight])
            row = None
        if row is None:
            row = await self._single_flight(content, source, params)
        elif utcnow() - row.last_used_at > TOUCH_EVERY:
            async with self.database.direct_transaction() as db:
                await repository.touch(db, row.source_sha256, row.params, utcnow())
        self._remember(flight, row)
        return self._derivative(content, row, negotiated=request.negotiated)

    async def _stored(self, sha256: str) -> bool:
        """Whether the derivative's blob is there: one stat of a local file (in the loop: the kernel answers
        from its inode cache), else the store's own check."""
        local = self.store.local_file(sha256)
        if local is not None:
            # A stat in the loop, as LocalBlobStore.exists does: the kernel answers it from its inode cache.
            return os.path.isfile(local)  # noqa: PTH113, ASYNC240 - a str path; Path() costs more than the stat
        return await self.store.exists(sha256)

    def _remember(self, flight: tuple[str, str], row: DerivativeRow) -> None:
        self._memo.pop(flight, None)
        self._memo[flight] = _Remembered(time.monotonic() + MEMO_SECONDS, row)
        while len(self._memo) > MEMO_ENTRIES:
            del self._memo[next(iter(self._memo))]  # the oldest remembered

    def _derivative(self, content: FileContent, row: DerivativeRow, *, negotiated: bool) -> Derivative:
        stem = content.name.rsplit(".", 1)[0] if "." in content.name[1:] else content.name
        extension = _EXTENSIONS.get(row.params.rsplit("-", 1)[-1], "bin")
        value = FileContent(
            node_id=content.node_id,
            name=f"{stem}.{extension}",
            size=row.size,
            media_type=row.media_type,
            sha256=row.sha256,
            modified_at=content.modified_at,
            etag=f'"{row.sha256}"',
        )
        return Derivative(
            content=value, source=ContentSource(self.store, row.sha256, self.verify), negotiated=negotiated
        )

    async def _single_flight(
        self, content: FileContent, source: ContentSource, params: TransformParams
    ) -> DerivativeRow:
        """Render once for every request that asks for the same derivative while it is being made."""
        flight = (content.sha256, params.key())
        pending = self._inflight.get(flight)
        if pending is None:
            pending = asyncio.ensure_future(self._make(content, source, params))
            self._inflight[flight] = pending
            pending.add_done_callback(lambda _done: self._inflight.pop(flight, None))
        # Shielded: a client that goes away does not cancel the render the others wait for.
        return await asyncio.shield(pending)

    async def _make(self, content: FileContent, source: ContentSource, params: TransformParams) -> DerivativeRow:
        await source.ensure_servable(sends_bytes=True)  # the original must be intact before we read it
        async with self._slots:
            rendered = await self._render(content, source, params)
            try:
                info = await self._store(rendered.path)
            finally:
                rendered.path.unlink(missing_ok=True)
        now = utcnow()
        row = DerivativeRow(
            source_sha256=content.sha256,
            params=params.key(),
            sha256=info,
            size=rendered.size,
            media_type=rendered.media_type,
            width=rendered.width,
            height=rendered.height,
            last_used_at=now,
        )
        async with self.database.direct_transaction() as db:
            await repository.record(db, row, now)
        await self.evict()
        log.info("image_derivative_made", params=row.params, size=row.size, source_size=content.size)
        return row

    async def _render(self, content: FileContent, source: ContentSource, params: TransformParams) -> Rendered:
        target = self.temp_dir / f"derivative-{uuid.uuid4().hex}"
        local = source.local_file()
        if local is not None:
            return await asyncio.to_thread(render, Path(local), params, self.limits, target)
        # A store without local files (S3): copy the original to a temporary file first, in bounded
        # memory; the size limit is checked before the copy starts.
        copy = self.temp_dir / f"original-{uuid.uuid4().hex}"
        try:
            if content.size <= self.max_input_bytes:
                await _copy_to(source, copy)
            else:
                copy.write_bytes(b"")  # the probe refuses it by size without reading the content
            return await asyncio.to_thread(render, copy, params, self.limits, target)
        finally:
            copy.unlink(missing_ok=True)

    async def _store(self, path: Path) -> str:
        """Put a rendered file into the blob store (streamed, like an upload); its SHA-256."""
        async with self.store.writer() as writer:
            handle = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                    await writer.write(chunk)
            finally:
                handle.close()
            return (await writer.commit()).sha256

    async def evict(self) -> int:
        """Drop least recently used derivatives until the cache is within its cap; how many were dropped."""
        count, total = await repository.totals(self.database.direct)
        if total <= self.cache_max_bytes:
            return 0
        goal = int(self.cache_max_bytes * EVICT_TO)
        dropped: list[tuple[str, str]] = []
        async with self.database.direct_transaction() as db:
            while total > goal:
                oldest = await repository.least_recently_used(db, EVICT_BATCH)
                if not oldest:
                    break
                batch: list[tuple[str, str]] = []
                for source_sha256, params, size in oldest:
                    if total <= goal:
                        break
                    batch.append((source_sha256, params))
                    total -= size
                await repository.delete(db, batch)
                dropped += batch
        for flight in dropped:
            self._memo.pop(flight, None)
        log.info("image_cache_evicted", derivatives=len(dropped), remaining_bytes=total, cached=count - len(dropped))
        return len(dropped)


async def _copy_to(source: ContentSource, path: Path) -> None:
    handle = await asyncio.to_thread(path.open, "wb")
    try:
        async with contextlib.aclosing(source.open_read()) as chunks:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
    finally:
        handle.close()
