"""Sharing with other users: the owner shares, lists and revokes; the recipient lists and leaves.

A share grants read or read-write on a node's subtree. The recipient then uses the shared nodes
through the ordinary file endpoints — the file services load the caller's grants with every node they
reach and ``stowage.policy.authorize`` decides — so there is no second code path for shared content.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from stowage.accounts.services import normalise_email
from stowage.db.base import utcnow
from stowage.db.tables import Node, Share
from stowage.errors import Conflict, FieldError, InvalidInput, NotFound
from stowage.files.services import node_out
from stowage.policy import Action, Owned, Principal, authorize
from stowage.sharing import repository
from stowage.sharing.schemas import (
    SharedWithMeItem,
    SharedWithMeList,
    UserShareList,
    UserShareOut,
    UserShareRequest,
)
from stowage.sharing.services._common import SharingDeps, in_future, person_out, user_share_out


class UserShareService:
    def __init__(self, deps: SharingDeps) -> None:
        self.deps = deps
        self.db = deps.database
        self.tree = deps.files.tree

    async def share(
        self, principal: Principal | None, node_id: str, request: UserShareRequest
    ) -> tuple[UserShareOut, bool]:
        """Share the caller's node with the account behind ``request.email``. Returns (share, created):
        sharing again with the same person changes the permission and expiry of the existing share."""
        email = normalise_email(request.email)
        now = utcnow()
        expires_at = in_future(request.expires_at, now, "body.expires_at")
        async with self.db.transaction() as db:
            node = await self.tree.load(db, principal, node_id, Action.SHARE_WRITE)
            if node.parent_id is None:
                raise Conflict("The root folder cannot be shared; share a folder or file inside it.")
            grantee = await repository.user_by_email(db, email)
            if grantee is None or grantee.disabled_at is not None:
                raise NotFound(f"No active account has the email {email}.")
            if grantee.id == node.owner_id:
                raise InvalidInput(
                    "This is already the owner's own item.",
                    errors=[FieldError(field="body.email", message="the owner")],
                )
            share = await repository.live_user_share(db, node.id, grantee.id)
            created = share is None
            if share is None:
                share = Share(
                    id=str(uuid.uuid4()),
                    node_id=node.id,
                    owner_id=node.owner_id,
                    kind="user",
                    grantee_user_id=grantee.id,
                    token_hash=None,
                    permission=request.permission,
                    password_hash=None,
                    expires_at=expires_at,
                    max_downloads=None,
                    download_count=0,
                    created_at=now,
                    updated_at=now,
                )
                await repository.add(db, share)
            else:
                share.permission = request.permission
                share.expires_at = expires_at
                share.updated_at = now
                await db.flush()
            return user_share_out(share, node, grantee), created

    async def list_for_node(self, principal: Principal | None, node_id: str) -> UserShareList:
        async with self.db.session() as db:
            node = await self.tree.load(db, principal, node_id, Action.SHARE_READ)
            shares = await repository.live_of_node(db, node.id, "user")
            return await self._listed(db, [(share, node) for share in shares])

    async def list_mine(self, principal: Principal | None) -> UserShareList:
        """Every live share the caller made with other users."""
        caller = authorize(principal, Action.SHARE_READ)
        async with self.db.session() as db:
            shares = await repository.live_of_owner(db, caller.user_id, "user")
            return await self._listed(db, await repository.with_nodes(db, shares))

    async def _listed(self, db: AsyncSession, pairs: list[tuple[Share, Node]]) -> UserShareList:
        users = await repository.users_by_id(db, [s.grantee_user_id for s, _ in pairs if s.grantee_user_id])
        items = []
        for share, node in pairs:
            grantee = users.get(share.grantee_user_id or "")
            if grantee is not None:  # a user share always has its grantee (the row goes with the account)
                items.append(user_share_out(share, node, grantee))
        return UserShareList(items=items)

    async def revoke(self, principal: Principal | None, share_id: str) -> None:
        """The owner ends a share: the recipient's next request no longer reaches the node."""
        async with self.db.transaction() as db:
            authorize(principal, Action.SHARE_WRITE)
            share = await repository.get(db, share_id)
            if share is None or share.kind != "user" or share.revoked_at is not None:
                raise NotFound("No such share.")
            authorize(principal, Action.SHARE_WRITE, Owned(owner_id=share.owner_id))
            await repository.revoke(db, share.id, utcnow())

    async def shared_with_me(self, principal: Principal | None) -> SharedWithMeList:
        """The live shares others made with the caller (expired ones and trashed nodes left out)."""
        caller = authorize(principal, Action.SHARE_READ)
        async with self.db.session() as db:
            rows = await repository.shared_with(db, caller.user_id, utcnow())
        items = [
            SharedWithMeItem(
                share_id=share.id,
                node=node_out(node),
                permission="read_write" if share.permission == "read_write" else "read",
                owner=person_out(owner),
                expires_at=share.expires_at,
                shared_at=share.created_at,
            )
            for share, node, owner in rows
        ]
        await self.tree.with_images([(item.node, node.sha256) for item, (_, node, _) in zip(items, rows, strict=True)])
        return SharedWithMeList(items=items)

    async def leave(self, principal: Principal | None, share_id: str) -> None:
        """The recipient gives a share up (the owner's node is untouched)."""
        async with self.db.transaction() as db:
            authorize(principal, Action.SHARE_WRITE)
            share = await repository.get(db, share_id)
            if share is None or share.kind != "user" or share.revoked_at is not None or share.grantee_user_id is None:
                raise NotFound("No such share.")
            # The membership is the recipient's own: the policy treats the grantee as its owner.
            authorize(principal, Action.SHARE_WRITE, Owned(owner_id=share.grantee_user_id))
            await repository.revoke(db, share.id, utcnow())
