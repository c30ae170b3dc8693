"""Run the real ``stowage serve`` command as a child process, for end-to-end tests.

The server's stdout and stderr go to files (never a pipe nobody reads, which would block it once the
pipe buffer is full), so a test can read the JSON log lines at any point. Waiting is asynchronous,
so asyncio helpers running in the test's loop (a TCP proxy in front of the database) keep working
while the server starts and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stowage_command() -> list[str]:
    """The installed ``stowage`` entry point next to this interpreter (or ``python -m stowage``)."""
    script = Path(sys.executable).with_name("stowage")
    if script.exists():
        return [str(script)]
    found = shutil.which("stowage")
    return [found] if found else [sys.executable, "-m", "stowage"]


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without any ``STOWAGE_*`` setting a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOWAGE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(extra or {})
    return env


def run_stowage(env: Mapping[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A ``stowage`` command with no terminal anywhere: stdin from /dev/null, output captured, warnings only."""
    return subprocess.run(
        [*stowage_command(), *args],
        env=clean_environ({**env, "STOWAGE_LOG_LEVEL": "warning"}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def self_signed_certificate(folder: Path, openssl: str) -> tuple[Path, Path]:
    """A one-day self-signed certificate and its key for 127.0.0.1 and localhost, made with ``openssl``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class ServerProcess:
    """``stowage serve`` on a free port with its own data folder and environment."""

    def __init__(
        self,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.args = args
        self.env = clean_environ({"STOWAGE_DATA_DIR": str(workdir / "data"), **(env or {})})
        self.data_dir = Path(self.env["STOWAGE_DATA_DIR"])
        self.stdout_path = workdir / "server.stdout"
        self.stderr_path = workdir / "server.stderr"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a deadline for the whole start-up
        """Start the server and return once ``/healthz`` answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [*stowage_command(), "serve", "--port", str(self.port), *self.args]
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - spawning returns at once
                command, env=self.env, stdout=stdout, stderr=stderr, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.stderr_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not answer /healthz within {timeout}s:\n{self.stderr_text()}")
                await asyncio.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109 - mirrors Popen.wait
        """Wait for the server process to exit; return its exit code (raise TimeoutError if it does not)."""
        assert self.process is not None
        try:
            return await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"server still running after {timeout}s") from exc

    async def stop(self, timeout: float = 20.0) -> int | None:  # noqa: ASYNC109 - mirrors Popen.wait
        """SIGTERM and wait; kill the whole process group if it does not exit in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                return await self.wait(timeout)
            except TimeoutError:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """Kill the server and any worker it started (they share the process group we created)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace") if self.stderr_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON log line the server wrote to stderr so far (other lines are skipped)."""
        return list(_json_lines(self.stderr_text()))


@contextlib.asynccontextmanager
async def running_server(
    workdir: Path, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
) -> AsyncIterator[ServerProcess]:
    """A started server for the body of the ``async with``; stopped (or killed) afterwards."""
    server = ServerProcess(workdir, env=env, args=args)
    try:
        await server.start()
        yield server
    finally:
        await server.stop(timeout=15)


async def wait_until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds (a bound on waiting, not a timing check)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    yield record
