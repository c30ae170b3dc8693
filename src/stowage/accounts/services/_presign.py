"""Presigned URLs: minting them for a signed-in caller, and turning one back into a caller at use.

Minting asks the policy exactly as the request itself would (reading the file; writing into the
folder), so only who may do the operation can hand it out — a read-only token mints GET URLs only —
and signs it with the caller's credential (``accounts.presign`` has the scheme). At use the URL's
signature, expiry and signer are checked before anything else: the request then runs as the signer,
confined by ``policy.Restriction`` to the one signed operation, through the same services as any
other request (the read path for GET and HEAD, the upload service for PUT).

Front ends (REST, the hot-read lane, and tus later) call ``authenticate`` with the request's method,
path, raw query and Content-Type; ``None`` means the query holds no presign parameters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote

import msgspec

from stowage.accounts import presign
from stowage.accounts.presign import Constraints, CredentialCode, Signer
from stowage.accounts.schemas import PresignedUrl, PresignThumbnailRequest, PresignTusRequest, PresignUploadRequest
from stowage.accounts.services._auth import AuthService
from stowage.accounts.services._common import AccountDeps
from stowage.errors import Conflict, FieldError, InvalidInput, PermissionDenied, Unauthenticated, UnsupportedMediaType
from stowage.files.media_types import media_type_allows
from stowage.files.names import normalise_name, split_path
from stowage.files.schemas import NodeOut
from stowage.files.services import TreeService
from stowage.policy import Action, CredentialKind, Principal, Restriction, authorize_signing

# Listings round their URLs' expiry up to a step (at most this long), so that listing a folder again
# soon gives the same URLs and an image cache keyed by URL keeps its copies.
LISTING_STEP_SECONDS = 600
# Requests whose signature this worker has verified: (signed method, path, raw query) → what it
# allows. Verifying is deterministic (same key, same bytes), so a URL asked for again — a thumbnail
# shown twice, a player's ranges — skips the parsing and the HMAC. The expiry and the signer's
# credential are still checked on every request. Only valid URLs are kept, at most this many.
MAX_VERIFIED = 10_000


class _Verified:
    """A verified presigned request, and the principal last made of it (for the signer check it came from)."""

    __slots__ = ("expires", "principal", "restriction", "signer", "source")

    def __init__(self, expires: int, signer: Signer, restriction: Restriction) -> None:
        self.expires = expires
        self.signer = signer
        self.restriction = restriction
        self.source: Principal | None = None
        self.principal: Principal | None = None


_SIGNER_CODES: dict[CredentialKind, CredentialCode] = {CredentialKind.SESSION: "s", CredentialKind.PERSONAL_TOKEN: "p"}
_SIGNER_KINDS: dict[CredentialCode, CredentialKind] = {code: kind for kind, code in _SIGNER_CODES.items()}


class PresignService:
    def __init__(self, deps: AccountDeps, auth: AuthService, tree: TreeService) -> None:
        self.settings = deps.settings
        self.key = presign.derive_key(deps.secret)
        self.auth = auth
        self.tree = tree
        self._verified: dict[tuple[str, str, bytes | str], _Verified] = {}

    # --- minting ------------------------------------------------------------------------------

    async def download(
        self, principal: Principal | None, node_id: str, expires_in: int | None, base: str
    ) -> PresignedUrl:
        """A GET (and HEAD) URL for the current content of the file ``node_id``."""
        caller = authorize_signing(principal, Action.FILE_READ)
        signer = _signer(caller)
        lifetime = self._lifetime(expires_in)
        row = await self.tree.load_row(caller, node_id, Action.FILE_READ)
        if row.kind != "file":
            raise Conflict(f"{row.name!r} is a folder; presigned URLs are for files.")
        expires = math.ceil(time.time()) + lifetime
        encoded = f"/api/v1/nodes/{quote(row.id, safe='')}/content"
        return self._url(base, "GET", presign.download_path(row.id), encoded=encoded, expires=expires, signer=signer)

    async def thumbnail(
        self, principal: Principal | None, node_id: str, request: PresignThumbnailRequest, base: str
    ) -> PresignedUrl:
        """A GET (and HEAD) URL for one thumbnail of the file ``node_id``: its parameters are signed."""
        caller = authorize_signing(principal, Action.FILE_READ)
        signer = _signer(caller)
        lifetime = self._lifetime(request.expires_in)
        row = await self.tree.load_row(caller, node_id, Action.FILE_READ)
        if row.kind != "file":
            raise Conflict(f"{row.name!r} is a folder; only files have thumbnails.")
        expires = math.ceil(time.time()) + lifetime
        constraints = Constraints(transform=presign.transform_text(msgspec.structs.asdict(request)))
        encoded = f"/api/v1/nodes/{quote(row.id, safe='')}/thumbnail"
        return self._url(
            base,
            "GET",
            presign.thumbnail_path(row.id),
            encoded=encoded,
            expires=expires,
            signer=signer,
            constraints=constraints,
        )

    def thumbnail_urls(
        self,
        principal: Principal | None,
        node_ids: Sequence[str],
        transform: Mapping[str, object | None],
        expires_in: int | None,
        base: str,
    ) -> list[str]:
        """Thumbnail URLs (one transform, ``{"w": 256, "format": "webp", …}``) for files of a listing the
        caller was allowed to see: one HMAC each, no database work (for listings with ``presign=true``).
        Expiries are rounded like ``listing``'s, so repeated listings give the same URLs for a while."""
        caller = authorize_signing(principal, Action.FILE_READ)
        signer = _signer(caller)
        lifetime = self._lifetime(expires_in, "query.presign_expires_in")
        now = math.ceil(time.time())
        step = max(1, min(LISTING_STEP_SECONDS, lifetime // 10))
        expires = min(-(-(now + lifetime) // step) * step, now + self.settings.presign_max_seconds)
        constraints = Constraints(transform=presign.transform_text(transform))
        return [
            self._url(
                base,
                "GET",
                presign.thumbnail_path(node_id),
                encoded=f"/api/v1/nodes/{quote(node_id, safe='')}/thumbnail",
                expires=expires,
                signer=signer,
                constraints=constraints,
            ).url
            for node_id in node_ids
        ]

    async def upload(self, principal: Principal | None, request: PresignUploadRequest, base: str) -> PresignedUrl:
        """A PUT URL that stores one new file (``name`` in a folder) within the given constraints."""
        caller = authorize_signing(principal, Action.FILE_WRITE)
        signer = _signer(caller)
        lifetime = self._lifetime(request.expires_in)
        self._check_max_size(request.max_size)
        folder_id, name = await self._target(caller, request)
        constraints = Constraints(
            on_conflict=request.on_conflict, max_size=request.max_size, media_type=request.media_type
        )
        expires = math.ceil(time.time()) + lifetime
        encoded = f"/api/v1/nodes/{quote(folder_id, safe='')}/children/{quote(name, safe='')}"
        return self._url(
            base,
            "PUT",
            presign.upload_path(folder_id, name),
            encoded=encoded,
            expires=expires,
            signer=signer,
            constraints=constraints,
        )

    async def tus_creation(self, principal: Principal | None, request: PresignTusRequest, base: str) -> PresignedUrl:
        """A tus creation URL (``POST /api/v1/uploads/``) whose uploads go into one folder, within the
        given constraints; each creation answers a ``Location`` presigned for that upload (``tus_location``)."""
        caller = authorize_signing(principal, Action.FILE_WRITE)
        signer = _signer(caller)
        lifetime = self._lifetime(request.expires_in)
        self._check_max_size(request.max_size)
        folder_id = await self._folder(caller, request.folder_id, request.path)
        constraints = Constraints(
            on_conflict=request.on_conflict,
            max_size=request.max_size,
            media_type=request.media_type,
            folder_id=folder_id,
        )
        expires = math.ceil(time.time()) + lifetime
        return self._url(
            base,
            "POST",
            presign.TUS_CREATION_PATH,
            encoded=presign.TUS_CREATION_PATH,
            expires=expires,
            signer=signer,
            constraints=constraints,
        )

    def tus_location(self, principal: Principal, upload_id: str) -> str:
        """The ``Location`` a presigned tus creation answers: the upload's path, presigned for it alone
        with the creation URL's signer, expiry and constraints (the principal the creation URL made)."""
        restriction = principal.restriction
        if (
            restriction is None
            or restriction.resumable != "create"
            or restriction.expires is None
            or restriction.signer_kind is None
        ):
            raise PermissionDenied("Only a presigned tus creation URL hands out presigned upload URLs.")
        signer = Signer(
            code=_SIGNER_CODES[restriction.signer_kind],
            credential_id=principal.credential_id,
            user_id=principal.user_id,
        )
        constraints = Constraints(
            on_conflict=restriction.on_conflict,
            max_size=restriction.max_size,
            media_type=restriction.media_type,
            folder_id=restriction.node_id,
        )
        path = presign.tus_upload_path(upload_id)
        signature = presign.sign(
            self.key, presign.TUS_METHOD, path, expires=restriction.expires, signer=signer, constraints=constraints
        )
        encoded = presign.tus_upload_path(quote(upload_id, safe=""))
        return f"{encoded}?{presign.query(restriction.expires, signer, constraints, signature)}"

    async def _folder(self, caller: Principal, folder_id: str | None, path: str | None) -> str:
        """The folder a tus creation URL uploads into, by id or path; the caller must be allowed to write there."""
        if (folder_id is None) == (path is None):
            raise InvalidInput(
                "Say which folder: folder_id or path (one of them).",
                errors=[FieldError(field="body", message="needs folder_id or path, not both")],
            )
        if path is not None:
            await self.tree.ensure_user_root(caller, Action.FILE_WRITE)
            parts = split_path(path, field="body.path")
            async with self.tree.db.session() as db:
                folder_id = (await self.tree.resolve(db, caller, "/".join(parts), Action.FILE_WRITE)).id
        assert folder_id is not None
        row = await self.tree.load_row(caller, folder_id, Action.FILE_WRITE)
        if row.kind != "folder":
            raise Conflict(f"{row.name!r} is a file; uploads go into folders.")
        return row.id

    def _check_max_size(self, max_size: int | None) -> None:
        limit = self.settings.max_upload_bytes
        if max_size is not None and max_size > limit:
            raise InvalidInput(
                f"max_size may be at most {limit} bytes (max_upload_bytes).",
                errors=[FieldError(field="body.max_size", message=f"at most {limit}")],
            )

    async def _target(self, caller: Principal, request: PresignUploadRequest) -> tuple[str, str]:
        """The folder and the (normalised) name an upload URL writes to; the caller must be allowed to write there."""
        if request.path is not None:
            if request.folder_id is not None or request.name is not None:
                raise InvalidInput(
                    "Send either path, or folder_id with name — not both.",
                    errors=[FieldError(field="body.path", message="not with folder_id or name")],
                )
            parts = split_path(request.path, field="body.path")
            if not parts:
                raise InvalidInput("The path names no file.", errors=[FieldError(field="body.path", message="empty")])
            await self.tree.ensure_user_root(caller, Action.FILE_WRITE)
            async with self.tree.db.session() as db:
                folder = await self.tree.resolve(db, caller, "/".join(parts[:-1]), Action.FILE_WRITE)
            folder_id, name = folder.id, parts[-1]
        elif request.folder_id is not None and request.name is not None:
            folder_id, name = request.folder_id, normalise_name(request.name)
        else:
            raise InvalidInput(
                "Say where the file goes: folder_id and name, or path.",
                errors=[FieldError(field="body", message="needs folder_id and name, or path")],
            )
        row = await self.tree.load_row(caller, folder_id, Action.FILE_WRITE)
        if row.kind != "folder":
            raise Conflict(f"{row.name!r} is a file; uploads go into folders.")
        return row.id, name

    async def listing(
        self, principal: Principal | None, items: Sequence[NodeOut], expires_in: int | None, base: str
    ) -> list[NodeOut]:
        """``items`` (a listing the caller was allowed to see) with a GET URL for each file.

        Cheap: one HMAC per file, no database work. Expiries are rounded up to a step (a tenth of the
        lifetime, at most ``LISTING_STEP_SECONDS``) so repeated listings give the same URLs for a while."""
        caller = authorize_signing(principal, Action.FILE_READ)
        signer = _signer(caller)
        lifetime = self._lifetime(expires_in, "query.presign_expires_in")
        now = math.ceil(time.time())
        step = max(1, min(LISTING_STEP_SECONDS, lifetime // 10))
        expires = min(-(-(now + lifetime) // step) * step, now + self.settings.presign_max_seconds)
        urls = iter(
            presign.download_urls(
                self.key, base, [item.id for item in items if item.kind == "file"], expires=expires, signer=signer
            )
        )
        return [msgspec.structs.replace(item, url=next(urls)) if item.kind == "file" else item for item in items]

    def _lifetime(self, expires_in: int | None, field: str = "body.expires_in") -> int:
        maximum = self.settings.presign_max_seconds
        if expires_in is None:
            return self.settings.presign_default_seconds
        if expires_in > maximum:
            raise InvalidInput(
                f"A presigned URL may live at most {maximum} seconds (presign_max_seconds); {expires_in} was asked.",
                errors=[FieldError(field=field, message=f"at most {maximum}")],
                extra={"max_seconds": maximum},
            )
        return expires_in

    def _url(
        self,
        base: str,
        method: str,
        path: str,
        *,
        encoded: str,
        expires: int,
        signer: Signer,
        constraints: Constraints | None = None,
    ) -> PresignedUrl:
        """The URL for ``path`` (``encoded``: the same path percent-encoded) with its presign query."""
        constraints = constraints or Constraints()
        signature = presign.sign(self.key, method, path, expires=expires, signer=signer, constraints=constraints)
        query = presign.query(expires, signer, constraints, signature)
        return PresignedUrl(
            url=f"{base.rstrip('/')}{encoded}?{query}",
            method="GET" if method == "GET" else "POST" if method == "POST" else "PUT",
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    # --- use ----------------------------------------------------------------------------------

    async def authenticate(
        self, method: str, path: str, query_string: bytes | str, content_type: str | None = None
    ) -> Principal | None:
        """The caller of a presigned request: the signer, confined to the signed operation. None when the
        query has no presign parameters; 403 when they do not verify, have expired, or the signer's
        credential no longer works; 415 when an upload declares a Content-Type the URL does not allow.

        The order matters: the signature first (so nothing unsigned is believed; a request verified before
        is remembered, see ``MAX_VERIFIED``), then the expiry (a signed one), then the signer's credential
        (the only step that may ask the database)."""
        key = (presign.signed_method(method, path), path, query_string)
        verified = self._verified.get(key)
        if verified is None:
            presigned = presign.parse(query_string)
            if presigned is None:
                return None
            presign.verify(self.key, method, path, presigned)
            restriction = presign.restriction_for(method, path, presigned, _SIGNER_KINDS[presigned.signer.code])
            verified = _Verified(presigned.expires, presigned.signer, restriction)
            self._remember(key, verified)
        if verified.expires <= time.time():
            expired = datetime.fromtimestamp(verified.expires, UTC).isoformat().replace("+00:00", "Z")
            raise PermissionDenied(
                f"This presigned URL expired at {expired}; ask for a new one.",
                extra={"presign": "expired", "expired_at": expired},
            )
        try:
            signer = await self.auth.authenticate_signer(verified.signer)
        except Unauthenticated as exc:
            raise PermissionDenied(
                f"{presign.INVALID}: the credential that signed it no longer works ({exc.detail})",
                extra={"presign": "revoked"},
            ) from None
        restriction = verified.restriction
        if (
            restriction.media_type is not None
            and restriction.resumable is None  # a tus body is offset+octet-stream; its type is in the metadata
            and content_type
            and not media_type_allows(restriction.media_type, content_type)
        ):
            raise UnsupportedMediaType(
                f"This presigned URL accepts only {restriction.media_type}, not {content_type.split(';')[0].strip()}.",
                extra={"accepted": restriction.media_type},
            )
        if verified.source is not signer:  # a new check of the signer (the credential cache keeps one a second)
            verified.source = signer
            verified.principal = msgspec.structs.replace(signer, kind=CredentialKind.PRESIGNED, restriction=restriction)
        assert verified.principal is not None
        return verified.principal

    def _remember(self, key: tuple[str, str, bytes | str], verified: _Verified) -> None:
        self._verified[key] = verified
        if len(self._verified) > MAX_VERIFIED:
            del self._verified[next(iter(self._verified))]  # the oldest


def _signer(caller: Principal) -> Signer:
    """The credential a URL is signed with: the caller's session or personal token (the policy's
    ``authorize_signing`` allowed no other kind)."""
    return Signer(code=_SIGNER_CODES[caller.kind], credential_id=caller.credential_id, user_id=caller.user_id)
