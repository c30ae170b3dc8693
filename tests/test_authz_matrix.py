"""The authorisation matrix: every route of the application, its access rule, and every kind of caller.

``MATRIX`` names the rule of every (method, path) the application serves. The route list comes from
the application itself, so a new endpoint without a matrix entry fails ``test_matrix_covers_every_route``
— decide its rule and add it here. ``test_every_route_enforces_its_rule`` then calls each protected
route as each kind of caller and checks the answer's class:

- no, forged, expired, revoked or disabled credentials → 401;
- another user naming the owner's resource → 404 (never 403: ids do not reveal what exists) — an
  administrator's token without the admin scope is just another user here;
- a token lacking what the route needs (read-only on a write route, or any PAT where a session is
  required) → 403;
- a non-admin on an admin route → 403;
- everyone else → the route's success status, with nothing changed by the refused calls before.

Routes that name things by path (``/paths/…``, ``/content/…``) or carry ids in the body (``/zip``,
``/batch/…``) act in the caller's own tree: they are SELF routes, and each allowed caller gets a target
of its own; what another user's ids get there is tested with the files.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Flag, auto
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute
from sqlalchemy import select

import image_samples
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
from stowage.app import create_app, litestar_of
from stowage.config import Settings
from stowage.db.engine import Database
from stowage.db.tables import ApiKey, Blob, EmailToken, Invite, Node, RefreshToken, Session, Share, User, Version


class Rule(Flag):
    PUBLIC = auto()  # anyone, no credential needed
    AUTHENTICATED_SELF = auto()  # any signed-in user acting on their own account; a read-scoped token suffices
    OWNER_RESOURCE = auto()  # names a user-owned resource by id; others get 404 (administrators may act)
    SESSION_ONLY = auto()  # needs a session (password login); every personal access token is refused
    ADMIN = auto()  # administrators only (role admin and, for a token, the admin scope)
    WRITE = auto()  # changes data: needs the write scope, so a read-only personal token gets 403


SELF = Rule.AUTHENTICATED_SELF
SELF_SESSION = Rule.AUTHENTICATED_SELF | Rule.SESSION_ONLY
SELF_WRITE = Rule.AUTHENTICATED_SELF | Rule.WRITE
OWNED = Rule.OWNER_RESOURCE
OWNED_WRITE = Rule.OWNER_RESOURCE | Rule.WRITE
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
    ("GET", "/api/v1/admin/maintenance"): Rule.ADMIN,
    ("GET", "/api/v1/admin/storage"): Rule.ADMIN,
    # files and folders (personal access tokens welcome; writes need the write scope)
    ("GET", "/api/v1/files/root"): SELF,
    ("GET", "/api/v1/nodes/{node_id:str}"): OWNED,
    ("PATCH", "/api/v1/nodes/{node_id:str}"): OWNED_WRITE,
    ("DELETE", "/api/v1/nodes/{node_id:str}"): OWNED_WRITE,
    ("GET", "/api/v1/nodes/{node_id:str}/children"): OWNED,
    ("POST", "/api/v1/nodes/{node_id:str}/folders"): OWNED_WRITE,
    ("POST", "/api/v1/folders"): SELF_WRITE,
    ("POST", "/api/v1/nodes/{node_id:str}/copy"): OWNED_WRITE,
    # presigned URLs: a GET URL needs only reading the file (a read-only token may mint one)
    ("POST", "/api/v1/nodes/{node_id:str}/presign"): OWNED,
    ("POST", "/api/v1/presign/upload"): SELF_WRITE,
    ("POST", "/api/v1/presign/tus"): SELF_WRITE,
    ("GET", "/api/v1/nodes/{node_id:str}/content"): OWNED,
    # image derivatives: readable wherever the file is; minting a thumbnail URL only reads
    ("GET", "/api/v1/nodes/{node_id:str}/thumbnail"): OWNED,
    ("POST", "/api/v1/nodes/{node_id:str}/presign/thumbnail"): OWNED,
    ("PUT", "/api/v1/nodes/{node_id:str}/content"): OWNED_WRITE,
    ("POST", "/api/v1/nodes/{node_id:str}/content"): OWNED_WRITE,  # POST = PUT, for Expo's uploadAsync
    ("PUT", "/api/v1/nodes/{node_id:str}/children/{name:str}"): OWNED_WRITE,
    ("POST", "/api/v1/nodes/{node_id:str}/children/{name:str}"): OWNED_WRITE,
    ("POST", "/api/v1/nodes/{node_id:str}/upload"): OWNED_WRITE,
    ("GET", "/api/v1/paths/{path:path}"): SELF,
    ("GET", "/api/v1/content/{path:path}"): SELF,
    ("PUT", "/api/v1/content/{path:path}"): SELF_WRITE,
    ("POST", "/api/v1/content/{path:path}"): SELF_WRITE,
    ("GET", "/api/v1/nodes/{node_id:str}/zip"): OWNED,
    ("GET", "/api/v1/nodes/{node_id:str}/versions"): OWNED,
    ("GET", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}/content"): OWNED,
    ("POST", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}/restore"): OWNED_WRITE,
    ("DELETE", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}"): OWNED_WRITE,
    ("PATCH", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}"): OWNED_WRITE,
    ("GET", "/api/v1/search"): SELF,
    ("GET", "/api/v1/starred"): SELF,
    ("GET", "/api/v1/recent"): SELF,
    ("POST", "/api/v1/zip"): SELF,
    ("POST", "/api/v1/batch/delete"): SELF_WRITE,
    ("POST", "/api/v1/batch/move"): SELF_WRITE,
    # the trash
    ("GET", "/api/v1/trash"): SELF,
    ("DELETE", "/api/v1/trash"): SELF_WRITE,
    ("DELETE", "/api/v1/trash/{node_id:str}"): OWNED_WRITE,
    ("POST", "/api/v1/trash/{node_id:str}/restore"): OWNED_WRITE,
    # sharing: the owner's links and user shares (owners only: a recipient cannot re-share)
    ("POST", "/api/v1/nodes/{node_id:str}/links"): OWNED_WRITE,
    ("GET", "/api/v1/nodes/{node_id:str}/links"): OWNED,
    ("GET", "/api/v1/links"): SELF,
    ("PATCH", "/api/v1/links/{link_id:str}"): OWNED_WRITE,
    ("DELETE", "/api/v1/links/{link_id:str}"): OWNED_WRITE,
    ("POST", "/api/v1/nodes/{node_id:str}/shares"): OWNED_WRITE,
    ("GET", "/api/v1/nodes/{node_id:str}/shares"): OWNED,
    ("GET", "/api/v1/shares"): SELF,
    ("DELETE", "/api/v1/shares/{share_id:str}"): OWNED_WRITE,
    # the recipient: a share made with the caller is the caller's to leave
    ("GET", "/api/v1/shared-with-me"): SELF,
    ("DELETE", "/api/v1/shared-with-me/{share_id:str}"): OWNED_WRITE,
    # a share link's visitor: the token in the path is the credential (checked in tests/test_share_links.py)
    ("GET", "/api/v1/s/{token:str}"): Rule.PUBLIC,
    ("POST", "/api/v1/s/{token:str}/unlock"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/content"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/thumbnail"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/thumbnail"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/children"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/zip"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/children"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/content"): Rule.PUBLIC,
    ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/zip"): Rule.PUBLIC,
    ("PUT", "/api/v1/s/{token:str}/files/{name:str}"): Rule.PUBLIC,
    ("POST", "/api/v1/s/{token:str}/files/{name:str}"): Rule.PUBLIC,
    # resumable uploads (tus): an upload belongs to the user who created it; every request writes or may
    # record the file, so even HEAD needs the write scope; OPTIONS is the protocol's discovery, open to all
    ("OPTIONS", "/api/v1/uploads"): Rule.PUBLIC,
    ("POST", "/api/v1/uploads"): SELF_WRITE,
    ("HEAD", "/api/v1/uploads/{upload_id:str}"): OWNED_WRITE,
    ("PATCH", "/api/v1/uploads/{upload_id:str}"): OWNED_WRITE,
    ("DELETE", "/api/v1/uploads/{upload_id:str}"): OWNED_WRITE,
    ("POST", "/api/v1/uploads/{upload_id:str}"): OWNED_WRITE,  # X-HTTP-Method-Override: PATCH, DELETE, HEAD
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
    ("GET", "/api/v1/files/root"): 200,
    ("GET", "/api/v1/nodes/{node_id:str}"): 200,
    ("PATCH", "/api/v1/nodes/{node_id:str}"): 200,
    ("DELETE", "/api/v1/nodes/{node_id:str}"): 200,
    ("GET", "/api/v1/nodes/{node_id:str}/children"): 200,
    ("POST", "/api/v1/nodes/{node_id:str}/folders"): 201,
    ("POST", "/api/v1/folders"): 201,
    ("POST", "/api/v1/nodes/{node_id:str}/copy"): 201,
    ("POST", "/api/v1/nodes/{node_id:str}/presign"): 200,
    ("POST", "/api/v1/presign/upload"): 200,
    ("POST", "/api/v1/presign/tus"): 200,
    ("GET", "/api/v1/nodes/{node_id:str}/content"): 200,
    ("GET", "/api/v1/nodes/{node_id:str}/thumbnail"): 200,
    ("POST", "/api/v1/nodes/{node_id:str}/presign/thumbnail"): 200,
    ("PUT", "/api/v1/nodes/{node_id:str}/content"): 200,
    ("POST", "/api/v1/nodes/{node_id:str}/content"): 200,
    ("PUT", "/api/v1/nodes/{node_id:str}/children/{name:str}"): 201,
    ("POST", "/api/v1/nodes/{node_id:str}/children/{name:str}"): 201,
    ("POST", "/api/v1/nodes/{node_id:str}/upload"): 201,
    ("GET", "/api/v1/paths/{path:path}"): 200,
    ("GET", "/api/v1/content/{path:path}"): 200,
    ("PUT", "/api/v1/content/{path:path}"): 201,
    ("POST", "/api/v1/content/{path:path}"): 201,
    ("GET", "/api/v1/nodes/{node_id:str}/zip"): 200,
    ("GET", "/api/v1/nodes/{node_id:str}/versions"): 200,
    ("GET", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}/content"): 200,
    ("POST", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}/restore"): 200,
    ("DELETE", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}"): 204,
    ("PATCH", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}"): 200,
    ("GET", "/api/v1/search"): 200,
    ("GET", "/api/v1/starred"): 200,
    ("GET", "/api/v1/recent"): 200,
    ("GET", "/api/v1/admin/maintenance"): 200,
    ("GET", "/api/v1/admin/storage"): 200,
    ("POST", "/api/v1/zip"): 200,
    ("POST", "/api/v1/batch/delete"): 200,
    ("POST", "/api/v1/batch/move"): 200,
    ("GET", "/api/v1/trash"): 200,
    ("DELETE", "/api/v1/trash"): 204,
    ("DELETE", "/api/v1/trash/{node_id:str}"): 204,
    ("POST", "/api/v1/trash/{node_id:str}/restore"): 200,
    ("POST", "/api/v1/nodes/{node_id:str}/links"): 201,
    ("GET", "/api/v1/nodes/{node_id:str}/links"): 200,
    ("GET", "/api/v1/links"): 200,
    ("PATCH", "/api/v1/links/{link_id:str}"): 200,
    ("DELETE", "/api/v1/links/{link_id:str}"): 204,
    ("POST", "/api/v1/nodes/{node_id:str}/shares"): 201,
    ("GET", "/api/v1/nodes/{node_id:str}/shares"): 200,
    ("GET", "/api/v1/shares"): 200,
    ("DELETE", "/api/v1/shares/{share_id:str}"): 204,
    ("GET", "/api/v1/shared-with-me"): 200,
    ("DELETE", "/api/v1/shared-with-me/{share_id:str}"): 204,
    ("POST", "/api/v1/uploads"): 201,
    ("HEAD", "/api/v1/uploads/{upload_id:str}"): 200,
    ("PATCH", "/api/v1/uploads/{upload_id:str}"): 204,
    ("DELETE", "/api/v1/uploads/{upload_id:str}"): 204,
    ("POST", "/api/v1/uploads/{upload_id:str}"): 204,
}

# POST routes under /api/v1/nodes that change nothing (they only read what they name), so the read scope
# suffices: minting a presigned GET URL.
READS_BY_POST = {
    ("POST", "/api/v1/nodes/{node_id:str}/presign"),
    ("POST", "/api/v1/nodes/{node_id:str}/presign/thumbnail"),
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
# Whose account each live caller acts as (personal tokens belong to the owner or the administrator).
ACCOUNT_OF = {
    "owner": "owner",
    "read_pat": "owner",
    "write_pat": "owner",
    "other": "other",
    "admin": "admin",
    "admin_pat": "admin",
    "admin_plain_pat": "admin",
}
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
    if caller == "read_pat" and Rule.WRITE in rule:
        return 403
    # Without the admin scope an administrator's token is an ordinary user: another user's resource is not found.
    if Rule.OWNER_RESOURCE in rule and caller in {"other", "admin_plain_pat"}:
        return 404
    return ALLOW


def app_routes(settings: Settings) -> set[tuple[str, str]]:
    """Every (method, path template) the application serves, read from the application itself. HEAD is
    listed only where no GET serves it too (tus: the offset of an upload), OPTIONS only where a handler of
    our own answers it (tus discovery), not Litestar's automatic one."""
    app = litestar_of(create_app(settings))
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            options = route.route_handler_map.get("OPTIONS")
            own_options = options is not None and getattr(options[0].fn, "__name__", "") != "options_handler"
            found.update(
                (method, route.path)
                for method in route.methods
                if (method != "OPTIONS" or own_options) and (method != "HEAD" or "GET" not in route.methods)
            )
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
        assert (Rule.OWNER_RESOURCE in rule) == bool(
            re.search(r"\{(session|token|node|link|share|upload)_id", key[1])
        ), key
        assert key[0] != "GET" or Rule.WRITE not in rule, key
        if key[1].startswith(("/api/v1/nodes", "/api/v1/trash", "/api/v1/content", "/api/v1/batch")):
            assert Rule.SESSION_ONLY not in rule, f"{key}: personal access tokens are meant for file routes"
            assert (Rule.WRITE in rule) == (key[0] != "GET" and key not in READS_BY_POST), key


