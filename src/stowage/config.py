"""Settings: read once at start-up from defaults, an optional TOML file and ``STOWAGE_*`` variables.

Precedence (later wins): built-in defaults < TOML file (``STOWAGE_CONFIG_FILE`` or ``--config``)
< environment. Every value is validated before anything starts, and a bad value stops the start with
a message naming the setting and what is allowed — a server that half-starts with a typo in its
configuration is worse than one that refuses to start.

The settings object is immutable and passed down explicitly; nothing reads the environment later.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from stowage.rules.retention import DEFAULT_SCHEDULE, ScheduleError, parse_schedule

ENV_PREFIX = "STOWAGE_"
SECRET_FILE_NAME = "secret.key"  # noqa: S105 - a file name, not a secret
REDACTED = "**redacted**"

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
SignupMode = Literal["open", "invite", "closed"]
SmtpSecurity = Literal["starttls", "tls", "none"]
VerifyReads = Literal["changed", "always", "off"]

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

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


class ConfigError(Exception):
    """A setting has a value that is not allowed; the message names it and says what is."""


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


SECRET_FIELDS = frozenset({"secret_key", "metrics_token", "smtp_password"})


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
    _validate(settings)
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


def _require(condition: bool, name: str, allowed: str, value: object) -> None:
    if not condition:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} ({name}): {allowed}, got {value!r}")


def _validate(s: Settings) -> None:
    _require(1 <= s.port <= 65535, "port", "must be a TCP port between 1 and 65535", s.port)
    _require(1 <= s.workers <= 64, "workers", "must be between 1 and 64", s.workers)
    _require(bool(s.host.strip()), "host", "must be an address to bind to", s.host)
    _require(
        1 <= s.database_pool_size <= 200,
        "database_pool_size",
        "must be between 1 and 200",
        s.database_pool_size,
    )
    _require(
        0.1 <= s.database_connect_timeout <= 120,
        "database_connect_timeout",
        "must be between 0.1 and 120 seconds",
        s.database_connect_timeout,
    )
    _require(
        0.1 <= s.database_statement_timeout <= 3600,
        "database_statement_timeout",
        "must be between 0.1 and 3600 seconds",
        s.database_statement_timeout,
    )
    if s.database_url is not None:
        scheme = s.database_url.split("://", 1)[0]
        _require(
            scheme in {"sqlite+aiosqlite", "postgresql+asyncpg", "postgresql"},
            "database_url",
            "must start with sqlite+aiosqlite://, postgresql:// or postgresql+asyncpg://",
            redact_url(s.database_url),
        )
    if s.database_schema is not None:
        _require(
            bool(_SCHEMA_NAME.match(s.database_schema)),
            "database_schema",
            "must be a lower-case PostgreSQL identifier (letters, digits, underscore)",
            s.database_schema,
        )
        _require(not s.is_sqlite, "database_schema", "is only meaningful with PostgreSQL", s.database_schema)
    if s.secret_key is not None:
        _require(len(s.secret_key) >= 32, "secret_key", "must be at least 32 characters", REDACTED)
    _require(
        s.log_file_max_bytes >= 1024,
        "log_file_max_bytes",
        "must be at least 1024 bytes",
        s.log_file_max_bytes,
    )
    _require(0 <= s.log_file_backups <= 1000, "log_file_backups", "must be between 0 and 1000", s.log_file_backups)
    if s.metrics_token is not None:
        _require(len(s.metrics_token) >= 16, "metrics_token", "must be at least 16 characters", REDACTED)
    for origin in s.cors_allow_origins:
        parts = urlsplit(origin)
        _require(
            origin == "*" or (parts.scheme in {"http", "https"} and bool(parts.netloc) and parts.path in {"", "/"}),
            "cors_allow_origins",
            "must list origins like https://app.example.com (or *)",
            origin,
        )
    for header in s.cors_allow_headers:
        _require(
            header == "*" or bool(_HEADER_NAME.match(header)),
            "cors_allow_headers",
            "must list header names like X-Content-SHA256 (or *)",
            header,
        )
    _require(
        not ("*" in s.cors_allow_origins and s.cors_allow_credentials),
        "cors_allow_credentials",
        "cannot be true when cors_allow_origins contains *",
        s.cors_allow_credentials,
    )
    _require(
        60 <= s.access_token_ttl <= 86400,
        "access_token_ttl",
        "must be between 60 and 86400 seconds",
        s.access_token_ttl,
    )
    _require(
        3600 <= s.refresh_token_ttl <= 400 * 86400,
        "refresh_token_ttl",
        "must be between 3600 seconds and 400 days",
        s.refresh_token_ttl,
    )
    _require(
        300 <= s.email_token_ttl <= 7 * 86400,
        "email_token_ttl",
        "must be between 300 seconds and 7 days",
        s.email_token_ttl,
    )
    _require(60 <= (pmax := s.presign_max_seconds) <= 2592000, "presign_max_seconds", "must be 60 s-30 days", pmax)
    _require(1 <= (pdef := s.presign_default_seconds) <= pmax, "presign_default_seconds", f"must be 1-{pmax} s", pdef)
    _require(s.max_upload_bytes >= 1, "max_upload_bytes", "must be at least 1 byte", s.max_upload_bytes)
    _require(
        1 <= s.trash_retention_days <= 3650,
        "trash_retention_days",
        "must be between 1 and 3650 days",
        s.trash_retention_days,
    )
    _require(
        0 <= s.version_keep_last <= 10000,
        "version_keep_last",
        "must be between 0 and 10000",
        s.version_keep_last,
    )
    try:
        parse_schedule(s.version_thinning)
    except ScheduleError as exc:
        _require(False, "version_thinning", f"must be stages like 1h:1d,1d:30d,1w ({exc})", s.version_thinning)
    _require(s.default_quota_bytes >= 0, "default_quota_bytes", "must be 0 (no storage) or more", s.default_quota_bytes)
    for proxy in s.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            _require(False, "trusted_proxies", "must list IP addresses or networks like 10.0.0.0/8", proxy)
    if s.redis_url is not None:
        _require(
            s.redis_url.startswith(("redis://", "rediss://", "unix://")),
            "redis_url",
            "must start with redis://, rediss:// or unix://",
            redact_url(s.redis_url),
        )
    _require(
        1 <= s.rate_limit_window_seconds <= 86400,
        "rate_limit_window_seconds",
        "must be between 1 and 86400",
        s.rate_limit_window_seconds,
    )
    _require(s.rate_limit_auth_per_ip >= 1, "rate_limit_auth_per_ip", "must be at least 1", s.rate_limit_auth_per_ip)
    _require(
        s.rate_limit_auth_per_account >= 1,
        "rate_limit_auth_per_account",
        "must be at least 1",
        s.rate_limit_auth_per_account,
    )
    _require(1 <= s.smtp_port <= 65535, "smtp_port", "must be a TCP port between 1 and 65535", s.smtp_port)
    _require("@" in s.smtp_from, "smtp_from", "must be an email address, optionally with a display name", s.smtp_from)
    if s.public_url is not None:
        parts = urlsplit(s.public_url)
        _require(
            parts.scheme in {"http", "https"} and bool(parts.netloc),
            "public_url",
            "must be an absolute http(s) URL",
            s.public_url,
        )
    _validate_request_limits(s)


def _validate_request_limits(s: Settings) -> None:
    """The bounds on what one request may send, take and keep."""
    _require(
        1024 <= s.max_request_body_bytes <= 1024**3,
        "max_request_body_bytes",
        "must be between 1 KiB and 1 GiB",
        s.max_request_body_bytes,
    )
    _require(
        8192 <= s.max_request_header_bytes <= 1024 * 1024,
        "max_request_header_bytes",
        "must be between 8192 and 1048576",
        s.max_request_header_bytes,
    )
    _require(
        0 < s.body_idle_timeout <= 3600,
        "body_idle_timeout",
        "must be more than 0 and at most 3600 seconds",
        s.body_idle_timeout,
    )
    _require(
        0 <= s.principal_cache_seconds <= 1,
        "principal_cache_seconds",
        "must be between 0 and 1 second (a revoked credential must stop working within a second everywhere)",
        s.principal_cache_seconds,
    )
    _require(
        1 <= s.shutdown_timeout <= 3600,
        "shutdown_timeout",
        "must be between 1 and 3600 seconds",
        s.shutdown_timeout,
    )


def redact_url(url: str) -> str:
    """Hide the password part of a URL (``postgresql://u:secret@h/db`` → ``postgresql://u:**redacted**@h/db``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
