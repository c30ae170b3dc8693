"""Sign-up, login, refresh rotation, access-token checks, logout, password rehashing and rate limits
over HTTP, on SQLite and PostgreSQL. Every failure is checked for its problem+json body and for
leaving the account tables as they were."""

from __future__ import annotations

import asyncio
import os
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis

from accounts_helpers import (
    BAD_CREDENTIALS,
    CURRENT_ARGON2_PREFIX,
    LOGIN,
    LOGOUT,
    LOGOUT_ALL,
    ME,
    PASSWORD,
    RELAXED_LIMITS,
    SIGNUP,
    access_secret,
    active_sessions,
    assert_problem,
    auth,
    concurrent_client,
    login,
    make_admin,
    me_status,
    open_client,
    refresh,
    row_lock,
    set_password_hash,
    signup,
    table_counts,
    try_login,
    user_row,
    without_keys,
)
from conftest import make_settings
from stowage.accounts import tokens
from stowage.accounts.passwords import PasswordHasher
from stowage.config import Settings
from support.server import ServerProcess

REQUIRE_SERVICES = os.environ.get("STOWAGE_REQUIRE_SERVICES") == "1"
E2E_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    """Functional tests here must not trip the rate limiter; the rate-limit tests build their own."""
    return make_settings(settings_env, **RELAXED_LIMITS)


# --- sign-up ----------------------------------------------------------------------------------------