async def test_openapi_security_matches_the_matrix(client: httpx.AsyncClient) -> None:
    """The published schema says which operations need a user credential, and which of the two schemes
    (``bearer``: an access token; ``personalToken``) each accepts; it must agree with the matrix."""
    schema = (await client.get("/openapi.json")).json()
    user_schemes = {"bearer", "personalToken"}
    # HEAD is served by the GET handler of the same path (downloads), under the same rule; tus has its own.
    documented = {
        ("GET" if method.upper() == "HEAD" and "get" in operations else method.upper(), path): {
            name for requirement in operation.get("security", []) for name in requirement if name in user_schemes
        }
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    by_schema_path = {(method, _PARAM.sub(r"{\1}", template)): rule for (method, template), rule in MATRIX.items()}
    assert documented.keys() <= by_schema_path.keys(), sorted(documented.keys() - by_schema_path.keys())
    assert len(documented) >= 30, sorted(documented)
    assert set(schema["components"]["securitySchemes"]) >= user_schemes
    for key, schemes in documented.items():
        rule = by_schema_path[key]
        if Rule.PUBLIC in rule:
            assert not schemes, f"{key}: a public route documents user security {schemes}"
        elif Rule.SESSION_ONLY in rule:
            assert schemes == {"bearer"}, f"{key}: personal tokens are refused here, the schema says {schemes}"
        else:
            assert schemes == user_schemes, f"{key}: both credentials are accepted here, the schema says {schemes}"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for requirement in operation.get("security", []):
                # A list of requirements means "any one of them"; each names one scheme.
                assert len(requirement) == 1, f"{method} {path}: {requirement}"


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
            "usage": select(User.id, User.used_bytes),
            "nodes": select(
                Node.id, Node.name, Node.parent_id, Node.trashed_at, Node.sha256, Node.size, Node.current_version_id,
            ),
            "versions": select(Version.id, Version.node_id, Version.sha256),
            "blobs": select(Blob.sha256, Blob.refcount),
            "shares": select(Share.id, Share.permission, Share.expires_at, Share.max_downloads, Share.revoked_at),
        }  # fmt: skip
        state: dict[str, list[tuple[Any, ...]]] = {}
        async with self.db.session() as session:
            for name, query in queries.items():
                state[name] = sorted(tuple(row) for row in (await session.execute(query)).all())
        blobs = Path(self.settings.data_dir) / "blobs"
        state["blob_files"] = sorted((p.name,) for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []
        return state


@dataclass(frozen=True)
class Body:
    """A raw request body (uploads) where a route takes no JSON; its headers go with it."""

    content: bytes
    headers: dict[str, str] = field(default_factory=dict)


async def send(
    client: httpx.AsyncClient, method: str, url: str, payload: Any, headers: dict[str, str]
) -> httpx.Response:
    if isinstance(payload, Body):
        return await client.request(method, url, content=payload.content, headers={**headers, **payload.headers})
    return await client.request(method, url, json=payload, headers=headers)


Prepare = Callable[[Cast, bool, str], Awaitable[tuple[dict[str, str], Any]]]


def file_preparers(world: World, shared: Cast) -> dict[tuple[str, str], Prepare]:
    """Preparers of the file routes. Targets are made with session credentials of the account they belong to:
    the owner's for routes naming a node, the caller's own for SELF routes (paths, selections, batches)."""
    client = world.client
    roots: dict[str, str] = {}
    spare: dict[str, dict[str, Any]] = {}

    def session(cast: Cast, who: str) -> dict[str, str]:
        return auth(cast.credential(who))

    async def root_of(cast: Cast, who: str) -> str:
        user_id = getattr(cast, who)["user"]["id"]
        if user_id not in roots:
            response = await client.get("/api/v1/files/root", headers=session(cast, who))
            roots[user_id] = response.json()["id"]
        return roots[user_id]

    def unique(prefix: str) -> str:
        return f"{prefix}{next(world.serial)}"

    async def new_file(cast: Cast, who: str = "owner", *, trashed: bool = False) -> dict[str, Any]:
        name = unique("m") + ".txt"
        response = await client.put(
            f"/api/v1/nodes/{await root_of(cast, who)}/children/{name}",
            content=f"matrix content of {name}".encode(),
            headers=session(cast, who),
        )
        assert response.status_code == 201, response.text
        node: dict[str, Any] = response.json()
        if trashed:
            deleted = await client.delete(f"/api/v1/nodes/{node['id']}", headers=session(cast, who))
            assert deleted.status_code == 200, deleted.text
        return node

    async def new_image(cast: Cast, who: str = "owner") -> dict[str, Any]:
        response = await client.put(
            f"/api/v1/nodes/{await root_of(cast, who)}/children/{unique('i')}.png",
            content=image_samples.encoded("png"),
            headers=session(cast, who),
        )
        assert response.status_code == 201, response.text
        node: dict[str, Any] = response.json()
        return node

    async def new_folder(cast: Cast, who: str = "owner") -> dict[str, Any]:
        response = await client.post(
            f"/api/v1/nodes/{await root_of(cast, who)}/folders", json={"name": unique("d")}, headers=session(cast, who)
        )
        assert response.status_code == 201, response.text
        folder: dict[str, Any] = response.json()
        return folder

    async def shared_target(key: str, make: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """One target per route for the refused calls (made before the snapshot, must survive them)."""
        if key not in spare:
            spare[key] = await make()
        return spare[key]

    def on_node(
        kind: str, payload: Callable[[], Any] = lambda: None, *, fresh_target: bool = True
    ) -> Callable[[str], Prepare]:
        """A route naming the owner's node: a new one for each allowed call (unless reading suffices)."""

        def for_route(route: str) -> Prepare:
            async def make(cast: Cast) -> dict[str, Any]:
                if kind == "folder":
                    return await new_folder(cast)
                if kind == "image":
                    return await new_image(cast)
                return await new_file(cast, trashed=kind == "trashed")

            async def prepare(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
                node = await make(cast) if fresh and fresh_target else await shared_target(route, lambda: make(shared))
                return {"node_id": node["id"], "name": unique("u") + ".txt"}, payload()

            return prepare

        return for_route

    def on_version(*, fresh_target: bool = True, payload: Callable[[], Any] = lambda: None) -> Callable[[str], Prepare]:
        """A route naming an old version of the owner's file (the file has a newer current one)."""

        def for_route(route: str) -> Prepare:
            async def make(cast: Cast) -> dict[str, Any]:
                node = await new_file(cast)
                listed = await client.get(f"/api/v1/nodes/{node['id']}/versions", headers=session(cast, "owner"))
                assert listed.status_code == 200, listed.text
                first = listed.json()["items"][0]["id"]
                replaced = await client.put(
                    f"/api/v1/nodes/{node['id']}/content",
                    content=f"second {uuid.uuid4()}".encode(),
                    headers=session(cast, "owner"),
                )
                assert replaced.status_code == 200, replaced.text
                return {"node_id": node["id"], "version_id": first}

            async def prepare(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
                target = (
                    await make(cast) if fresh and fresh_target else await shared_target(route, lambda: make(shared))
                )
                return {"node_id": target["node_id"], "version_id": target["version_id"]}, payload()

            return prepare

        return for_route

    def in_own_tree(
        make_call: Callable[[Cast, str], Awaitable[tuple[dict[str, str], Any]]],
    ) -> Callable[[str], Prepare]:
        """A SELF route: allowed callers act on their own account's things, refused ones on the owner's."""

        def for_route(route: str) -> Prepare:
            async def prepare(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
                if fresh:
                    return await make_call(cast, ACCOUNT_OF[caller])
                if route not in spare:
                    values, payload = await make_call(shared, "owner")
                    spare[route] = {"values": values, "payload": payload}
                return spare[route]["values"], spare[route]["payload"]

            return prepare

        return for_route

    def plain(payload: Callable[[], Any] = lambda: None) -> Callable[[str], Prepare]:
        def for_route(route: str) -> Prepare:
            async def prepare(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
                return {"path": unique("p") + "/new.txt"}, payload()

            return prepare

        return for_route

    async def file_path(cast: Cast, who: str) -> tuple[dict[str, str], Any]:
        return {"path": (await new_file(cast, who))["name"]}, None

    async def upload_url_target(cast: Cast, who: str) -> tuple[dict[str, str], Any]:
        return {}, {"folder_id": await root_of(cast, who), "name": unique("presigned") + ".txt"}

    async def tus_url_target(cast: Cast, who: str) -> tuple[dict[str, str], Any]:
        return {}, {"folder_id": await root_of(cast, who), "max_size": 1000}

    def tus(**headers: str) -> dict[str, str]:
        return {"Tus-Resumable": "1.0.0", **headers}

    def new_upload_request() -> Body:
        filename = base64.b64encode(f"{unique('t')}.txt".encode()).decode()
        return Body(b"", tus(**{"Upload-Length": "3", "Upload-Metadata": f"filename {filename}"}))

    def on_upload(payload: Callable[[], Body]) -> Callable[[str], Prepare]:
        """A route naming the owner's resumable upload (3 bytes, none received yet): a new one for each
        allowed call, one spare upload for the refused calls."""

        def for_route(route: str) -> Prepare:
            async def make(cast: Cast) -> str:
                response = await client.post(
                    "/api/v1/uploads/", content=b"", headers={**session(cast, "owner"), **new_upload_request().headers}
                )
                assert response.status_code == 201, response.text
                return response.headers["location"].rsplit("/", 1)[-1]

            async def prepare(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
                if fresh:
                    return {"upload_id": await make(cast)}, payload()
                if route not in spare:
                    spare[route] = {"id": await make(shared)}
                return {"upload_id": spare[route]["id"]}, payload()

            return prepare

        return for_route

    async def selection(cast: Cast, who: str) -> tuple[dict[str, str], Any]:
        return {}, {"ids": [(await new_file(cast, who))["id"]]}

    async def move_selection(cast: Cast, who: str) -> tuple[dict[str, str], Any]:
        file, folder = await new_file(cast, who), await new_folder(cast, who)
        return {}, {"ids": [file["id"]], "parent_id": folder["id"]}

    def content() -> Body:
        return Body(f"uploaded {uuid.uuid4()}".encode())

    def form() -> Body:
        boundary = "matrix-boundary"
        data = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{unique("f")}.txt"\r\n\r\n'
            f"form content {uuid.uuid4()}\r\n--{boundary}--\r\n"
        ).encode()
        return Body(data, {"content-type": f"multipart/form-data; boundary={boundary}"})

    def copy_into_owner_root(route: str) -> Prepare:
        async def prepare(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
            node = await shared_target(route, lambda: new_file(shared))
            return {"node_id": node["id"]}, {"parent_id": await root_of(shared, "owner"), "name": unique("c") + ".txt"}

        return prepare

    routes: dict[tuple[str, str], Callable[[str], Prepare]] = {
        ("GET", "/api/v1/files/root"): plain(),
        ("GET", "/api/v1/nodes/{node_id:str}"): on_node("file", fresh_target=False),
        ("PATCH", "/api/v1/nodes/{node_id:str}"): on_node("file", lambda: {"name": unique("renamed") + ".txt"}),
        ("DELETE", "/api/v1/nodes/{node_id:str}"): on_node("file"),
        ("GET", "/api/v1/nodes/{node_id:str}/children"): on_node("folder", fresh_target=False),
        ("POST", "/api/v1/nodes/{node_id:str}/folders"): on_node(
            "folder", lambda: {"name": unique("sub")}, fresh_target=False
        ),
        ("POST", "/api/v1/folders"): plain(lambda: {"path": f"{unique('a')}/{unique('b')}"}),
        ("POST", "/api/v1/nodes/{node_id:str}/copy"): copy_into_owner_root,
        ("POST", "/api/v1/nodes/{node_id:str}/presign"): on_node("file", lambda: {}, fresh_target=False),
        ("POST", "/api/v1/presign/upload"): in_own_tree(upload_url_target),
        ("POST", "/api/v1/presign/tus"): in_own_tree(tus_url_target),
        ("GET", "/api/v1/nodes/{node_id:str}/content"): on_node("file", fresh_target=False),
        ("GET", "/api/v1/nodes/{node_id:str}/thumbnail"): on_node("image", fresh_target=False),
        ("POST", "/api/v1/nodes/{node_id:str}/presign/thumbnail"): on_node(
            "image", lambda: {"w": 16}, fresh_target=False
        ),
        ("PUT", "/api/v1/nodes/{node_id:str}/content"): on_node("file", content),
        ("POST", "/api/v1/nodes/{node_id:str}/content"): on_node("file", content),
        ("PUT", "/api/v1/nodes/{node_id:str}/children/{name:str}"): on_node("folder", content, fresh_target=False),
        ("POST", "/api/v1/nodes/{node_id:str}/children/{name:str}"): on_node("folder", content, fresh_target=False),
        ("POST", "/api/v1/nodes/{node_id:str}/upload"): on_node("folder", form, fresh_target=False),
        ("GET", "/api/v1/paths/{path:path}"): in_own_tree(file_path),
        ("GET", "/api/v1/content/{path:path}"): in_own_tree(file_path),
        ("PUT", "/api/v1/content/{path:path}"): plain(content),
        ("POST", "/api/v1/content/{path:path}"): plain(content),
        ("GET", "/api/v1/nodes/{node_id:str}/zip"): on_node("file", fresh_target=False),
        ("GET", "/api/v1/nodes/{node_id:str}/versions"): on_node("file", fresh_target=False),
        ("GET", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}/content"): on_version(fresh_target=False),
        ("POST", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}/restore"): on_version(),
        ("DELETE", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}"): on_version(),
        ("PATCH", "/api/v1/nodes/{node_id:str}/versions/{version_id:str}"): on_version(
            payload=lambda: {"pinned": True}
        ),
        ("GET", "/api/v1/search"): plain(),
        ("GET", "/api/v1/starred"): plain(),
        ("GET", "/api/v1/recent"): plain(),
        ("POST", "/api/v1/zip"): in_own_tree(selection),
        ("POST", "/api/v1/batch/delete"): in_own_tree(selection),
        ("POST", "/api/v1/batch/move"): in_own_tree(move_selection),
        ("GET", "/api/v1/trash"): plain(),
        ("DELETE", "/api/v1/trash"): plain(),
        ("DELETE", "/api/v1/trash/{node_id:str}"): on_node("trashed"),
        ("POST", "/api/v1/trash/{node_id:str}/restore"): on_node("trashed", lambda: {}),
        ("POST", "/api/v1/uploads"): plain(new_upload_request),
        ("HEAD", "/api/v1/uploads/{upload_id:str}"): on_upload(lambda: Body(b"", tus())),
        ("PATCH", "/api/v1/uploads/{upload_id:str}"): on_upload(
            lambda: Body(b"abc", tus(**{"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}))
        ),
        ("DELETE", "/api/v1/uploads/{upload_id:str}"): on_upload(lambda: Body(b"", tus())),
        ("POST", "/api/v1/uploads/{upload_id:str}"): on_upload(
            lambda: Body(
                b"abc",
                tus(
                    **{
                        "X-HTTP-Method-Override": "PATCH",
                        "Content-Type": "application/offset+octet-stream",
                        "Upload-Offset": "0",
                    }
                ),
            )
        ),
    }
    return {key: make(f"{key[0]} {key[1]}") for key, make in routes.items()}


def share_preparers(world: World, shared: Cast) -> dict[tuple[str, str], Prepare]:
    """Preparers of the sharing routes. A "friend" account receives the owner's shares (and shares things
    with the owner, for leaving); refused calls all name one spare target per route, which must survive."""
    client = world.client
    spare: dict[str, Any] = {}

    async def friend() -> dict[str, Any]:
        if "friend" not in spare:
            spare["friend"] = await signup(client, world.email("friend"))
        found: dict[str, Any] = spare["friend"]
        return found

    async def owners_item(cast: Cast, kind: str = "file") -> str:
        owner = auth(cast.credential("owner"))
        root = (await client.get("/api/v1/files/root", headers=owner)).json()["id"]
        name = f"s{next(world.serial)}"
        if kind == "folder":
            response = await client.post(f"/api/v1/nodes/{root}/folders", json={"name": name}, headers=owner)
        else:
            response = await client.put(f"/api/v1/nodes/{root}/children/{name}.txt", content=b"shared", headers=owner)
        assert response.status_code == 201, response.text
        node_id: str = response.json()["id"]
        return node_id

    async def owners_link(cast: Cast) -> str:
        node_id = await owners_item(cast)
        response = await client.post(f"/api/v1/nodes/{node_id}/links", json={}, headers=auth(cast.credential("owner")))
        assert response.status_code == 201, response.text
        link_id: str = response.json()["link"]["id"]
        return link_id

    async def owners_share(cast: Cast) -> str:
        node_id = await owners_item(cast, "folder")
        body = {"email": (await friend())["user"]["email"]}
        response = await client.post(
            f"/api/v1/nodes/{node_id}/shares", json=body, headers=auth(cast.credential("owner"))
        )
        assert response.status_code == 201, response.text
        share_id: str = response.json()["id"]
        return share_id

    async def share_with_owner(cast: Cast) -> str:
        """A share the friend made with the owner: the owner's to leave."""
        mate = await friend()
        headers = auth(mate["access_token"])
        root = (await client.get("/api/v1/files/root", headers=headers)).json()["id"]
        made = await client.post(
            f"/api/v1/nodes/{root}/folders", json={"name": f"f{next(world.serial)}"}, headers=headers
        )
        body = {"email": cast.owner["user"]["email"]}
        response = await client.post(f"/api/v1/nodes/{made.json()['id']}/shares", json=body, headers=headers)
        assert response.status_code == 201, response.text
        share_id: str = response.json()["id"]
        return share_id

    def on(
        key: str, make: Callable[[Cast], Awaitable[str]], payload: Callable[[], Awaitable[Any]] | None = None
    ) -> Prepare:
        async def prepare(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
            if fresh:
                target = await make(cast)
            else:
                if key not in spare:
                    spare[key] = await make(shared)
                target = spare[key]
            name = {"link": "link_id", "share": "share_id", "node": "node_id"}[key.split(":", maxsplit=1)[0]]
            return {name: target}, await payload() if payload is not None else None

        return prepare

    async def no_body() -> None:
        return None

    async def new_link() -> dict[str, Any]:
        return {"max_downloads": 3}

    async def share_body() -> dict[str, Any]:
        return {"email": (await friend())["user"]["email"], "permission": "read"}

    async def plain(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
        return {}, None

    return {
        ("POST", "/api/v1/nodes/{node_id:str}/links"): on("node:link-create", owners_item, new_link),
        ("GET", "/api/v1/nodes/{node_id:str}/links"): on("node:link-list", owners_item, no_body),
        ("GET", "/api/v1/links"): plain,
        ("PATCH", "/api/v1/links/{link_id:str}"): on("link:edit", owners_link, new_link),
        ("DELETE", "/api/v1/links/{link_id:str}"): on("link:revoke", owners_link),
        ("POST", "/api/v1/nodes/{node_id:str}/shares"): on(
            "node:share-create", lambda cast: owners_item(cast, "folder"), share_body
        ),
        ("GET", "/api/v1/nodes/{node_id:str}/shares"): on("node:share-list", owners_item, no_body),
        ("GET", "/api/v1/shares"): plain,
        ("DELETE", "/api/v1/shares/{share_id:str}"): on("share:revoke", owners_share),
        ("GET", "/api/v1/shared-with-me"): plain,
        ("DELETE", "/api/v1/shared-with-me/{share_id:str}"): on("share:leave", share_with_owner),
    }


def preparers(world: World, shared: Cast, victim_id: str) -> dict[tuple[str, str], Prepare]:
    """For each route: the path values and body of one call by ``caller``. ``fresh`` is True for a call
    that is expected to succeed (it gets a resource of its own); refused calls share one that must survive."""
    client = world.client
    spare: dict[str, str] = {}

    async def owner_session(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
        if not fresh:
            if "session" not in spare:
                spare["session"] = (await login(client, shared.owner["user"]["email"]))["session_id"]
            return {"session_id": spare["session"]}, None
        return {"session_id": (await login(client, shared.owner["user"]["email"]))["session_id"]}, None

    async def owner_token(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
        if not fresh and "token" in spare:
            return {"token_id": spare["token"]}, None
        token_id = (await create_pat(client, shared.owner["access_token"], ["read"]))["details"]["id"]
        if not fresh:
            spare["token"] = token_id
        return {"token_id": token_id}, None

    async def new_victim(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
        if not fresh:
            return {"user_id": victim_id}, None
        response = await client.post(
            "/api/v1/admin/users",
            json={"email": world.email("victim"), "password": PASSWORD},
            headers=auth(shared.admin["access_token"]),
        )
        return {"user_id": response.json()["id"]}, None

    async def invite(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
        if not fresh and "invite" in spare:
            return {"invite_id": spare["invite"]}, None
        response = await client.post("/api/v1/admin/invites", json={}, headers=auth(shared.admin["access_token"]))
        invite_id = response.json()["details"]["id"]
        if not fresh:
            spare["invite"] = invite_id
        return {"invite_id": invite_id}, None

    def body(value: Any) -> Prepare:
        async def prepare(cast: Cast, fresh: bool, caller: str) -> tuple[dict[str, str], Any]:
            return {"user_id": victim_id}, value() if callable(value) else value

        return prepare

    return {
        **file_preparers(world, shared),
        **share_preparers(world, shared),
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
        ("GET", "/api/v1/admin/maintenance"): body(None),
        ("GET", "/api/v1/admin/storage"): body(None),
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

            await prepare[(method, template)](cast, False, "owner")  # create the shared target before the snapshot
            before = await world.digest()
            for caller in refused:
                if caller == "anonymous":
                    headers = {}
                elif caller == "garbage":
                    headers = auth("not-a-credential")
                elif caller in DEAD_CALLERS:
                    headers = auth(getattr(dead, caller)[is_admin_route])
                else:
                    headers = auth(cast.credential(caller))
                values, payload = await prepare[(method, template)](cast, False, caller)
                response = await send(client, method, fill(template, values), payload, headers)
                failures += _check(method, template, caller, plan[caller], response)
            if await world.digest() != before:
                failures.append(f"{method} {template}: refused calls changed the database")

            for caller in allowed:
                values, payload = await prepare[(method, template)](cast, True, caller)
                response = await send(client, method, fill(template, values), payload, auth(cast.credential(caller)))
                failures += _check(method, template, caller, SUCCESS[(method, template)], response)

    assert not failures, "authorisation matrix violations:\n" + "\n".join(failures)


def _check(method: str, template: str, caller: str, expected: int, response: httpx.Response) -> list[str]:
    where = f"{method} {template} as {caller}"
    if response.status_code != expected:
        return [f"{where}: expected {expected}, got {response.status_code}: {response.text[:300]}"]
    if expected >= 400 and method == "HEAD":  # no body: the status is the answer
        if expected == 401 and response.headers.get("www-authenticate") != 'Bearer realm="stowage"':
            return [f"{where}: 401 without WWW-Authenticate"]
    elif expected >= 400:
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

    newcomer = f"{uuid.uuid4().hex[:8]}@example.com"
    link = await _public_links(client, pair)
    s = "/api/v1/s/"
    calls = {
        ("GET", "/api/v1/s/{token:str}"): get(s + link["file"]),
        ("POST", "/api/v1/s/{token:str}/unlock"): lambda: client.post(
            s + link["locked"] + "/unlock", json={"password": "the link's words"}
        ),
        ("GET", "/api/v1/s/{token:str}/content"): get(s + link["file"] + "/content"),
        ("GET", "/api/v1/s/{token:str}/children"): get(s + link["folder"] + "/children"),
        ("GET", "/api/v1/s/{token:str}/zip"): get(s + link["folder"] + "/zip"),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}"): get(f"{s}{link['folder']}/nodes/{link['file_id']}"),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/children"): get(
            f"{s}{link['folder']}/nodes/{link['sub_id']}/children"
        ),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/content"): get(
            f"{s}{link['folder']}/nodes/{link['file_id']}/content"
        ),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/zip"): get(
            f"{s}{link['folder']}/nodes/{link['sub_id']}/zip"
        ),
        ("GET", "/api/v1/s/{token:str}/thumbnail"): get(f"{s}{link['image']}/thumbnail?w=16&format=png"),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/thumbnail"): get(
            f"{s}{link['pics']}/nodes/{link['image_id']}/thumbnail?w=16&format=webp"
        ),
        ("PUT", "/api/v1/s/{token:str}/files/{name:str}"): lambda: client.put(
            s + link["drop"] + "/files/put.txt", content=b"dropped"
        ),
        ("POST", "/api/v1/s/{token:str}/files/{name:str}"): lambda: client.post(
            s + link["drop"] + "/files/post.txt", content=b"dropped"
        ),
        ("GET", "/healthz"): get("/healthz"),
        ("GET", "/readyz"): get("/readyz"),
        ("GET", "/metrics"): get("/metrics"),
        ("GET", "/api/v1/info"): get("/api/v1/info"),
        ("GET", "/docs"): get("/docs"),
        ("GET", "/docs/assets/{file_path:path}"): get("/docs/assets/swagger-ui.css"),
        ("GET", "/openapi.json"): get("/openapi.json"),
        ("GET", "/oauth2-redirect.html"): get("/oauth2-redirect.html"),
        ("POST", "/api/v1/auth/signup"): lambda: client.post(
            "/api/v1/auth/signup", json={"email": newcomer, "password": PASSWORD}
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
    # Each public route's answer: its status, media type and the shape of its body.
    answers: dict[tuple[str, str], tuple[int, str | None, Callable[[httpx.Response], bool]]] = {
        ("GET", "/healthz"): (200, "application/json", lambda r: r.json() == {"status": "ok"}),
        ("GET", "/readyz"): (200, "application/json", lambda r: _is_ready(r.json())),
        ("GET", "/metrics"): (200, "text/plain", lambda r: "# TYPE stowage_http_requests_total counter" in r.text),
        ("GET", "/api/v1/info"): (200, "application/json", lambda r: _is_instance_info(r.json())),
        ("GET", "/docs"): (200, "text/html", lambda r: "<title>Stowage API</title>" in r.text),
        ("GET", "/docs/assets/{file_path:path}"): (200, "text/css", lambda r: r.text.startswith(".swagger-ui")),
        ("GET", "/openapi.json"): (200, "application/vnd.oai.openapi+json", lambda r: _is_openapi(r.json())),
        ("GET", "/oauth2-redirect.html"): (200, "text/html", lambda r: "swaggerUIRedirectOauth2" in r.text),
        ("POST", "/api/v1/auth/signup"): (201, "application/json", lambda r: _is_token_pair(r.json(), newcomer)),
        ("POST", "/api/v1/auth/login"): (
            200,
            "application/json",
            lambda r: _is_token_pair(r.json(), pair["user"]["email"]),
        ),
        ("POST", "/api/v1/auth/refresh"): (
            200,
            "application/json",
            lambda r: (
                _is_token_pair(r.json(), pair["user"]["email"]) and r.json()["refresh_token"] != pair["refresh_token"]
            ),
        ),
        ("POST", "/api/v1/auth/email/verify"): (204, None, lambda r: r.content == b""),
        ("POST", "/api/v1/auth/password/forgot"): (202, "application/json", lambda r: r.json()["status"] == "accepted"),
        ("POST", "/api/v1/auth/password/reset"): (204, None, lambda r: r.content == b""),
        ("GET", "/api/v1/s/{token:str}"): (200, "application/json", lambda r: r.json()["node"]["name"] == "f.txt"),
        ("POST", "/api/v1/s/{token:str}/unlock"): (200, "application/json", lambda r: bool(r.json()["grant"])),
        ("GET", "/api/v1/s/{token:str}/content"): (200, link["media_type"], lambda r: r.content == b"public"),
        ("GET", "/api/v1/s/{token:str}/children"): (
            200,
            "application/json",
            lambda r: [i["name"] for i in r.json()["items"]] == ["sub", "f.txt"],
        ),
        ("GET", "/api/v1/s/{token:str}/zip"): (200, "application/zip", lambda r: r.content.startswith(b"PK")),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}"): (
            200,
            "application/json",
            lambda r: r.json()["id"] == link["file_id"],
        ),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/children"): (
            200,
            "application/json",
            lambda r: [i["name"] for i in r.json()["items"]] == ["g.txt"],
        ),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/content"): (
            200,
            link["media_type"],
            lambda r: r.content == b"public",
        ),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/zip"): (
            200,
            "application/zip",
            lambda r: r.content.startswith(b"PK"),
        ),
        ("GET", "/api/v1/s/{token:str}/thumbnail"): (200, "image/png", lambda r: r.content.startswith(b"\x89PNG")),
        ("GET", "/api/v1/s/{token:str}/nodes/{item_id:str}/thumbnail"): (
            200,
            "image/webp",
            lambda r: r.content[8:12] == b"WEBP",
        ),
        ("PUT", "/api/v1/s/{token:str}/files/{name:str}"): (
            201,
            "application/json",
            lambda r: r.json()["name"] == "put.txt",
        ),
        ("POST", "/api/v1/s/{token:str}/files/{name:str}"): (
            201,
            "application/json",
            lambda r: r.json()["name"] == "post.txt",
        ),
        ("OPTIONS", "/api/v1/uploads"): (204, None, lambda r: r.headers["tus-version"] == "1.0.0"),
    }
    calls[("OPTIONS", "/api/v1/uploads")] = lambda: client.options("/api/v1/uploads/")
    assert calls.keys() == answers.keys() == public

    for key in sorted(public, key=lambda k: k[1]):
        response = await calls[key]()
        status, media_type, shaped = answers[key]
        assert response.status_code == status, f"{key}: {response.status_code} {response.text[:300]}"
        assert response.headers.get("content-type", "").split(";")[0] == (media_type or ""), (key, response.headers)
        assert shaped(response), f"{key}: unexpected body {response.text[:300]}"


async def _public_links(client: httpx.AsyncClient, pair: dict[str, Any]) -> dict[str, str]:
    """A folder (f.txt, sub/g.txt) of the user ``pair``, with a link to the file, one to the folder, a
    password link and a drop link (to inbox/): the tokens, the ids the visitor routes name, the file's media type."""
    headers = auth(pair["access_token"])
    root = (await client.get("/api/v1/files/root", headers=headers)).json()["id"]
    folder = (await client.post(f"/api/v1/nodes/{root}/folders", json={"name": "pub"}, headers=headers)).json()
    sub = (await client.post(f"/api/v1/nodes/{folder['id']}/folders", json={"name": "sub"}, headers=headers)).json()
    file = (await client.put(f"/api/v1/nodes/{folder['id']}/children/f.txt", content=b"public", headers=headers)).json()
    await client.put(f"/api/v1/nodes/{sub['id']}/children/g.txt", content=b"inner", headers=headers)
    inbox = (await client.post(f"/api/v1/nodes/{root}/folders", json={"name": "inbox"}, headers=headers)).json()
    pics = (await client.post(f"/api/v1/nodes/{root}/folders", json={"name": "pics"}, headers=headers)).json()
    image = (
        await client.put(
            f"/api/v1/nodes/{pics['id']}/children/p.png", content=image_samples.encoded("png"), headers=headers
        )
    ).json()

    async def link(node_id: str, **body: Any) -> str:
        response = await client.post(f"/api/v1/nodes/{node_id}/links", json=body, headers=headers)
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    return {
        "file": await link(file["id"]),
        "folder": await link(folder["id"]),
        "locked": await link(file["id"], password="the link's words"),
        "drop": await link(inbox["id"], drop=True),
        "image": await link(image["id"]),
        "pics": await link(pics["id"]),
        "image_id": image["id"],
        "file_id": file["id"],
        "sub_id": sub["id"],
        "media_type": file["media_type"],
    }


def _is_token_pair(body: dict[str, Any], email: str) -> bool:
    return (
        body["token_type"] == "Bearer"
        and bool(body["access_token"])
        and bool(body["refresh_token"])
        and body["user"]["email"] == email
    )


def _is_ready(body: dict[str, Any]) -> bool:
    checks = body["checks"]
    return (
        body["status"] == "ready"
        and checks.keys() == {"database", "schema", "data_dir"}
        and all(check["ok"] is True and check["error"] is None for check in checks.values())
    )


def _is_instance_info(body: dict[str, Any]) -> bool:
    uuid.UUID(body["instance_id"])
    datetime.fromisoformat(body["created_at"])
    return (body["name"], body["api_version"]) == ("Stowage", "v1") and body["database"] in {"sqlite", "postgresql"}


def _is_openapi(body: dict[str, Any]) -> bool:
    return body["openapi"].startswith("3.") and {"/api/v1/info", "/api/v1/auth/login"} <= body["paths"].keys()


# --- holes that were once open (regression tests) --------------------------------------------------------


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


async def test_batch_routes_refuse_anonymous_and_read_only_callers(client: httpx.AsyncClient) -> None:
    owner = await signup(client, "owner@example.com")
    read_only = (await create_pat(client, owner["access_token"], ["read"]))["token"]
    root = (await client.get("/api/v1/files/root", headers=auth(owner["access_token"]))).json()["id"]
    uploaded = await client.put(
        f"/api/v1/nodes/{root}/children/kept.txt", content=b"kept", headers=auth(owner["access_token"])
    )
    file_id = uploaded.json()["id"]
    folder = await client.post(
        f"/api/v1/nodes/{root}/folders", json={"name": "target"}, headers=auth(owner["access_token"])
    )
    calls = [
        ("/api/v1/batch/delete", {"ids": [file_id]}),
        ("/api/v1/batch/move", {"ids": [file_id], "parent_id": folder.json()["id"]}),
    ]

    statuses = []
    try:
        for path, body in calls:
            statuses.append((await client.post(path, json=body)).status_code)
            statuses.append((await client.post(path, json=body, headers=auth(read_only))).status_code)
        assert statuses == [401, 403, 401, 403]
    finally:
        # Whatever the answer, the file is where it was.
        node = (await client.get(f"/api/v1/nodes/{file_id}", headers=auth(owner["access_token"]))).json()
        assert (node["parent_id"], node["trashed_at"]) == (root, None)
