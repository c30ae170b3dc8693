"""Server-side copies into a blob's key as a multipart upload of ``UploadPartCopy`` parts: for objects over
5 GiB (``CopyObject``'s limit), and to join a resumable upload's staged chunks without their bytes
passing through Stowage. The bytes move inside the object store; a failure aborts the upload, so the
blob key is either complete or absent."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# One copied part: the source key and an optional byte range ("bytes=0-1023"), None for the whole object.
Piece = tuple[str, str | None]


async def copy_pieces(client: S3Client, bucket: str, key: str, pieces: Sequence[Piece]) -> str:
    """Assemble ``key`` from the pieces in order (each at least 5 MiB but the last, at most 5 GiB);
    return the new object's ETag."""
    upload_id = (await client.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
    try:
        parts: list[dict[str, Any]] = []
        for number, (source, byte_range) in enumerate(pieces, start=1):
            extra: dict[str, str] = {} if byte_range is None else {"CopySourceRange": byte_range}
            answer = await client.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": source},
                **extra,  # type: ignore[arg-type]
            )
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        completed = await client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
        )
        return str(completed["ETag"])
    except BaseException:
        with contextlib.suppress(ClientError):
            await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def ranges_of(source: str, size: int, step: int) -> list[Piece]:
    """``source`` cut into ranges of ``step`` bytes (the last one shorter)."""
    return [(source, f"bytes={start}-{min(start + step, size) - 1}") for start in range(0, size, step)]
