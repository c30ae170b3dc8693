"""The file services an application instance shares, one per use-case group.

``tree`` (look-ups, folders, listings, rename/move/copy), ``trash``, ``uploads`` (the write path),
``reading`` (the read path: ``FileContent`` and a byte source, ZIP plans), ``versions`` and
``search``; ``facts`` (image facts, computed after uploads and on first need). Each private module
holds one group; this package re-exports what front ends, other domains and tests use, so they never
import a private module.
"""

from __future__ import annotations

from dataclasses import dataclass

from stowage.files.services._common import (
    MAX_PAGE,
    FileDeps,
    ItemOutcome,
    node_out,
    purge_trash_set,
    quota_exceeded,
    release_user_content,
    unique_name,
)
from stowage.files.services._facts import FactsService
from stowage.files.services._reading import ContentSource, Opened, ReadService, ensure_servable, file_content
from stowage.files.services._search import SearchService
from stowage.files.services._trash import TrashService
from stowage.files.services._tree import TreeService
from stowage.files.services._upload_checks import QuotaRoom, UploadOptions
from stowage.files.services._uploads import UploadPlan, UploadService, Within
from stowage.files.services._versions import VersionService, apply_retention, retention_policy


@dataclass(slots=True)
class FileServices:
    deps: FileDeps
    tree: TreeService
    trash: TrashService
    uploads: UploadService
    reading: ReadService
    versions: VersionService
    search: SearchService
    facts: FactsService

    @classmethod
    def build(cls, deps: FileDeps) -> FileServices:
        facts = FactsService(deps)
        tree = TreeService(deps, facts)
        return cls(
            deps=deps,
            facts=facts,
            tree=tree,
            trash=TrashService(tree),
            uploads=UploadService(deps, tree),
            reading=ReadService(tree),
            versions=VersionService(tree),
            search=SearchService(tree),
        )


__all__ = [
    "MAX_PAGE",
    "ContentSource",
    "FactsService",
    "FileDeps",
    "FileServices",
    "ItemOutcome",
    "Opened",
    "QuotaRoom",
    "ReadService",
    "SearchService",
    "TrashService",
    "TreeService",
    "UploadOptions",
    "UploadPlan",
    "UploadService",
    "VersionService",
    "Within",
    "apply_retention",
    "ensure_servable",
    "file_content",
    "node_out",
    "purge_trash_set",
    "quota_exceeded",
    "release_user_content",
    "retention_policy",
    "unique_name",
]
