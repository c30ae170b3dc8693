"""Nodes of one installation must share ``secret_key``: the first start records a fingerprint of it,
and a start with another key is refused on PostgreSQL (several nodes) or recorded with a warning on
SQLite (one machine). Run with the real application's lifespan on both engines."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from structlog.testing import capture_logs

from accounts_helpers import database, signup
from conftest import make_settings
from stowage.app import create_app
from stowage.db.tables import Instance
from stowage.system.secret_check import SecretMismatch, fingerprint

KEY_A = "a" * 40
KEY_B = "b" * 40


async def _start(env: dict[str, str], key: str) -> None:
    """Start the application with ``key`` and serve one request."""
    app = create_app(make_settings(env, secret_key=key))
    async with AsyncTestClient(app=app) as client:  # type: ignore[arg-type]
        await signup(client, f"user-{secrets.token_hex(4)}@example.com")


def _found(error: BaseException, kind: type[BaseException]) -> BaseException:
    """``error`` itself or the one of ``kind`` inside its (nested) exception group."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        matched, _ = error.split(kind)
        if matched is not None:
            return _found(matched.exceptions[0], kind)
    raise AssertionError(f"no {kind.__name__} in {error!r}")


async def _recorded(env: dict[str, str]) -> str | None:
    async with database(make_settings(env)) as db, db.session() as session:
        return await session.scalar(select(Instance.secret_check))


async def test_the_first_start_records_the_keys_fingerprint_and_the_same_key_starts_again(
    settings_env: dict[str, str],
) -> None:
    await _start(settings_env, KEY_A)
    assert await _recorded(settings_env) == fingerprint(KEY_A)
    assert KEY_A not in (await _recorded(settings_env) or "")  # a fingerprint, not the key

    await _start(settings_env, KEY_A)

    assert await _recorded(settings_env) == fingerprint(KEY_A)


async def test_another_key_is_refused_on_postgresql_and_recorded_with_a_warning_on_sqlite(
    backend: str, settings_env: dict[str, str]
) -> None:
    await _start(settings_env, KEY_A)

    if backend == "postgresql":
        with capture_logs() as logs, pytest.raises(BaseException) as refused:  # noqa: PT011 - wrapped in a group
            await _start(settings_env, KEY_B)
        said = [log for log in logs if log["event"] == "start_refused"]
        assert [(log["log_level"], log["reason"]) for log in said] == [("error", "secret_key_mismatch")]
        mismatch = _found(refused.value, SecretMismatch)
        assert "give every node the same secret_key" in str(mismatch)
        assert "UPDATE instance SET secret_check = NULL" in str(mismatch)
        assert await _recorded(settings_env) == fingerprint(KEY_A)
        # The documented way to change the key on purpose.
        async with database(make_settings(settings_env)) as db, db.transaction() as session:
            await session.execute(update(Instance).values(secret_check=None))
        await _start(settings_env, KEY_B)
    else:
        with capture_logs() as logs:
            await _start(settings_env, KEY_B)
        warnings: list[dict[str, Any]] = [log for log in logs if log["event"] == "secret_key_changed"]
        assert len(warnings) == 1

    assert await _recorded(settings_env) == fingerprint(KEY_B)


def test_fingerprints_differ_by_key_and_are_stable() -> None:
    assert fingerprint(KEY_A) == fingerprint(KEY_A)
    assert fingerprint(KEY_A) != fingerprint(KEY_B)
    assert len(fingerprint(KEY_A)) == 64
