"""The bundle of file services an application instance shares."""

from __future__ import annotations

from dataclasses import dataclass

from stowage.files.services._search import SearchService
from stowage.files.services._tree import FileDeps, FileService
from stowage.files.services._uploads import UploadService
from stowage.files.services._versions import VersionService


@dataclass(slots=True)
class FileServices:
    deps: FileDeps
    tree: FileService
    uploads: UploadService
    versions: VersionService
    search: SearchService

    @classmethod
    def build(cls, deps: FileDeps) -> FileServices:
        tree = FileService(deps)
        return cls(
            deps=deps,
            tree=tree,
            uploads=UploadService(deps, tree),
            versions=VersionService(tree),
            search=SearchService(tree),
        )