async def test_signup_returns_tokens_and_normalised_user(client: httpx.AsyncClient) -> None:
    raw = unicodedata.normalize("NFD", "  Zoë.Müller@Example.COM ")
    assert raw != unicodedata.normalize("NFC", raw)

    response = await client.post(SIGNUP, json={"email": raw, "password": PASSWORD})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"].count(".") == 2
    assert body["refresh_token"].startswith("srt_")
    assert body["expires_in"] == 900
    user = body["user"]
    assert user["email"] == unicodedata.normalize("NFC", "zoë.müller@example.com")
    assert user["display_name"] == unicodedata.normalize("NFC", "zoë.müller")
    assert (user["role"], user["email_verified"], user["disabled"]) == ("user", False, False)
    assert user["quota_bytes"] == 10 * 1024**3
    uuid.UUID(user["id"])
    uuid.UUID(body["session_id"])
    me = await client.get(ME, headers=auth(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == user
    # The NFC, lower-case form is the identity: logging in with another spelling finds the same account.
    again = await login(client, "ZOË.MÜLLER@example.com")
    assert again["user"]["id"] == user["id"]


async def test_signup_with_duplicate_email_conflicts(client: httpx.AsyncClient, settings: Settings) -> None:
    await signup(client, "dup@example.com")
    before = await table_counts(settings)

    response = await client.post(SIGNUP, json={"email": "DUP@Example.com", "password": "another fine passphrase"})

    assert_problem(response, 409, "conflict", detail_contains="dup@example.com")
    assert await table_counts(settings) == before


async def test_signup_rejects_invalid_input(client: httpx.AsyncClient, settings: Settings) -> None:
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        ({"email": "not-an-email", "password": PASSWORD}, "body.email", "email address"),
        ({"email": "a b@example.com", "password": PASSWORD}, "body.email", "email address"),
        ({"email": "common@example.com", "password": "password"}, "body.password", "too common"),
        ({"email": "common@example.com", "password": "Password1"}, "body.password", "too common"),
        ({"email": "short@example.com", "password": "short"}, "body.password", "at least 8"),
        ({"email": "bobby.tables@example.com", "password": "my Bobby.Tables secret"}, "body.password", "email"),
        ({"email": "missing@example.com"}, "body.password", "password"),
        ({"password": PASSWORD}, "body.email", "email"),
        ({"email": "extra@example.com", "password": PASSWORD, "is_admin": True}, None, "is_admin"),
        ({"email": "typed@example.com", "password": 12345678}, None, "password"),
    ]
    for body, field, fragment in cases:
        response = await client.post(SIGNUP, json=body)
        assert_problem(response, 400, "invalid-input", field=field, detail_contains=fragment)
    assert (await table_counts(settings))["users"] == 0


async def test_unknown_field_is_named_in_errors(client: httpx.AsyncClient) -> None:
    response = await client.post(SIGNUP, json={"email": "x@example.com", "password": PASSWORD, "is_admin": True})

    assert_problem(response, 400, "invalid-input", field="body.is_admin")


async def test_signup_closed(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, signup_mode="closed")
    async with open_client(settings) as client:
        response = await client.post(SIGNUP, json={"email": "eve@example.com", "password": PASSWORD})

        assert_problem(response, 403, "permission-denied", detail_contains="closed")
        assert await user_row(settings, "eve@example.com") is None
        assert (await table_counts(settings))["users"] == 0


async def test_signup_by_invitation(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, signup_mode="invite", **RELAXED_LIMITS)
    async with open_client(settings) as client:
        admin = await make_admin(client, settings, "root@example.com")
        headers = auth(admin["access_token"])

        async def new_invite(**body: Any) -> dict[str, Any]:
            response = await client.post("/api/v1/admin/invites", json=body, headers=headers)
            assert response.status_code == 201, response.text
            created: dict[str, Any] = response.json()
            assert created["token"].startswith("sti_")
            return created

        open_invite = await new_invite()
        before = await table_counts(settings)

        no_token = await client.post(SIGNUP, json={"email": "ann@example.com", "password": PASSWORD})
        assert_problem(no_token, 403, "permission-denied", detail_contains="invite_token")
        bad_token = await client.post(
            SIGNUP, json={"email": "ann@example.com", "password": PASSWORD, "invite_token": "sti_" + "x" * 43}
        )
        assert_problem(bad_token, 403, "permission-denied", detail_contains="not valid")
        assert await table_counts(settings) == before

        ok = await client.post(
            SIGNUP, json={"email": "ann@example.com", "password": PASSWORD, "invite_token": open_invite["token"]}
        )
        assert ok.status_code == 201, ok.text
        assert await me_status(client, ok.json()["access_token"]) == 200

        before = await table_counts(settings)
        reused = await client.post(
            SIGNUP, json={"email": "bob@example.com", "password": PASSWORD, "invite_token": open_invite["token"]}
        )
        assert_problem(reused, 403, "permission-denied", detail_contains="not valid")
        assert await user_row(settings, "bob@example.com") is None

        bound = await new_invite(email="Carol@Example.com")
        wrong_email = await client.post(
            SIGNUP, json={"email": "dave@example.com", "password": PASSWORD, "invite_token": bound["token"]}
        )
        assert_problem(wrong_email, 403, "permission-denied", detail_contains="different email")
        assert await user_row(settings, "dave@example.com") is None
        # The failed attempt did not spend the invitation: its addressee can still use it.
        carol = await client.post(
            SIGNUP, json={"email": "carol@example.com", "password": PASSWORD, "invite_token": bound["token"]}
        )
        assert carol.status_code == 201, carol.text

        withdrawn = await new_invite()
        revoke = await client.delete(f"/api/v1/admin/invites/{withdrawn['details']['id']}", headers=headers)
        assert revoke.status_code == 204
        before = await table_counts(settings)
        after_revoke = await client.post(
            SIGNUP, json={"email": "erin@example.com", "password": PASSWORD, "invite_token": withdrawn["token"]}
        )
        assert_problem(after_revoke, 403, "permission-denied")
        assert await table_counts(settings) == before


async def test_duplicate_signup_by_invitation_does_not_spend_the_invite(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, signup_mode="invite", **RELAXED_LIMITS)
    async with open_client(settings) as client:
        admin = await make_admin(client, settings, "root@example.com")
        created = await client.post("/api/v1/admin/invites", json={}, headers=auth(admin["access_token"]))
        invite = created.json()["token"]

        taken = await client.post(
            SIGNUP, json={"email": "root@example.com", "password": PASSWORD, "invite_token": invite}
        )

        assert_problem(taken, 409, "conflict", detail_contains="root@example.com")
        fresh = await client.post(
            SIGNUP, json={"email": "new@example.com", "password": PASSWORD, "invite_token": invite}
        )
        assert fresh.status_code == 201, fresh.text


async def test_concurrent_sign_ups_cannot_share_one_invite(
    settings_env: dict[str, str], backend: str, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(settings_env, signup_mode="invite", **RELAXED_LIMITS)
    async with concurrent_client(settings) as client:
        admin = await make_admin(client, settings, "root@example.com")
        created = await client.post("/api/v1/admin/invites", json={}, headers=auth(admin["access_token"]))
        invite = created.json()

        async with row_lock(settings, "invites", "id", invite["details"]["id"]) as wait_for:
            attempts = [
                asyncio.create_task(
                    client.post(
                        SIGNUP,
                        json={"email": f"racer{i}@example.com", "password": PASSWORD, "invite_token": invite["token"]},
                    )
                )
                for i in range(2)
            ]
            await wait_for(2)
        responses = await asyncio.gather(*attempts)

        assert sorted(r.status_code for r in responses) == [201, 403], [r.text for r in responses]
        assert (await table_counts(settings))["users"] == 2


async def test_concurrent_refresh_with_one_token(settings_env: dict[str, str]) -> None:
    """Two requests racing with the same refresh token: one wins, the other counts as reuse and ends the session."""
    settings = make_settings(settings_env, **RELAXED_LIMITS)
    async with concurrent_client(settings) as client:
        pair = await signup(client, "racer@example.com")

        async with row_lock(
            settings, "refresh_tokens", "token_hash", tokens.hash_token(pair["refresh_token"])
        ) as wait_for:
            attempts = [asyncio.create_task(refresh(client, pair["refresh_token"])) for _ in range(2)]
            await wait_for(2)
        responses = await asyncio.gather(*attempts)

        assert sorted(r.status_code for r in responses) == [200, 401], [r.text for r in responses]
        winner = next(r for r in responses if r.status_code == 200).json()
        assert await me_status(client, winner["access_token"]) == 401
        assert (await refresh(client, winner["refresh_token"])).status_code == 401


# --- login ----------------------------------------------------------------------------------------------


async def test_login(client: httpx.AsyncClient) -> None:
    first = await signup(client, "lena@example.com")

    second = await login(client, "Lena@Example.com", device_name="Phone")

    assert second["session_id"] != first["session_id"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user"] == first["user"]
    assert await me_status(client, second["access_token"]) == 200
    assert await me_status(client, first["access_token"]) == 200


async def test_wrong_password_and_unknown_email_look_identical(client: httpx.AsyncClient, settings: Settings) -> None:
    await signup(client, "mia@example.com")
    before = await table_counts(settings)

    wrong_password = await try_login(client, "mia@example.com", "not the right passphrase")
    unknown_email = await try_login(client, "nobody@example.com", "not the right passphrase")

    first = assert_problem(wrong_password, 401, "unauthenticated", detail=BAD_CREDENTIALS)
    second = assert_problem(unknown_email, 401, "unauthenticated", detail=BAD_CREDENTIALS)
    assert without_keys(first, "request_id") == without_keys(second, "request_id")
    assert wrong_password.headers["www-authenticate"] == unknown_email.headers["www-authenticate"]
    assert await table_counts(settings) == before


async def test_disabled_user_cannot_log_in(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await make_admin(client, settings, "root@example.com")
    user = await signup(client, "nina@example.com")
    disable = await client.patch(
        f"/api/v1/admin/users/{user['user']['id']}", json={"disabled": True}, headers=auth(admin["access_token"])
    )
    assert disable.status_code == 200
    before = await table_counts(settings)

    response = await try_login(client, "nina@example.com")

    assert_problem(response, 403, "permission-denied", detail_contains="disabled")
    # A wrong password is still just a wrong password: being disabled is only revealed to the password holder.
    assert_problem(await try_login(client, "nina@example.com", "wrong passphrase here"), 401, "unauthenticated")
    assert await table_counts(settings) == before


# --- refresh ----------------------------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_ends_the_session(client: httpx.AsyncClient, settings: Settings) -> None:
    first = await signup(client, "olga@example.com")
    other_device = await login(client, "olga@example.com")

    second_response = await refresh(client, first["refresh_token"])
    assert second_response.status_code == 200, second_response.text
    second = second_response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["session_id"] == first["session_id"]
    assert second["user"]["email"] == "olga@example.com"
    third_response = await refresh(client, second["refresh_token"])
    assert third_response.status_code == 200
    third = third_response.json()
    assert await me_status(client, third["access_token"]) == 200

    replay = await refresh(client, first["refresh_token"])

    assert_problem(replay, 401, "unauthenticated", detail_contains="already used")
    # The whole family is gone: the newest refresh token and the access tokens of that session fail.
    assert_problem(await refresh(client, third["refresh_token"]), 401, "unauthenticated")
    assert await me_status(client, third["access_token"]) == 401
    assert await me_status(client, first["access_token"]) == 401
    # Another session of the same account is untouched.
    assert await me_status(client, other_device["access_token"]) == 200
    assert (await refresh(client, other_device["refresh_token"])).status_code == 200
    assert await active_sessions(settings, first["user"]["id"]) == 1


async def test_refresh_with_garbage_is_unauthenticated(client: httpx.AsyncClient, settings: Settings) -> None:
    await signup(client, "pia@example.com")
    before = await table_counts(settings)

    for garbage in ("srt_" + "A" * 43, "definitely-not-a-token", "eyJhbGciOi.eyJzdWIi.c2ln"):
        assert_problem(await refresh(client, garbage), 401, "unauthenticated", detail_contains="not valid")
    assert_problem(await refresh(client, "short"), 400, "invalid-input", field="body.refresh_token")
    assert await table_counts(settings) == before


# --- access tokens ----------------------------------------------------------------------------------------


def _claims(user_id: str, session_id: str, **changes: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {
        "iss": tokens.ISSUER,
        "aud": tokens.AUDIENCE,
        "sub": user_id,
        "sid": session_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = value
    return claims


async def test_access_token_is_checked_strictly(client: httpx.AsyncClient, settings: Settings) -> None:
    pair = await signup(client, "quinn@example.com")
    victim = await signup(client, "rita@example.com")
    user_id, session_id = pair["user"]["id"], pair["session_id"]
    secret = access_secret(settings)

    def signed(**changes: Any) -> str:
        return jwt.encode(_claims(user_id, session_id, **changes), secret, algorithm="HS256")

    assert await me_status(client, signed()) == 200  # the crafting is right: only the changes below matter

    expired = tokens.issue_access_token(
        secret=secret,
        user_id=user_id,
        session_id=session_id,
        now=datetime.now(UTC) - timedelta(hours=1),
        ttl_seconds=900,
    )
    forged: dict[str, str] = {
        "expired": expired,
        "wrong audience": signed(aud="another-api"),
        "wrong issuer": signed(iss="someone-else"),
        "wrong signature": jwt.encode(_claims(user_id, session_id), "x" * 48, algorithm="HS256"),
        "not yet valid": signed(nbf=int(datetime.now(UTC).timestamp()) + 3600),
        "missing sid": signed(sid=None),
        "missing exp": signed(exp=None),
        "missing sub": signed(sub=None),
        "missing jti": signed(jti=None),
        "missing iat": signed(iat=None),
        "empty sub": signed(sub=""),
        "non-string sid": signed(sid=12345),
        "alg none": jwt.encode(_claims(user_id, session_id), None, algorithm="none"),
        "HS512": jwt.encode(_claims(user_id, session_id), secret, algorithm="HS512"),
        "another user's id with my session": signed(sub=victim["user"]["id"]),
        "unknown session": signed(sid=str(uuid.uuid4())),
        "tampered payload": _tamper(pair["access_token"], victim["user"]["id"], user_id),
        "not a jwt": "abc.def",
        "garbage": "Zm9vYmFy",
    }
    for name, token in forged.items():
        response = await client.get(ME, headers=auth(token))
        assert response.status_code == 401, f"{name}: {response.status_code} {response.text}"
        assert_problem(response, 401, "unauthenticated")

    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", pair["access_token"], f"Token {pair['access_token']}"):
        response = await client.get(ME, headers={"Authorization": header})
        assert_problem(response, 401, "unauthenticated")
    assert await me_status(client, pair["access_token"]) == 200


def _tamper(token: str, new_sub: str, old_sub: str) -> str:
    """Swap the subject inside a validly signed token without re-signing it."""
    header, payload, signature = token.split(".")
    decoded = jwt.utils.base64url_decode(payload).decode()
    replaced = decoded.replace(old_sub, new_sub)
    return f"{header}.{jwt.utils.base64url_encode(replaced.encode()).decode()}.{signature}"


# --- logout ------------------------------------------------------------------------------------------------


async def test_logout_ends_only_this_session(client: httpx.AsyncClient) -> None:
    laptop = await signup(client, "sam@example.com")
    phone = await login(client, "sam@example.com")

    response = await client.post(LOGOUT, headers=auth(laptop["access_token"]))

    assert response.status_code == 204
    assert await me_status(client, laptop["access_token"]) == 401
    assert_problem(await refresh(client, laptop["refresh_token"]), 401, "unauthenticated", detail_contains="ended")
    assert await me_status(client, phone["access_token"]) == 200
    assert (await refresh(client, phone["refresh_token"])).status_code == 200
    assert_problem(await client.post(LOGOUT, headers=auth(laptop["access_token"])), 401, "unauthenticated")
    assert_problem(await client.post(LOGOUT), 401, "unauthenticated")


async def test_logout_all_ends_every_session(client: httpx.AsyncClient, settings: Settings) -> None:
    laptop = await signup(client, "tess@example.com")
    phone = await login(client, "tess@example.com")
    bystander = await signup(client, "uma@example.com")

    response = await client.post(LOGOUT_ALL, headers=auth(laptop["access_token"]))

    assert response.status_code == 204
    for pair in (laptop, phone):
        assert await me_status(client, pair["access_token"]) == 401
        assert_problem(await refresh(client, pair["refresh_token"]), 401, "unauthenticated")
    assert await active_sessions(settings, laptop["user"]["id"]) == 0
    assert await me_status(client, bystander["access_token"]) == 200
    assert await me_status(client, (await login(client, "tess@example.com"))["access_token"]) == 200


# --- password hashing -----------------------------------------------------------------------------------


async def test_login_rehashes_a_weaker_hash(client: httpx.AsyncClient, settings: Settings) -> None:
    await signup(client, "vera@example.com")
    weak_hash = await PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    assert not weak_hash.startswith(CURRENT_ARGON2_PREFIX)
    await set_password_hash(settings, "vera@example.com", weak_hash)

    await login(client, "vera@example.com")

    row = await user_row(settings, "vera@example.com")
    assert row is not None
    assert row.password_hash.startswith(CURRENT_ARGON2_PREFIX), row.password_hash
    assert row.password_hash != weak_hash
    await login(client, "vera@example.com")  # the new hash is of the same password
    assert_problem(await try_login(client, "vera@example.com", "some other passphrase"), 401, "unauthenticated")


async def test_signup_stores_an_argon2id_hash_with_current_parameters(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await signup(client, "wanda@example.com")

    row = await user_row(settings, "wanda@example.com")

    assert row is not None
    assert row.password_hash.startswith(CURRENT_ARGON2_PREFIX)
    assert PASSWORD not in row.password_hash


# --- rate limits ------------------------------------------------------------------------------------------


async def test_login_is_rate_limited_per_account(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, rate_limit_auth_per_account=3, rate_limit_auth_per_ip=1000)
    async with open_client(settings) as client:
        await signup(client, "xena@example.com")
        await signup(client, "yara@example.com")
        before = await table_counts(settings)

        statuses = [
            (await try_login(client, "xena@example.com", "wrong passphrase here")).status_code for _ in range(3)
        ]
        limited = await try_login(client, "XENA@example.com", "wrong passphrase here")

        assert statuses == [401, 401, 401]
        body = assert_problem(limited, 429, "rate-limited", detail_contains="for this account")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert body["retry_after"] == int(limited.headers["retry-after"])
        # While limited even the right password is refused, and nothing is created.
        assert_problem(await try_login(client, "xena@example.com"), 429, "rate-limited")
        assert await table_counts(settings) == before
        # Other accounts are not affected.
        await login(client, "yara@example.com")


async def test_successful_login_resets_the_account_counter(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, rate_limit_auth_per_account=3, rate_limit_auth_per_ip=1000)
    async with open_client(settings) as client:
        await signup(client, "zack@example.com")
        for _ in range(2):
            assert (await try_login(client, "zack@example.com", "wrong passphrase here")).status_code == 401
        await login(client, "zack@example.com")

        # The counter starts again from zero: three more failures are allowed, and the fourth is limited.
        failures = [await try_login(client, "zack@example.com", "wrong passphrase here") for _ in range(3)]
        limited = await try_login(client, "zack@example.com", "wrong passphrase here")

        for failure in failures:
            assert_problem(failure, 401, "unauthenticated")
        assert_problem(limited, 429, "rate-limited", detail_contains="for this account")
        assert_problem(await try_login(client, "zack@example.com"), 429, "rate-limited")


async def test_login_is_rate_limited_per_address(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, rate_limit_auth_per_ip=3, rate_limit_auth_per_account=1000)
    async with open_client(settings) as client:
        statuses = [(await try_login(client, f"user{i}@example.com", "wrong passphrase")).status_code for i in range(3)]
        limited = await try_login(client, "someone-else@example.com", "wrong passphrase")

        assert statuses == [401, 401, 401]
        assert_problem(limited, 429, "rate-limited", detail_contains="from your address")
        assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_signup_is_rate_limited_per_address(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env, rate_limit_auth_per_ip=2)
    async with open_client(settings) as client:
        await signup(client, "one@example.com")
        await signup(client, "two@example.com")

        limited = await client.post(SIGNUP, json={"email": "three@example.com", "password": PASSWORD})

        assert_problem(limited, 429, "rate-limited")
        assert await user_row(settings, "three@example.com") is None


# --- end to end: two worker processes share one limiter ------------------------------------------------


def _redis_ready() -> None:
    """Flush the test database of the local Redis; fail (not skip) when services are required."""
    client = redis.Redis.from_url(E2E_REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        message = f"Redis at {E2E_REDIS_URL} is unreachable ({type(exc).__name__}: {exc})"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message}; STOWAGE_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(message)
    finally:
        client.close()


def _logins_per_worker(log_dir: Path) -> dict[str, int]:
    """Login requests logged so far by each worker process (each writes ``stowage.<pid>.log``)."""
    counts: dict[str, int] = {}
    for path in log_dir.glob("stowage.*.log"):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        counts[path.name] = sum(1 for line in lines if '"event": "request"' in line and f'"path": "{LOGIN}"' in line)
    return counts


async def _wrong_logins(base_url: str, email: str, count: int) -> list[int]:
    statuses: list[int] = []
    for _ in range(count):
        # A fresh connection each time, so the requests can land on either worker.
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as fresh:
            response = await fresh.post(
                LOGIN, json={"email": email, "password": "wrong passphrase here"}, headers={"Connection": "close"}
            )
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"] == "urn:stowage:problem:rate-limited"
            assert response.headers["retry-after"].isdigit()
    return statuses


@pytest.mark.slow
@pytest.mark.parametrize("limiter", ["sqlite", "redis"])
async def test_two_workers_share_the_account_limit(limiter: str, tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    env = {
        "STOWAGE_RATE_LIMIT_AUTH_PER_ACCOUNT": "5",
        "STOWAGE_LOG_FORMAT": "json",
        "STOWAGE_LOG_FILE": str(log_dir / "stowage.log"),
    }
    if limiter == "redis":
        _redis_ready()
        env["STOWAGE_REDIS_URL"] = E2E_REDIS_URL
    server = ServerProcess(tmp_path / "server", env=env, args=("--workers", "2"))
    await server.start(timeout=60)
    try:
        # The kernel decides which worker accepts a connection; a run where one worker took every
        # request would prove nothing about sharing, so repeat (with a new account) until both served.
        for attempt in range(3):
            email = f"target{attempt}@example.com"
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as setup:
                created = await setup.post(SIGNUP, json={"email": email, "password": PASSWORD})
                assert created.status_code == 201, created.text
            before = _logins_per_worker(log_dir)

            statuses = await _wrong_logins(server.base_url, email, 12)

            assert statuses == [401] * 5 + [429] * 7, statuses
            after = _logins_per_worker(log_dir)
            served = {name for name, total in after.items() if total > before.get(name, 0)}
            if len(served) == 2:
                break
        else:
            pytest.fail(f"every run landed on a single worker; cannot show the limit is shared: {after}")
    finally:
        code = await server.stop()
        assert code is not None
