"""Presigned URLs: the signature scheme, and the query that carries it. Pure: no I/O, no web framework.

A presigned URL lets its holder make one request without a token — GET (or HEAD) one file, or PUT one
new file into one folder — until it expires. It is the server's own URL for that request plus a query::

    /api/v1/nodes/<file id>/content?X-Stowage-Expires=1767225600
        &X-Stowage-Credential=s.<session id>.<user id>&X-Stowage-Signature=<43 characters>

    /api/v1/nodes/<folder id>/children/<name>?on_conflict=fail&X-Stowage-Max-Size=10485760
        &X-Stowage-Media-Type=image/*&X-Stowage-Expires=…&X-Stowage-Credential=…&X-Stowage-Signature=…

A tus URL pair does the same for a resumable upload: the *creation URL* (``POST /api/v1/uploads/``
with ``X-Stowage-Folder``, the folder every upload it creates goes into) answers each creation with a
``Location`` that is itself presigned for that one upload (``/api/v1/uploads/<upload id>``, same
signer, expiry and constraints). An upload URL is signed for the method class ``TUS`` — HEAD, PATCH,
DELETE and a POST with ``X-HTTP-Method-Override`` alike, since a tus client resumes with whichever it
needs — and for nothing but that upload's path.

The signature is HMAC-SHA256, under a key derived from the instance secret for this purpose only
(``derive_key``), over every part that decides what the request may do (``canonical``): the method
(HEAD is signed as GET), the request path (which names the node, and for uploads the folder and the
file name), the expiry (absolute Unix time), the signer (``Signer``: the user and the credential
that minted the URL, so revoking that credential or disabling the user ends the URL too) and the
upload constraints (``on_conflict``, maximum size, media type, and for tus the folder). The parts
are encoded as one JSON array, so no choice of values can make two different requests sign alike.
Signatures are compared in constant time. Anything changed — a part, a constraint dropped or added,
the signature itself — fails verification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, cast
from urllib.parse import quote, unquote_plus

import msgspec

from stowage.errors import PermissionDenied
from stowage.policy import Action, CredentialKind, Restriction

# The key is HMAC(secret, label): knowing presigned URLs tells nothing about the token-signing key,
# and a new scheme gets a new label.
KEY_LABEL = b"stowage presign v1"
SCHEME = "stowage-presign-v1"

EXPIRES = "X-Stowage-Expires"
CREDENTIAL = "X-Stowage-Credential"
SIGNATURE = "X-Stowage-Signature"
MAX_SIZE = "X-Stowage-Max-Size"
MEDIA_TYPE = "X-Stowage-Media-Type"
FOLDER = "X-Stowage-Folder"
ON_CONFLICT = "on_conflict"
# A thumbnail URL signs its transform parameters (``/api/v1/nodes/<id>/thumbnail?w=256&format=webp…``).
TRANSFORM_PARAMETERS = ("w", "h", "fit", "q", "format")
# Every query parameter the scheme reads; any of them in a request's query makes it a presigned request.
PRESIGN_PARAMETERS = frozenset({EXPIRES, CREDENTIAL, SIGNATURE, MAX_SIZE, MEDIA_TYPE, FOLDER})
MARKER = b"X-Stowage-"  # a cheap test on the raw query string before parsing it

SIGNATURE_LENGTH = 43  # 32 bytes, base64url without padding
MAX_MEDIA_TYPE = 255
CredentialCode = Literal["s", "p"]  # a session, or a personal access token
# The method class of every request to one tus upload (HEAD, PATCH, DELETE, POST with a method override).
TUS_METHOD = "TUS"
TUS_CREATION_PATH = "/api/v1/uploads/"

INVALID = "This presigned URL is not valid"


class Signer(msgspec.Struct, frozen=True):
    """Who minted the URL: their user id and the credential they used (a session or a personal token)."""

    code: CredentialCode
    credential_id: str
    user_id: str

    def encode(self) -> str:
        return f"{self.code}.{self.credential_id}.{self.user_id}"

    @classmethod
    def parse(cls, text: str) -> Signer:
        code, _, rest = text.partition(".")
        credential_id, _, user_id = rest.partition(".")
        if code not in ("s", "p") or not _plain_id(credential_id) or not _plain_id(user_id):
            raise PermissionDenied(f"{INVALID}: {CREDENTIAL} is malformed.")
        return cls(code=cast("CredentialCode", code), credential_id=credential_id, user_id=user_id)


class Constraints(msgspec.Struct, frozen=True):
    """What an upload URL allows; all None for a download URL. ``folder_id`` only for tus URLs: the
    folder the uploads go into (a PUT URL names its folder in its path). ``transform`` only for a
    thumbnail URL: its parameters (``transform_text``), signed so that no other size or format can be
    asked with it."""

    on_conflict: str | None = None
    max_size: int | None = None
    media_type: str | None = None
    folder_id: str | None = None
    transform: str | None = None


def transform_text(values: Mapping[str, object | None]) -> str:
    """The signed form of a thumbnail's parameters: every name of ``TRANSFORM_PARAMETERS`` in order,
    with its value as sent (empty when absent), so reordering the query cannot change what is signed."""
    return "&".join(f"{name}={'' if values.get(name) is None else values[name]}" for name in TRANSFORM_PARAMETERS)


class Presigned(msgspec.Struct, frozen=True):
    """A presigned request as its query states it (before it is verified)."""

    expires: int
    signer: Signer
    signature: str
    constraints: Constraints


def derive_key(secret: str) -> bytes:
    """The presigning key: HMAC-SHA256(instance secret, "stowage presign v1")."""
    return hmac.new(secret.encode("utf-8"), KEY_LABEL, hashlib.sha256).digest()


def signed_method(method: str, path: str = "") -> str:
    """The method class a signature covers: HEAD is a GET without the body (a GET URL answers both), and
    every request to one tus upload is ``TUS`` (a tus client resumes with HEAD, PATCH or DELETE, or a
    POST overriding one of them)."""
    if path.startswith(TUS_CREATION_PATH) and _TUS_UPLOAD.match(path) is not None:  # (a GET skips the regex)
        return TUS_METHOD
    return "GET" if method == "HEAD" else method


def canonical(method: str, path: str, *, expires: int, signer: Signer, constraints: Constraints) -> bytes:
    """The bytes signed: every part that decides what the request may do, unambiguously encoded. A tus
    URL's folder is a ninth element, a thumbnail URL's transform a tenth (after the folder, null) — JSON
    arrays of different lengths never encode alike, and GET and PUT URLs keep the signatures they always
    had. The tus endpoint is signed as ``/api/v1/uploads/`` with or without its trailing slash (the
    router treats both alike)."""
    parts: list[object] = [
        SCHEME,
        signed_method(method, path),
        TUS_CREATION_PATH if _TUS_CREATION.match(path) is not None else path,
        expires,
        signer.encode(),
        constraints.on_conflict,
        constraints.max_size,
        constraints.media_type,
    ]
    if constraints.folder_id is not None or constraints.transform is not None:
        parts.append(constraints.folder_id)
    if constraints.transform is not None:
        parts.append(constraints.transform)
    return msgspec.json.encode(parts)


def sign(key: bytes, method: str, path: str, *, expires: int, signer: Signer, constraints: Constraints) -> str:
    """The signature of a request: base64url (no padding) of HMAC-SHA256(key, ``canonical(...)``)."""
    signed = canonical(method, path, expires=expires, signer=signer, constraints=constraints)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(key: bytes, method: str, path: str, presigned: Presigned) -> None:
    """Raise ``PermissionDenied`` unless the signature matches this method, path and query (constant time).
    Expiry is the caller's to check: only after this, so an expiry it reports is the signed one."""
    expected = sign(
        key, method, path, expires=presigned.expires, signer=presigned.signer, constraints=presigned.constraints
    )
    if not hmac.compare_digest(expected.encode("ascii"), presigned.signature.encode("ascii", "replace")):
        raise PermissionDenied(
            f"{INVALID}: its signature does not match (any change to the URL invalidates it).",
            extra={"presign": "signature"},
        )


