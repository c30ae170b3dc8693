"""The read path: a file's (or one version's) content as a plain ``FileContent`` and a byte source.

Every front end that serves bytes — REST downloads, ZIP archives, and later S3 GetObject, WebDAV GET,
share links and thumbnails — starts here. The service authorises through ``TreeService.load`` and
returns a value plus a ``ContentSource``; the blob store stays behind the source, so no front end
holds it, and the integrity rule (``verify_reads``) is applied in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Protocol

from stowage.blobs import BlobNotFound, BlobStore
from stowage.config import VerifyReads
from stowage.db.tables import Version
from stowage.errors import Conflict, NotFound
from stowage.files import direct_repository, repository
from stowage.files.names import split_path
from stowage.files.schemas import FileContent, etag_of
from stowage.files.services._tree import TreeService
from stowage.files.zipstream import ZipEntry
from stowage.policy import Action, Owned, Principal, authorize


async def ensure_servable(store: BlobStore, sha256: str, verify: VerifyReads) -> None:
    """Fail before any byte is sent if the content is missing (BlobNotFound) or, unless ``verify`` is
    ``off``, no longer hashes to its name (BlobCorrupt): both answer a logged 500, never corrupt bytes.
    ``changed`` re-hashes only content this process has not verified since it last changed on disk;
    ``always`` re-hashes on every read."""
    if verify == "off":
        if not await store.exists(sha256):
            raise BlobNotFound(sha256)
        return
    await store.ensure_intact(sha256, always=verify == "always")


class ContentSource:
    """The bytes of one stored content, and the checks to run before sending them.

    A front end asks ``ensure_servable`` once it knows whether bytes will go out (not for a 304 or an
    empty body), then sends the whole file by ``local_file`` (ASGI pathsend) or streams ``open_read``.
    """

    __slots__ = ("_redirect_seconds", "_store", "_verify", "sha256")

    def __init__(self, store: BlobStore, sha256: str, verify: VerifyReads, redirect_seconds: int | None = None) -> None:
        self._store = store
        self._verify = verify
        self._redirect_seconds = redirect_seconds
        self.sha256 = sha256

    async def ensure_servable(self, *, sends_bytes: bool) -> None:
        """Missing content fails always; damaged content fails when bytes will be sent (``verify_reads``)."""
        await ensure_servable(self._store, self.sha256, self._verify if sends_bytes else "off")

    def local_file(self) -> str | None:
        """The file holding the whole content when the store is local (for zero-copy sending), else None."""
        return self._store.local_file(self.sha256)

    def open_read(self, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Bytes ``[start, end)`` in chunks."""
        return self._store.open_read(self.sha256, start, end)

    async def offsite_url(self, *, content_type: str, content_disposition: str) -> str | None:
        """Where the client may fetch the whole content itself — a short-lived presigned URL of the object
        store, when ``s3_redirect_downloads`` is on — or None: the bytes go through this server. Call it
        only after the caller was authorised (the URL is a bearer capability until it expires)."""
        if self._redirect_seconds is None:
            return None
        return await self._store.presigned_get(
            self.sha256,
            expires_in=self._redirect_seconds,
            content_type=content_type,
            content_disposition=content_disposition,
        )


