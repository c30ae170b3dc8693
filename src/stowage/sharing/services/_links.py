"""The owner's side of share links: create, list, edit, revoke.

Only the owner (or an administrator) manages a node's links — the policy's ``SHARE_*`` actions are
never allowed by a grant, so a recipient cannot re-share. A link's token is shown once, at creation;
only its SHA-256 is stored, and its password only as an argon2 hash.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from stowage.accounts.tokens import hash_token, new_opaque_token
from stowage.db.base import utcnow
from stowage.db.tables import Node, Share
from stowage.errors import Conflict, FieldError, InvalidInput, NotFound
from stowage.policy import Action, Owned, Principal, authorize
from stowage.sharing import repository
from stowage.sharing.schemas import LinkCreated, LinkCreateRequest, LinkList, LinkOut, LinkUpdateRequest
from stowage.sharing.services._common import LINK_TOKEN_PREFIX, SharingDeps, in_future, link_out

VISITOR_PREFIX = "/api/v1/s/"


class LinkService:
    def __init__(self, deps: SharingDeps) -> None:
        self.deps = deps
        self.db = deps.database
        self.tree = deps.files.tree

    async def create(self, principal: Principal | None, node_id: str, request: LinkCreateRequest) -> LinkCreated:
        """A new link to the caller's node; the token is in the answer and nowhere else."""
        now = utcnow()
        expires_at = in_future(request.expires_at, now, "body.expires_at")
        if request.drop and request.max_downloads is not None:
            raise InvalidInput(
                "A drop link serves no downloads, so it takes no download limit.",
                errors=[FieldError(field="body.max_downloads", message="not with drop")],
            )
        password_hash = await self.deps.hasher.hash(request.password) if request.password is not None else None
        token = new_opaque_token(LINK_TOKEN_PREFIX)
        async with self.db.transaction() as db:
            node = await self.tree.load(db, principal, node_id, Action.SHARE_WRITE)
            _check_shareable(node)
            if request.drop and node.kind != "folder":
                raise Conflict(f"{node.name!r} is a file; drop links lead to folders, where visitors add files.")
            share = Share(
                id=str(uuid.uuid4()),
                node_id=node.id,
                owner_id=node.owner_id,
                kind="link",
                grantee_user_id=None,
                token_hash=hash_token(token),
                permission="drop" if request.drop else "read",
                password_hash=password_hash,
                expires_at=expires_at,
                max_downloads=request.max_downloads,
                download_count=0,
                created_at=now,
                updated_at=now,
            )
            await repository.add(db, share)
            return LinkCreated(link=link_out(share, node), token=token, path=VISITOR_PREFIX + token)

    async def list_for_node(self, principal: Principal | None, node_id: str) -> LinkList:
        async with self.db.session() as db:
            node = await self.tree.load(db, principal, node_id, Action.SHARE_READ)
            links = await repository.live_of_node(db, node.id, "link")
            return LinkList(items=[link_out(share, node) for share in links])

    async def list_mine(self, principal: Principal | None) -> LinkList:
        """Every live link the caller made, oldest first."""
        caller = authorize(principal, Action.SHARE_READ)
        async with self.db.session() as db:
            links = await repository.live_of_owner(db, caller.user_id, "link")
            return LinkList(items=[link_out(share, node) for share, node in await repository.with_nodes(db, links)])

    async def update(self, principal: Principal | None, link_id: str, request: LinkUpdateRequest) -> LinkOut:
        _check_update(request)
        now = utcnow()
        expires_at = in_future(request.expires_at, now, "body.expires_at")
        password_hash = await self.deps.hasher.hash(request.password) if request.password is not None else None
        async with self.db.transaction() as db:
            share, node = await self._own_link(db, principal, link_id)
            if request.max_downloads is not None and share.permission == "drop":
                raise InvalidInput(
                    "A drop link serves no downloads, so it takes no download limit.",
                    errors=[FieldError(field="body.max_downloads", message="not with drop")],
                )
            if password_hash is not None:
                share.password_hash = password_hash
            elif request.remove_password:
                share.password_hash = None
            if expires_at is not None:
                share.expires_at = expires_at
            elif request.remove_expiry:
                share.expires_at = None
            if request.max_downloads is not None:
                share.max_downloads = request.max_downloads
            elif request.remove_download_limit:
                share.max_downloads = None
            share.updated_at = now
            await db.flush()
            return link_out(share, node)

    async def revoke(self, principal: Principal | None, link_id: str) -> None:
        """End the link: its next request (and every one after) answers 404."""
        async with self.db.transaction() as db:
            share, _ = await self._own_link(db, principal, link_id)
            await repository.revoke(db, share.id, utcnow())

    async def _own_link(self, db: AsyncSession, principal: Principal | None, link_id: str) -> tuple[Share, Node]:
        """A live link the caller may manage (the owner's, or any for an administrator); 404 otherwise."""
        authorize(principal, Action.SHARE_WRITE)
        share = await repository.get(db, link_id)
        if share is None or share.kind != "link" or share.revoked_at is not None:
            raise NotFound("No such link.")
        authorize(principal, Action.SHARE_WRITE, Owned(owner_id=share.owner_id))
        node = await db.get(Node, share.node_id)
        if node is None:
            raise NotFound("No such link.")
        return share, node


def _check_shareable(node: Node) -> None:
    if node.parent_id is None:
        raise Conflict("The root folder cannot be shared; share a folder or file inside it.")


def _check_update(request: LinkUpdateRequest) -> None:
    clashes = [
        (request.password is not None and request.remove_password, "password"),
        (request.expires_at is not None and request.remove_expiry, "expires_at"),
        (request.max_downloads is not None and request.remove_download_limit, "max_downloads"),
    ]
    for clash, field in clashes:
        if clash:
            raise InvalidInput(
                f"Either set {field} or remove it, not both.",
                errors=[FieldError(field=f"body.{field}", message="set and removed at once")],
            )
