"""``stowage serve`` speaking HTTPS itself with ``tls_cert_file``/``tls_key_file`` (Granian's TLS).

A self-signed certificate for 127.0.0.1 is made with openssl; the client trusts exactly that
certificate, so the request only succeeds if the server really presents it. Half a configuration or
a missing file stops the start with the setting's name.
"""

from __future__ import annotations

import contextlib
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import require_tool
from support.server import clean_environ, free_port, self_signed_certificate, stowage_command

pytestmark = pytest.mark.slow


def test_serve_over_https(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, require_tool("openssl"))
    port = free_port()
    env = clean_environ(
        {
            "STOWAGE_DATA_DIR": str(tmp_path / "data"),
            "STOWAGE_TLS_CERT_FILE": str(cert),
            "STOWAGE_TLS_KEY_FILE": str(key),
            "STOWAGE_LOG_LEVEL": "warning",
        }
    )
    with (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [*stowage_command(), "serve", "--port", str(port)], env=env, stderr=stderr, start_new_session=True
        )
    trusting = ssl.create_default_context(cafile=str(cert))  # this certificate and nothing else
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "stderr").read_text()
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusting, timeout=2)
                break
            assert time.monotonic() < deadline, (tmp_path / "stderr").read_text()
            time.sleep(0.1)
        assert response.status_code == 200
        assert response.url.scheme == "https"
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port is not served
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"STOWAGE_TLS_CERT_FILE": "cert"}, "STOWAGE_TLS_KEY_FILE"),
        ({"STOWAGE_TLS_KEY_FILE": "key"}, "STOWAGE_TLS_CERT_FILE"),
    ],
)
def test_half_a_tls_configuration_is_refused(given: dict[str, str], named: str, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, require_tool("openssl"))
    paths = {"cert": str(cert), "key": str(key)}
    env = {name: paths[value] for name, value in given.items()}

    result = subprocess.run(
        [*stowage_command(), "config"],
        env=clean_environ({"STOWAGE_DATA_DIR": str(tmp_path / "data"), **env}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert named in result.stderr


def test_a_missing_certificate_file_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [*stowage_command(), "serve"],
        env=clean_environ(
            {
                "STOWAGE_DATA_DIR": str(tmp_path / "data"),
                "STOWAGE_TLS_CERT_FILE": str(tmp_path / "nope.pem"),
                "STOWAGE_TLS_KEY_FILE": str(tmp_path / "nope.key"),
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "STOWAGE_TLS_CERT_FILE" in result.stderr
    assert "readable PEM file" in result.stderr