class _StoredNode(Protocol):
    """A node as the ORM (``Node``) or a hot-path query (``NodeRow``) gives it."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def media_type(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def modified_at(self) -> datetime: ...


def file_content(node: _StoredNode, version: Version | None = None) -> FileContent:
    """The read-side value of a file node, or of one of its versions (validators of that version)."""
    if node.kind != "file" or node.sha256 is None:
        raise Conflict(f"{node.name!r} is a folder; download it as a ZIP instead.")
    if version is None:
        return FileContent(
            node_id=node.id,
            name=node.name,
            size=node.size,
            media_type=node.media_type or "application/octet-stream",
            sha256=node.sha256,
            modified_at=node.modified_at,
            etag=f'"{node.sha256}"',  # etag_of's form; a stored digest was checked when it was written
        )
    return FileContent(
        node_id=node.id,
        name=node.name,
        size=version.size,
        media_type=version.media_type,
        sha256=version.sha256,
        modified_at=version.created_at,
        etag=etag_of(version.sha256),
    )


Opened = tuple[FileContent, ContentSource]


class ReadService:
    def __init__(self, tree: TreeService) -> None:
        self.tree = tree
        self.db = tree.db
        self.reader = tree.db.direct
        self.store = tree.deps.store
        self.verify = tree.deps.settings.verify_reads
        settings = tree.deps.settings
        redirect = settings.blob_store == "s3" and settings.s3_redirect_downloads
        self.redirect_seconds = settings.s3_presign_seconds if redirect else None

    def _opened(self, content: FileContent) -> Opened:
        return content, ContentSource(self.store, content.sha256, self.verify, self.redirect_seconds)

    async def open_file(self, principal: Principal | None, node_id: str) -> Opened:
        """The current content of the file ``node_id`` (one indexed read, no ORM: the hot path)."""
        authorize(principal, Action.FILE_READ)
        row = await direct_repository.live_file_by_id(self.reader, node_id)
        if row is None:
            raise NotFound("No such file or folder.")
        authorize(principal, Action.FILE_READ, await self.tree.access(principal, row.owner_id, row.id))
        return self._opened(file_content(row))

    def open_granted(self, principal: Principal | None, node: _StoredNode, access: Owned) -> Opened:
        """The content of a node the caller has just read together with its access: a share link's row
        carries its node and its grant, so one read serves a visitor. The policy decides as always."""
        authorize(principal, Action.FILE_READ, access)
        return self._opened(file_content(node))

    async def open_path(self, principal: Principal | None, path: str) -> Opened:
        """The current content of the file at ``/a/b/c`` in the caller's tree: one statement whatever the
        depth (the hot path). When it finds nothing, the tree walk finds out what is missing and says so."""
        caller = authorize(principal, Action.FILE_READ)
        row = await direct_repository.live_file_at(self.reader, caller.user_id, split_path(path))
        if row is None:
            await self.tree.ensure_user_root(principal, Action.FILE_READ)
            async with self.db.session() as db:
                node = await self.tree.resolve(db, principal, path, Action.FILE_READ)
                return self._opened(file_content(node))
        authorize(principal, Action.FILE_READ, Owned(owner_id=row.owner_id))
        return self._opened(file_content(row))

    async def open_version(self, principal: Principal | None, node_id: str, version_id: str) -> Opened:
        """One kept version of a file, with that version's validators."""
        async with self.db.session() as db:
            node = await self.tree.load(db, principal, node_id, Action.FILE_READ)
            if node.kind != "file":
                raise Conflict(f"{node.name!r} is a folder; only files have versions.")
            version = await repository.get_version(db, version_id)
            if version is None or version.node_id != node.id:
                raise NotFound("This file has no such version.")
            return self._opened(file_content(node, version))

    async def zip_entries(self, principal: Principal | None, ids: Sequence[str]) -> list[ZipEntry]:
        """Plan an archive of the given nodes (folders recursively), paths relative to each item."""
        entries: list[ZipEntry] = []
        async with self.db.session(offload=True) as db:
            for node_id in ids:
                node = await self.tree.load(db, principal, node_id, Action.FILE_READ)
                subtree = await repository.live_subtree_nodes(db, node.id) if node.kind == "folder" else [node]
                by_id = {n.id: n for n in subtree}
                for item in subtree:
                    parts = [item.name]
                    cursor = item
                    while cursor.id != node.id and cursor.parent_id in by_id:
                        cursor = by_id[cursor.parent_id]
                        parts.append(cursor.name)
                    if node.parent_id is None:
                        parts = parts[:-1]
                    path = "/".join(reversed(parts))
                    if item.kind == "folder":
                        if path:
                            entries.append(ZipEntry(path=path + "/", modified=item.modified_at))
                        continue
                    entries.append(
                        ZipEntry(
                            path=path, modified=item.modified_at, size=item.size, content=self._reader(item.sha256)
                        )
                    )
        entries.sort(key=lambda e: e.path)  # parents before their contents, stable order for clients
        return entries

    def _reader(self, sha256: str | None) -> Callable[[], AsyncIterator[bytes]]:
        store, verify = self.store, self.verify

        async def checked_content(digest: str) -> AsyncIterator[bytes]:
            # Checked when the archive reaches this entry; a failure then aborts the stream (logged).
            await ensure_servable(store, digest, verify)
            async with contextlib.aclosing(store.open_read(digest)) as chunks:
                async for chunk in chunks:
                    yield chunk

        def open_content() -> AsyncIterator[bytes]:
            if sha256 is None:
                return _empty()
            return checked_content(sha256)

        return open_content


async def _empty() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk
