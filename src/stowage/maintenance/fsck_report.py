"""What ``fsck`` finds: the kinds of problem (see ``fsck.py``'s docstring), each problem, the report."""

from __future__ import annotations

from datetime import datetime

import msgspec

MISSING_BLOB = "missing_blob"
CORRUPT_BLOB = "corrupt_blob"
WRONG_REFCOUNT = "wrong_refcount"
UNREFERENCED_BLOB_ROW = "unreferenced_blob_row"
DANGLING_VERSION = "dangling_version"
VERSION_SIZE_MISMATCH = "version_size_mismatch"
NODE_VERSION_MISMATCH = "node_version_mismatch"
WRONG_USAGE = "wrong_usage"
DUPLICATE_ROOT = "duplicate_root"
ORPHAN_BLOB = "orphan_blob"


class Problem(msgspec.Struct, frozen=True):
    """One inconsistency. ``subject`` is the blob hash, node, version or user id it is about."""

    kind: str
    subject: str
    detail: str
    repairable: bool


class FsckReport(msgspec.Struct):
    started_at: datetime
    finished_at: datetime
    blobs_checked: int
    bytes_hashed: int
    problems: list[Problem]
    repaired: list[Problem]

    @property
    def clean(self) -> bool:
        return not self.problems
