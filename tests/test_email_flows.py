"""Email verification and password reset through a real SMTP server (aiosmtpd on 127.0.0.1), on
SQLite and PostgreSQL; and what those flows answer when no mail server is configured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from accounts_helpers import (
    ME,
    NEW_PASSWORD,
    PASSWORD,
    RELAXED_LIMITS,
    MailSink,
    assert_problem,
    auth,
    body_text,
    concurrent_client,
    expire_email_tokens,
    login,
    make_admin,
    me_status,
    open_client,
    refresh,
    row_lock,
    signup,
    smtp_server,
    token_from_mail,
    try_login,
    user_row,
)
from conftest import make_settings
from stowage.accounts import tokens
from stowage.config import Settings

VERIFY_REQUEST = f"{ME}/email/verify-request"
VERIFY = "/api/v1/auth/email/verify"
FORGOT = "/api/v1/auth/password/forgot"
RESET = "/api/v1/auth/password/reset"


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


async def forgot(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(FORGOT, json={"email": email})


async def reset(client: httpx.AsyncClient, token: str, new_password: str = NEW_PASSWORD) -> httpx.Response:
    return await client.post(RESET, json={"token": token, "new_password": new_password})


# --- verification -------------------------------------------------------------------------------------


async def test_verify_email(client: httpx.AsyncClient, mail: MailSink) -> None:
    pair = await signup(client, "ada@example.com", display_name="Ada")
    headers = auth(pair["access_token"])

    requested = await client.post(VERIFY_REQUEST, headers=headers)

    assert requested.status_code == 202, requested.text
    assert requested.json()["status"] == "accepted"
    assert mail.count() == 1
    assert mail.recipients[0] == ["ada@example.com"]
    message = mail.last()
    assert message["To"] == "ada@example.com"
    assert "confirm your email address" in message["Subject"].lower()
    assert "/verify-email?token=ste_" in body_text(message)
    token = token_from_mail(message)

    confirmed = await client.post(VERIFY, json={"token": token})

    assert confirmed.status_code == 204, confirmed.text
    assert (await client.get(ME, headers=headers)).json()["email_verified"] is True
    assert_problem(await client.post(VERIFY, json={"token": token}), 400, "invalid-input", field="body.token")
    already = await client.post(VERIFY_REQUEST, headers=headers)
    assert_problem(already, 409, "conflict", detail_contains="already verified")
    assert mail.count() == 1


async def test_expired_or_foreign_verification_tokens(
    client: httpx.AsyncClient, mail: MailSink, settings: Settings
) -> None:
    pair = await signup(client, "bea@example.com")
    headers = auth(pair["access_token"])
    assert (await client.post(VERIFY_REQUEST, headers=headers)).status_code == 202
    token = token_from_mail(mail.last())
    await expire_email_tokens(settings, pair["user"]["id"], datetime.now(UTC) - timedelta(seconds=1))

    expired = await client.post(VERIFY, json={"token": token})

    assert_problem(expired, 400, "invalid-input", field="body.token", detail_contains="expired")
    assert (await client.get(ME, headers=headers)).json()["email_verified"] is False
    unknown = await client.post(VERIFY, json={"token": "ste_" + "A" * 43})
    assert_problem(unknown, 400, "invalid-input", field="body.token")
    # A password-reset token is not a verification token (and is not spent by trying).
    assert (await forgot(client, "bea@example.com")).status_code == 202
    reset_token = token_from_mail(mail.last())
    assert_problem(await client.post(VERIFY, json={"token": reset_token}), 400, "invalid-input")
    assert (await client.get(ME, headers=headers)).json()["email_verified"] is False
    assert (await reset(client, reset_token)).status_code == 204


async def test_a_new_verification_mail_supersedes_the_old_one(client: httpx.AsyncClient, mail: MailSink) -> None:
    pair = await signup(client, "cleo@example.com")
    headers = auth(pair["access_token"])
    assert (await client.post(VERIFY_REQUEST, headers=headers)).status_code == 202
    older = token_from_mail(mail.last())
    assert (await client.post(VERIFY_REQUEST, headers=headers)).status_code == 202
    newer = token_from_mail(mail.last())
    assert older != newer

    assert_problem(await client.post(VERIFY, json={"token": older}), 400, "invalid-input")
    assert (await client.post(VERIFY, json={"token": newer})).status_code == 204


# --- forgotten password ----------------------------------------------------------------------------------


async def test_forgot_and_reset_password(client: httpx.AsyncClient, mail: MailSink, settings: Settings) -> None:
    first = await signup(client, "dana@example.com")
    second = await login(client, "dana@example.com")

    known = await forgot(client, "  DANA@Example.com ")
    assert known.status_code == 202, known.text
    assert mail.count() == 1
    assert mail.recipients[0] == ["dana@example.com"]
    message = mail.last()
    assert "password" in message["Subject"].lower()
    assert "/reset-password?token=ste_" in body_text(message)
    token = token_from_mail(message)

    unknown = await forgot(client, "nobody@example.com")
    assert unknown.status_code == 202
    assert unknown.json() == known.json()
    assert unknown.headers["content-type"] == known.headers["content-type"]
    assert mail.count() == 1

    done = await reset(client, token)

    assert done.status_code == 204, done.text
    for pair in (first, second):
        assert await me_status(client, pair["access_token"]) == 401
        assert_problem(await refresh(client, pair["refresh_token"]), 401, "unauthenticated")
    await login(client, "dana@example.com", NEW_PASSWORD)
    assert_problem(await try_login(client, "dana@example.com", PASSWORD), 401, "unauthenticated")
    reused = await reset(client, token, "yet another passphrase")
    assert_problem(reused, 400, "invalid-input", field="body.token")
    await login(client, "dana@example.com", NEW_PASSWORD)


async def test_newer_reset_mail_supersedes_the_older(client: httpx.AsyncClient, mail: MailSink) -> None:
    await signup(client, "elsa@example.com")
    assert (await forgot(client, "elsa@example.com")).status_code == 202
    older = token_from_mail(mail.last())
    assert (await forgot(client, "elsa@example.com")).status_code == 202
    newer = token_from_mail(mail.last())
    assert mail.count() == 2
    assert older != newer

    assert_problem(await reset(client, older), 400, "invalid-input", field="body.token")
    assert_problem(await try_login(client, "elsa@example.com", NEW_PASSWORD), 401, "unauthenticated")
    assert (await reset(client, newer)).status_code == 204
    await login(client, "elsa@example.com", NEW_PASSWORD)


async def test_rejected_new_password_does_not_spend_the_token(
    client: httpx.AsyncClient, mail: MailSink, settings: Settings
) -> None:
    pair = await signup(client, "fiona@example.com")
    assert (await forgot(client, "fiona@example.com")).status_code == 202
    token = token_from_mail(mail.last())
    stored = await user_row(settings, "fiona@example.com")

    for weak, fragment in (("password", "too common"), ("short", "at least 8"), ("Fiona!!!!", "email")):
        assert_problem(await reset(client, token, weak), 400, "invalid-input", detail_contains=fragment)

    after = await user_row(settings, "fiona@example.com")
    assert stored is not None
    assert after is not None
    assert after.password_hash == stored.password_hash
    assert await me_status(client, pair["access_token"]) == 200
    assert (await reset(client, token)).status_code == 204


async def test_reset_names_the_new_password_field(client: httpx.AsyncClient, mail: MailSink) -> None:
    await signup(client, "gail@example.com")
    assert (await forgot(client, "gail@example.com")).status_code == 202

    weak = await reset(client, token_from_mail(mail.last()), "password")

    assert_problem(weak, 400, "invalid-input", field="body.new_password")


async def test_expired_reset_token(client: httpx.AsyncClient, mail: MailSink, settings: Settings) -> None:
    pair = await signup(client, "hedy@example.com")
    assert (await forgot(client, "hedy@example.com")).status_code == 202
    token = token_from_mail(mail.last())
    await expire_email_tokens(settings, pair["user"]["id"], datetime.now(UTC) - timedelta(seconds=1))

    assert_problem(await reset(client, token), 400, "invalid-input", field="body.token")
    assert await me_status(client, pair["access_token"]) == 200
    await login(client, "hedy@example.com", PASSWORD)


async def test_disabled_account_gets_no_reset_mail(
    client: httpx.AsyncClient, mail: MailSink, settings: Settings
) -> None:
    admin = await make_admin(client, settings, "root@example.com")
    user = await signup(client, "iona@example.com")
    await client.patch(
        f"/api/v1/admin/users/{user['user']['id']}", json={"disabled": True}, headers=auth(admin["access_token"])
    )

    response = await forgot(client, "iona@example.com")

    assert response.status_code == 202
    assert mail.count() == 0


async def test_a_reset_link_mailed_before_disabling_stays_dead_after_enabling(
    client: httpx.AsyncClient, mail: MailSink, settings: Settings
) -> None:
    admin = await make_admin(client, settings, "root@example.com")
    user = await signup(client, "jade@example.com")
    assert (await forgot(client, "jade@example.com")).status_code == 202
    token = token_from_mail(mail.last())
    for disabled in (True, False):
        response = await client.patch(
            f"/api/v1/admin/users/{user['user']['id']}",
            json={"disabled": disabled},
            headers=auth(admin["access_token"]),
        )
        assert response.status_code == 200, response.text

    assert_problem(await reset(client, token), 400, "invalid-input", field="body.token")
    await login(client, "jade@example.com", PASSWORD)  # the password is unchanged


async def test_concurrent_resets_cannot_share_one_token(
    settings: Settings, mail: MailSink, backend: str, request: pytest.FixtureRequest
) -> None:
    passwords = (NEW_PASSWORD, "another fine passphrase")
    async with concurrent_client(settings) as client:
        pair = await signup(client, "kira@example.com")
        assert (await forgot(client, "kira@example.com")).status_code == 202
        token = token_from_mail(mail.last())

        async with row_lock(settings, "email_tokens", "token_hash", tokens.hash_token(token)) as wait_for:
            attempts = [asyncio.create_task(reset(client, token, password)) for password in passwords]
            await wait_for(2)
        responses = await asyncio.gather(*attempts)

        assert sorted(r.status_code for r in responses) == [204, 400], [r.text for r in responses]
        winner, loser = (0, 1) if responses[0].status_code == 204 else (1, 0)
        assert_problem(responses[loser], 400, "invalid-input", field="body.token")
        # Only the winning reset took effect: its password is in force, the loser's never was.
        await login(client, "kira@example.com", passwords[winner])
        for refused in (passwords[loser], PASSWORD):
            assert_problem(await try_login(client, "kira@example.com", refused), 401, "unauthenticated")
        assert await me_status(client, pair["access_token"]) == 401  # the reset ended the old sessions
        assert_problem(await reset(client, token, passwords[loser]), 400, "invalid-input", field="body.token")


# --- without a mail server ----------------------------------------------------------------------------


async def test_email_flows_need_smtp(settings_env: dict[str, str]) -> None:
    settings = make_settings(settings_env)
    assert settings.smtp_host is None
    async with open_client(settings) as client:
        pair = await signup(client, "jane@example.com")

        responses: list[tuple[str, Any]] = [
            ("forgot", await forgot(client, "jane@example.com")),
            ("forgot unknown", await forgot(client, "nobody@example.com")),
            ("verify-request", await client.post(VERIFY_REQUEST, headers=auth(pair["access_token"]))),
        ]

        for _, response in responses:
            assert_problem(response, 503, "service-unavailable", detail_contains="SMTP")
        assert await me_status(client, pair["access_token"]) == 200


@pytest.mark.parametrize("email", ["a\x00b@example.com", "a@exa\x01mple.com", "a\x7f@example.com", "a\x85@example.com"])
async def test_control_characters_in_an_email_are_a_clear_400(
    client: httpx.AsyncClient, mail: MailSink, email: str
) -> None:
    """Found by the contract fuzzer: a NUL reached PostgreSQL (which refuses it in text) and was a 500."""
    forgot = await client.post(FORGOT, json={"email": email})
    signup = await client.post("/api/v1/auth/signup", json={"email": email, "password": "correct horse battery staple"})
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": "correct horse battery staple"})

    for response in (forgot, signup, login):
        problem = assert_problem(response, 400, "invalid-input")
        assert problem["errors"][0]["field"] == "body.email"
    assert mail.messages == []


async def test_a_reset_mail_the_mail_server_refuses_looks_like_an_unknown_address(
    client: httpx.AsyncClient, mail: MailSink
) -> None:
    """Found by the contract fuzzer: an address the server accepts but the mail server refuses made a
    503 for an existing account only, which told the caller that the account exists."""
    odd = '"@5e65'
    assert (await client.post("/api/v1/auth/signup", json={"email": odd, "password": NEW_PASSWORD})).status_code == 201

    existing = await forgot(client, odd)
    unknown = await forgot(client, '"@5e66')

    assert existing.status_code == unknown.status_code == 202
    assert existing.content == unknown.content
    assert mail.messages == []


async def test_a_reset_for_an_address_the_mail_library_cannot_use_looks_like_an_unknown_one(
    client: httpx.AsyncClient, mail: MailSink
) -> None:
    """Found by the contract fuzzer: this address leaves no recipient in the message (``To: <>``), and the
    mail library's ValueError was a 500."""
    odd = "qztu~@\\t#d!uu"
    assert (await client.post("/api/v1/auth/signup", json={"email": odd, "password": NEW_PASSWORD})).status_code == 201

    existing = await forgot(client, odd)
    unknown = await forgot(client, "qztu~@\\t#d!uv")

    assert existing.status_code == unknown.status_code == 202
    assert mail.messages == []
