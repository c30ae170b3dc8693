"""Where an S3 store lives and how to talk to it: the connection settings, the aiobotocore client, and
the translation of S3 error codes into what the blob contract speaks.

The client is created lazily, in the event loop that first uses the store (an aiobotocore client is
bound to its loop), and closed by ``S3BlobStore.close`` — the application's lifespan does both.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from stowage.errors import ServiceUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# Error codes S3 servers answer for "no such object" (GET/DELETE say NoSuchKey, HEAD only has a status).
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
NO_SUCH_UPLOAD = "NoSuchUpload"
INVALID_RANGE = "InvalidRange"
# The largest object a single CopyObject may copy; bigger ones are copied part by part (UploadPartCopy).
COPY_OBJECT_LIMIT = 5 * 1024**3


class S3Location(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to reach the bucket (built from the ``s3_*`` settings)."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    prefix: str = ""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    create_bucket: bool = False

    def describe(self) -> str:
        """The bucket and endpoint for messages and logs (never the credentials)."""
        where = self.endpoint_url or f"AWS S3 ({self.region})"
        return f"bucket {self.bucket!r} at {where}"


class BlobStoreUnavailable(ServiceUnavailable):
    """The object store cannot be used: unreachable, refused our credentials, or the bucket is missing.

    Raised at start-up (the server refuses to start with the reason) and by the readiness check; a
    ``service-unavailable`` problem (503) if it ever reaches a client."""


def error_code(exc: ClientError) -> str:
    error: Any = exc.response.get("Error", {})
    return str(error.get("Code", ""))


def is_not_found(exc: ClientError) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


def explain(location: S3Location, exc: Exception) -> str:
    """A sentence an operator can act on, for a failure to reach or use the bucket."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in {"NoSuchBucket", "404", "NotFound"}:
            return f"{location.describe()} does not exist; create it, or set s3_create_bucket = true"
        if code in {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}:
            return (
                f"{location.describe()} refused the credentials ({code}): check s3_access_key_id, "
                "s3_secret_access_key and the bucket policy"
            )
        return f"{location.describe()} answered {code or 'an error'} (HTTP {status}): {exc}"
    return f"cannot reach {location.describe()}: {exc}"


class ClientHolder:
    """One aiobotocore S3 client per store, created on first use in the running loop."""

    def __init__(self, location: S3Location, *, max_connections: int = 64) -> None:
        self._location = location
        self._max_connections = max_connections
        self._client: S3Client | None = None
        self._context: Any = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> S3Client:
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                location = self._location
                config = AioConfig(
                    signature_version="s3v4",
                    s3={"addressing_style": location.addressing_style},
                    retries={"max_attempts": 4, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=120,
                    max_pool_connections=self._max_connections,
                    # Many S3-compatible servers (older MinIO, Garage, Ceph) reject the CRC trailers that
                    # recent botocore adds by default; send and check checksums only where S3 requires them.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                context = get_session().create_client(
                    "s3",
                    region_name=location.region,
                    endpoint_url=location.endpoint_url,
                    aws_access_key_id=location.access_key_id,
                    aws_secret_access_key=location.secret_access_key,
                    config=config,
                )
                self._client = await context.__aenter__()
                self._context = context
        assert self._client is not None
        return self._client

    async def close(self) -> None:
        context, self._context, self._client = self._context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)


async def check_bucket(holder: ClientHolder, location: S3Location, *, create: bool) -> None:
    """Fail with :class:`BlobStoreUnavailable` unless the bucket is reachable with our credentials;
    create it first when ``create`` and it does not exist."""
    try:
        client = await holder.get()
        try:
            await client.head_bucket(Bucket=location.bucket)
        except ClientError as exc:
            if not (create and error_code(exc) in {"NoSuchBucket", "404", "NotFound"}):
                raise
            if location.region == "us-east-1":
                await client.create_bucket(Bucket=location.bucket)
            else:
                await client.create_bucket(
                    Bucket=location.bucket,
                    CreateBucketConfiguration={"LocationConstraint": location.region},  # type: ignore[typeddict-item]
                )
            await client.head_bucket(Bucket=location.bucket)
    except (ClientError, BotoCoreError, OSError) as exc:
        raise BlobStoreUnavailable(explain(location, exc)) from exc