def query(expires: int, signer: Signer, constraints: Constraints, signature: str) -> str:
    """The query string of a presigned URL (constraints first, then expiry, signer and signature)."""
    parts: list[tuple[str, str]] = []
    if constraints.transform is not None:
        for pair in constraints.transform.split("&"):
            name, _, value = pair.partition("=")
            if value:
                parts.append((name, value))
    if constraints.on_conflict is not None:
        parts.append((ON_CONFLICT, constraints.on_conflict))
    if constraints.max_size is not None:
        parts.append((MAX_SIZE, str(constraints.max_size)))
    if constraints.media_type is not None:
        parts.append((MEDIA_TYPE, constraints.media_type))
    if constraints.folder_id is not None:
        parts.append((FOLDER, constraints.folder_id))
    parts += [(EXPIRES, str(expires)), (CREDENTIAL, signer.encode()), (SIGNATURE, signature)]
    return "&".join(f"{name}={quote(value, safe='*/')}" for name, value in parts)


def download_urls(key: bytes, base: str, node_ids: Sequence[str], *, expires: int, signer: Signer) -> list[str]:
    """GET URLs of many files at once (a listing), exactly as ``sign`` and ``query`` would make them one
    by one, at a fraction of the cost: the parts every URL shares are encoded once, and each file costs
    one one-shot HMAC (about 2 µs instead of 10)."""
    shared = msgspec.json.encode([expires, signer.encode(), None, None, None])  # the array's tail
    head = msgspec.json.encode([SCHEME, "GET"])[:-1] + b","
    tail = b"," + shared[1:]
    suffix = f"&{CREDENTIAL}={quote(signer.encode(), safe='*/')}&{SIGNATURE}="
    prefix = f"{base.rstrip('/')}/api/v1/nodes/"
    mac = _hmac_sha256(key)
    urls: list[str] = []
    for node_id in node_ids:
        signed = head + msgspec.json.encode(download_path(node_id)) + tail
        signature = base64.urlsafe_b64encode(mac(signed)).rstrip(b"=").decode("ascii")
        encoded = node_id if _plain_id(node_id) else quote(node_id, safe="")
        urls.append(f"{prefix}{encoded}/content?{EXPIRES}={expires}{suffix}{signature}")
    return urls


