"""Who and what an fsck problem hurts: the owner (email) and path of each damaged file.

``fsck`` reports problems by their subject (a blob hash, a version, a node or a user id), which is
what it checks; an operator needs to know whose files are damaged and where they are, to tell the
user or restore the file from a backup. This module looks that up after the check, one short read
per problem, so the check itself stays a consistency pass.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stowage.db.engine import Database
from stowage.db.tables import Node, User, Version
from stowage.maintenance.fsck_report import (
    CORRUPT_BLOB,
    DANGLING_VERSION,
    DUPLICATE_ROOT,
    MISSING_BLOB,
    NODE_VERSION_MISMATCH,
    VERSION_SIZE_MISMATCH,
    WRONG_USAGE,
    Problem,
)

MAX_FILES_PER_PROBLEM = 50  # a blob shared by thousands of files: the first ones make the point
_MAX_DEPTH = 1000  # a cycle in a damaged tree must not loop forever


class AffectedFile(msgspec.Struct, frozen=True):
    """A file a problem damages: its owner's email, its path from the owner's root, its id."""

    owner: str
    path: str
    node_id: str
    trashed: bool


class LocatedProblem(msgspec.Struct, frozen=True):
    """A problem with the files it damages (``files``) or the account it is about (``owner``)."""

    kind: str
    subject: str
    detail: str
    repairable: bool
    repaired: bool
    owner: str | None = None
    files: list[AffectedFile] = msgspec.field(default_factory=list)


async def locate(database: Database, problems: list[Problem], repaired: list[Problem]) -> list[LocatedProblem]:
    """Every problem with the owner and paths it concerns (none for blobs no file references)."""
    located: list[LocatedProblem] = []
    for problem in problems:
        async with database.session(offload=True) as db:
            owner, files = await _affected(db, problem)
        located.append(
            LocatedProblem(
                kind=problem.kind,
                subject=problem.subject,
                detail=problem.detail,
                repairable=problem.repairable,
                repaired=problem in repaired,
                owner=owner,
                files=files,
            )
        )
    return located


async def _affected(db: AsyncSession, problem: Problem) -> tuple[str | None, list[AffectedFile]]:
    if problem.kind in (MISSING_BLOB, CORRUPT_BLOB):
        node_ids = (
            await db.scalars(
                select(Version.node_id)
                .where(Version.sha256 == problem.subject)
                .distinct()
                .order_by(Version.node_id)
                .limit(MAX_FILES_PER_PROBLEM)
            )
        ).all()
    elif problem.kind in (DANGLING_VERSION, VERSION_SIZE_MISMATCH):
        node_ids = (await db.scalars(select(Version.node_id).where(Version.id == problem.subject))).all()
    elif problem.kind == NODE_VERSION_MISMATCH:
        node_ids = [problem.subject]
    elif problem.kind in (WRONG_USAGE, DUPLICATE_ROOT):
        return await db.scalar(select(User.email).where(User.id == problem.subject)), []
    else:
        return None, []  # about blobs or rows no file references
    files = [found for node_id in node_ids if (found := await _describe(db, node_id)) is not None]
    owners = {f.owner for f in files}
    return (owners.pop() if len(owners) == 1 else None), files


async def _describe(db: AsyncSession, node_id: str) -> AffectedFile | None:
    """The node's owner email and its path, walking up the parents (files are few per report)."""
    row = (
        await db.execute(
            select(Node.name, Node.parent_id, Node.trashed_at, User.email)
            .join(User, User.id == Node.owner_id)
            .where(Node.id == node_id)
        )
    ).first()
    if row is None:
        return None
    name, parent_id, trashed_at, email = row
    parts = [name]
    seen = {node_id}
    while parent_id is not None and parent_id not in seen and len(parts) < _MAX_DEPTH:
        seen.add(parent_id)
        parent = (await db.execute(select(Node.name, Node.parent_id).where(Node.id == parent_id))).first()
        if parent is None:
            break
        parts.append(parent[0])
        parent_id = parent[1]
    path = "/".join(reversed([p for p in parts if p]))
    return AffectedFile(owner=email, path=f"/{path}", node_id=node_id, trashed=trashed_at is not None)
