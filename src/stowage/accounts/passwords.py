"""Password hashing (Argon2id) and the password policy.

Hashing follows OWASP's Password Storage Cheat Sheet, first recommendation for Argon2id: 19 MiB of
memory, two passes, one lane. Each hash takes tens of milliseconds of CPU, so hashing and verifying run
in a worker thread (argon2-cffi releases the GIL) and never stall the event loop.

The policy follows NIST SP 800-63B: a minimum and a maximum length, no known-breached or very common
passwords, nothing built from the account's own name; no composition rules ("one digit, one symbol")
and no forced expiry. Passwords are NFKC-normalised before both length counting and hashing, so the same
text typed on different keyboards (composed or decomposed accents, full-width digits) is one password.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import secrets
import unicodedata
from importlib import resources

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from stowage.errors import FieldError, InvalidInput

# OWASP Password Storage Cheat Sheet: "m=19456 (19 MiB), t=2, p=1".
MEMORY_COST_KIB = 19456
TIME_COST = 2
PARALLELISM = 1
HASH_LENGTH = 32
SALT_LENGTH = 16

MIN_LENGTH = 8
MAX_LENGTH = 256
# A name part this long is a meaningful guess wherever it appears in a password; a shorter one ("ann",
# "admin", "j.li") turns up by chance in good passphrases, so it is refused only as the whole password.
MIN_CONTAINED_PART = 6
PASSWORD_FIELD = "body.password"

_COMMON_PASSWORDS_FILE = "common-passwords.txt.gz"
_EMAIL_EQUAL = "The password must not be your email address or a name from it."
_EMAIL_CONTAINED = "The password must not contain the name part of your email address."
_NAME_EQUAL = "The password must not be your display name or a name from it."
_NAME_CONTAINED = "The password must not contain your display name or a long word from it."


def _normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """Hashes and verifies passwords with Argon2id; every expensive call runs off the event loop."""

    def __init__(self, time_cost: int = TIME_COST, memory_cost: int = MEMORY_COST_KIB, parallelism: int = PARALLELISM):
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=HASH_LENGTH,
            salt_len=SALT_LENGTH,
            type=argon2.Type.ID,
        )
        self._dummy_hash: str | None = None

    def __repr__(self) -> str:
        h = self._hasher
        return f"PasswordHasher(time_cost={h.time_cost}, memory_cost={h.memory_cost}, parallelism={h.parallelism})"

    async def hash(self, password: str) -> str:
        """The encoded hash (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``) of ``password`` with a fresh salt."""
        return await asyncio.to_thread(self._hasher.hash, _normalize(password))

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``; False on a mismatch or a malformed hash, never raises."""
        return await asyncio.to_thread(self._verify_sync, stored_hash, _normalize(password))

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            # VerifyMismatchError is a VerificationError; InvalidHashError covers truncated or foreign strings.
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with other parameters (or is unreadable) and should be replaced.

        Call after a successful ``verify``, while the plain password is at hand, and store a new hash.
        """
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    async def burn(self, password: str) -> None:
        """Spend the time of one verification for nothing, so "no such account" answers as slowly as
        "wrong password" and response times do not reveal which email addresses have accounts.

        The dummy hash is made on the first call, which therefore costs one hash — the same as a verify.
        """
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(32))
            return
        await self.verify(self._dummy_hash, password)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of ~20,000 common and breached passwords, case-folded; read once, on first use."""
    data_file = resources.files("stowage.accounts").joinpath("data").joinpath(_COMMON_PASSWORDS_FILE)
    with data_file.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return frozenset(folded for line in lines if (folded := _normalize(line.strip()).casefold()))


def _skeleton(text: str) -> str:
    """``text`` as a guesser varies it: NFKC, case-folded, letters and digits only (no spaces or punctuation)."""
    return "".join(char for char in _normalize(text).casefold() if char.isalnum())


def _words(text: str) -> list[str]:
    """The skeletons of the words of ``text``, split at anything that is not a letter or a digit."""
    folded = _normalize(text).casefold()
    return "".join(char if char.isalnum() else " " for char in folded).split()


def _personal_parts(email: str | None, display_name: str | None) -> list[tuple[str, str, str]]:
    """(skeleton, message if equal, message if contained) for every name a guesser would try first.

    From the email: the whole address, its local part and each word of the local part; from the display
    name: the whole name and each of its words. Empty skeletons (a name of punctuation only) are dropped.
    """
    parts: list[tuple[str, str, str]] = []
    if email:
        local = email.rpartition("@")[0] if "@" in email else email
        for text in [_skeleton(email), _skeleton(local), *_words(local)]:
            parts.append((text, _EMAIL_EQUAL, _EMAIL_CONTAINED))
    if display_name:
        for text in [_skeleton(display_name), *_words(display_name)]:
            parts.append((text, _NAME_EQUAL, _NAME_CONTAINED))
    return [part for part in parts if part[0]]


def _personal_message(password: str, email: str | None, display_name: str | None) -> str | None:
    """Why ``password`` is built from the account's own names, or None.

    Refused: a password whose skeleton equals a part's skeleton (any length), or contains one of at
    least ``MIN_CONTAINED_PART`` letters and digits.
    """
    skeleton = _skeleton(password)
    if not skeleton:
        return None
    for part, equal_message, contained_message in _personal_parts(email, display_name):
        if skeleton == part:
            return equal_message
        if len(part) >= MIN_CONTAINED_PART and part in skeleton:
            return contained_message
    return None


def check_password_policy(
    password: str,
    *,
    email: str | None = None,
    display_name: str | None = None,
    field: str = PASSWORD_FIELD,
) -> None:
    """Raise ``InvalidInput`` (one ``FieldError`` on ``field``) when ``password`` is not acceptable.

    Rejected: fewer than 8 or more than 256 characters (Unicode code points after NFKC), a password on
    the common/breached list (any case), or one built from the account's names. Names and password are
    compared as skeletons (NFKC, case-folded, letters and digits only): a password whose skeleton equals
    the email address, its local part, the display name or one of their words is refused whatever the
    length; one that contains such a part is refused when the part has at least 6 letters and digits
    (so "a long admin passphrase" is fine for admin@example.com, "Jsmith2024!" is not for jsmith@…).
    Spaces and any characters are allowed.
    """
    normalized = _normalize(password)
    folded = normalized.casefold()
    message: str | None = None
    if len(normalized) < MIN_LENGTH:
        message = f"The password must be at least {MIN_LENGTH} characters long."
    elif len(normalized) > MAX_LENGTH:
        message = f"The password must be at most {MAX_LENGTH} characters long."
    elif folded in common_passwords():
        message = (
            "This password is too common: it appears in lists of leaked passwords. "
            "Choose another one; a few unrelated words make a strong password that is easy to remember."
        )
    else:
        message = _personal_message(normalized, email, display_name)
    if message is not None:
        raise InvalidInput(message, errors=[FieldError(field=field, message=message)])
