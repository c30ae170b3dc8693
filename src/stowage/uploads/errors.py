"""The errors of resumable uploads, as refinements of the protocol-neutral ones in ``stowage.errors``.

Each is a subclass of the general error a REST client would see (``status_for`` walks the class
hierarchy), so the REST mapping needs no entry; the tus front end maps them to tus statuses.
"""

from __future__ import annotations

from stowage.errors import Conflict, InvalidInput, NotFound, PermissionDenied


class UploadGone(NotFound):
    """The upload expired (or its bytes were lost): start a new one. tus: 410 Gone."""

    code = "upload-gone"
    title = "The upload is gone"


class OffsetMismatch(Conflict):
    """The chunk does not start where the stored bytes end. tus: 409, with the stored offset."""

    code = "upload-offset-mismatch"
    title = "The offset does not match the upload"

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(
            f"This upload has {expected} bytes; send the chunk that starts there "
            f"(Upload-Offset: {expected}), not at {got}.",
            extra={"upload_offset": expected},
        )
        self.expected = expected


class UploadLocked(Conflict):
    """Another request is writing to this upload right now. tus: 423 Locked, with Retry-After."""

    code = "upload-locked"
    title = "The upload is busy"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Another request is sending bytes to this upload; retry when it has finished "
            f"(at the latest in {retry_after} s, when its lease runs out).",
            extra={"retry_after": retry_after},
        )
        self.retry_after = retry_after


class ChecksumMismatch(InvalidInput):
    """The chunk does not match the checksum the client sent: it was discarded. tus: 460."""

    code = "checksum-mismatch"
    title = "The chunk does not match its checksum"


class FinalUploadImmutable(PermissionDenied):
    """A final (concatenated) upload receives no bytes of its own. tus: 403."""

    code = "upload-final"
    title = "A final upload cannot be patched"
