"""The authorisation matrix: every route of the application, its access rule, and every kind of caller.

``MATRIX`` names the rule of every (method, path) the application serves. The route list comes from
the application itself, so a new endpoint without a matrix entry fails ``test_matrix_covers_every_route``
— decide its rule and add it here. ``test_every_route_enforces_its_rule`` then calls each protected
route as each kind of caller and checks the answer's class:

- no, forged, expired, revoked or disabled credentials → 401;
- another user naming the owner's resource → 404 (never 403: ids do not reveal what exists);
- a token lacking what the route needs (read-only, or any PAT where a session is required) → 403;
- a non-admin on an admin route → 403;
- everyone else → the route's success status, with nothing changed by the refused calls before.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Flag, auto
from itertools import count
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute
from sqlalchemy import select

from accounts_helpers import (
    LOGOUT,
    NEW_PASSWORD,
    PASSWORD,
    RELAXED_LIMITS,
    MailSink,
    access_secret,
    auth,
    create_pat,
    database,
    login,
    make_admin,
    open_client,
    signup,
    smtp_server,
    token_from_mail,
)
from conftest import make_settings
from stowage.accounts import tokens
from stowage.app import create_app
from stowage.config import Settings
from stowage.db.engine import Database
from stowage.db.tables import ApiKey, EmailToken, Invite, RefreshToken, Session, User


class Rule(Flag):
    PUBLIC = auto()  # anyone, no credential needed
    AUTHENTICATED_SELF = auto()  # any signed-in user acting on their own account; a read-scoped token suffices
    OWNER_RESOURCE = auto()  # names a user-owned resource by id; others get 404 (administrators may act)
    SESSION_ONLY = auto()  # needs a session (password login); every personal access token is refused
    ADMIN = auto()  # administrators only (role admin and, for a token, the admin scope)


SELF = Rule.AUTHENTICATED_SELF
SELF_SESSION = Rule.AUTHENTICATED_SELF | Rule.SESSION_ONLY
OWNED_SESSION = Rule.OWNER_RESOURCE | Rule.SESSION_ONLY

MATRIX: dict[tuple[str, str], Rule] = {
    # system and documentation
    ("GET", "/healthz"): Rule.PUBLIC,
    ("GET", "/readyz"): Rule.PUBLIC,
    ("GET", "/metrics"): Rule.PUBLIC,  # public unless metrics_token is set (tested with the metrics)
    ("GET", "/api/v1/info"): Rule.PUBLIC,
    ("GET", "/docs"): Rule.PUBLIC,
    ("GET", "/docs/assets/{file_path:path}"): Rule.PUBLIC,
    ("GET", "/openapi.json"): Rule.PUBLIC,
    ("GET", "/oauth2-redirect.html"): Rule.PUBLIC,
    # signing up and in
    ("POST", "/api/v1/auth/signup"): Rule.PUBLIC,
    ("POST", "/api/v1/auth/login"): Rule.PUBLIC,
    ("POST", "/api/v1/auth/refresh"): Rule.PUBLIC,
    ("POST", "/api/v1/auth/email/verify"): Rule.PUBLIC,
    ("POST", "/api/v1/auth/password/forgot"): Rule.PUBLIC,
    ("POST", "/api/v1/auth/password/reset"): Rule.PUBLIC,
    # Logging out needs only the read scope: with a personal token it ends nothing and answers 204.
    ("POST", "/api/v1/auth/logout"): SELF,
    ("POST", "/api/v1/auth/logout-all"): SELF_SESSION,
    # the caller's own account
    ("GET", "/api/v1/me"): SELF,
    ("PATCH", "/api/v1/me"): SELF_SESSION,
    ("DELETE", "/api/v1/me"): SELF_SESSION,
    ("POST", "/api/v1/me/password"): SELF_SESSION,
    ("POST", "/api/v1/me/email/verify-request"): SELF_SESSION,
    ("GET", "/api/v1/me/sessions"): SELF,
    ("DELETE", "/api/v1/me/sessions/{session_id:str}"): OWNED_SESSION,
    ("GET", "/api/v1/me/tokens"): SELF,
    ("POST", "/api/v1/me/tokens"): SELF_SESSION,
    ("DELETE", "/api/v1/me/tokens/{token_id:str}"): OWNED_SESSION,
    # administration
    ("GET", "/api/v1/admin/users"): Rule.ADMIN,
    ("POST", "/api/v1/admin/users"): Rule.ADMIN,
    ("GET", "/api/v1/admin/users/{user_id:str}"): Rule.ADMIN,
    ("PATCH", "/api/v1/admin/users/{user_id:str}"): Rule.ADMIN,
    ("DELETE", "/api/v1/admin/users/{user_id:str}"): Rule.ADMIN,
    ("POST", "/api/v1/admin/users/{user_id:str}/password"): Rule.ADMIN,
    ("GET", "/api/v1/admin/invites"): Rule.ADMIN,
    ("POST", "/api/v1/admin/invites"): Rule.ADMIN,
    ("DELETE", "/api/v1/admin/invites/{invite_id:str}"): Rule.ADMIN,
    ("GET", "/api/v1/admin/audit"): Rule.ADMIN,
}

# What an allowed caller gets (with the request this test sends).
SUCCESS: dict[tuple[str, str], int] = {
    ("POST", "/api/v1/auth/logout"): 204,
    ("POST", "/api/v1/auth/logout-all"): 204,
    ("GET", "/api/v1/me"): 200,
    ("PATCH", "/api/v1/me"): 200,
    ("DELETE", "/api/v1/me"): 204,
    ("POST", "/api/v1/me/password"): 204,
    ("POST", "/api/v1/me/email/verify-request"): 202,
    ("GET", "/api/v1/me/sessions"): 200,
    ("DELETE", "/api/v1/me/sessions/{session_id:str}"): 204,
    ("GET", "/api/v1/me/tokens"): 200,
    ("POST", "/api/v1/me/tokens"): 201,
    ("DELETE", "/api/v1/me/tokens/{token_id:str}"): 204,
    ("GET", "/api/v1/admin/users"): 200,
    ("POST", "/api/v1/admin/users"): 201,
    ("GET", "/api/v1/admin/users/{user_id:str}"): 200,
    ("PATCH", "/api/v1/admin/users/{user_id:str}"): 200,
    ("DELETE", "/api/v1/admin/users/{user_id:str}"): 204,
    ("POST", "/api/v1/admin/users/{user_id:str}/password"): 204,
    ("GET", "/api/v1/admin/invites"): 200,
    ("POST", "/api/v1/admin/invites"): 201,
    ("DELETE", "/api/v1/admin/invites/{invite_id:str}"): 204,
    ("GET", "/api/v1/admin/audit"): 200,
}

# Rows whose success would use up the caller's own credentials or account (log out, change the
# password, delete the account): their allowed callers are throwaway users made for that row.
CONSUMES_CALLER = {
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("DELETE", "/api/v1/me"),
    ("POST", "/api/v1/me/password"),
}

ALLOW = 0  # "the route's success status"
DEAD_CALLERS = ("anonymous", "garbage", "expired", "revoked", "disabled", "disabled_pat")
LIVE_CALLERS = ("other", "read_pat", "write_pat", "admin_plain_pat", "owner", "admin", "admin_pat")
CALLERS = DEAD_CALLERS + LIVE_CALLERS
PAT_CALLERS = {"read_pat", "write_pat", "admin_pat", "admin_plain_pat"}
# Known violations, each pinned by a strict xfail test below; the matrix skips exactly these calls so
# it keeps guarding everything else. Remove an entry together with its xfail test once fixed.
KNOWN_BUGS: set[tuple[str, str, str]] = set()
_PARAM = re.compile(r"\{(\w+):\w+\}")


def expected_status(rule: Rule, caller: str) -> int:
    """The answer's status for ``caller`` on a protected route with ``rule`` (ALLOW = the success status)."""
    assert Rule.PUBLIC not in rule
    if caller in DEAD_CALLERS:
        return 401
    if Rule.ADMIN in rule:
        return ALLOW if caller in {"admin", "admin_pat"} else 403
    if caller in PAT_CALLERS and Rule.SESSION_ONLY in rule:
        return 403
    if Rule.OWNER_RESOURCE in rule and caller == "other":
        return 404
    return ALLOW


