"""Image work on stored content: a local file to hand to ``stowage.images`` (which reads paths), and the
GPS-free copy an upload stores instead of what was sent when the owner asks for it.

``stowage.images`` is pure and reads local files; a local blob store gives the blob's own path, any other
store (S3) a temporary copy streamed into ``data_dir/tmp`` and removed afterwards (bounded memory;
named like the store's spools, so housekeeping removes one a crash left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from stowage import images
from stowage.blobs import BlobInfo, BlobStore
from stowage.blobs.local_removal import TEMP_PREFIX, TEMP_SUFFIX
from stowage.errors import UnprocessableContent

COPY_CHUNK = 256 * 1024


@contextlib.asynccontextmanager
async def local_copy(store: BlobStore, data_dir: Path, sha256: str) -> AsyncIterator[Path]:
    """A local file holding the content: the blob itself in a local store, else a temporary copy
    (BlobNotFound when the content is gone)."""
    await store.size(sha256)
    local = store.local_path(sha256)
    if local is not None:
        yield local
        return
    handle, path = await asyncio.to_thread(_temp_file, data_dir)
    try:
        with os.fdopen(handle, "wb") as out:
            async with contextlib.aclosing(store.open_read(sha256)) as chunks:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
        yield path
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


class GpsNotRemoved(UnprocessableContent):
    """The image holds a GPS position that could not be removed safely, and the owner asked for it to be."""

    code = "gps-not-removed"
    title = "The GPS position could not be removed"


async def without_gps(store: BlobStore, data_dir: Path, info: BlobInfo) -> BlobInfo:
    """The stored content ``info`` with any GPS position removed, stored as a blob of its own (the picture
    is not re-encoded: only the metadata changes). ``info`` itself when there was no position to remove.

    The content as sent stays in the store unreferenced until garbage collection removes it after its
    grace period (a concurrent upload of the same bytes may be about to reference it, so only ``gc``
    may delete it). Refuses (422) an image whose GPS block is too damaged to edit."""
    async with local_copy(store, data_dir, info.sha256) as source:
        handle, target = await asyncio.to_thread(_temp_file, data_dir)
        os.close(handle)
        try:
            try:
                removed = await asyncio.to_thread(images.strip_gps, source, target)
            except ValueError as exc:
                raise GpsNotRemoved(
                    "The image's GPS metadata is damaged and could not be removed; nothing was stored.",
                ) from exc
            if not removed:
                return info
            async with store.writer(max_size=info.size) as writer:
                with await asyncio.to_thread(target.open, "rb") as stripped:
                    while chunk := await asyncio.to_thread(stripped.read, COPY_CHUNK):
                        await writer.write(chunk)
                return await writer.commit()
        finally:
            await asyncio.to_thread(target.unlink, missing_ok=True)


def _temp_file(data_dir: Path) -> tuple[int, Path]:
    folder = data_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    # Named like the store's spools, so housekeeping removes one a crash left behind.
    handle, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}image-", suffix=TEMP_SUFFIX, dir=folder)
    return handle, Path(name)
