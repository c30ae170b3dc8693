"""Settings: safe defaults, environment and TOML sources, validation messages, redaction, the secret file."""

from __future__ import annotations

import json
import re
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stowage.config import (
    REDACTED,
    SECRET_FILE_NAME,
    ConfigError,
    Settings,
    load_or_create_secret,
    load_settings,
    redacted,
)


def test_defaults_are_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})

    assert settings.host == "127.0.0.1"  # loopback only until the operator decides otherwise
    assert settings.port == 8000
    assert settings.database_url is None
    assert settings.is_sqlite
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'stowage.db'}"
    assert settings.secret_key is None
    assert settings.metrics_token is None
    assert settings.cors_allow_origins == ()
    assert settings.cors_allow_credentials is False
    assert settings.auto_migrate is True
    assert settings.body_idle_timeout == 60.0  # a stalled upload cannot hold its connection and spool for ever


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "STOWAGE_HOST": "192.0.2.10",
            "STOWAGE_PORT": "9001",
            "STOWAGE_WORKERS": "3",
            "STOWAGE_DATA_DIR": str(tmp_path / "d"),
            "STOWAGE_LOG_LEVEL": "debug",
            "STOWAGE_AUTO_MIGRATE": "off",
            "STOWAGE_DATABASE_CONNECT_TIMEOUT": "1.5",
            "STOWAGE_PUBLIC_URL": "https://files.example.com",
            "STOWAGE_BODY_IDLE_TIMEOUT": "2.5",
        }
    )

    assert settings.host == "192.0.2.10"
    assert settings.port == 9001
    assert settings.workers == 3
    assert settings.data_dir == tmp_path / "d"
    assert settings.log_level == "debug"
    assert settings.auto_migrate is False
    assert settings.database_connect_timeout == 1.5
    assert settings.public_url == "https://files.example.com"
    assert settings.body_idle_timeout == 2.5
    assert settings.effective_database_url.endswith(f"{tmp_path / 'd' / 'stowage.db'}")


def test_empty_environment_value_clears_an_optional_setting(tmp_path: Path) -> None:
    toml = tmp_path / "stowage.toml"
    toml.write_text('public_url = "https://files.example.com"\n')

    settings = load_settings({"STOWAGE_PUBLIC_URL": ""}, config_file=toml)

    assert settings.public_url is None


@pytest.mark.parametrize("via", ["environment", "argument"])
def test_toml_file_is_read(tmp_path: Path, via: str) -> None:
    toml = tmp_path / "stowage.toml"
    toml.write_text(
        'host = "192.0.2.10"\nport = 8123\nlog_format = "json"\n'
        'cors_allow_origins = ["https://app.example.com"]\nhsts = true\n'
    )

    if via == "environment":
        settings = load_settings({"STOWAGE_CONFIG_FILE": str(toml)})
    else:
        settings = load_settings({}, config_file=toml)

    assert settings.host == "192.0.2.10"
    assert settings.port == 8123
    assert settings.log_format == "json"
    assert settings.cors_allow_origins == ("https://app.example.com",)
    assert settings.hsts is True


def test_environment_beats_toml(tmp_path: Path) -> None:
    toml = tmp_path / "stowage.toml"
    toml.write_text('port = 8123\nlog_level = "warning"\n')

    settings = load_settings({"STOWAGE_CONFIG_FILE": str(toml), "STOWAGE_PORT": "9999"})

    assert settings.port == 9999  # from the environment
    assert settings.log_level == "warning"  # still from the file


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    toml = tmp_path / "stowage.toml"
    toml.write_text("port = 8123\nprot = 8124\n")

    with pytest.raises(ConfigError, match=r"unknown setting 'prot'"):
        load_settings({}, config_file=toml)


def test_missing_and_malformed_toml_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, config_file=tmp_path / "absent.toml")

    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, config_file=broken)


def test_unknown_stowage_environment_variables_are_ignored() -> None:
    settings = load_settings(
        {
            "STOWAGE_TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/test",
            "STOWAGE_REQUIRE_SERVICES": "1",
            "STOWAGE_SOMETHING_ELSE": "x",
            "OTHER_PORT": "1",
        }
    )

    assert settings == load_settings({})


