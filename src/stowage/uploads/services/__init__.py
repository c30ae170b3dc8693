"""The resumable-upload services an application instance shares.

``sessions`` (create, status, terminate, join partial uploads, expiry) and ``chunks`` (receive a
chunk under the upload's lease). Front ends and tests import from here, never a private module.
"""

from __future__ import annotations

from dataclasses import dataclass

from stowage.uploads.services._chunks import CHECKSUM_ALGORITHMS, ChunkChecksum, ChunkService
from stowage.uploads.services._common import LEASE_SECONDS, UploadCore, UploadDeps
from stowage.uploads.services._sessions import SessionService


@dataclass(slots=True)
class UploadServices:
    core: UploadCore
    sessions: SessionService
    chunks: ChunkService

    @classmethod
    def build(cls, deps: UploadDeps, *, lease_seconds: float = LEASE_SECONDS) -> UploadServices:
        core = UploadCore(deps, lease_seconds=lease_seconds)
        return cls(core=core, sessions=SessionService(core), chunks=ChunkService(core))

    @property
    def max_size(self) -> int:
        return self.core.max_size


__all__ = [
    "CHECKSUM_ALGORITHMS",
    "LEASE_SECONDS",
    "ChunkChecksum",
    "ChunkService",
    "SessionService",
    "UploadDeps",
    "UploadServices",
]
