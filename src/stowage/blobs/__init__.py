"""Content-addressed blob storage: the :class:`BlobStore` contract and its memory and local implementations.

Build one store in the application's lifespan (``create_blob_store(settings)``) and pass it to the
services that need it. Write through ``open_writer``/``writer``, commit before recording the blob in
the database, delete only after the database commit.
"""

from __future__ import annotations

from stowage.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobCorrupt,
    BlobInfo,
    BlobNotFound,
    BlobStaging,
    BlobStore,
    BlobWriter,
    check_sha256,
    check_upload_id,
)
from stowage.blobs.local import LocalBlobStore, LocalBlobWriter
from stowage.blobs.memory import MemoryBlobStore, MemoryBlobWriter
from stowage.config import Settings


def create_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings ask for: today the local content-addressed folder in ``data_dir``
    (an S3 store joins it behind the same contract). Nothing is opened until it is used."""
    return LocalBlobStore(settings.data_dir.resolve())


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BlobCorrupt",
    "BlobInfo",
    "BlobNotFound",
    "BlobStaging",
    "BlobStore",
    "BlobWriter",
    "LocalBlobStore",
    "LocalBlobWriter",
    "MemoryBlobStore",
    "MemoryBlobWriter",
    "check_sha256",
    "check_upload_id",
    "create_blob_store",
]
