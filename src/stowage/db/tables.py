"""Table definitions. Every table is created by an Alembic migration; ``alembic check`` keeps them in step."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, validates

from stowage.db.base import Base, UTCDateTime, search_key


class Instance(Base):
    """The single row describing this installation: a stable id clients can key caches on."""

    __tablename__ = "instance"
    __table_args__ = (CheckConstraint("id = 1", name="singleton"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # A fingerprint (HMAC) of the signing secret the nodes use (``system.secret_check``); None until a
    # node of this version records it.
    secret_check: Mapped[str | None] = mapped_column(String(64), nullable=True)


class User(Base):
    """An account. Emails are stored lower-cased and NFC-normalised; uniqueness is on that form."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(100), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    used_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        CheckConstraint("role IN ('user', 'admin')", name="role"),
        CheckConstraint("used_bytes >= 0", name="used_bytes_non_negative"),
    )


class Session(Base):
    """A login on one device: a refresh-token family. Revoking it ends its access tokens at once."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    user_agent: Mapped[str] = mapped_column(String(512), nullable=False)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RefreshToken(Base):
    """Every refresh token ever issued for a session, by hash; a used one presented again is theft."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApiKey(Base):
    """A long-lived credential for scripts (personal access token); later also S3 keys, app passwords."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    scopes: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Invite(Base):
    """An admin-issued, single-use sign-up invitation (for ``signup_mode = "invite"``)."""

    __tablename__ = "invites"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    used_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


class EmailToken(Base):
    """Single-use, expiring token mailed to a user: verify the address, or reset the password."""

    __tablename__ = "email_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    purpose: Mapped[str] = mapped_column(String(16), nullable=False)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditEvent(Base):
    """Append-only record of security events; never updated, readable by admins."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    target_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    details: Mapped[str] = mapped_column(Text, nullable=False)


class Blob(Base):
    """Stored content, addressed by its SHA-256; shared by every version (of any user) with that content."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    refcount: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (CheckConstraint("refcount >= 0", name="refcount_non_negative"),)


class Node(Base):
    """A file or folder in a user's tree. Each user has one root folder (parent NULL, name "")."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), nullable=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    media_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    current_version_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    trashed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    trash_root_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    trashed_from_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The folded name (``search_key``), kept in step with ``name`` by ``_fold_name``; searched with LIKE.
    search_name: Mapped[str] = mapped_column(String(1024), nullable=False, server_default=text("''"))
    starred: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    # Small custom key/value metadata set by clients (validated by ``files.metadata``).
    properties: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    # Server time the current content was stored (files only): the order of "recent files".
    uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The capture time of the current content (``image_facts.taken_at``), copied here so the listing
    # sort ``taken_at`` is one index range (migration 0009); NULL for everything else.
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @validates("name")
    def _fold_name(self, _key: str, value: str) -> str:
        self.search_name = search_key(value)
        return value

    __table_args__ = (
        CheckConstraint("kind IN ('file', 'folder')", name="kind"),
        # Names are unique among the live (non-trashed) children of a folder; trash may hold duplicates.
        Index(
            "uq_nodes_parent_id_name_live",
            "parent_id",
            "name",
            unique=True,
            sqlite_where=text("trashed_at IS NULL"),
            postgresql_where=text("trashed_at IS NULL"),
        ),
        # One root folder per user, even when a new user's first requests arrive in parallel.
        Index(
            "uq_nodes_owner_id_root",
            "owner_id",
            unique=True,
            sqlite_where=text("parent_id IS NULL"),
            postgresql_where=text("parent_id IS NULL"),
        ),
        Index("ix_nodes_parent_id_kind_name", "parent_id", "kind", "name"),
        # Listings: a folder's live children in each order, a page being one index range (migration 0005).
        *(
            Index(
                f"ix_nodes_live_children_{order}",
                "parent_id",
                "kind",
                *key,
                "name",
                "id",
                sqlite_where=text("trashed_at IS NULL"),
                postgresql_where=text("trashed_at IS NULL"),
            )
            for order, key in (
                ("name", ()),
                ("size", ("size",)),
                ("modified", ("modified_at",)),
                ("type", ("media_type",)),
            )
        ),
        # Photos by capture time, falling back to the modification time (listing sort ``taken_at``).
        Index(
            "ix_nodes_live_children_taken",
            "parent_id",
            "kind",
            func.coalesce(text("taken_at"), text("modified_at")),
            "name",
            "id",
            sqlite_where=text("trashed_at IS NULL"),
            postgresql_where=text("trashed_at IS NULL"),
        ),
        # The nodes showing a content, whose ``taken_at`` its facts fill in once computed.
        Index("ix_nodes_sha256", "sha256"),
        Index("ix_nodes_owner_id_trashed_at", "owner_id", "trashed_at"),
        Index("ix_nodes_owner_id_uploaded_at", "owner_id", "uploaded_at"),
        Index("ix_nodes_owner_id_starred", "owner_id", sqlite_where=text("starred"), postgresql_where=text("starred")),
    )


