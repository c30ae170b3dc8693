"""Validation of settings: every bound and format a value must meet before anything starts.

Kept apart from loading so that ``config/__init__.py`` stays about where settings come from, and this
module about what they may be. A failed rule raises :class:`ConfigError` naming the setting, what is
allowed and what was given.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stowage.config._base import ENV_PREFIX, REDACTED, ConfigError, redact_url
from stowage.rules.retention import ScheduleError, parse_schedule

if TYPE_CHECKING:
    from stowage.config import Settings

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def _require(condition: bool, name: str, allowed: str, value: object) -> None:
    if not condition:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} ({name}): {allowed}, got {value!r}")


def validate(s: Settings) -> None:
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
    for group in (_validate_request_limits, _validate_images, _validate_image_facts, _validate_s3, _validate_nodes):
        group(s)


def _validate_images(s: Settings) -> None:
    """The abuse limits of image transforms (``stowage.images``)."""
    _require(s.image_max_input_pixels >= 1, "image_max_input_pixels", "must be at least 1", s.image_max_input_pixels)
    _require(s.image_max_input_bytes >= 1, "image_max_input_bytes", "must be at least 1", s.image_max_input_bytes)
    _require(
        16 <= s.image_max_output_dimension <= 16384,
        "image_max_output_dimension",
        "must be between 16 and 16384",
        s.image_max_output_dimension,
    )
    _require(
        all(1 <= size <= s.image_max_output_dimension for size in s.image_allowed_sizes),
        "image_allowed_sizes",
        "must be sizes between 1 and image_max_output_dimension",
        s.image_allowed_sizes,
    )
    _require(
        0 < s.image_transform_timeout <= 600,
        "image_transform_timeout",
        "must be more than 0 and at most 600 seconds",
        s.image_transform_timeout,
    )
    _require(1 <= s.image_concurrency <= 64, "image_concurrency", "must be between 1 and 64", s.image_concurrency)
    _require(
        s.image_cache_max_bytes >= 1024 * 1024,
        "image_cache_max_bytes",
        "must be at least 1 MiB (1048576)",
        s.image_cache_max_bytes,
    )


def _validate_image_facts(s: Settings) -> None:
    """The bounds of the image facts' background work (``files/services/_facts.py``)."""
    _require(
        1 <= s.image_facts_queue <= 1_000_000, "image_facts_queue", "must be between 1 and 1000000", s.image_facts_queue
    )
    _require(
        1 <= s.image_facts_concurrency <= 64,
        "image_facts_concurrency",
        "must be between 1 and 64",
        s.image_facts_concurrency,
    )
    _require(
        0 <= s.image_facts_wait_seconds <= 60,
        "image_facts_wait_seconds",
        "must be between 0 and 60 seconds",
        s.image_facts_wait_seconds,
    )


def _validate_s3(s: Settings) -> None:
    """The S3 blob store's settings: only checked when ``blob_store = "s3"`` (they are ignored otherwise)."""
    if s.blob_store != "s3":
        return
    _require(bool(s.s3_bucket), "s3_bucket", "must name the bucket when blob_store is s3", s.s3_bucket)
    assert s.s3_bucket is not None
    _require(
        bool(_BUCKET_NAME.match(s.s3_bucket)),
        "s3_bucket",
        "must be a bucket name: 3-63 lower-case letters, digits, dots and hyphens",
        s.s3_bucket,
    )
    if s.s3_endpoint_url is not None:
        parts = urlsplit(s.s3_endpoint_url)
        _require(
            parts.scheme in {"http", "https"} and bool(parts.netloc) and not parts.query,
            "s3_endpoint_url",
            "must be an http(s) URL like https://s3.example.com or http://127.0.0.1:9000",
            redact_url(s.s3_endpoint_url),
        )
    _require(
        bool(s.s3_region.strip()), "s3_region", "must name a region (us-east-1 for most non-AWS servers)", s.s3_region
    )
    _require(
        (s.s3_access_key_id is None) == (s.s3_secret_access_key is None),
        "s3_secret_access_key" if s.s3_access_key_id is not None else "s3_access_key_id",
        "must be set together with the other S3 credential (or leave both unset for the AWS credential chain)",
        REDACTED if s.s3_secret_access_key is not None else s.s3_access_key_id,
    )
    _require(
        s.s3_prefix == ""
        or (s.s3_prefix.endswith("/") and not s.s3_prefix.startswith("/") and "//" not in s.s3_prefix),
        "s3_prefix",
        'must be empty or a key prefix ending in "/" like "stowage/"',
        s.s3_prefix,
    )
    _require(
        5 * 1024**2 <= s.s3_part_size <= 5 * 1024**3,
        "s3_part_size",
        "must be between 5 MiB (5242880) and 5 GiB, the limits of S3 multipart parts",
        s.s3_part_size,
    )
    _require(
        1 <= s.s3_presign_seconds <= 7 * 86400,
        "s3_presign_seconds",
        "must be between 1 second and 7 days (the longest a SigV4 presigned URL lives)",
        s.s3_presign_seconds,
    )


def _validate_nodes(s: Settings) -> None:
    """Several nodes: a readable node name; housekeeping and lease periods a test and a cluster can use."""
    if s.node_name is not None:
        name = s.node_name
        _require(_NODE_NAME.match(name) is not None, "node_name", "must be 1-100 of A-Z a-z 0-9 . _ : -", name)
    interval = s.housekeeping_interval_seconds
    _require(1 <= interval <= 7 * 86400, "housekeeping_interval_seconds", "must be 1 s to 7 days", interval)
    lease = s.maintenance_lease_seconds
    _require(1 <= lease <= 3600, "maintenance_lease_seconds", "must be between 1 and 3600 seconds", lease)


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
    _validate_tls(s)


def _validate_tls(s: Settings) -> None:
    """Both TLS files or neither, and each a readable file (a typo must stop the start, not serve HTTP)."""
    if (s.tls_cert_file is None) != (s.tls_key_file is None):
        given, missing = (
            ("tls_cert_file", "tls_key_file") if s.tls_key_file is None else ("tls_key_file", "tls_cert_file")
        )
        _require(False, missing, f"must be set together with {given}", None)
    for name, path in (("tls_cert_file", s.tls_cert_file), ("tls_key_file", s.tls_key_file)):
        if path is not None:
            _require(path.is_file() and os.access(path, os.R_OK), name, "must name a readable PEM file", str(path))
