"""The installed ``stowage`` command, run as a real process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stowage import __version__
from stowage.config import REDACTED
from stowage.db.migrate import head_revision
from support.server import clean_environ, stowage_command


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*stowage_command(), *args],
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version() -> None:
    result = run("version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"stowage {__version__}"


def test_config_prints_effective_settings_with_secrets_redacted(data_dir: Path) -> None:
    metrics_token = "metrics-token-abcdefghijkl"
    secret_key = "s" * 40
    password = "db-password-xyz"
    result = run(
        "config",
        env={
            "STOWAGE_DATA_DIR": str(data_dir),
            "STOWAGE_PORT": "9123",
            "STOWAGE_METRICS_TOKEN": metrics_token,
            "STOWAGE_SECRET_KEY": secret_key,
            "STOWAGE_DATABASE_URL": f"postgresql://stowage:{password}@db.internal/stowage",
        },
    )

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["port"] == 9123
    assert shown["data_dir"] == str(data_dir)
    assert shown["metrics_token"] == REDACTED
    assert shown["secret_key"] == REDACTED
    assert shown["database_url"] == f"postgresql://stowage:{REDACTED}@db.internal/stowage"
    for secret in (metrics_token, secret_key, password):
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_config_reads_a_toml_file(tmp_path: Path) -> None:
    toml = tmp_path / "stowage.toml"
    toml.write_text('port = 8124\nlog_level = "warning"\n')

    result = run("config", "--config", str(toml), env={"STOWAGE_LOG_LEVEL": "error"})

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["port"] == 8124
    assert shown["log_level"] == "error"  # the environment still wins


@pytest.mark.parametrize("command", ["config", "migrate", "serve"])
def test_bad_setting_exits_2_naming_it(command: str, data_dir: Path) -> None:
    result = run(command, env={"STOWAGE_DATA_DIR": str(data_dir), "STOWAGE_PORT": "99999"})

    assert result.returncode == 2
    assert "STOWAGE_PORT" in result.stderr
    assert "between 1 and 65535" in result.stderr
    assert result.stdout == ""


def test_migrate_on_a_fresh_data_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"  # does not exist yet

    result = run("migrate", env={"STOWAGE_DATA_DIR": str(data_dir), "STOWAGE_LOG_LEVEL": "warning"})

    assert result.returncode == 0, result.stderr
    assert f"database at revision {head_revision()}" in result.stdout
    assert (data_dir / "stowage.db").is_file()


def test_migrate_check_passes_on_both_engines(settings_env: dict[str, str]) -> None:
    result = run("migrate", "--check", env={**settings_env, "STOWAGE_LOG_LEVEL": "warning"})

    assert result.returncode == 0, result.stderr
    assert f"database at revision {head_revision()}" in result.stdout
    assert "models and migrations agree" in result.stdout


def test_migrate_downgrade_to_base(data_dir: Path) -> None:
    env = {"STOWAGE_DATA_DIR": str(data_dir), "STOWAGE_LOG_LEVEL": "warning"}
    assert run("migrate", env=env).returncode == 0

    result = run("migrate", "--downgrade", "--revision", "base", "--yes", env=env)

    assert result.returncode == 0, result.stderr
    assert "database at revision None" in result.stdout
