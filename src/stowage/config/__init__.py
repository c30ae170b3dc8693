"""Settings: read once at start-up from defaults, an optional TOML file and ``STOWAGE_*`` variables.

Precedence (later wins): built-in defaults < TOML file (``STOWAGE_CONFIG_FILE`` or ``--config``)
< environment. Every value is validated before anything starts, and a bad value stops the start with
a message naming the setting and what is allowed — a server that half-starts with a typo in its
configuration is worse than one that refuses to start.

The settings object is immutable and passed down explicitly; nothing reads the environment later.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from stowage.config._base import ENV_PREFIX, REDACTED, ConfigError, redact_url
from stowage.config._checks import validate
from stowage.rules.retention import DEFAULT_SCHEDULE

SECRET_FILE_NAME = "secret.key"  # noqa: S105 - a file name, not a secret

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
SignupMode = Literal["open", "invite", "closed"]
SmtpSecurity = Literal["starttls", "tls", "none"]
VerifyReads = Literal["changed", "always", "off"]
BlobStoreKind = Literal["local", "s3"]


# The request headers of the tus protocol (resumable uploads, ``protocols/tus``).
TUS_REQUEST_HEADERS: tuple[str, ...] = ("Tus-Resumable", "Upload-Length", "Upload-Defer-Length", "Upload-Metadata")
TUS_REQUEST_HEADERS += ("Upload-Concat", "Upload-Offset", "Upload-Checksum", "X-HTTP-Method-Override")
# The request headers a browser may send cross-origin: every header the REST API documents (its
# contract test checks that this list covers them). Replace it with cors_allow_headers to add others.
DEFAULT_CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Content-Digest",
    "X-Content-SHA256",
    "X-Modified-At",
    "X-Strip-GPS",
    "X-Request-ID",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "If-Unmodified-Since",
    "If-Range",
    "Range",
    "X-Share-Grant",
    *TUS_REQUEST_HEADERS,
)


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every knob of the server. Field names are the TOML keys; ``STOWAGE_<NAME>`` overrides each."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: Path = Path("./data")
    public_url: str | None = None

    database_url: str | None = None
    database_schema: str | None = None
    database_pool_size: int = 10
    database_connect_timeout: float = 5.0
    database_statement_timeout: float = 30.0
    auto_migrate: bool = True

    secret_key: str | None = None

    signup_mode: SignupMode = "open"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    email_token_ttl: int = 3600
    # Presigned URLs: the longest lifetime, and the lifetime when none is asked for (also in listings).
    presign_max_seconds: int = 7 * 86400
    presign_default_seconds: int = 3600
    default_quota_bytes: int = 10 * 1024**3
    max_upload_bytes: int = 100 * 1024**3
    # Hours an unfinished resumable (tus) upload is kept after its last received byte (1 hour to a year).
    upload_expiry_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 365)] = 24
    trash_retention_days: int = 30
    version_keep_last: int = 10
    version_thinning: str = DEFAULT_SCHEDULE
    verify_reads: VerifyReads = "changed"

    # --- image facts: size, capture time, placeholder (files/services/_facts.py, docs/api.md) ----
    # Images waiting for their facts in each worker process (beyond it, a later listing schedules them),
    # and how many are computed at once in each.
    image_facts_queue: int = 10_000
    image_facts_concurrency: int = 1
    # Seconds a file's metadata request waits for missing facts before answering without them (0: never).
    image_facts_wait_seconds: float = 2.0
    # Store uploaded images without their GPS position (the bytes as sent are not kept; default off).
    strip_gps_on_upload: bool = False

    trusted_proxies: tuple[str, ...] = ()

    redis_url: str | None = None
    rate_limit_window_seconds: int = 60
    rate_limit_auth_per_ip: int = 30
    rate_limit_auth_per_account: int = 10

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: SmtpSecurity = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "Stowage <no-reply@localhost>"
    smtp_timeout: float = 10.0

    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    log_file: Path | None = None
    log_file_max_bytes: int = 10 * 1024 * 1024
    log_file_backups: int = 5

    metrics_enabled: bool = True
    metrics_token: str | None = None

    cors_allow_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    cors_allow_headers: tuple[str, ...] = DEFAULT_CORS_ALLOW_HEADERS
    hsts: bool = False

    max_request_body_bytes: int = 1024 * 1024
    max_request_header_bytes: int = 65536
    # Seconds a request body may go without a byte before the request is refused (408) and closed.
    body_idle_timeout: float = 60.0
    # Seconds a worker may reuse a bearer credential's check before asking the database again. Revocations
    # made on this machine reach every worker at once; this bounds it for other machines (0 = no cache).
    principal_cache_seconds: float = 1.0
    shutdown_timeout: int = 30

    # --- images: thumbnails and transforms (src/stowage/images, docs/api.md "Images") -------------
    # Inputs larger than these are refused (422) from the file size and the header, before decoding.
    image_max_input_pixels: int = 100_000_000
    image_max_input_bytes: int = 100 * 1024 * 1024
    # The largest width or height a derivative may have, and (when not empty) the only sizes allowed.
    image_max_output_dimension: int = 4096
    image_allowed_sizes: tuple[int, ...] = ()
    # Seconds one transform may take (then 503), and how many run at once in each worker.
    image_transform_timeout: float = 20.0
    image_concurrency: int = 2
    # Total bytes of cached derivatives; least recently used ones are evicted past it (at least 1 MiB).
    image_cache_max_bytes: int = 1024**3

    # --- blob store: the local data folder (default) or an S3-compatible object store (blobs/s3.py) ---
    blob_store: BlobStoreKind = "local"
    s3_endpoint_url: str | None = None  # None: AWS's endpoint for s3_region
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None  # None (both): the default AWS credential chain (env, profile, role)
    s3_secret_access_key: str | None = None
    s3_prefix: str = ""  # key prefix inside the bucket, e.g. "stowage/" to share a bucket
    s3_part_size: int = 8 * 1024 * 1024  # multipart part size: the memory one upload holds (5 MiB-5 GiB)
    s3_create_bucket: bool = False  # create the bucket at start when it does not exist
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"  # path-style for MinIO/Garage/moto
    s3_redirect_downloads: bool = False  # 307 whole-file GETs to a presigned object-store URL
    s3_presign_seconds: int = 300  # lifetime of those object-store URLs

    # --- several nodes (docs/deployment.md) ---
    # This node's name in maintenance records, leases and logs (default: host name and port).
    node_name: str | None = None
    # Housekeeping (trash purge, version thinning, gc) runs once per interval in the whole installation,
    # on whichever node takes the maintenance lease; the lease lapses this long after its holder's last
    # renewal (renewed every third of it), so a dead holder's work is taken over after that.
    housekeeping_interval_seconds: int = 3600
    maintenance_lease_seconds: float = 60.0

    # --- TLS served by Stowage itself (operator's kit) ---------------------------------------------
    # Usually TLS ends at the reverse proxy (deploy/nginx, deploy/Caddyfile) and these stay unset.
    # Set both to have `stowage serve` (Granian) speak HTTPS directly: PEM files, the key unencrypted.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    # --- derived values -------------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        """The database URL in use: the configured one, or SQLite inside the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'stowage.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_node_name(self) -> str:
        """This node's name: the configured one, or ``<host name>:<port>``."""
        return self.node_name or f"{socket.gethostname()}:{self.port}"


