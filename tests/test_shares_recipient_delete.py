"""What a read-write recipient's delete does, on SQLite and PostgreSQL.

As in Nextcloud: the item goes to the owner's trash (the owner can restore or purge it; it still counts
against the owner's quota until purged), and the recipient sees nothing of it afterwards — not in their
own trash, not by id, and they can neither restore nor purge it. The change log has the owner's rows
(``trash``, then ``restore``) and none for the recipient.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from accounts_helpers import assert_problem, database
from files_helpers import API, Account, mkdir, names_in, new_account, node_path, upload, used_bytes
from sharing_helpers import share_with
from stowage.config import Settings
from stowage.db.tables import Change


async def trash_of(client: httpx.AsyncClient, account: Account) -> list[str]:
    response = await client.get(f"{API}/trash", headers=account.headers)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


async def changes(settings: Settings, node_id: str) -> list[tuple[str, str]]:
    async with database(settings) as db, db.session() as session:
        rows = (await session.execute(select(Change.user_id, Change.action).where(Change.node_id == node_id))).all()
    return [(row[0], row[1]) for row in rows]


async def _shared(client: httpx.AsyncClient) -> tuple[Account, Account, dict[str, Any], dict[str, Any]]:
    alice = await new_account(client, "alice@example.com")
    bob = await new_account(client, "bob@example.com")
    team = await mkdir(client, alice, alice.root_id, "team")
    file = await upload(client, alice, team["id"], "plan.txt", b"the plan")
    await share_with(client, alice, team["id"], bob, "read_write")
    return alice, bob, team, file


async def test_a_recipients_delete_lands_in_the_owners_trash(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, bob, team, file = await _shared(client)
    deleted = await client.delete(node_path(file["id"]), headers=bob.headers)
    assert deleted.status_code == 200, deleted.text
    assert await names_in(client, alice, team["id"]) == []
    assert await names_in(client, bob, team["id"]) == []
    assert await trash_of(client, alice) == ["plan.txt"]
    assert await trash_of(client, bob) == []
    assert await used_bytes(settings, alice.user_id) == len(b"the plan")  # the trash still counts

    restored = await client.post(f"{API}/trash/{file['id']}/restore", json={}, headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert await names_in(client, bob, team["id"]) == ["plan.txt"]
    assert await trash_of(client, alice) == []
    assert await changes(settings, file["id"]) == [
        (alice.user_id, "create"),
        (alice.user_id, "trash"),
        (alice.user_id, "restore"),
    ]


async def test_the_recipient_cannot_see_restore_or_purge_it(client: httpx.AsyncClient, settings: Settings) -> None:
    alice, bob, _, file = await _shared(client)
    assert (await client.delete(node_path(file["id"]), headers=bob.headers)).status_code == 200
    # Whoever deleted it, the trash is the owner's: the recipient is told it does not exist.
    assert_problem(
        await client.post(f"{API}/trash/{file['id']}/restore", json={}, headers=bob.headers), 404, "not-found"
    )
    assert_problem(await client.delete(f"{API}/trash/{file['id']}", headers=bob.headers), 404, "not-found")
    assert_problem(await client.get(node_path(file["id"]), headers=bob.headers), 404, "not-found")
    emptied = await client.delete(f"{API}/trash", headers=bob.headers)
    assert emptied.status_code == 204
    # Nothing changed: still in alice's trash, and she can purge it.
    assert await trash_of(client, alice) == ["plan.txt"]
    assert await changes(settings, file["id"]) == [(alice.user_id, "create"), (alice.user_id, "trash")]
    purged = await client.delete(f"{API}/trash/{file['id']}", headers=alice.headers)
    assert purged.status_code == 204, purged.text
    assert await used_bytes(settings, alice.user_id) == 0


async def test_the_same_holds_for_a_folder_deleted_inside_the_share(client: httpx.AsyncClient) -> None:
    alice, bob, team, _ = await _shared(client)
    sub = await mkdir(client, bob, team["id"], "drafts")
    inner = await upload(client, bob, sub["id"], "draft.txt", b"draft")
    assert (await client.delete(node_path(sub["id"]), headers=bob.headers)).status_code == 200
    assert await trash_of(client, alice) == ["drafts"]
    assert await trash_of(client, bob) == []
    # The file deleted with its folder is out of the recipient's reach too.
    assert_problem(await client.get(node_path(inner["id"]), headers=bob.headers), 404, "not-found")
    assert_problem(
        await client.post(f"{API}/trash/{sub['id']}/restore", json={}, headers=bob.headers), 404, "not-found"
    )
    restored = await client.post(f"{API}/trash/{sub['id']}/restore", json={}, headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert await names_in(client, bob, sub["id"]) == ["draft.txt"]
