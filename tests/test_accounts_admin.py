"""The admin API over HTTP: users (list, search, create, update, disable, delete, password reset),
invitations and the audit log, on SQLite and PostgreSQL. Every admin response is checked for leaked
password hashes and token secrets."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from accounts_helpers import (
    ME,
    NEW_PASSWORD,
    PASSWORD,
    RELAXED_LIMITS,
    assert_problem,
    auth,
    create_pat,
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
from stowage.app import create_app, litestar_of
from stowage.config import Settings

ADMIN = "/api/v1/admin"
USERS = f"{ADMIN}/users"
INVITES = f"{ADMIN}/invites"
AUDIT = f"{ADMIN}/audit"
# Anything that looks like a credential: an Argon2 hash or one of the server's opaque token prefixes.
SECRET_PATTERN = re.compile(r"\$argon2|\b(?:srt|stp|ste|sti)_[A-Za-z0-9_\-]{8,}")


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return make_settings(settings_env, **RELAXED_LIMITS)


def no_secrets(response: httpx.Response, *, allow: str | None = None) -> httpx.Response:
    """Assert an admin response carries no password hash or token secret (except ``allow``, shown once)."""
    text = response.text if allow is None else response.text.replace(allow, "")
    leaked = SECRET_PATTERN.findall(text)
    assert not leaked, f"{response.request.method} {response.request.url.path} leaked {leaked}: {response.text}"
    return response


class AdminClient:
    """Calls the admin API as one administrator, checking every response for leaked secrets."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.headers = auth(token)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, path, headers=self.headers, **kwargs)
        return no_secrets(response)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def create_user(self, email: str, **extra: Any) -> dict[str, Any]:
        response = await self.post(USERS, json={"email": email, "password": PASSWORD, **extra})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = await self.get(path, params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items


async def admin_client(client: httpx.AsyncClient, settings: Settings, email: str = "root@example.com") -> AdminClient:
    pair = await make_admin(client, settings, email)
    return AdminClient(client, pair["access_token"])


# --- listing and search -------------------------------------------------------------------------------


async def test_list_users_paginates(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    for i in range(5):
        await admin.create_user(f"user{i}@example.com")

    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await admin.get(USERS, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [len(p) for p in pages] == [2, 2, 2]
    emails = [u["email"] for p in pages for u in p]
    assert emails == sorted(emails)
    assert len(set(emails)) == 6
    assert set(emails) == {"root@example.com", *(f"user{i}@example.com" for i in range(5))}
    everything = (await admin.get(USERS)).json()
    assert [u["email"] for u in everything["items"]] == emails
    assert everything["next_cursor"] is None

    for params, field in (({"limit": 0}, None), ({"limit": 201}, None), ({"cursor": "a"}, "query.cursor")):
        assert_problem(await admin.get(USERS, params=params), 400, "invalid-input", field=field)


async def test_user_list_rejects_a_mangled_cursor(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)

    response = await admin.get(USERS, params={"cursor": "!!!!"})

    assert_problem(response, 400, "invalid-input", field="query.cursor")


async def test_search_users(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    ids = {
        "percent": (await admin.create_user("per%cent@example.com", display_name="Percent"))["id"],
        "underscore": (await admin.create_user("under_score@example.com", display_name="Under Score"))["id"],
        "agent": (await admin.create_user("agent@example.org", display_name="Agent SMITH"))["id"],
        "plain": (await admin.create_user("plain@example.com", display_name="Plain Jane"))["id"],
    }

    async def search(q: str) -> set[str]:
        response = await admin.get(USERS, params={"q": q})
        assert response.status_code == 200, response.text
        return {u["id"] for u in response.json()["items"]}

    assert await search("EXAMPLE.ORG") == {ids["agent"]}
    assert await search("smith") == {ids["agent"]}
    assert await search("sMiTh") == {ids["agent"]}
    assert await search("jane") == {ids["plain"]}
    assert await search("%") == {ids["percent"]}
    assert await search("r%c") == {ids["percent"]}
    assert await search("_") == {ids["underscore"]}
    assert await search("r_s") == {ids["underscore"]}
    assert await search("p%t") == set()  # '%' is literal, not a wildcard
    assert await search("pl_in") == set()  # '_' is literal, not a wildcard
    assert await search("\\") == set()
    assert await search("nobody") == set()
    assert len(await search("example")) == 5


async def test_search_is_case_insensitive_beyond_ascii(
    client: httpx.AsyncClient, settings: Settings, backend: str, request: pytest.FixtureRequest
) -> None:
    admin = await admin_client(client, settings)
    emile = (await admin.create_user("zola@example.net", display_name="\u00c9mile Zola"))["id"]

    for q in ("\u00c9mile", "\u00e9mile", "\u00c9MILE"):
        response = await admin.get(USERS, params={"q": q})
        assert [u["id"] for u in response.json()["items"]] == [emile], q


# --- creating, reading, updating ----------------------------------------------------------------------


async def test_create_user(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)

    created = await admin.post(
        USERS, json={"email": "New.User@Example.com", "password": PASSWORD, "display_name": "Newbie"}
    )

    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["email"], body["display_name"], body["role"], body["disabled"]) == (
        "new.user@example.com",
        "Newbie",
        "user",
        False,
    )
    fetched = await admin.get(f"{USERS}/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert (await login(client, "new.user@example.com"))["user"]["id"] == body["id"]
    second_admin = await admin.create_user("second@example.com", role="admin")
    assert second_admin["role"] == "admin"

    before = await table_counts(settings)
    duplicate = await admin.post(USERS, json={"email": "NEW.user@example.com", "password": "another fine passphrase"})
    assert_problem(duplicate, 409, "conflict", detail_contains="new.user@example.com")
    for bad, field in (
        ({"email": "weak@example.com", "password": "password"}, "body.password"),
        ({"email": "nope", "password": PASSWORD}, "body.email"),
        ({"email": "role@example.com", "password": PASSWORD, "role": "root"}, "body.role"),
    ):
        assert_problem(await admin.post(USERS, json=bad), 400, "invalid-input", field=field)
    assert await table_counts(settings) == before


async def test_unknown_user_is_not_found(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    unknown = f"{USERS}/{uuid.uuid4()}"

    assert_problem(await admin.get(unknown), 404, "not-found")
    assert_problem(await admin.patch(unknown, json={"display_name": "x"}), 404, "not-found")
    assert_problem(await admin.delete(unknown), 404, "not-found")
    assert_problem(await admin.post(f"{unknown}/password", json={"new_password": NEW_PASSWORD}), 404, "not-found")


async def test_disable_and_enable(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    user = await signup(client, "dora@example.com")
    pat = await create_pat(client, user["access_token"], ["read"])
    path = f"{USERS}/{user['user']['id']}"

    disabled = await admin.patch(path, json={"disabled": True})

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True
    for credential in (user["access_token"], pat["token"]):
        assert_problem(await client.get(ME, headers=auth(credential)), 401, "unauthenticated")
    assert_problem(await refresh(client, user["refresh_token"]), 401, "unauthenticated")
    assert_problem(await try_login(client, "dora@example.com"), 403, "permission-denied", detail_contains="disabled")

    enabled = await admin.patch(path, json={"disabled": False})

    assert enabled.status_code == 200
    assert enabled.json()["disabled"] is False
    # Disabling revoked every credential for good: enabling brings none of them back.
    for credential in (user["access_token"], pat["token"]):
        assert_problem(await client.get(ME, headers=auth(credential)), 401, "unauthenticated")
    assert_problem(await refresh(client, user["refresh_token"]), 401, "unauthenticated")
    fresh = await login(client, "dora@example.com")
    assert await me_status(client, fresh["access_token"]) == 200
    tokens = await client.get(f"{ME}/tokens", headers=auth(fresh["access_token"]))
    assert tokens.json() == []
    new_pat = await create_pat(client, fresh["access_token"], ["read"])
    assert await me_status(client, new_pat["token"]) == 200
    update = (await admin.all_pages(AUDIT, action="admin.user_update", user_id=user["user"]["id"]))[-1]
    assert update["details"] == {"disabled": True, "sessions_revoked": 1, "tokens_revoked": 1}


async def test_quota_display_name_verified_and_role(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    user = await signup(client, "edna@example.com")
    path = f"{USERS}/{user['user']['id']}"
    headers = auth(user["access_token"])

    updated = await admin.patch(path, json={"quota_bytes": 12345, "display_name": "Edna M.", "email_verified": True})

    assert updated.status_code == 200, updated.text
    me = (await client.get(ME, headers=headers)).json()
    assert (me["quota_bytes"], me["display_name"], me["email_verified"]) == (12345, "Edna M.", True)
    assert (await admin.patch(path, json={"quota_bytes": 0})).json()["quota_bytes"] == 0
    before = await user_row(settings, "edna@example.com")
    for bad in ({"quota_bytes": -1}, {"role": "superuser"}, {"disabled": "yes"}, {"password_hash": "x"}):
        assert_problem(await admin.patch(path, json=bad), 400, "invalid-input")
    after = await user_row(settings, "edna@example.com")
    assert before is not None
    assert after is not None
    assert (after.quota_bytes, after.role, after.disabled_at) == (before.quota_bytes, before.role, before.disabled_at)

    assert_problem(await client.get(USERS, headers=headers), 403, "permission-denied")
    promoted = await admin.patch(path, json={"role": "admin"})
    assert promoted.json()["role"] == "admin"
    assert (await client.get(USERS, headers=headers)).status_code == 200  # the role is read on every request
    await admin.patch(path, json={"role": "user"})
    assert_problem(await client.get(USERS, headers=headers), 403, "permission-denied")


async def test_last_admin_is_protected(client: httpx.AsyncClient, settings: Settings) -> None:
    pair = await make_admin(client, settings, "root@example.com")
    admin = AdminClient(client, pair["access_token"])
    path = f"{USERS}/{pair['user']['id']}"
    before = await table_counts(settings)

    for response in (
        await admin.patch(path, json={"role": "user"}),
        await admin.patch(path, json={"disabled": True}),
        await admin.delete(path),
    ):
        assert_problem(response, 409, "conflict", detail_contains="last active administrator")

    row = await user_row(settings, "root@example.com")
    assert row is not None
    assert (row.role, row.disabled_at) == ("admin", None)
    assert await table_counts(settings) == before
    assert await me_status(client, pair["access_token"]) == 200

    deputy = await admin.create_user("deputy@example.com", role="admin")
    demoted = await admin.patch(path, json={"role": "user"})
    assert demoted.status_code == 200
    assert demoted.json()["role"] == "user"
    deputy_client = AdminClient(client, (await login(client, "deputy@example.com"))["access_token"])
    assert_problem(
        await deputy_client.patch(f"{USERS}/{deputy['id']}", json={"disabled": True}),
        409,
        "conflict",
    )


async def test_demoting_a_disabled_admin_is_allowed(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    other = await admin.create_user("former@example.com", role="admin")
    assert (await admin.patch(f"{USERS}/{other['id']}", json={"disabled": True})).status_code == 200

    demoted = await admin.patch(f"{USERS}/{other['id']}", json={"role": "user"})

    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["role"] == "user"


async def test_admin_password_reset(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    first = await signup(client, "fern@example.com")
    second = await login(client, "fern@example.com")
    path = f"{USERS}/{first['user']['id']}/password"
    stored = await user_row(settings, "fern@example.com")

    weak = await admin.post(path, json={"new_password": "password"})
    assert_problem(weak, 400, "invalid-input", detail_contains="too common")
    unchanged = await user_row(settings, "fern@example.com")
    assert stored is not None
    assert unchanged is not None
    assert unchanged.password_hash == stored.password_hash
    assert await me_status(client, first["access_token"]) == 200

    reset = await admin.post(path, json={"new_password": NEW_PASSWORD})

    assert reset.status_code == 204, reset.text
    for pair in (first, second):
        assert await me_status(client, pair["access_token"]) == 401
        assert_problem(await refresh(client, pair["refresh_token"]), 401, "unauthenticated")
    assert_problem(await try_login(client, "fern@example.com", PASSWORD), 401, "unauthenticated")
    await login(client, "fern@example.com", NEW_PASSWORD)


async def test_admin_password_reset_names_the_new_password_field(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    user = await signup(client, "gwen@example.com")

    weak = await admin.post(f"{USERS}/{user['user']['id']}/password", json={"new_password": "password"})

    assert_problem(weak, 400, "invalid-input", field="body.new_password")


async def test_delete_user(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    user = await signup(client, "hope@example.com")
    pat = await create_pat(client, user["access_token"], ["read"])
    path = f"{USERS}/{user['user']['id']}"

    deleted = await admin.delete(path)

    assert deleted.status_code == 204
    assert await me_status(client, user["access_token"]) == 401
    assert await me_status(client, pat["token"]) == 401
    assert_problem(await refresh(client, user["refresh_token"]), 401, "unauthenticated")
    assert_problem(await admin.get(path), 404, "not-found")
    assert_problem(await admin.delete(path), 404, "not-found")
    assert await user_row(settings, "hope@example.com") is None
    assert_problem(await try_login(client, "hope@example.com"), 401, "unauthenticated")


# --- invitations ----------------------------------------------------------------------------------------


async def test_invites(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)

    open_invite = await client.post(INVITES, json={}, headers=admin.headers)
    bound = await client.post(
        INVITES, json={"email": "Guest@Example.com", "expires_in_hours": 2}, headers=admin.headers
    )

    secrets_shown = []
    for response in (open_invite, bound):
        assert response.status_code == 201, response.text
        token = response.json()["token"]
        assert token.startswith("sti_")
        no_secrets(response, allow=token)
        secrets_shown.append(token)
    details = bound.json()["details"]
    assert details["email"] == "guest@example.com"
    lifetime = datetime.fromisoformat(details["expires_at"]) - datetime.fromisoformat(details["created_at"])
    assert lifetime == timedelta(hours=2)
    assert open_invite.json()["details"]["email"] is None
    listed = await admin.get(INVITES)
    assert listed.status_code == 200
    assert {i["id"] for i in listed.json()} == {open_invite.json()["details"]["id"], details["id"]}
    assert all(token not in listed.text for token in secrets_shown)

    before = await table_counts(settings)
    for bad in ({"email": "nope"}, {"expires_in_hours": 0}, {"expires_in_hours": 24 * 91}, {"token": "sti_x"}):
        assert_problem(await admin.post(INVITES, json=bad), 400, "invalid-input")
    assert await table_counts(settings) == before

    revoked = await admin.delete(f"{INVITES}/{details['id']}")
    assert revoked.status_code == 204
    assert [i["id"] for i in (await admin.get(INVITES)).json()] == [open_invite.json()["details"]["id"]]
    assert_problem(await admin.delete(f"{INVITES}/{details['id']}"), 404, "not-found")
    assert_problem(await admin.delete(f"{INVITES}/{uuid.uuid4()}"), 404, "not-found")


# --- audit log ------------------------------------------------------------------------------------------


async def test_audit_log(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    user = await signup(client, "iris@example.com")
    user_id = user["user"]["id"]
    failed = await try_login(client, "iris@example.com", "not my passphrase")
    assert failed.status_code == 401
    unknown = await try_login(client, "ghost@example.com", "not my passphrase")
    assert unknown.status_code == 401
    session = await login(client, "iris@example.com")
    changed = await client.post(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=auth(session["access_token"]),
    )
    assert changed.status_code == 204
    updated = await admin.patch(f"{USERS}/{user_id}", json={"quota_bytes": 777})
    assert updated.status_code == 200

    events = await admin.all_pages(AUDIT, limit=200)

    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == len(ids)
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times == sorted(times, reverse=True)
    about_user = [e for e in events if user_id in (e["actor_id"], e["target_id"])]
    assert [(e["action"], e["outcome"]) for e in about_user] == [
        ("admin.user_update", "ok"),
        ("account.password_change", "ok"),
        ("auth.login", "ok"),
        ("auth.login", "failure"),
        ("account.signup", "ok"),
    ]
    update_event, change_event, login_event, failure_event, _ = about_user
    for event in about_user:
        assert event["request_id"], event
        assert event["ip"] == "testclient"
    assert failure_event["request_id"] == failed.headers["x-request-id"]
    assert failure_event["details"] == {"reason": "wrong_password"}
    assert login_event["details"] == {"rehashed": False}
    assert change_event["details"] == {"sessions_revoked": 1}
    assert update_event["actor_id"] != user_id
    assert update_event["target_id"] == user_id
    assert update_event["details"] == {"quota_bytes": 777}
    unknown_event = next(e for e in events if e["request_id"] == unknown.headers["x-request-id"])
    assert (unknown_event["action"], unknown_event["outcome"], unknown_event["actor_id"]) == (
        "auth.login",
        "failure",
        None,
    )
    assert unknown_event["details"] == {"reason": "unknown_email"}

    only_logins = await admin.all_pages(AUDIT, action="auth.login", user_id=user_id)
    assert [e["id"] for e in only_logins] == [login_event["id"], failure_event["id"]]
    paged = await admin.all_pages(AUDIT, limit=2)
    assert [e["id"] for e in paged] == ids
    assert_problem(await admin.get(AUDIT, params={"cursor": "bm90LWEtbnVtYmVy"}), 400, "invalid-input")


async def test_admin_responses_never_contain_secrets(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    user = await signup(client, "jade@example.com")
    rotated = (await refresh(client, user["refresh_token"])).json()
    pat = await create_pat(client, rotated["access_token"], ["read", "write"])
    invite = (await client.post(INVITES, json={"email": "kim@example.com"}, headers=admin.headers)).json()
    await admin.post(f"{USERS}/{user['user']['id']}/password", json={"new_password": NEW_PASSWORD})
    secrets_known = [user["refresh_token"], rotated["refresh_token"], pat["token"], invite["token"]]
    row = await user_row(settings, "jade@example.com")
    assert row is not None

    bodies = [
        *(await admin.all_pages(USERS)),
        *(await admin.all_pages(AUDIT)),
        (await admin.get(INVITES)).json(),
        (await admin.get(f"{USERS}/{user['user']['id']}")).json(),
        (await admin.get(USERS, params={"q": "jade"})).json(),
    ]
    text = repr(bodies)
    assert "$argon2" not in text
    assert row.password_hash not in text
    for secret in secrets_known:
        assert secret not in text
        assert secret[4:] not in text
    assert not SECRET_PATTERN.search(text)


# --- only administrators --------------------------------------------------------------------------------


def _admin_routes(settings: Settings) -> list[tuple[str, str]]:
    app = litestar_of(create_app(settings))
    routes = []
    for route in app.routes:
        if not route.path.startswith(ADMIN):
            continue
        routes.extend((method, route.path) for method in sorted(getattr(route, "methods", ())) if method != "OPTIONS")
    return routes


async def test_non_admins_are_refused_everywhere(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await admin_client(client, settings)
    user = await signup(client, "lana@example.com")
    writer_pat = (await create_pat(client, user["access_token"], ["read", "write"]))["token"]
    target = await admin.create_user("target@example.com")
    invite = (await client.post(INVITES, json={}, headers=admin.headers)).json()["details"]
    values = {"user_id": target["id"], "invite_id": invite["id"]}
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", USERS): {"email": "sneaky@example.com", "password": PASSWORD},
        ("PATCH", f"{USERS}/{{user_id:str}}"): {"role": "admin"},
        ("POST", f"{USERS}/{{user_id:str}}/password"): {"new_password": NEW_PASSWORD},
        ("POST", INVITES): {},
    }
    routes = _admin_routes(settings)
    assert len(routes) == 12, routes  # users, invites, audit, maintenance, storage
    before = await table_counts(settings)

    for method, template in routes:
        path = re.sub(r"\{(\w+):\w+\}", lambda m: values[m.group(1)], template)
        for credential in (user["access_token"], writer_pat):
            response = await client.request(method, path, json=bodies.get((method, template)), headers=auth(credential))
            assert_problem(response, 403, "permission-denied", detail_contains="administrator")

    assert await table_counts(settings) == before
    assert (await admin.get(f"{USERS}/{target['id']}")).json() == target
