"""Password hashing (Argon2id, off the event loop) and the NIST-style password policy."""

from __future__ import annotations

import asyncio
import time

import pytest

from stowage.accounts import passwords
from stowage.accounts.passwords import PasswordHasher, check_password_policy, common_passwords
from stowage.errors import InvalidInput


@pytest.fixture
def hasher() -> PasswordHasher:
    """Minimal cost so the suite stays fast; the production parameters have their own test."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


async def test_round_trip(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert await hasher.verify(stored, "correct horse battery staple")
    assert not hasher.needs_rehash(stored)


async def test_each_hash_has_its_own_salt(hasher: PasswordHasher) -> None:
    assert await hasher.hash("same password") != await hasher.hash("same password")


async def test_wrong_password_is_false(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery staple")
    assert not await hasher.verify(stored, "correct horse battery stapler")
    assert not await hasher.verify(stored, "")


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=8,t=1,p=1$",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$!!!",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "pbkdf2_sha256$600000$salt$hash",
    ],
)
async def test_malformed_hash_is_false(hasher: PasswordHasher, stored: str) -> None:
    assert not await hasher.verify(stored, "anything at all")
    assert hasher.needs_rehash(stored)


async def test_needs_rehash_for_other_parameters(hasher: PasswordHasher) -> None:
    old = await PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash("a password here")
    assert hasher.needs_rehash(old)
    assert await hasher.verify(old, "a password here"), "old hashes still verify, whatever their parameters"


async def test_unicode_is_normalized_before_hashing(hasher: PasswordHasher) -> None:
    composed, decomposed = "caf\u00e9 au lait", "cafe\u0301 au lait"
    assert await hasher.verify(await hasher.hash(composed), decomposed)


async def test_burn_verifies_against_one_dummy_hash(hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch) -> None:
    verified: list[tuple[str, str]] = []
    real_verify = hasher.verify

    async def spy(stored_hash: str, password: str) -> bool:
        verified.append((stored_hash, password))
        return await real_verify(stored_hash, password)

    monkeypatch.setattr(hasher, "verify", spy)
    await hasher.burn("first")  # makes the dummy hash: one hash costs what one verify costs
    await hasher.burn("second")
    await hasher.burn("third")
    assert [password for _, password in verified] == ["second", "third"]
    assert len({stored for stored, _ in verified}) == 1
    assert verified[0][0].startswith("$argon2id$")


async def test_production_defaults_are_owasp() -> None:
    assert (passwords.MEMORY_COST_KIB, passwords.TIME_COST, passwords.PARALLELISM) == (19456, 2, 1)
    production = PasswordHasher()
    stored = await production.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await production.verify(stored, "correct horse battery staple")
    assert not production.needs_rehash(stored)
    assert PasswordHasher(time_cost=1, memory_cost=8).needs_rehash(stored)


async def test_hashing_and_verifying_run_off_the_event_loop() -> None:
    # Costly enough (~100 ms or more) that a loop-blocking implementation would let the ticker run at most once.
    slow = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.002)

    for operation in ("hash", "verify"):
        stored = await slow.hash("correct horse") if operation == "verify" else ""
        ticks = 0
        done.clear()
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # let the ticker start
        started = time.monotonic()
        if operation == "hash":
            await slow.hash("correct horse")
        else:
            assert await slow.verify(stored, "correct horse")
        elapsed = time.monotonic() - started
        done.set()
        await task
        assert elapsed > 0.02, "the work must take long enough for the measurement to mean something"
        assert ticks >= 5, f"{operation}: the event loop ran only {ticks} ticks in {elapsed:.3f} s"


# --- policy -------------------------------------------------------------------------------------------------


def _policy_message(password: str, *, email: str | None = None, display_name: str | None = None) -> str:
    with pytest.raises(InvalidInput) as caught:
        check_password_policy(password, email=email, display_name=display_name)
    error = caught.value
    assert len(error.errors) == 1
    assert error.errors[0].field == "body.password"
    assert error.errors[0].message == error.detail
    return error.detail


@pytest.mark.parametrize("password", ["", "a", "short12", "\u00e9t\u00e9 ok"])
def test_rejects_short(password: str) -> None:
    assert "at least 8" in _policy_message(password)


def test_length_counts_code_points_after_nfkc() -> None:
    # U+FB03 (ﬃ ligature) is one code point that NFKC expands to three, so five of them make 15 characters.
    check_password_policy("\ufb03" * 5 + "zqx")
    # Nine code points before composition, seven after (e + U+0301 → é).
    assert "at least 8" in _policy_message("ve\u0301rite\u0301s")  # NFKC: "vérités" = 7
    check_password_policy(
        "\U0001f512\U0001f511\U0001f5dd\ufe0f\U0001f6aa\U0001f3e0\U0001f9f1\U0001f6e1"
    )  # 8 code points


def test_rejects_too_long_and_accepts_the_maximum() -> None:
    check_password_policy("z" + "qx" * 127 + "y")  # 256
    assert "at most 256" in _policy_message("z" * 257)


@pytest.mark.parametrize("password", ["password1", "qwerty123", "PASSWORD1", "QwErTy123", "iloveyou", "12345678"])
def test_rejects_common_passwords_any_case(password: str) -> None:
    assert "too common" in _policy_message(password)


def test_common_list_is_loaded_once_and_large() -> None:
    first = common_passwords()
    assert first is common_passwords()
    assert isinstance(first, frozenset)
    assert len(first) > 19000
    assert {"password", "qwerty", "123456"} <= first


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("jsmith@example.org", "Jsmith2024!!"),
        ("jsmith@example.org", "my-JSMITH-pass"),
        ("john.smith@example.org", "john.smith99"),
        ("john.smith@example.org", "johnsmith-rules"),  # separators removed
        ("jsmith2024@example.org", "jsmith2024"),  # equal to it
    ],
)
def test_rejects_email_local_part(email: str, password: str) -> None:
    assert "email" in _policy_message(password, email=email)


def test_short_local_part_is_not_checked() -> None:
    check_password_policy("bob-likes-long-walks", email="bob@example.org")


@pytest.mark.parametrize("password", ["Ada Lovelace 1815", "adalovelace!!", "xx ADA LOVELACE xx"])
def test_rejects_display_name(password: str) -> None:
    assert "display name" in _policy_message(password, display_name="Ada  Lovelace")


def test_short_display_name_is_not_checked() -> None:
    check_password_policy("ada rides a blue bicycle", display_name="Ada")


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "Grüße aus dem schönen Köln",
        "日本語のパスワードです",
        "  leading and trailing spaces  ",
        "tr0ub4dor&3 but longer",
    ],
)
def test_accepts_long_passphrases(password: str) -> None:
    check_password_policy(password, email="ada@example.org", display_name="Ada Lovelace")


def test_no_composition_rules() -> None:
    check_password_policy("onlylowercaselettershere")
