"""Credentials: signed JWT access tokens and opaque random tokens stored only as hashes.

Access tokens are short-lived HS256 JWTs signed with the server secret; every claim that matters
(issuer, audience, expiry, issued-at, id, subject, session) is required and checked. Everything else
the server hands out — refresh tokens, personal access tokens, invites, email links — is an opaque
256-bit random string with a readable prefix; only its SHA-256 is stored, so a database leak does
not leak usable credentials. (A fast hash is right here: the tokens have full entropy, unlike passwords.)
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

import jwt
import msgspec

ISSUER = "stowage"
AUDIENCE = "stowage-api"
ALGORITHM = "HS256"
LEEWAY_SECONDS = 5

REFRESH_PREFIX = "srt_"
PAT_PREFIX = "stp_"
INVITE_PREFIX = "sti_"
EMAIL_PREFIX = "ste_"


class AccessClaims(msgspec.Struct, frozen=True):
    user_id: str
    session_id: str
    token_id: str
    expires_at: int


class InvalidToken(Exception):
    """The token is malformed, forged, expired or for another audience."""


def new_opaque_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_access_token(*, secret: str, user_id: str, session_id: str, now: datetime, ttl_seconds: int) -> str:
    issued = int(now.timestamp())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "sid": session_id,
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "nbf": issued,
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, *, secret: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "sid"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    sub, sid, jti = claims.get("sub"), claims.get("sid"), claims.get("jti")
    if not (isinstance(sub, str) and isinstance(sid, str) and isinstance(jti, str) and sub and sid and jti):
        raise InvalidToken("token claims are malformed")
    return AccessClaims(user_id=sub, session_id=sid, token_id=jti, expires_at=int(claims["exp"]))


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2