class ImageFacts(Base):
    """What an image's content is: its displayed size, capture time and placeholder, keyed by the content's
    SHA-256 — facts belong to content, so every file showing it (any user's: deduplication) shares them.

    ``failure`` marks content that is not a readable image (not an image, truncated, too large, too slow):
    such a row has no size and is never computed again. Rows go with their blob row (a purge).
    """

    __tablename__ = "image_facts"

    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # EXIF DateTimeOriginal (with OffsetTimeOriginal when present, else read as UTC).
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A BlurHash string for drawing a blurred preview before the thumbnail arrives.
    placeholder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    failure: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        CheckConstraint("failure IS NOT NULL OR (width IS NOT NULL AND height IS NOT NULL)", name="size_or_failure"),
    )


class Version(Base):
    """One content of a file; the node points at its current one. Older ones are kept as history."""

    __tablename__ = "versions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), nullable=False, index=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    media_type: Mapped[str] = mapped_column(String(255), nullable=False)
    author_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # A pinned version is never removed by retention thinning (only by an explicit delete).
    pinned: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class Change(Base):
    """Append-only log of changes to a user's tree: the cursor for sync clients and live events."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    node_id: Mapped[str] = mapped_column(String(36), nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class MaintenanceRun(Base):
    """The outcome of one fsck, gc or retention run, for the admin endpoint (newest per kind shown)."""

    __tablename__ = "maintenance_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    # JSON document: counters, and the problems found and repaired (capped, see ``maintenance.runs``).
    report: Mapped[str] = mapped_column(Text, nullable=False)
    # Which node ran it (``Settings.effective_node_name``; a CLI run adds ``/cli``). None: recorded before 0010.
    node: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (Index("ix_maintenance_runs_kind_id", "kind", "id"),)


class Lease(Base):
    """A named lease that at most one process of the whole installation holds at a time (``maintenance.lease``).

    Taken with a conditional UPDATE (free or expired) or, for a name never taken, an INSERT that does
    nothing on conflict; renewed by its holder while it works. A holder that dies stops renewing and
    loses the lease at ``expires_at``. Released leases keep their last holder for the record.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), nullable=False)  # unique per holding process
    node: Mapped[str] = mapped_column(String(200), nullable=False)  # the node's name, for people
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Upload(Base):
    """A resumable (tus) upload in progress or just finished: who, where to, how far, until when.

    The bytes live in the blob store's staging area under the upload's id; ``received_bytes`` is the
    durable offset (data past it is ignored and overwritten). A PATCH claims the row with a lease
    (``lock_token``, ``locked_until``) through a conditional UPDATE, so two requests for one upload never
    interleave, whichever worker or machine they reach. Rows of finished uploads stay until they
    expire, so a client can still ask for the offset (and the file) of an upload it completed.
    """

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    # "single" (an ordinary upload), "partial" (part of a concatenation) or "final" (the concatenation).
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    # None while the client defers the length (creation-defer-length).
    length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    received_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    # Where the finished file goes: a folder id resolved (and authorised) at creation, a name, a type.
    folder_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    media_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    on_conflict: Mapped[str] = mapped_column(String(8), nullable=False)
    # The Upload-Metadata header exactly as received (HEAD echoes it), and a final upload's parts (JSON ids).
    upload_metadata: Mapped[str | None] = mapped_column(Text, nullable=True)
    concat_parts: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    lock_token: Mapped[str | None] = mapped_column(String(36), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Set in the transaction that recorded the file: the node it became.
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    node_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Set once every byte arrived and the content was published as a blob; an upload with a digest but
    # no node is complete but not yet recorded (a name conflict or the quota stopped it; retried).
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        CheckConstraint("kind IN ('single', 'partial', 'final')", name="kind"),
        CheckConstraint("on_conflict IN ('fail', 'replace', 'rename')", name="on_conflict"),
        CheckConstraint("received_bytes >= 0", name="received_non_negative"),
        CheckConstraint("length IS NULL OR received_bytes <= length", name="received_within_length"),
    )


