"""A real S3 server for the tests: moto's server mode (``moto[server]`` from PyPI) in a child process.

moto is a fake of AWS, but its server mode is a real HTTP server speaking the S3 REST API (SigV4,
multipart uploads, ranged GETs, presigned URLs), which is what the S3 blob store talks to. It runs in
its own process so its memory (it keeps objects in RAM) and its CPU never count against the process
under test. Each test gets its own bucket (``new_bucket``), so tests never see each other's objects.
"""

from __future__ import annotations

import importlib.util
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ACCESS_KEY = "stowage-test"
SECRET_KEY = "stowage-test-secret"
REGION = "us-east-1"


def moto_unavailable_reason() -> str | None:
    """Why moto's server cannot be started here, or None when it can."""
    for module in ("moto", "flask", "flask_cors"):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module!r} is not installed (pip install 'moto[server]')"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoServer:
    """``python -m moto.server`` on a free 127.0.0.1 port; ``endpoint`` is its URL."""

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = self._log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto's server exited: {self._log_path.read_text(errors='replace')[-2000:]}")
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            return
        self.stop()
        raise RuntimeError(f"moto's server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def new_bucket_name() -> str:
    return f"stowage-test-{secrets.token_hex(6)}"
