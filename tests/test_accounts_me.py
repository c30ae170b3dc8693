"""A signed-in user's own account over HTTP: profile, password change, sessions, personal access
tokens and account deletion (also by an administrator, with files), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from accounts_helpers import (
    LOGIN,
    ME,
    NEW_PASSWORD,
    PASSWORD,
    RELAXED_LIMITS,
    assert_problem,
    auth,
    create_pat,
    expire_api_key,
    login,
    make_admin,
    me_status,
    refresh,
    signup,
    table_counts,
    try_login,
    user_row,
)
from conftest import make_settings
from files_helpers import (
    ROOT,
    Account,
    collect_garbage,
    fsck_problems,
    mkdir,
    names_in,
    new_account,
    node_path,
    put_raw,
    sha256_hex,
    storage,
    upload,
    used_bytes,
)
from stowage.config import Settings

SESSIONS = f"{ME}/sessions"
TOKENS = f"{ME}/tokens"


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return make_settings(settings_env, **RELAXED_LIMITS)


# --- profile ----------------------------------------------------------------------------------------


async def test_get_and_update_me(client: httpx.AsyncClient, settings: Settings) -> None:
    pair = await signup(client, "alice@example.com")
    headers = auth(pair["access_token"])

    me = await client.get(ME, headers=headers)
    assert me.status_code == 200
    assert me.json() == pair["user"]

    updated = await client.patch(ME, json={"display_name": "  Alice Liddell "}, headers=headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["display_name"] == "Alice Liddell"
    assert {k: v for k, v in updated.json().items() if k != "display_name"} == {
        k: v for k, v in pair["user"].items() if k != "display_name"
    }
    assert (await client.get(ME, headers=headers)).json()["display_name"] == "Alice Liddell"

    blank = await client.patch(ME, json={"display_name": "   "}, headers=headers)
    assert_problem(blank, 400, "invalid-input", field="body.display_name", detail_contains="blank")
    empty = await client.patch(ME, json={"display_name": ""}, headers=headers)
    assert_problem(empty, 400, "invalid-input", field="body.display_name")
    too_long = await client.patch(ME, json={"display_name": "x" * 101}, headers=headers)
    assert_problem(too_long, 400, "invalid-input", field="body.display_name")
    smuggled = await client.patch(ME, json={"display_name": "Root", "role": "admin"}, headers=headers)
    assert_problem(smuggled, 400, "invalid-input", detail_contains="role")

    row = await user_row(settings, "alice@example.com")
    assert row is not None
    assert (row.display_name, row.role) == ("Alice Liddell", "user")
    assert_problem(await client.get(ME), 401, "unauthenticated")


# --- password change ----------------------------------------------------------------------------------


async def test_change_password(client: httpx.AsyncClient, settings: Settings) -> None:
    current = await signup(client, "bella@example.com")
    other = await login(client, "bella@example.com")
    headers = auth(current["access_token"])
    stored = await user_row(settings, "bella@example.com")
    assert stored is not None

    wrong = await client.post(
        f"{ME}/password", json={"current_password": "not my passphrase", "new_password": NEW_PASSWORD}, headers=headers
    )
    assert_problem(wrong, 403, "permission-denied", detail_contains="current password")
    weak = await client.post(
        f"{ME}/password", json={"current_password": PASSWORD, "new_password": "password"}, headers=headers
    )
    assert_problem(weak, 400, "invalid-input", detail_contains="too common")
    after_failures = await user_row(settings, "bella@example.com")
    assert after_failures is not None
    assert after_failures.password_hash == stored.password_hash
    assert await me_status(client, other["access_token"]) == 200

    ok = await client.post(
        f"{ME}/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=headers
    )

    assert ok.status_code == 204, ok.text
    assert_problem(await try_login(client, "bella@example.com", PASSWORD), 401, "unauthenticated")
    await login(client, "bella@example.com", NEW_PASSWORD)
    # Every other session ends; the one that changed the password goes on.
    assert await me_status(client, other["access_token"]) == 401
    assert_problem(await refresh(client, other["refresh_token"]), 401, "unauthenticated")
    assert await me_status(client, current["access_token"]) == 200
    assert (await refresh(client, current["refresh_token"])).status_code == 200


async def test_change_password_names_the_new_password_field(client: httpx.AsyncClient) -> None:
    pair = await signup(client, "cara@example.com")

    weak = await client.post(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": "password"},
        headers=auth(pair["access_token"]),
    )

    assert_problem(weak, 400, "invalid-input", field="body.new_password")


# --- sessions ---------------------------------------------------------------------------------------------


async def test_sessions_list_and_revoke(client: httpx.AsyncClient) -> None:
    laptop = await signup(client, "dina@example.com", device_name="Laptop")
    phone = await login(client, "dina@example.com", headers={"User-Agent": "Firefox/123.0"})
    stranger = await signup(client, "erik@example.com")

    listed = await client.get(SESSIONS, headers=auth(laptop["access_token"]))

    assert listed.status_code == 200
    sessions = {s["id"]: s for s in listed.json()}
    assert set(sessions) == {laptop["session_id"], phone["session_id"]}
    assert sessions[laptop["session_id"]]["current"] is True
    assert sessions[phone["session_id"]]["current"] is False
    assert sessions[laptop["session_id"]]["device"] == "Laptop"
    assert sessions[phone["session_id"]]["device"] == "Firefox/123.0"
    assert sessions[phone["session_id"]]["ip"] == "testclient"
    from_phone = await client.get(SESSIONS, headers=auth(phone["access_token"]))
    assert {s["id"]: s["current"] for s in from_phone.json()} == {
        laptop["session_id"]: False,
        phone["session_id"]: True,
    }

    # Someone else's session id is "not found", never "forbidden", and stays alive.
    foreign = await client.delete(f"{SESSIONS}/{stranger['session_id']}", headers=auth(laptop["access_token"]))
    assert_problem(foreign, 404, "not-found")
    assert await me_status(client, stranger["access_token"]) == 200
    unknown = await client.delete(f"{SESSIONS}/{uuid.uuid4()}", headers=auth(laptop["access_token"]))
    assert_problem(unknown, 404, "not-found")

    revoked = await client.delete(f"{SESSIONS}/{phone['session_id']}", headers=auth(laptop["access_token"]))

    assert revoked.status_code == 204
    assert await me_status(client, phone["access_token"]) == 401
    assert_problem(await refresh(client, phone["refresh_token"]), 401, "unauthenticated")
    assert await me_status(client, laptop["access_token"]) == 200
    remaining = await client.get(SESSIONS, headers=auth(laptop["access_token"]))
    assert [s["id"] for s in remaining.json()] == [laptop["session_id"]]
    again = await client.delete(f"{SESSIONS}/{phone['session_id']}", headers=auth(laptop["access_token"]))
    assert_problem(again, 404, "not-found")


# --- personal access tokens -------------------------------------------------------------------------------


async def test_personal_access_tokens(client: httpx.AsyncClient, settings: Settings) -> None:
    pair = await signup(client, "fay@example.com")
    session = auth(pair["access_token"])

    created = await client.post(TOKENS, json={"name": "  backup script ", "scopes": ["read"]}, headers=session)

    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["token"]
    assert secret.startswith("stp_")
    assert len(secret) > 40
    details = body["details"]
    assert (details["name"], details["scopes"], details["expires_at"]) == ("backup script", ["read"], None)
    assert details["prefix"] == secret[:12]
    listed = await client.get(TOKENS, headers=session)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == [details["id"]]
    assert secret not in listed.text
    assert secret[12:] not in listed.text

    # A read-scoped token reads.
    me = await client.get(ME, headers=auth(secret))
    assert me.status_code == 200
    assert me.json()["email"] == "fay@example.com"
    assert (await client.get(TOKENS, headers=auth(secret))).status_code == 200
    assert (await client.get(SESSIONS, headers=auth(secret))).status_code == 200
    # …and cannot write.
    read_only = await client.patch(ME, json={"display_name": "Hacker"}, headers=auth(secret))
    assert_problem(read_only, 403, "permission-denied", detail_contains="'write' scope")
    # Even a write-scoped token cannot manage the account or credentials: that needs a session.
    writer = (await create_pat(client, pair["access_token"], ["read", "write"], name="writer"))["token"]
    for method, path, json in (
        ("PATCH", ME, {"display_name": "Hacker"}),
        ("POST", TOKENS, {"name": "minted", "scopes": ["read"]}),
        ("POST", f"{ME}/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        ("DELETE", ME, {"password": PASSWORD}),
        ("DELETE", f"{TOKENS}/{details['id']}", None),
        ("POST", "/api/v1/auth/logout-all", None),
    ):
        response = await client.request(method, path, json=json, headers=auth(writer))
        assert_problem(response, 403, "permission-denied", detail_contains="session")
    final = await client.get(ME, headers=session)
    assert final.json()["display_name"] == "fay"
    assert len((await client.get(TOKENS, headers=session)).json()) == 2
    await login(client, "fay@example.com", PASSWORD)

    # Validation.
    for bad, field in (
        ({"name": "x", "scopes": []}, "body.scopes"),
        ({"name": "x", "scopes": ["root"]}, "body.scopes[0]"),
        ({"name": "   ", "scopes": ["read"]}, "body.name"),
        ({"name": "x", "scopes": ["read"], "expires_in_days": 0}, "body.expires_in_days"),
    ):
        assert_problem(await client.post(TOKENS, json=bad, headers=session), 400, "invalid-input", field=field)
    assert len((await client.get(TOKENS, headers=session)).json()) == 2


async def test_expired_personal_token(client: httpx.AsyncClient, settings: Settings) -> None:
    pair = await signup(client, "gina@example.com")
    created = await create_pat(client, pair["access_token"], ["read"], expires_in_days=1)
    expires_at = datetime.fromisoformat(created["details"]["expires_at"])
    assert timedelta(hours=23) < expires_at - datetime.now(UTC) <= timedelta(days=1)
    assert await me_status(client, created["token"]) == 200

    await expire_api_key(settings, created["details"]["id"], datetime.now(UTC) - timedelta(seconds=1))

    response = await client.get(ME, headers=auth(created["token"]))
    assert_problem(response, 401, "unauthenticated", detail_contains="expired")


async def test_revoked_personal_token(client: httpx.AsyncClient) -> None:
    pair = await signup(client, "hana@example.com")
    stranger = await signup(client, "ivan@example.com")
    kept = await create_pat(client, pair["access_token"], ["read"], name="kept")
    doomed = await create_pat(client, pair["access_token"], ["read"], name="doomed")
    theirs = await create_pat(client, stranger["access_token"], ["read"])
    assert await me_status(client, doomed["token"]) == 200

    foreign = await client.delete(f"{TOKENS}/{theirs['details']['id']}", headers=auth(pair["access_token"]))
    assert_problem(foreign, 404, "not-found")
    assert await me_status(client, theirs["token"]) == 200

    revoked = await client.delete(f"{TOKENS}/{doomed['details']['id']}", headers=auth(pair["access_token"]))

    assert revoked.status_code == 204
    assert_problem(
        await client.get(ME, headers=auth(doomed["token"])), 401, "unauthenticated", detail_contains="revoked"
    )
    assert await me_status(client, kept["token"]) == 200
    listed = await client.get(TOKENS, headers=auth(pair["access_token"]))
    assert [t["id"] for t in listed.json()] == [kept["details"]["id"]]
    again = await client.delete(f"{TOKENS}/{doomed['details']['id']}", headers=auth(pair["access_token"]))
    assert_problem(again, 404, "not-found")
    unknown = await client.delete(f"{TOKENS}/{uuid.uuid4()}", headers=auth(pair["access_token"]))
    assert_problem(unknown, 404, "not-found")


async def test_only_admins_create_admin_tokens(client: httpx.AsyncClient, settings: Settings) -> None:
    user = await signup(client, "jack@example.com")
    admin = await make_admin(client, settings, "root@example.com")
    before = await table_counts(settings)

    refused = await client.post(
        TOKENS, json={"name": "sneaky", "scopes": ["read", "admin"]}, headers=auth(user["access_token"])
    )

    assert_problem(refused, 400, "invalid-input", field="body.scopes", detail_contains="administrator")
    assert await table_counts(settings) == before
    admin_token = await create_pat(client, admin["access_token"], ["read", "admin"])
    assert admin_token["details"]["scopes"] == ["admin", "read"]
    assert (await client.get("/api/v1/admin/users", headers=auth(admin_token["token"]))).status_code == 200
    # Without the admin scope, an administrator's token is an ordinary one.
    plain = await create_pat(client, admin["access_token"], ["read", "write"])
    assert_problem(await client.get("/api/v1/admin/users", headers=auth(plain["token"])), 403, "permission-denied")


async def test_admin_token_loses_admin_power_when_role_is_removed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    first = await make_admin(client, settings, "root@example.com")
    second = await make_admin(client, settings, "deputy@example.com")
    token = (await create_pat(client, second["access_token"], ["read", "admin"]))["token"]
    assert (await client.get("/api/v1/admin/users", headers=auth(token))).status_code == 200

    demoted = await client.patch(
        f"/api/v1/admin/users/{second['user']['id']}", json={"role": "user"}, headers=auth(first["access_token"])
    )

    assert demoted.status_code == 200
    assert_problem(await client.get("/api/v1/admin/users", headers=auth(token)), 403, "permission-denied")
    assert await me_status(client, token) == 200


# --- account deletion ---------------------------------------------------------------------------------


async def test_delete_account(client: httpx.AsyncClient, settings: Settings) -> None:
    pair = await signup(client, "kate@example.com")
    other = await login(client, "kate@example.com")
    pat = await create_pat(client, pair["access_token"], ["read"])
    headers = auth(pair["access_token"])
    before = await table_counts(settings)

    wrong = await client.request("DELETE", ME, json={"password": "not my passphrase"}, headers=headers)

    assert_problem(wrong, 403, "permission-denied", detail_contains="password")
    assert await table_counts(settings) == before
    assert await me_status(client, pair["access_token"]) == 200
    missing = await client.request("DELETE", ME, headers=headers)
    assert_problem(missing, 400, "invalid-input")

    deleted = await client.request("DELETE", ME, json={"password": PASSWORD}, headers=headers)

    assert deleted.status_code == 204, deleted.text
    assert await user_row(settings, "kate@example.com") is None
    for token in (pair["access_token"], other["access_token"], pat["token"]):
        assert await me_status(client, token) == 401
    assert_problem(await refresh(client, other["refresh_token"]), 401, "unauthenticated")
    assert_problem(await try_login(client, "kate@example.com"), 401, "unauthenticated")
    after = await table_counts(settings)
    assert after["users"] == before["users"] - 1
    assert after["sessions"] == before["sessions"] - 2
    assert after["api_keys"] == before["api_keys"] - 1
    again = await signup(client, "kate@example.com")
    assert again["user"]["id"] != pair["user"]["id"]


@pytest.mark.parametrize("by", ["self", "admin"])
async def test_deleting_an_account_with_files_releases_its_content(
    client: httpx.AsyncClient, settings: Settings, by: str
) -> None:
    """``DELETE /me`` and ``DELETE /admin/users/{id}`` of an account with files (old versions, trash, and
    content that deduplicates with another user's file): every credential dies at once, its tree and
    usage go, the shared content stays downloadable, gc removes the rest and fsck finds nothing."""
    admin = await make_admin(client, settings, "root@example.com") if by == "admin" else None
    pair = await signup(client, "kate@example.com")
    other = await login(client, "kate@example.com")
    pat = await create_pat(client, pair["access_token"], ["read"])
    root = await client.get(ROOT, headers=auth(pair["access_token"]))
    kate = Account("kate@example.com", pair["user"]["id"], pair["access_token"], root.json()["id"])
    bob = await new_account(client, "bob@example.com")
    draft_1, draft_2 = b"kate's draft, first version", b"kate's draft, second version"
    note, shared = b"kate's deleted note", b"the same holiday photo, kept by kate and by bob"
    docs = await mkdir(client, kate, kate.root_id, "docs")
    draft = await upload(client, kate, docs["id"], "draft.txt", draft_1)
    assert (await put_raw(client, kate, docs["id"], "draft.txt", draft_2, on_conflict="replace")).status_code == 200
    photo = await upload(client, kate, kate.root_id, "photo.jpg", shared)
    trashed = await upload(client, kate, kate.root_id, "note.txt", note)
    assert (await client.delete(node_path(trashed["id"]), headers=kate.headers)).status_code == 200
    bobs = await upload(client, bob, bob.root_id, "same.jpg", shared)
    kates_nodes = {kate.root_id, docs["id"], draft["id"], photo["id"], trashed["id"]}
    assert {b[0]: b[2] for b in (await storage(settings)).blobs}[sha256_hex(shared)] == 2

    if admin is None:
        deleted = await client.request("DELETE", ME, json={"password": PASSWORD}, headers=kate.headers)
    else:
        deleted = await client.delete(f"/api/v1/admin/users/{kate.user_id}", headers=auth(admin["access_token"]))

    assert deleted.status_code == 204, deleted.text
    for token in (pair["access_token"], other["access_token"], pat["token"]):
        assert_problem(await client.get(ME, headers=auth(token)), 401, "unauthenticated")
        assert_problem(
            await client.get(node_path(photo["id"], "/content"), headers=auth(token)), 401, "unauthenticated"
        )
    for refresh_token in (pair["refresh_token"], other["refresh_token"]):
        assert_problem(await refresh(client, refresh_token), 401, "unauthenticated")
    state = await storage(settings)
    assert kates_nodes.isdisjoint(n[0] for n in state.nodes)
    assert kates_nodes.isdisjoint(v[1] for v in state.versions)
    assert kate.user_id not in state.usage
    assert state.usage[bob.user_id] == len(shared)
    assert state.blobs == [(sha256_hex(shared), len(shared), 1)]
    assert sha256_hex(draft_1) in state.blob_files  # blob files are the garbage collector's to remove
    assert (await client.get(node_path(bobs["id"], "/content"), headers=bob.headers)).content == shared

    await collect_garbage(settings)

    assert (await storage(settings)).blob_files == {sha256_hex(shared)}
    assert await fsck_problems(settings) == []
    assert (await client.get(node_path(bobs["id"], "/content"), headers=bob.headers)).content == shared
    again = await new_account(client, "kate@example.com")
    assert again.user_id != kate.user_id
    assert await names_in(client, again, again.root_id) == []
    assert await used_bytes(settings, again.user_id) == 0


async def test_last_admin_cannot_delete_themselves(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await make_admin(client, settings, "root@example.com")
    before = await table_counts(settings)

    refused = await client.request("DELETE", ME, json={"password": PASSWORD}, headers=auth(admin["access_token"]))

    assert_problem(refused, 409, "conflict", detail_contains="last administrator")
    assert await table_counts(settings) == before
    assert await me_status(client, admin["access_token"]) == 200
    await make_admin(client, settings, "deputy@example.com")
    deleted = await client.request("DELETE", ME, json={"password": PASSWORD}, headers=auth(admin["access_token"]))
    assert deleted.status_code == 204
    assert await user_row(settings, "root@example.com") is None


async def test_login_endpoint_unaffected_by_bearer(client: httpx.AsyncClient) -> None:
    """Public endpoints ignore (and do not reject) a stale Authorization header."""
    pair = await signup(client, "lara@example.com")
    await client.post("/api/v1/auth/logout", headers=auth(pair["access_token"]))

    response = await client.post(
        LOGIN, json={"email": "lara@example.com", "password": PASSWORD}, headers=auth(pair["access_token"])
    )

    assert response.status_code == 200, response.text
    fresh = response.json()
    assert fresh["token_type"] == "Bearer"
    assert fresh["user"] == pair["user"]
    assert fresh["session_id"] != pair["session_id"]
    # The pair is usable: the access token reaches /me, the refresh token rotates into a working pair.
    me = await client.get(ME, headers=auth(fresh["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "lara@example.com"
    rotated = await refresh(client, fresh["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    assert await me_status(client, rotated.json()["access_token"]) == 200
    assert await me_status(client, pair["access_token"]) == 401  # the stale token stays logged out