class Share(Base):
    """A grant on a node and its subtree: a link anyone holding its token may use, or a share with a user.

    Only a hash of a link's token is stored (the token has 256 random bits, like every opaque token),
    and a link's password as an argon2 hash. Rows are never cached: every request reads the grants it
    needs, so revoking, expiring, trashing or moving the node out takes effect on the next request.
    A node's deletion (purge, account deletion) removes its shares; so does the grantee's deletion.
    """

    __tablename__ = "shares"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    # "link" (a bearer token) or "user" (a grantee account).
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    grantee_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    # "read", "read_write" (user shares) or "drop" (upload-only links to folders).
    permission: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    max_downloads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    download_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint("kind IN ('link', 'user')", name="kind"),
        CheckConstraint("permission IN ('read', 'read_write', 'drop')", name="permission"),
        CheckConstraint(
            "(kind = 'link' AND token_hash IS NOT NULL AND grantee_user_id IS NULL AND permission <> 'read_write')"
            " OR (kind = 'user' AND token_hash IS NULL AND grantee_user_id IS NOT NULL AND permission <> 'drop'"
            " AND password_hash IS NULL AND max_downloads IS NULL)",
            name="kind_fields",
        ),
        CheckConstraint("download_count >= 0", name="download_count_non_negative"),
        CheckConstraint("max_downloads IS NULL OR max_downloads > 0", name="max_downloads_positive"),
        # A user holds at most one live share of a node (sharing again edits it).
        Index(
            "uq_shares_node_id_grantee_live",
            "node_id",
            "grantee_user_id",
            unique=True,
            sqlite_where=text("kind = 'user' AND revoked_at IS NULL"),
            postgresql_where=text("kind = 'user' AND revoked_at IS NULL"),
        ),
    )


class ImageDerivative(Base):
    """A cached image derivative (a thumbnail or transform): source content + canonical parameters ->
    the derivative's blob.

    Derivative blobs live in the blob store like any content but are not rows of ``blobs`` and count
    against nobody's quota; ``gc``/``fsck`` treat a blob file named here as referenced. Rows are
    evicted least recently used first (``last_used_at``, refreshed at most every few minutes per row)
    when the total ``size`` passes the cache cap; a blob file is deleted only when neither a ``blobs``
    row nor another derivative still names it.
    """

    __tablename__ = "image_derivatives"

    source_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The canonical parameters (``TransformParams.key()``, e.g. ``w256-h256-cover-q80-webp``).
    params: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    media_type: Mapped[str] = mapped_column(String(32), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)

    __table_args__ = (CheckConstraint("size >= 0", name="size_non_negative"),)
