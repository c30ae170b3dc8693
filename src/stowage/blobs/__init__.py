"""Content-addressed blob storage: the :class:`BlobStore` contract and its memory and local implementations.

Build one store in the application's lifespan (``create_blob_store(settings)``) and pass it to the
services that need it. Write through ``open_writer``/``writer``, commit before recording the blob in
the database, delete only after the database commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from stowage.blobs._s3client import S3Location


def create_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings ask for: the local content-addressed folder in ``data_dir`` (default)
    or an S3 bucket (``blob_store = "s3"``). Nothing is opened until it is used; ``await store.start()``
    checks that it is reachable, ``await store.close()`` releases its connections."""
    if settings.blob_store == "s3":
        from stowage.blobs.s3 import S3BlobStore  # aiobotocore is imported only by servers that use it

        return S3BlobStore(s3_location(settings), part_size=settings.s3_part_size)
    return LocalBlobStore(settings.data_dir.resolve())


def s3_location(settings: Settings) -> S3Location:
    """The ``s3_*`` settings as the S3 store's connection description."""
    from stowage.blobs._s3client import S3Location

    assert settings.s3_bucket is not None  # config/_checks.py requires it with blob_store = "s3"
    return S3Location(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        prefix=settings.s3_prefix,
        addressing_style=settings.s3_addressing_style,
        create_bucket=settings.s3_create_bucket,
    )


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
    "s3_location",
]
