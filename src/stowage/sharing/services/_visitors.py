"""A share link's visitor: what the link leads to, its content, listings and archives of a shared
folder, the password unlock, and files added through a drop link.

Every request starts from the token: one indexed read gives the link and the node it shares, and a
revoked or expired link, or one whose node is in the trash, is a 404 from that moment on. The
visitor is a principal without an account (``link_principal``); nodes below the shared one are
reached through the ordinary file services, which load this link's grant for each node and let the
policy decide — a node outside the shared subtree simply does not exist for the visitor (404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec

from stowage.accounts.tokens import hash_token
from stowage.db.base import utcnow
from stowage.errors import Conflict, NotFound, PermissionDenied
from stowage.files import direct_repository
from stowage.files.names import normalise_name
from stowage.files.schemas import FileContent, SortKey
from stowage.files.services import ContentSource, UploadOptions, unique_name
from stowage.files.zipstream import ZipEntry
from stowage.policy import Action, Grant, Owned, Permission, Principal, authorize
from stowage.ratelimit import check as rate_check
from stowage.sharing import repository
from stowage.sharing.repository import LinkRow
from stowage.sharing.schemas import DropResult, LinkInfo, SharedNodeOut, SharedNodePage, UnlockGrant
from stowage.sharing.services._common import (
    GRANT_TTL_SECONDS,
    LINK_TOKEN_PREFIX,
    SharingDeps,
    grant_is_valid,
    link_principal,
    shared_node_out,
    sign_grant,
)

MAX_TOKEN_LENGTH = 128
Opened = tuple[FileContent, ContentSource]


class Visit(msgspec.Struct, frozen=True):
    """One request's link (as read for it) and the visitor's principal."""

    link: LinkRow
    principal: Principal


def counts_as_download(method: str, status: int, start: int) -> bool:
    """A download, for a link's limit: a GET that sends the content from its first byte (a whole file,
    or the first range of a player's requests, or a redirect to the object store that sends the whole
    file). HEAD, 304 and later ranges of the same file are free."""
    return method == "GET" and status in (200, 206, 307) and start == 0


class VisitorService:
    def __init__(self, deps: SharingDeps) -> None:
        self.deps = deps
        self.db = deps.database
        self.reader = deps.database.direct
        self.tree = deps.files.tree
        self.reading = deps.files.reading
        self.uploads = deps.files.uploads

    # --- the link ---------------------------------------------------------------------------------

    async def _link(self, token: str) -> LinkRow:
        """The live link behind ``token``; 404 for an unknown, revoked or expired one, or a trashed node."""
        if not token.startswith(LINK_TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            raise NotFound("No such link.")
        link = await repository.link_by_token_hash(self.reader, hash_token(token))
        if link is None or link.revoked_at is not None or link.trashed_at is not None:
            raise NotFound("No such link: it may have been revoked, or what it shared deleted.")
        if link.expires_at is not None and link.expires_at <= utcnow():
            raise NotFound("This link has expired.")
        return link

    def _unlocked(self, link: LinkRow, grant: str | None) -> bool:
        if link.password_hash is None:
            return True
        return grant_is_valid(self.deps.secret, grant, link.id, link.password_hash, utcnow())

    async def visit(self, token: str, grant: str | None) -> Visit:
        """The link, once its password (if any) was proven with a grant from ``unlock``."""
        link = await self._link(token)
        if not self._unlocked(link, grant):
            raise PermissionDenied(
                "This link is protected by a password: unlock it (POST /api/v1/s/<token>/unlock) and send "
                "the grant as the X-Share-Grant header.",
                extra={"password_required": True},
            )
        return Visit(link=link, principal=link_principal(link.id))

    @staticmethod
    def _root_access(link: LinkRow) -> Owned:
        """The policy's view of the shared node itself: the link's own row is its grant."""
        grant = Grant(share_id=link.id, root_id=link.node_id, permission=Permission(link.permission))
        return Owned(owner_id=link.owner_id, node_id=link.node_id, grants=(grant,))

    async def info(self, token: str, grant: str | None) -> LinkInfo:
        """What the link leads to; only its mode and that it needs a password until it is unlocked, and
        nothing of a drop link's folder."""
        link = await self._link(token)
        unlocked = self._unlocked(link, grant)
        node = None
        if unlocked and link.permission != Permission.DROP:
            authorize(link_principal(link.id), Action.FILE_READ, self._root_access(link))
            node = shared_node_out(link.file_row(), link.sha256)
            node.image = await self.tree.image_for(node.media_type, link.sha256) or msgspec.UNSET
        left = None if link.max_downloads is None else max(link.max_downloads - link.download_count, 0)
        return LinkInfo(
            mode="drop" if link.permission == Permission.DROP else "read",
            password_required=not unlocked,
            node=node,
            expires_at=link.expires_at,
            downloads_left=left,
        )

    async def unlock(self, token: str, password: str, ip: str) -> UnlockGrant:
        """A short-lived grant for a password-protected link. Attempts are limited per address and per
        link (the limits of sign-in attempts), counted before the password is checked."""
        link = await self._link(token)
        if link.password_hash is None:
            raise Conflict("This link has no password; open it directly.")
        settings = self.deps.settings
        window = settings.rate_limit_window_seconds
        await rate_check(
            self.deps.limiter,
            f"share-unlock:ip:{ip}",
            limit=settings.rate_limit_auth_per_ip,
            window_seconds=window,
            what="password attempts from your address",
        )
        await rate_check(
            self.deps.limiter,
            f"share-unlock:link:{link.id}",
            limit=settings.rate_limit_auth_per_account,
            window_seconds=window,
            what="password attempts for this link",
        )
        if not await self.deps.hasher.verify(link.password_hash, password):
            raise PermissionDenied("Wrong password for this link.")
        expires_at = utcnow() + timedelta(seconds=GRANT_TTL_SECONDS)
        if link.expires_at is not None:
            expires_at = min(expires_at, link.expires_at)
        grant = sign_grant(self.deps.secret, link.id, link.password_hash, expires_at)
        return UnlockGrant(grant=grant, expires_at=expires_at)

    # --- reading ------------------------------------------------------------------------------------

    @staticmethod
    def _downloads_left(visit: Visit) -> None:
        link = visit.link
        if link.max_downloads is not None and link.download_count >= link.max_downloads:
            raise NotFound("This link's download limit is reached.")

    def open_content(self, visit: Visit) -> Opened:
        """The shared file's content (a folder answers 409: download it as a ZIP)."""
        self._downloads_left(visit)
        return self.reading.open_granted(visit.principal, visit.link.file_row(), self._root_access(visit.link))

    async def open_node_content(self, visit: Visit, node_id: str) -> Opened:
        """The content of a file inside the shared folder."""
        self._downloads_left(visit)
        return await self.reading.open_file(visit.principal, node_id)

    async def node(self, visit: Visit, node_id: str) -> SharedNodeOut:
        row = await self.tree.load_row(visit.principal, node_id, Action.FILE_READ)
        node = shared_node_out(row, row.sha256)
        node.image = await self.tree.image_for(row.media_type, row.sha256) or msgspec.UNSET
        return node

    async def children(
        self,
        visit: Visit,
        node_id: str | None,
        *,
        sort: SortKey,
        descending: bool,
        cursor: str | None,
        limit: int,
    ) -> SharedNodePage:
        """One page of a shared folder (or of a folder inside it)."""
        page = await self.tree.list_children(
            visit.principal, node_id or visit.link.node_id, sort=sort, descending=descending, cursor=cursor, limit=limit
        )
        items = [
            SharedNodeOut(
                id=n.id,
                name=n.name,
                kind=n.kind,
                size=n.size,
                media_type=n.media_type,
                etag=n.etag,
                modified_at=n.modified_at,
                image=n.image,
            )
            for n in page.items
        ]
        return SharedNodePage(items=items, next_cursor=page.next_cursor)

    async def zip_entries(self, visit: Visit, node_id: str | None) -> list[ZipEntry]:
        """The archive plan of the shared node (or of a node inside it); counted as one download."""
        self._downloads_left(visit)
        entries = await self.reading.zip_entries(visit.principal, [node_id or visit.link.node_id])
        await self.record_download(visit)
        return entries

    async def record_download(self, visit: Visit) -> None:
        """Count one download of a link with a limit, atomically: concurrent downloads never pass it.
        Links without a limit are not counted (no write on their read path)."""
        if visit.link.max_downloads is None:
            return
        async with self.db.direct_transaction() as tx:
            counted = await repository.count_download(tx, visit.link.id)
        if not counted:
            raise NotFound("This link's download limit is reached.")

    # --- drop links ------------------------------------------------------------------------------

    async def drop(self, visit: Visit, name: str, body: AsyncIterator[bytes], options: UploadOptions) -> DropResult:
        """Add a file to a drop link's folder. A taken name gets a number (the visitor sees nothing of
        what is there); the owner's quota pays, as for every upload into their folders."""
        if visit.link.permission != Permission.DROP:
            raise PermissionDenied("This link does not take uploads.")
        placed = msgspec.structs.replace(options, on_conflict="rename", expected_etags=None, if_none_match_any=False)
        folder_id = visit.link.node_id
        clean = normalise_name(name, field="path.name")
        taken = await direct_repository.live_child(self.reader, folder_id, clean)
        if taken is not None and taken.kind == "folder":  # "rename" does not rename around a folder: do it here
            clean = await unique_name(self.reader, folder_id, clean)
        node, _ = await self.uploads.upload_to_folder(visit.principal, folder_id, clean, body, placed)
        return DropResult(name=node.name, size=node.size)
