"""Search across what is shared with the caller (``scope=shared`` and ``scope=all``), on SQLite and PostgreSQL.

Alice shares a folder (read) and a file (read-write) with Bob; Carol shares nothing with him. Bob's
search finds his own tree (``own``, the default), the shared nodes and everything below the shared
folder (``shared``), or both as one list (``all``), paginated with one cursor across both sets. Nothing
of Carol's, nothing of Alice's outside the shares, no share links, nothing trashed; revoking, expiring
or trashing a share removes its nodes from the very next search.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from accounts_helpers import assert_problem
from files_helpers import API, Account, mkdir, new_account, node_path, upload
from sharing_helpers import create_link, set_share, share_with
from stowage.config import Settings
from stowage.db.base import utcnow

SEARCH = f"{API}/search"


async def search(client: httpx.AsyncClient, account: Account, **params: Any) -> list[str]:
    """Every page of the search, followed through its cursors; the names in order."""
    names: list[str] = []
    cursor = None
    while True:
        sent = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(SEARCH, params=sent, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        names += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return names


async def _setup(client: httpx.AsyncClient) -> dict[str, Any]:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    carol = await new_account(client, "carol@example.com")
    team = await mkdir(client, alice, alice.root_id, "team report folder")
    deep = await mkdir(client, alice, team["id"], "sub")
    await upload(client, alice, deep["id"], "report deep.txt", b"d")
    await upload(client, alice, team["id"], "report team.txt", b"t")
    single = await upload(client, alice, alice.root_id, "report single.txt", b"s")
    await upload(client, alice, alice.root_id, "report private.txt", b"p")  # not shared
    await upload(client, bob, bob.root_id, "report bob.txt", b"b")
    carols = await upload(client, carol, carol.root_id, "report carol.txt", b"c")
    await create_link(client, carol, carols["id"])  # a link is not a share with Bob
    team_share = await share_with(client, alice, team["id"], bob, "read")
    single_share = await share_with(client, alice, single["id"], bob, "read_write")
    return {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "team": team,
        "deep": deep,
        "team_share": team_share,
        "single_share": single_share,
    }


SHARED = ["team report folder", "report deep.txt", "report single.txt", "report team.txt"]


async def test_the_scopes(client: httpx.AsyncClient) -> None:
    world = await _setup(client)
    bob: Account = world["bob"]
    assert await search(client, bob, q="report") == ["report bob.txt"]
    assert await search(client, bob, q="report", scope="own") == ["report bob.txt"]
    assert await search(client, bob, q="report", scope="shared") == SHARED
    everything = ["team report folder", "report bob.txt", "report deep.txt", "report single.txt", "report team.txt"]
    assert await search(client, bob, q="report", scope="all") == everything
    # Filters apply to both sets alike; the shared subtree's folders count (folders first).
    assert await search(client, bob, scope="all", kind="folder") == ["sub", "team report folder"]
    assert await search(client, bob, q="deep", scope="shared") == ["report deep.txt"]
    # Alice's own search is unchanged, and shares *she* made are not "shared with" her.
    assert await search(client, world["alice"], q="report", scope="shared") == []


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_the_cursor_walks_both_sets_as_one(client: httpx.AsyncClient, limit: int) -> None:
    world = await _setup(client)
    bob: Account = world["bob"]
    for sort, order in [("name", "asc"), ("name", "desc"), ("size", "asc"), ("modified", "desc")]:
        whole = await search(client, bob, q="report", scope="all", sort=sort, order=order, limit=100)
        paged = await search(client, bob, q="report", scope="all", sort=sort, order=order, limit=limit)
        assert paged == whole
        assert len(whole) == 5


async def test_nothing_unshared_ever_appears(client: httpx.AsyncClient) -> None:
    world = await _setup(client)
    carol: Account = world["carol"]
    assert await search(client, carol, q="report", scope="all") == ["report carol.txt"]
    assert await search(client, world["bob"], q="private", scope="all") == []
    assert await search(client, world["bob"], q="carol", scope="all") == []


async def test_revoking_expiring_or_trashing_removes_them_on_the_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    world = await _setup(client)
    alice: Account = world["alice"]
    bob: Account = world["bob"]
    revoked = await client.delete(f"{API}/shares/{world['single_share']['id']}", headers=alice.headers)
    assert revoked.status_code == 204, revoked.text
    assert await search(client, bob, q="report", scope="shared") == [
        "team report folder",
        "report deep.txt",
        "report team.txt",
    ]
    # Something trashed inside the shared folder is gone at once.
    trashed = await client.delete(node_path(world["deep"]["id"]), headers=alice.headers)
    assert trashed.status_code == 200
    assert await search(client, bob, q="report", scope="shared") == ["team report folder", "report team.txt"]
    await set_share(settings, world["team_share"]["id"], expires_at=utcnow() - timedelta(seconds=1))
    assert await search(client, bob, q="report", scope="shared") == []
    assert await search(client, bob, q="report", scope="all") == ["report bob.txt"]


async def test_leaving_a_share_or_trashing_its_node(client: httpx.AsyncClient) -> None:
    world = await _setup(client)
    alice: Account = world["alice"]
    bob: Account = world["bob"]
    left = await client.delete(f"{API}/shared-with-me/{world['team_share']['id']}", headers=bob.headers)
    assert left.status_code == 204, left.text
    assert await search(client, bob, q="report", scope="shared") == ["report single.txt"]
    gone = await client.delete(node_path(world["single_share"]["node_id"]), headers=alice.headers)
    assert gone.status_code == 200, gone.text
    assert await search(client, bob, q="report", scope="shared") == []


async def test_scope_is_checked(client: httpx.AsyncClient) -> None:
    world = await _setup(client)
    bob: Account = world["bob"]
    with_folder = await client.get(
        SEARCH, params={"scope": "all", "folder_id": world["team"]["id"]}, headers=bob.headers
    )
    assert_problem(with_folder, 400, "invalid-input", field="query.scope")
    unknown = await client.get(SEARCH, params={"scope": "everyone"}, headers=bob.headers)
    assert_problem(unknown, 400, "invalid-input")
    assert_problem(await client.get(SEARCH, params={"scope": "shared"}), 401, "unauthenticated")
    # Inside a shared folder, folder_id alone still works (the scope is the folder).
    inside = await client.get(SEARCH, params={"q": "report", "folder_id": world["team"]["id"]}, headers=bob.headers)
    assert inside.status_code == 200
    assert sorted(item["name"] for item in inside.json()["items"]) == ["report deep.txt", "report team.txt"]
