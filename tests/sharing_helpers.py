"""Helpers for the sharing tests: links (create, visitor URLs, unlock), user shares, and share rows."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, update

from accounts_helpers import database
from files_helpers import API, Account, node_path
from stowage.config import Settings
from stowage.db.tables import Share


def visitor(token: str, suffix: str = "") -> str:
    return f"{API}/s/{token}{suffix}"


async def create_link(
    client: httpx.AsyncClient, owner: Account, node_id: str, *, expect: int = 201, **body: Any
) -> dict[str, Any]:
    """A new link (asserting ``expect``); the answer has ``link``, ``token`` and ``path``."""
    response = await client.post(node_path(node_id, "/links"), json=body, headers=owner.headers)
    assert response.status_code == expect, response.text
    created: dict[str, Any] = response.json()
    return created


async def unlock(client: httpx.AsyncClient, token: str, password: str) -> httpx.Response:
    return await client.post(visitor(token, "/unlock"), json={"password": password})


async def share_with(
    client: httpx.AsyncClient,
    owner: Account,
    node_id: str,
    recipient: Account,
    permission: str = "read",
    *,
    expect: int = 201,
    **body: Any,
) -> dict[str, Any]:
    response = await client.post(
        node_path(node_id, "/shares"),
        json={"email": recipient.email, "permission": permission, **body},
        headers=owner.headers,
    )
    assert response.status_code == expect, response.text
    share: dict[str, Any] = response.json()
    return share


async def shared_with_me(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/shared-with-me", headers=account.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def set_share(settings: Settings, share_id: str, **values: Any) -> None:
    """Change a share row directly (an expiry in the past, a download count)."""
    async with database(settings) as db, db.transaction() as session:
        await session.execute(update(Share).where(Share.id == share_id).values(**values))


async def share_rows(settings: Settings) -> list[tuple[Any, ...]]:
    async with database(settings) as db, db.session() as session:
        rows = await session.execute(
            select(Share.id, Share.node_id, Share.kind, Share.permission, Share.download_count, Share.revoked_at)
        )
        return sorted(tuple(row) for row in rows.all())
