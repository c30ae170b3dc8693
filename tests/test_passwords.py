"""Password hashing (Argon2id, off the event loop) and the NIST-style password policy."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from accounts_helpers import SIGNUP, assert_problem, table_counts, user_row
from stowage.accounts import passwords
from stowage.accounts.passwords import PasswordHasher, check_password_policy, common_passwords
from stowage.config import Settings
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


def _policy_accepts(password: str, *, email: str | None = None, display_name: str | None = None) -> bool:
    """Whether the policy lets ``password`` through (True) or refuses it with ``InvalidInput`` (False)."""
    try:
        check_password_policy(password, email=email, display_name=display_name)
    except InvalidInput:
        return False
    return True


EMAIL_EQUAL = "The password must not be your email address or a name from it."
EMAIL_CONTAINED = "The password must not contain the name part of your email address."
NAME_EQUAL = "The password must not be your display name or a name from it."
NAME_CONTAINED = "The password must not contain your display name or a long word from it."


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("jsmith@example.org", "Jsmith2024!!"),
        ("jsmith@example.org", "my-JSMITH-pass"),
        ("jsmith@example.org", "my J.Smith pass"),  # punctuation inside the password is ignored too
        ("john.smith@example.org", "john.smith99"),
        ("john.smith@example.org", "johnsmith-rules"),  # separators removed
        ("christopher.lee@example.org", "Christopher rides again"),  # a word of the local part, >= 6
    ],
)
def test_rejects_email_local_part(email: str, password: str) -> None:
    assert _policy_message(password, email=email) == EMAIL_CONTAINED


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("jsmith2024@example.org", "jsmith2024"),
        ("admin@example.com", "Admin!!!!"),  # a short local part is still refused as the whole password
        ("admin@example.com", "a.d.m.i.n."),  # punctuation ignored
        ("admin@example.com", "Admin@Example.com"),  # the whole address
        ("john.lee@example.org", "Lee!!!!!!"),  # one word of the local part
    ],
)
def test_rejects_password_equal_to_the_email_or_a_name_from_it(email: str, password: str) -> None:
    assert _policy_message(password, email=email) == EMAIL_EQUAL


def test_readme_admin_passphrase_is_accepted() -> None:
    """The README tour's first command: a 5-letter local part must not ban every password containing it."""
    assert _policy_accepts("a long admin passphrase", email="admin@example.com")
    assert _policy_message("Admin@Example.com rules", email="admin@example.com") == EMAIL_CONTAINED
    assert _policy_message("admin!!!!", email="admin@example.com") == EMAIL_EQUAL


async def test_signup_applies_the_name_rule(client: httpx.AsyncClient, settings: Settings) -> None:
    """Over HTTP on both databases: the short local part inside a passphrase signs up; a long one is refused."""
    accepted = await client.post(SIGNUP, json={"email": "admin@example.com", "password": "a long admin passphrase"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["user"]["email"] == "admin@example.com"
    before = await table_counts(settings)
    refused = await client.post(SIGNUP, json={"email": "jsmith2024@example.org", "password": "Jsmith2024 rules!"})
    assert_problem(refused, 400, "invalid-input", detail=EMAIL_CONTAINED, field="body.password")
    assert await user_row(settings, "jsmith2024@example.org") is None
    assert await table_counts(settings) == before


def test_contained_local_part_counts_from_six_letters_and_digits() -> None:
    passphrase = "{} in chains forever"
    assert _policy_accepts(passphrase.format("alice"), email="alice@example.org")  # 5: only equality counts
    assert _policy_message(passphrase.format("alicia"), email="alicia@example.org") == EMAIL_CONTAINED  # 6
    assert _policy_accepts(passphrase.format("a.lee"), email="a.lee@example.org")  # "alee": 4
    assert _policy_message(passphrase.format("al.lee.x"), email="al.lee.x@example.org") == EMAIL_CONTAINED  # 6


def test_short_local_part_is_not_checked() -> None:
    """Only as the whole password: contained, "bob" is accepted; alone (any case, punctuation), refused."""
    assert _policy_accepts("bob-likes-long-walks", email="bob@example.org")
    assert _policy_message("B.O.B. !!!", email="bob@example.org") == EMAIL_EQUAL
    assert _policy_message("bobby1-likes-long-walks", email="bobby1@example.org") == EMAIL_CONTAINED


@pytest.mark.parametrize("password", ["Ada Lovelace 1815", "adalovelace#1", "xx ADA LOVELACE xx", "lovelace forever"])
def test_rejects_display_name(password: str) -> None:
    assert _policy_message(password, display_name="Ada  Lovelace") == NAME_CONTAINED


@pytest.mark.parametrize("password", ["Ada Lovelace", "adalovelace!!", "ADA!!!!!!", "  ada  ....  "])
def test_rejects_password_equal_to_the_display_name_or_one_of_its_words(password: str) -> None:
    assert _policy_message(password, display_name="Ada  Lovelace") == NAME_EQUAL


def test_short_display_name_is_not_checked() -> None:
    """Only as the whole password: contained, "Ada" is accepted; alone, refused; a 6-letter name, refused."""
    assert _policy_accepts("ada rides a blue bicycle", display_name="Ada")
    assert _policy_message("Ada!!!!!", display_name="Ada") == NAME_EQUAL
    assert _policy_message("adaline rides a blue bicycle", display_name="Adaline") == NAME_CONTAINED


@pytest.mark.parametrize(
    ("password", "refused_twin", "message"),
    [
        ("correct horse battery staple", "correct horse lovelace staple", NAME_CONTAINED),
        ("Grüße aus dem schönen Köln", "Grüße!", "The password must be at least 8 characters long."),
        ("日本語のパスワードです", "パスワード", "The password must be at least 8 characters long."),
        ("  leading and trailing spaces  ", "  ada lovelace  ", NAME_EQUAL),
        ("tr0ub4dor&3 but longer", "tr0ub4dor&3 ada.lovelace", NAME_CONTAINED),
    ],
)
def test_accepts_long_passphrases(password: str, refused_twin: str, message: str) -> None:
    names = {"email": "ada@example.org", "display_name": "Ada Lovelace"}
    assert _policy_accepts(password, **names)
    assert _policy_message(refused_twin, **names) == message


def test_no_composition_rules() -> None:
    """Lowercase only, digits only, uppercase only pass; what fails is being common, never the mix."""
    for password in ["onlylowercaselettershere", "40718293561", "ALLUPPERCASELETTERS"]:
        assert _policy_accepts(password), password
    for common in ["iloveyou", "12345678", "SUNSHINE"]:
        assert "too common" in _policy_message(common), common
