"""Looking behind an S3 blob store in tests: its temporary objects and unfinished multipart uploads,
and overwriting a blob's object as a damaged disk or a careless operator would."""

from __future__ import annotations

from stowage.blobs.s3 import S3BlobStore


async def s3_temp_count(store: S3BlobStore) -> int:
    """Spools left behind: objects under ``tmp/`` plus multipart uploads not completed or aborted."""
    client = await store.client()
    objects = [entry async for entry in store.list_objects(store.temp_prefix)]
    uploads = await client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.temp_prefix)
    return len(objects) + len(uploads.get("Uploads", []))


async def s3_overwrite(store: S3BlobStore, sha256: str, content: bytes) -> None:
    """Replace a blob's bytes under its name (to exercise verify, ensure_intact and fsck)."""
    client = await store.client()
    await client.put_object(Bucket=store.bucket, Key=store.blob_key(sha256), Body=content)


async def s3_delete_object(store: S3BlobStore, key: str) -> None:
    client = await store.client()
    await client.delete_object(Bucket=store.bucket, Key=key)