BAD_VALUES: list[tuple[dict[str, str], str, str | tuple[str, ...]]] = [
    ({"STOWAGE_PORT": "70000"}, "STOWAGE_PORT", "between 1 and 65535"),
    ({"STOWAGE_PORT": "0"}, "STOWAGE_PORT", "between 1 and 65535"),
    ({"STOWAGE_PORT": "eighty"}, "STOWAGE_PORT", "expected int"),
    ({"STOWAGE_PRESIGN_MAX_SECONDS": "59"}, "STOWAGE_PRESIGN_MAX_SECONDS", ("60 s-30 days", "got 59")),
    ({"STOWAGE_PRESIGN_MAX_SECONDS": "2592001"}, "STOWAGE_PRESIGN_MAX_SECONDS", "60 s-30 days"),
    ({"STOWAGE_PRESIGN_DEFAULT_SECONDS": "0"}, "STOWAGE_PRESIGN_DEFAULT_SECONDS", "must be 1-604800 s"),
    (
        {"STOWAGE_PRESIGN_MAX_SECONDS": "600", "STOWAGE_PRESIGN_DEFAULT_SECONDS": "601"},
        "STOWAGE_PRESIGN_DEFAULT_SECONDS",
        ("must be 1-600 s", "got 601"),
    ),
    ({"STOWAGE_PRESIGN_DEFAULT_SECONDS": "an hour"}, "STOWAGE_PRESIGN_DEFAULT_SECONDS", "expected int"),
    ({"STOWAGE_LOG_LEVEL": "verbose"}, "STOWAGE_LOG_LEVEL", ("must be one of", "debug", "info", "warning", "error")),
    ({"STOWAGE_LOG_FORMAT": "xml"}, "STOWAGE_LOG_FORMAT", ("must be one of", "auto", "json", "console")),
    ({"STOWAGE_AUTO_MIGRATE": "maybe"}, "STOWAGE_AUTO_MIGRATE", "expected true or false"),
    ({"STOWAGE_HSTS": "2"}, "STOWAGE_HSTS", "expected true or false"),
    ({"STOWAGE_DATABASE_URL": "mysql://db/stowage"}, "STOWAGE_DATABASE_URL", "postgresql://"),
    ({"STOWAGE_SECRET_KEY": "too-short"}, "STOWAGE_SECRET_KEY", "at least 32 characters"),
    ({"STOWAGE_METRICS_TOKEN": "short"}, "STOWAGE_METRICS_TOKEN", "at least 16 characters"),
    (
        {"STOWAGE_CORS_ALLOW_ORIGINS": "https://app.example.com/path"},
        "STOWAGE_CORS_ALLOW_ORIGINS",
        "origins like https://app.example.com",
    ),
    ({"STOWAGE_CORS_ALLOW_ORIGINS": "app.example.com"}, "STOWAGE_CORS_ALLOW_ORIGINS", "origins like"),
    (
        {"STOWAGE_CORS_ALLOW_ORIGINS": "*", "STOWAGE_CORS_ALLOW_CREDENTIALS": "true"},
        "STOWAGE_CORS_ALLOW_CREDENTIALS",
        "cannot be true when cors_allow_origins contains *",
    ),
    ({"STOWAGE_CORS_ALLOW_ORIGINS": '["https://a.example.com"'}, "STOWAGE_CORS_ALLOW_ORIGINS", "not a valid JSON list"),
    ({"STOWAGE_DATABASE_SCHEMA": "tenant_a"}, "STOWAGE_DATABASE_SCHEMA", "only meaningful with PostgreSQL"),
    (
        {"STOWAGE_DATABASE_URL": "postgresql://db/stowage", "STOWAGE_DATABASE_SCHEMA": "Bad-Name"},
        "STOWAGE_DATABASE_SCHEMA",
        "lower-case PostgreSQL identifier",
    ),
    ({"STOWAGE_WORKERS": "0"}, "STOWAGE_WORKERS", "between 1 and 64"),
    ({"STOWAGE_PUBLIC_URL": "files.example.com"}, "STOWAGE_PUBLIC_URL", "absolute http(s) URL"),
    ({"STOWAGE_MAX_REQUEST_BODY_BYTES": "10"}, "STOWAGE_MAX_REQUEST_BODY_BYTES", "between 1 KiB and 1 GiB"),
    ({"STOWAGE_MAX_REQUEST_HEADER_BYTES": "100"}, "STOWAGE_MAX_REQUEST_HEADER_BYTES", "between 8192 and"),
    ({"STOWAGE_LOG_FILE_MAX_BYTES": "10"}, "STOWAGE_LOG_FILE_MAX_BYTES", "at least 1024 bytes"),
    ({"STOWAGE_SHUTDOWN_TIMEOUT": "0"}, "STOWAGE_SHUTDOWN_TIMEOUT", "between 1 and 3600"),
    ({"STOWAGE_BODY_IDLE_TIMEOUT": "0"}, "STOWAGE_BODY_IDLE_TIMEOUT", "more than 0 and at most 3600"),
    ({"STOWAGE_BODY_IDLE_TIMEOUT": "nan"}, "STOWAGE_BODY_IDLE_TIMEOUT", "more than 0 and at most 3600"),
    ({"STOWAGE_BODY_IDLE_TIMEOUT": "7200"}, "STOWAGE_BODY_IDLE_TIMEOUT", "more than 0 and at most 3600"),
]


