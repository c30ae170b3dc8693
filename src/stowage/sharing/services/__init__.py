"""The sharing services an application instance shares: ``links`` (the owner's share links),
``users`` (shares with other users, "shared with me") and ``visitors`` (a link's visitor)."""

from __future__ import annotations

from dataclasses import dataclass

from stowage.sharing.services._common import (
    GRANT_TTL_SECONDS,
    LINK_TOKEN_PREFIX,
    SharingDeps,
    grant_is_valid,
    link_principal,
    sign_grant,
)
from stowage.sharing.services._links import VISITOR_PREFIX, LinkService
from stowage.sharing.services._users import UserShareService
from stowage.sharing.services._visitors import Visit, VisitorService, counts_as_download


@dataclass(slots=True)
class SharingServices:
    deps: SharingDeps
    links: LinkService
    users: UserShareService
    visitors: VisitorService

    @classmethod
    def build(cls, deps: SharingDeps) -> SharingServices:
        return cls(deps=deps, links=LinkService(deps), users=UserShareService(deps), visitors=VisitorService(deps))


__all__ = [
    "GRANT_TTL_SECONDS",
    "LINK_TOKEN_PREFIX",
    "VISITOR_PREFIX",
    "LinkService",
    "SharingDeps",
    "SharingServices",
    "UserShareService",
    "Visit",
    "VisitorService",
    "counts_as_download",
    "grant_is_valid",
    "link_principal",
    "sign_grant",
]
