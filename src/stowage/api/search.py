"""REST endpoints for finding files: search, starred items and recent files."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from litestar import Controller, get
from litestar.params import QueryParameter

from stowage.api.deps import BEARER, Cursor, Limit, Req
from stowage.api.files import Order, Sort
from stowage.api.openapi import operation
from stowage.errors import FieldError, InvalidInput
from stowage.files.schemas import MAX_QUERY_LENGTH, Category, NodePage, SearchQuery, SearchScope

# A date, or a date and time with an optional offset: what the parameters accept (and publish).
ISO_MOMENT = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
_ISO_MOMENT = re.compile(ISO_MOMENT)


def _moment(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 date or date-time; without an offset it is taken as UTC. Anything else is a 400
    (not a number of seconds, which a lenient reading would take)."""
    if value is None:
        return None
    moment = None
    if _ISO_MOMENT.match(value) is not None:
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment is None:
        name = field.rsplit(".", maxsplit=1)[-1]
        raise InvalidInput(
            f"{name} must be an ISO 8601 date or date-time, such as 2026-05-01T12:00:00Z.",
            errors=[FieldError(field=field, message="expected an ISO 8601 date or date-time")],
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class SearchController(Controller):
    path = "/api/v1"
    tags = ["search"]
    security = BEARER

    @get(
        "/search",
        **operation("search", conflicts=True, errors=(404,)),
        summary="Find files and folders by name and filters, everywhere or below a folder",
        description="`q` matches anywhere in the name, ignoring case (Unicode case folding). All given "
        "criteria must hold. Sorted and keyset-paginated like folder listings (folders first). `scope` adds "
        "what other users share with you (a share's node and everything below it); a revoked, expired or "
        "trashed share stops matching on the next request.",
    )
    async def search(
        self,
        request: Req,
        q: Annotated[str | None, QueryParameter(max_length=MAX_QUERY_LENGTH, description="Part of the name")] = None,
        folder_id: Annotated[str | None, QueryParameter(max_length=64, description="Only below this folder")] = None,
        kind: Annotated[Literal["file", "folder"] | None, QueryParameter()] = None,
        media_type: Annotated[
            str | None, QueryParameter(max_length=255, description="Exact type, or a prefix ending in / (image/)")
        ] = None,
        category: Annotated[Category | None, QueryParameter(description="A family of media types")] = None,
        min_size: Annotated[int | None, QueryParameter(ge=0, description="Bytes, inclusive")] = None,
        max_size: Annotated[int | None, QueryParameter(ge=0, description="Bytes, inclusive")] = None,
        modified_after: Annotated[
            str | None, QueryParameter(pattern=ISO_MOMENT, description="Inclusive, ISO 8601 (no offset = UTC)")
        ] = None,
        modified_before: Annotated[
            str | None, QueryParameter(pattern=ISO_MOMENT, description="Exclusive, ISO 8601 (no offset = UTC)")
        ] = None,
        starred: Annotated[bool | None, QueryParameter()] = None,
        search_scope: Annotated[  # "scope" is a name Litestar reserves for the ASGI scope
            SearchScope | None,
            QueryParameter(
                name="scope",
                description="Without folder_id: own (default) searches your tree; shared, what other users share "
                "with you (user shares, not links); all, both as one sorted list. Not with folder_id (400).",
            ),
        ] = None,
        sort: Sort = "name",
        order: Order = "asc",
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> NodePage:
        query = SearchQuery(
            text=q,
            folder_id=folder_id,
            kind=kind,
            media_type=media_type,
            category=category,
            min_size=min_size,
            max_size=max_size,
            modified_after=_moment(modified_after, "query.modified_after"),
            modified_before=_moment(modified_before, "query.modified_before"),
            starred=starred,
            sort=sort,
            descending=order == "desc",
            scope=search_scope,
        )
        return await request.files.search.search(request.principal, query, cursor=cursor, limit=limit)

    @get(
        "/starred", **operation("listStarred"), summary="Starred files and folders (sorted and paginated like listings)"
    )
    async def starred(
        self,
        request: Req,
        sort: Sort = "name",
        order: Order = "asc",
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> NodePage:
        query = SearchQuery(starred=True, sort=sort, descending=order == "desc")
        return await request.files.search.search(request.principal, query, cursor=cursor, limit=limit)

    @get("/recent", **operation("listRecent"), summary="Recently uploaded or changed files, newest first")
    async def recent(self, request: Req, cursor: Cursor = None, limit: Limit = 50) -> NodePage:
        return await request.files.search.recent(request.principal, cursor=cursor, limit=limit)


__all__ = ["SearchController"]