def app_routes(settings: Settings) -> set[tuple[str, str]]:
    """Every (method, path template) the application serves, read from the application itself."""
    app = create_app(settings).app
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            found.update((method, route.path) for method in route.methods if method not in {"OPTIONS", "HEAD"})
    return found


def fill(template: str, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda match: values[match.group(1)], template)


@pytest.fixture
def mail() -> Iterator[MailSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture
def settings(settings_env: dict[str, str], mail: MailSink) -> Settings:
    return make_settings(settings_env, **RELAXED_LIMITS, **mail.settings_overrides)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(settings) as test_client:
        yield test_client


# --- the matrix is complete ---------------------------------------------------------------------------


def test_matrix_covers_every_route(settings: Settings) -> None:
    routes = app_routes(settings)

    missing = sorted(routes - MATRIX.keys())
    stale = sorted(MATRIX.keys() - routes)
    assert not missing, f"routes without an access rule in MATRIX (decide one and add it): {missing}"
    assert not stale, f"MATRIX lists routes the application no longer serves: {stale}"
    protected = {key for key, rule in MATRIX.items() if Rule.PUBLIC not in rule}
    assert protected == SUCCESS.keys()
    for key, rule in MATRIX.items():
        assert rule == Rule.PUBLIC or Rule.PUBLIC not in rule, key
        assert (Rule.OWNER_RESOURCE in rule) == bool(re.search(r"\{(session|token)_id", key[1])), key


async def test_openapi_security_matches_the_matrix(client: httpx.AsyncClient) -> None:
    """The published schema says which operations need a bearer token; it must agree with the matrix."""
    schema = (await client.get("/openapi.json")).json()
    documented = {
        (method.upper(), path): bool(operation.get("security"))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    by_schema_path = {(method, _PARAM.sub(r"{\1}", template)): rule for (method, template), rule in MATRIX.items()}
    assert documented.keys() <= by_schema_path.keys(), sorted(documented.keys() - by_schema_path.keys())
    assert len(documented) >= 30, sorted(documented)
    for key, needs_bearer in documented.items():
        rule = by_schema_path[key]
        assert needs_bearer == (Rule.PUBLIC not in rule), f"{key}: schema security disagrees with {rule}"


# --- every caller on every protected route ------------------------------------------------------------


@dataclass
class Cast:
    """Live callers: sessions (token pairs) and personal access tokens."""

    owner: dict[str, Any]
    other: dict[str, Any]
    admin: dict[str, Any]
    read_pat: str
    write_pat: str
    admin_pat: str
    admin_plain_pat: str

    def credential(self, caller: str) -> str:
        value = getattr(self, caller)
        return value if isinstance(value, str) else str(value["access_token"])


@dataclass
class Dead:
    """Credentials that must all be refused with 401: for users and for administrators."""

    expired: dict[bool, str]
    revoked: dict[bool, str]
    disabled: dict[bool, str]
    disabled_pat: dict[bool, str]


class World:
    def __init__(self, client: httpx.AsyncClient, settings: Settings, db: Database) -> None:
        self.client = client
        self.settings = settings
        self.db = db
        self.serial = count()

    def email(self, kind: str) -> str:
        return f"{kind}{next(self.serial)}@example.com"

    async def cast(self) -> Cast:
        owner = await signup(self.client, self.email("owner"))
        other = await signup(self.client, self.email("other"))
        admin = await make_admin(self.client, self.settings, self.email("admin"))
        return Cast(
            owner=owner,
            other=other,
            admin=admin,
            read_pat=(await create_pat(self.client, owner["access_token"], ["read"]))["token"],
            write_pat=(await create_pat(self.client, owner["access_token"], ["read", "write"]))["token"],
            admin_pat=(await create_pat(self.client, admin["access_token"], ["read", "write", "admin"]))["token"],
            admin_plain_pat=(await create_pat(self.client, admin["access_token"], ["read", "write"]))["token"],
        )

    async def dead(self, cast: Cast) -> Dead:
        secret = access_secret(self.settings)
        past = datetime.now(UTC) - timedelta(hours=2)

        def expired(pair: dict[str, Any]) -> str:
            return tokens.issue_access_token(
                secret=secret, user_id=pair["user"]["id"], session_id=pair["session_id"], now=past, ttl_seconds=900
            )

        async def revoked(email: str) -> str:
            pair = await login(self.client, email)
            assert (await self.client.post(LOGOUT, headers=auth(pair["access_token"]))).status_code == 204
            return str(pair["access_token"])

        disabled_user = await signup(self.client, self.email("disabled"))
        disabled_admin = await make_admin(self.client, self.settings, self.email("disabledadmin"))
        user_pat = await create_pat(self.client, disabled_user["access_token"], ["read", "write"])
        admin_pat = await create_pat(self.client, disabled_admin["access_token"], ["read", "write", "admin"])
        for pair in (disabled_user, disabled_admin):
            response = await self.client.patch(
                f"/api/v1/admin/users/{pair['user']['id']}",
                json={"disabled": True},
                headers=auth(cast.admin["access_token"]),
            )
            assert response.status_code == 200, response.text
        return Dead(
            expired={False: expired(cast.owner), True: expired(cast.admin)},
            revoked={
                False: await revoked(cast.owner["user"]["email"]),
                True: await revoked(cast.admin["user"]["email"]),
            },
            disabled={False: disabled_user["access_token"], True: disabled_admin["access_token"]},
            disabled_pat={False: user_pat["token"], True: admin_pat["token"]},
        )

    async def digest(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything a refused call must not change (usage timestamps aside)."""
        queries = {
            "users": select(
                User.id, User.email, User.display_name, User.password_hash, User.role, User.disabled_at,
                User.quota_bytes, User.email_verified_at,
            ),
            "sessions": select(Session.id, Session.revoked_at),
            "refresh_tokens": select(RefreshToken.token_hash, RefreshToken.used_at),
            "api_keys": select(ApiKey.id, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.scopes),
            "invites": select(Invite.id, Invite.used_at),
            "email_tokens": select(EmailToken.token_hash, EmailToken.used_at),
        }  # fmt: skip
        state: dict[str, list[tuple[Any, ...]]] = {}
        async with self.db.session() as session:
            for name, query in queries.items():
                state[name] = sorted(tuple(row) for row in (await session.execute(query)).all())
        return state


Prepare = Callable[[Cast, bool], Awaitable[tuple[dict[str, str], Any]]]


def preparers(world: World, shared: Cast, victim_id: str) -> dict[tuple[str, str], Prepare]:
    """For each route: the path values and body of one call. ``fresh`` is True for a call that is
    expected to succeed (it gets a resource of its own); refused calls share one that must survive."""
    client = world.client
    spare: dict[str, str] = {}

    async def owner_session(cast: Cast, fresh: bool) -> tuple[dict[str, str], Any]:
        if not fresh:
            if "session" not in spare:
                spare["session"] = (await login(client, shared.owner["user"]["email"]))["session_id"]
            return {"session_id": spare["session"]}, None
        return {"session_id": (await login(client, shared.owner["user"]["email"]))["session_id"]}, None

    async def owner_token(cast: Cast, fresh: bool) -> tuple[dict[str, str], Any]:
        if not fresh and "token" in spare:
            return {"token_id": spare["token"]}, None
        token_id = (await create_pat(client, shared.owner["access_token"], ["read"]))["details"]["id"]
        if not fresh:
            spare["token"] = token_id
        return {"token_id": token_id}, None

    async def new_victim(cast: Cast, fresh: bool) -> tuple[dict[str, str], Any]:
        if not fresh:
            return {"user_id": victim_id}, None
        response = await client.post(
            "/api/v1/admin/users",
            json={"email": world.email("victim"), "password": PASSWORD},
            headers=auth(shared.admin["access_token"]),
        )
        return {"user_id": response.json()["id"]}, None

    async def invite(cast: Cast, fresh: bool) -> tuple[dict[str, str], Any]:
        if not fresh and "invite" in spare:
            return {"invite_id": spare["invite"]}, None
        response = await client.post("/api/v1/admin/invites", json={}, headers=auth(shared.admin["access_token"]))
        invite_id = response.json()["details"]["id"]
        if not fresh:
            spare["invite"] = invite_id
        return {"invite_id": invite_id}, None

    def body(value: Any) -> Prepare:
        async def prepare(cast: Cast, fresh: bool) -> tuple[dict[str, str], Any]:
            return {"user_id": victim_id}, value() if callable(value) else value

        return prepare

    return {
        ("POST", "/api/v1/auth/logout"): body(None),
        ("POST", "/api/v1/auth/logout-all"): body(None),
        ("GET", "/api/v1/me"): body(None),
        ("PATCH", "/api/v1/me"): body({"display_name": "Matrix Person"}),
        ("DELETE", "/api/v1/me"): body({"password": PASSWORD}),
        ("POST", "/api/v1/me/password"): body({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        ("POST", "/api/v1/me/email/verify-request"): body(None),
        ("GET", "/api/v1/me/sessions"): body(None),
        ("DELETE", "/api/v1/me/sessions/{session_id:str}"): owner_session,
        ("GET", "/api/v1/me/tokens"): body(None),
        ("POST", "/api/v1/me/tokens"): body({"name": "matrix", "scopes": ["read"]}),
        ("DELETE", "/api/v1/me/tokens/{token_id:str}"): owner_token,
        ("GET", "/api/v1/admin/users"): body(None),
        ("POST", "/api/v1/admin/users"): body(lambda: {"email": world.email("created"), "password": PASSWORD}),
        ("GET", "/api/v1/admin/users/{user_id:str}"): body(None),
        ("PATCH", "/api/v1/admin/users/{user_id:str}"): body({"display_name": "Renamed Victim", "quota_bytes": 1}),
        ("DELETE", "/api/v1/admin/users/{user_id:str}"): new_victim,
        ("POST", "/api/v1/admin/users/{user_id:str}/password"): body({"new_password": NEW_PASSWORD}),
        ("GET", "/api/v1/admin/invites"): body(None),
        ("POST", "/api/v1/admin/invites"): body({"email": "invited@example.com"}),
        ("DELETE", "/api/v1/admin/invites/{invite_id:str}"): invite,
        ("GET", "/api/v1/admin/audit"): body(None),
    }


async def test_every_route_enforces_its_rule(client: httpx.AsyncClient, settings: Settings) -> None:
    failures: list[str] = []
    async with database(settings) as db:
        world = World(client, settings, db)
        shared = await world.cast()
        dead = await world.dead(shared)
        victim_id = (await signup(client, world.email("victim")))["user"]["id"]
        prepare = preparers(world, shared, victim_id)
        assert prepare.keys() == SUCCESS.keys()

        for (method, template), rule in sorted(MATRIX.items(), key=lambda item: item[0][1]):
            if Rule.PUBLIC in rule:
                continue
            is_admin_route = Rule.ADMIN in rule
            cast = await world.cast() if (method, template) in CONSUMES_CALLER else shared
            plan = {caller: expected_status(rule, caller) for caller in CALLERS}
            refused = [c for c in CALLERS if plan[c] != ALLOW]
            allowed = [c for c in CALLERS if plan[c] == ALLOW]

            await prepare[(method, template)](cast, False)  # create the shared target before the snapshot
            before = await world.digest()
            for caller in refused:
                if (method, template, caller) in KNOWN_BUGS:
                    continue
                if caller == "anonymous":
                    headers = {}
                elif caller == "garbage":
                    headers = auth("not-a-credential")
                elif caller in DEAD_CALLERS:
                    headers = auth(getattr(dead, caller)[is_admin_route])
                else:
                    headers = auth(cast.credential(caller))
                values, json = await prepare[(method, template)](cast, False)
                response = await client.request(method, fill(template, values), json=json, headers=headers)
                failures += _check(method, template, caller, plan[caller], response)
            if await world.digest() != before:
                failures.append(f"{method} {template}: refused calls changed the database")

            for caller in allowed:
                values, json = await prepare[(method, template)](cast, True)
                response = await client.request(
                    method, fill(template, values), json=json, headers=auth(cast.credential(caller))
                )
                failures += _check(method, template, caller, SUCCESS[(method, template)], response)

    assert not failures, "authorisation matrix violations:\n" + "\n".join(failures)


def _check(method: str, template: str, caller: str, expected: int, response: httpx.Response) -> list[str]:
    where = f"{method} {template} as {caller}"
    if response.status_code != expected:
        return [f"{where}: expected {expected}, got {response.status_code}: {response.text[:300]}"]
    if expected >= 400:
        if response.headers.get("content-type", "").split(";")[0] != "application/problem+json":
            return [f"{where}: not problem+json: {response.headers.get('content-type')}"]
        code = {401: "unauthenticated", 403: "permission-denied", 404: "not-found"}[expected]
        if response.json().get("type") != f"urn:stowage:problem:{code}":
            return [f"{where}: problem type {response.json().get('type')}, expected {code}"]
        if expected == 401 and response.headers.get("www-authenticate") != 'Bearer realm="stowage"':
            return [f"{where}: 401 without WWW-Authenticate"]
    return []


# --- public routes answer anonymous callers -------------------------------------------------------------


async def test_public_routes_work_without_credentials(client: httpx.AsyncClient, mail: MailSink) -> None:
    pair = await signup(client, "public@example.com")
    calls: dict[tuple[str, str], Callable[[], Awaitable[httpx.Response]]] = {}

    def get(path: str) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: client.get(path)

    async def forgot_then_reset() -> httpx.Response:
        await signup(client, "forgetful@example.com")
        forgot = await client.post("/api/v1/auth/password/forgot", json={"email": "forgetful@example.com"})
        assert forgot.status_code == 202
        return await client.post(
            "/api/v1/auth/password/reset", json={"token": token_from_mail(mail.last()), "new_password": NEW_PASSWORD}
        )

    async def verify() -> httpx.Response:
        fresh = await signup(client, "verify@example.com")
        await client.post("/api/v1/me/email/verify-request", headers=auth(fresh["access_token"]))
        return await client.post("/api/v1/auth/email/verify", json={"token": token_from_mail(mail.last())})

    calls = {
        ("GET", "/healthz"): get("/healthz"),
        ("GET", "/readyz"): get("/readyz"),
        ("GET", "/metrics"): get("/metrics"),
        ("GET", "/api/v1/info"): get("/api/v1/info"),
        ("GET", "/docs"): get("/docs"),
        ("GET", "/docs/assets/{file_path:path}"): get("/docs/assets/swagger-ui.css"),
        ("GET", "/openapi.json"): get("/openapi.json"),
        ("GET", "/oauth2-redirect.html"): get("/oauth2-redirect.html"),
        ("POST", "/api/v1/auth/signup"): lambda: client.post(
            "/api/v1/auth/signup", json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
        ),
        ("POST", "/api/v1/auth/login"): lambda: client.post(
            "/api/v1/auth/login", json={"email": "public@example.com", "password": PASSWORD}
        ),
        ("POST", "/api/v1/auth/refresh"): lambda: client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        ),
        ("POST", "/api/v1/auth/email/verify"): verify,
        ("POST", "/api/v1/auth/password/forgot"): lambda: client.post(
            "/api/v1/auth/password/forgot", json={"email": "someone@example.com"}
        ),
        ("POST", "/api/v1/auth/password/reset"): forgot_then_reset,
    }
    public = {key for key, rule in MATRIX.items() if Rule.PUBLIC in rule}
    assert calls.keys() == public

    for key in sorted(public, key=lambda k: k[1]):
        response = await calls[key]()
        assert 200 <= response.status_code < 300, f"{key}: {response.status_code} {response.text[:300]}"


# --- known holes (see KNOWN_BUGS) ------------------------------------------------------------------------


async def test_anonymous_cannot_create_users(client: httpx.AsyncClient, settings: Settings) -> None:
    await make_admin(client, settings, "root@example.com")

    response = await client.post(
        "/api/v1/admin/users", json={"email": "intruder@example.com", "password": PASSWORD, "role": "admin"}
    )

    try:
        assert response.status_code == 401, response.text
        assert response.json()["type"] == "urn:stowage:problem:unauthenticated"
    finally:
        # Whatever the answer, no account may have been created.
        async with database(settings) as db, db.session() as session:
            created = await session.scalar(select(User).where(User.email == "intruder@example.com"))
        assert created is None


async def test_anonymous_cannot_reset_a_password(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await make_admin(client, settings, "root@example.com")

    response = await client.post(
        f"/api/v1/admin/users/{admin['user']['id']}/password", json={"new_password": NEW_PASSWORD}
    )

    try:
        assert response.status_code == 401, response.text
        assert response.json()["type"] == "urn:stowage:problem:unauthenticated"
    finally:
        # The administrator's password and session are untouched.
        assert (await client.get("/api/v1/me", headers=auth(admin["access_token"]))).status_code == 200
        await login(client, "root@example.com", PASSWORD)