SECRET_FIELDS = frozenset({"secret_key", "metrics_token", "smtp_password", "s3_secret_access_key"})


def _coerce_env(name: str, raw: str, field_type: msgspec.inspect.Type) -> Any:
    """Turn an environment string into the shape msgspec expects for the field's type."""
    text = raw.strip()
    optional = isinstance(field_type, msgspec.inspect.UnionType) and any(
        isinstance(t, msgspec.inspect.NoneType) for t in field_type.types
    )
    if optional and text == "":
        return None
    if isinstance(field_type, msgspec.inspect.VarTupleType):
        if text.startswith("["):
            try:
                return msgspec.json.decode(text)
            except msgspec.DecodeError as exc:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}: not a valid JSON list ({exc})") from exc
        return [item.strip() for item in text.split(",") if item.strip()]
    if isinstance(field_type, msgspec.inspect.BoolType):
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} ({name}): expected true or false, got {raw!r}")
    return text


def _field_types() -> dict[str, msgspec.inspect.Type]:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.name: f.type for f in info.fields}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_settings(environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Build validated settings from the environment and an optional TOML file.

    Raises ConfigError naming the first offending setting.
    """
    env = os.environ if environ is None else environ
    known = _field_types()
    values: dict[str, Any] = {}

    file_path = config_file or (Path(env[f"{ENV_PREFIX}CONFIG_FILE"]) if env.get(f"{ENV_PREFIX}CONFIG_FILE") else None)
    if file_path is not None:
        for key, value in _read_toml(file_path).items():
            if key not in known:
                raise ConfigError(f"config file {file_path}: unknown setting {key!r}")
            values[key] = value

    for env_name, raw in env.items():
        if not env_name.startswith(ENV_PREFIX) or env_name == f"{ENV_PREFIX}CONFIG_FILE":
            continue
        key = env_name[len(ENV_PREFIX) :].lower()
        if key not in known:
            continue  # other STOWAGE_* variables (tests, tools) are not settings
        values[key] = _coerce_env(key, raw, known[key])

    try:
        settings = msgspec.convert(values, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain_validation_error(exc, values, known)) from exc
    validate(settings)
    return settings


def _dec_hook(target: type, value: Any) -> Any:
    if target is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def _explain_validation_error(
    exc: msgspec.ValidationError, values: Mapping[str, Any], types: Mapping[str, msgspec.inspect.Type]
) -> str:
    """Name the setting, what is allowed, and what was given (``at `$.port``` → ``STOWAGE_PORT``)."""
    message = str(exc)
    match = re.search(r"at `\$\.([a-z_]+)", message)
    if not match:
        return message
    name = match.group(1)
    reason = message.split(" - at ", maxsplit=1)[0]
    field_type = types.get(name)
    if isinstance(field_type, msgspec.inspect.LiteralType):
        reason = "must be one of " + ", ".join(str(v) for v in field_type.values)
    elif reason.startswith("Expected"):
        reason = "expected " + reason.removeprefix("Expected ").split(",")[0].replace("`", "")
    return f"{ENV_PREFIX}{name.upper()} ({name}): {reason}, got {values.get(name)!r}"


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret hidden — safe to print or log."""
    data: dict[str, Any] = msgspec.to_builtins(settings, enc_hook=str)
    for name in SECRET_FIELDS:
        if data.get(name) is not None:
            data[name] = REDACTED
    for url_field in ("database_url", "redis_url"):
        if data.get(url_field):
            data[url_field] = redact_url(data[url_field])
    data["effective_database_url"] = redact_url(settings.effective_database_url)
    return data


def ensure_data_dir(settings: Settings) -> Path:
    """Create the data folder (and its fixed sub-folders) if needed; return its absolute path."""
    root = settings.data_dir.resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{ENV_PREFIX}DATA_DIR (data_dir): cannot create {root}: {exc.strerror}") from exc
    return root


def load_or_create_secret(settings: Settings) -> str:
    """Return the signing secret: the configured one, or the one stored in the data folder.

    On first start a 256-bit random secret is written to ``<data_dir>/secret.key`` with mode 0600.
    The file appears complete or not at all (written privately, then hard-linked into place, which
    fails if it already exists), so two workers starting together agree on one secret and neither
    can read a file the other has created but not yet filled.
    """
    if settings.secret_key is not None:
        return settings.secret_key
    root = ensure_data_dir(settings)
    path = root / SECRET_FILE_NAME
    if not path.exists():
        fd, candidate = tempfile.mkstemp(prefix=".secret-", dir=root)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(candidate, path)
        finally:
            Path(candidate).unlink()
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise ConfigError(f"{path} holds no usable secret (fewer than 32 characters); remove it to regenerate")
    return secret


# Defined in _base.py and re-exported: callers import everything from ``stowage.config``.
__all__ = ["ENV_PREFIX", "REDACTED", "ConfigError", "Settings", "load_settings", "redact_url", "redacted"]