def _hmac_sha256(key: bytes) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 under ``key`` (RFC 2104) with the padded key's two hash states computed once: for
    many messages, each costs two hash copies instead of a keyed set-up (``hmac.digest``)."""
    block = key.ljust(64, b"\0") if len(key) <= 64 else hashlib.sha256(key).digest().ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def mac(message: bytes) -> bytes:
        digest = inner.copy()
        digest.update(message)
        result = outer.copy()
        result.update(digest.digest())
        return result.digest()

    return mac


def has_presign(query_string: bytes | str) -> bool:
    """Whether a raw query string may carry presign parameters (a cheap test; ``parse`` decides)."""
    if isinstance(query_string, str):
        return MARKER.decode() in query_string
    return MARKER in query_string


def parse(query_string: bytes | str) -> Presigned | None:
    """The presign parameters of a raw query string: None when it has none, ``PermissionDenied`` when
    they are incomplete, repeated or malformed (a broken presigned URL never falls back to anything)."""
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    if MARKER.decode() not in text:
        return None
    found: dict[str, str] = {}
    for pair in text.split("&"):  # as parse_qsl(keep_blank_values=True), without its cost on every request
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in PRESIGN_PARAMETERS or name == ON_CONFLICT or name in TRANSFORM_PARAMETERS:
            if "%" in value or "+" in value:
                value = unquote_plus(value)
            if name in found:
                raise PermissionDenied(f"{INVALID}: {name} appears more than once.")
            found[name] = value
    if not PRESIGN_PARAMETERS & found.keys():
        return None
    return Presigned(
        expires=_integer(found, EXPIRES, required=True) or 0,
        signer=Signer.parse(_required(found, CREDENTIAL)),
        signature=_signature(_required(found, SIGNATURE)),
        constraints=Constraints(
            on_conflict=found.get(ON_CONFLICT),
            max_size=_integer(found, MAX_SIZE, required=False),
            media_type=found.get(MEDIA_TYPE),
            folder_id=found.get(FOLDER),
            transform=transform_text(found) if found.keys() & set(TRANSFORM_PARAMETERS) else None,
        ),
    )


# The requests a presigned URL can make (paths as the server sees them: percent-decoded).
_DOWNLOAD = re.compile(r"\A/api/v1/nodes/([^/]+)/content\Z")
_UPLOAD = re.compile(r"\A/api/v1/nodes/([^/]+)/children/([^/]+)\Z")
_THUMBNAIL = re.compile(r"\A/api/v1/nodes/([^/]+)/thumbnail\Z")
_TUS_CREATION = re.compile(r"\A/api/v1/uploads/?\Z")
_TUS_UPLOAD = re.compile(r"\A/api/v1/uploads/([^/]+)\Z")


def download_path(node_id: str) -> str:
    """The path a GET URL signs: the file's content route."""
    return f"/api/v1/nodes/{node_id}/content"