@pytest.mark.parametrize(("env", "name", "allowed"), BAD_VALUES, ids=[f"{case[1]}={case[0]}" for case in BAD_VALUES])
def test_bad_value_names_the_setting_and_what_is_allowed(
    env: dict[str, str], name: str, allowed: str | tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    message = str(caught.value)
    assert re.match(rf"{name}\b", message), message
    for part in (allowed,) if isinstance(allowed, str) else allowed:
        assert part in message


def test_bad_value_in_toml_names_the_setting(tmp_path: Path) -> None:
    toml = tmp_path / "stowage.toml"
    toml.write_text('port = "eighty"\n')

    with pytest.raises(ConfigError, match=r"^STOWAGE_PORT \(port\): expected int, got 'eighty'"):
        load_settings({}, config_file=toml)


def test_validation_messages_never_show_secrets() -> None:
    with pytest.raises(ConfigError) as bad_secret:
        load_settings({"STOWAGE_SECRET_KEY": "hunter2-short"})
    with pytest.raises(ConfigError) as bad_url:
        load_settings({"STOWAGE_DATABASE_URL": "mysql://stowage:hunter2@db/stowage"})

    assert "hunter2" not in str(bad_secret.value)
    assert "hunter2" not in str(bad_url.value)
    assert REDACTED in str(bad_url.value)


@pytest.mark.parametrize(
    "raw",
    [
        "https://a.example.com, https://b.example.com:8443",
        "https://a.example.com,https://b.example.com:8443,",
        '["https://a.example.com", "https://b.example.com:8443"]',
    ],
)
def test_list_settings_accept_commas_or_json(raw: str) -> None:
    settings = load_settings({"STOWAGE_CORS_ALLOW_ORIGINS": raw})

    assert settings.cors_allow_origins == ("https://a.example.com", "https://b.example.com:8443")


def test_redacted_hides_every_secret() -> None:
    secret_key = "k" * 40
    metrics_token = "metrics-token-0123456789"
    password = "pg-pass-word"
    settings = load_settings(
        {
            "STOWAGE_SECRET_KEY": secret_key,
            "STOWAGE_METRICS_TOKEN": metrics_token,
            "STOWAGE_DATABASE_URL": f"postgresql://stowage:{password}@db.internal:5432/stowage",
        }
    )

    shown = redacted(settings)

    assert shown["secret_key"] == REDACTED
    assert shown["metrics_token"] == REDACTED
    assert shown["database_url"] == f"postgresql://stowage:{REDACTED}@db.internal:5432/stowage"
    assert shown["effective_database_url"] == shown["database_url"]
    assert shown["port"] == 8000  # ordinary settings stay visible
    dumped = json.dumps(shown)
    for secret in (secret_key, metrics_token, password):
        assert secret not in dumped


def test_redacted_leaves_unset_secrets_as_none() -> None:
    shown = redacted(load_settings({}))

    assert shown["secret_key"] is None
    assert shown["metrics_token"] is None


def _settings_with_data_dir(path: Path, **env: str) -> Settings:
    return load_settings({"STOWAGE_DATA_DIR": str(path), **{f"STOWAGE_{k.upper()}": v for k, v in env.items()}})


def test_secret_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = _settings_with_data_dir(tmp_path / "data")

    first = load_or_create_secret(settings)
    second = load_or_create_secret(settings)

    secret_file = tmp_path / "data" / SECRET_FILE_NAME
    assert secret_file.is_file()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert secret_file.read_text().strip() == first
    assert second == first
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [SECRET_FILE_NAME, "tmp"]  # no leftovers


def test_configured_secret_wins_and_no_file_is_written(tmp_path: Path) -> None:
    configured = "c" * 48
    settings = _settings_with_data_dir(tmp_path / "data", secret_key=configured)

    assert load_or_create_secret(settings) == configured
    assert not (tmp_path / "data" / SECRET_FILE_NAME).exists()


def test_unusable_secret_file_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / SECRET_FILE_NAME).write_text("short\n")

    with pytest.raises(ConfigError, match="holds no usable secret"):
        load_or_create_secret(_settings_with_data_dir(data))


def test_workers_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    """Several processes may create the secret at once; none may see a half-written file."""
    for attempt in range(30):
        settings = _settings_with_data_dir(tmp_path / f"data{attempt}")
        barrier = threading.Barrier(4)

        def create(settings: Settings = settings, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            return load_or_create_secret(settings)

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = [pool.submit(create) for _ in range(4)]
            secrets_seen = {future.result() for future in results}

        assert len(secrets_seen) == 1
        assert (tmp_path / f"data{attempt}" / SECRET_FILE_NAME).read_text().strip() in secrets_seen