def thumbnail_path(node_id: str) -> str:
    """The path a thumbnail URL signs (with its transform parameters)."""
    return f"/api/v1/nodes/{node_id}/thumbnail"


def upload_path(folder_id: str, name: str) -> str:
    """The path a PUT URL signs: the raw-upload route of ``name`` in the folder (as decoded)."""
    return f"/api/v1/nodes/{folder_id}/children/{name}"


def tus_upload_path(upload_id: str) -> str:
    """The path a tus upload URL signs (the ``Location`` its creation answered)."""
    return f"/api/v1/uploads/{upload_id}"


def restriction_for(
    method: str, path: str, presigned: Presigned, signer_kind: CredentialKind | None = None
) -> Restriction:
    """What a verified presigned request may do: read the one file, write the one new file, create tus
    uploads in the one folder, or continue the one tus upload. ``signer_kind`` (the signer's credential
    kind) is kept in a tus creation's restriction: the upload URL it hands out is signed the same way."""
    constraints = presigned.constraints
    method = signed_method(method, path)
    if constraints.folder_id is not None:
        return _tus_restriction(method, path, presigned, signer_kind)
    if method == "GET" and (download := _DOWNLOAD.match(path)) is not None and constraints == Constraints():
        return Restriction(action=Action.FILE_READ, node_id=download.group(1))
    if (
        method == "GET"
        and (thumbnail := _THUMBNAIL.match(path)) is not None
        and constraints.transform is not None
        and constraints == Constraints(transform=constraints.transform)
    ):
        return Restriction(action=Action.FILE_READ, node_id=thumbnail.group(1))
    if method == "PUT" and (upload := _UPLOAD.match(path)) is not None and constraints.transform is None:
        return Restriction(
            action=Action.FILE_WRITE,
            node_id=upload.group(1),
            name=upload.group(2),
            max_size=constraints.max_size,
            media_type=constraints.media_type,
            on_conflict=constraints.on_conflict,
        )
    raise PermissionDenied(
        f"{INVALID}: presigned URLs only GET a file's content or one thumbnail of it, PUT one new file, or "
        "create and continue tus uploads."
    )


def _tus_restriction(method: str, path: str, presigned: Presigned, signer_kind: CredentialKind | None) -> Restriction:
    """A tus creation URL creates single uploads in its folder; an upload URL continues its one upload."""
    constraints = presigned.constraints
    assert constraints.folder_id is not None
    resumable: Literal["create", "upload"]
    upload_id = None
    if method == "POST" and _TUS_CREATION.match(path) is not None:
        resumable = "create"
    elif method == TUS_METHOD and (upload := _TUS_UPLOAD.match(path)) is not None:
        resumable, upload_id = "upload", upload.group(1)
    else:
        raise PermissionDenied(f"{INVALID}: {FOLDER} belongs to tus upload URLs only.")
    return Restriction(
        action=Action.FILE_WRITE,
        node_id=constraints.folder_id,
        max_size=constraints.max_size,
        media_type=constraints.media_type,
        on_conflict=constraints.on_conflict,
        resumable=resumable,
        upload_id=upload_id,
        expires=presigned.expires,
        signer_kind=signer_kind,
    )


def _required(found: Mapping[str, str], name: str) -> str:
    value = found.get(name)
    if not value:
        raise PermissionDenied(f"{INVALID}: {name} is missing.")
    return value


def _integer(found: Mapping[str, str], name: str, *, required: bool) -> int | None:
    value = found.get(name)
    if value is None and not required:
        return None
    value = _required(found, name)
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise PermissionDenied(f"{INVALID}: {name} must be a whole number.")
    return int(value)


def _signature(value: str) -> str:
    if len(value) != SIGNATURE_LENGTH or not value.isascii():
        raise PermissionDenied(f"{INVALID}: {SIGNATURE} is malformed.")
    return value


def _plain_id(value: str) -> bool:
    """An id as the server makes them (UUIDs): letters, digits and dashes, nothing that could hide a dot."""
    return 0 < len(value) <= 64 and value.replace("-", "").isalnum() and value.isascii()
