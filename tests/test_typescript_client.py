"""The TypeScript client (``clients/typescript``) against a real ``stowage serve``.

Three checks, each on what the package promises:

- its committed ``src/schema.d.ts`` is what ``npm run generate`` makes from this server's OpenAPI
  document (so the generated types cannot drift from the API);
- the package type-checks strictly — its main entry point without Node's types (it must run in React
  Native) — and so does the sample program ``examples/app.ts`` (``npm run lint``: ``prettier --check``
  and ``tsc --noEmit``);
- its own test suite (``npm test``: ``node --test``) passes against the server, and contains every
  test named in ``REQUIRED_CLIENT_TESTS`` (refresh once, no loop, single flight, progress, problems,
  resume, restart), so a deleted or renamed client test cannot pass unnoticed.

``npm ci`` installs the pinned packages once; ``node_modules`` is reused while it was installed from
the same ``package-lock.json`` by the same Node and npm (a stamp file records which), so a clean clone
always installs. Without ``node`` or ``npm`` the tests skip — and fail under ``STOWAGE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require_capability, require_tool
from support.server import ServerProcess, clean_environ

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clients" / "typescript"
INSTALL_STAMP = PACKAGE / "node_modules" / ".stowage-install-stamp"
TAP_RESULTS = PACKAGE / "build" / "results.tap"
MIN_NODE_MAJOR = 20

# The behaviours the issue asks the client's tests to cover, by test name (clients/typescript/test/).
REQUIRED_CLIENT_TESTS = [
    "a 401 is refreshed once and the request retried with the new token",
    "a refused refresh signs out once, returns the 401 and sends nothing more",
    "concurrent 401s share one refresh and all succeed",
    "upload over fetch reports progress up to the total and stores the bytes",
    "upload over XMLHttpRequest reports progress up to the total and stores the bytes",
    "an error answer is a StowageProblem with the server's type, status and request_id",
    "an interrupted download resumes from the bytes the sink holds",
    "a file that changed between attempts is downloaded again from the start, not spliced",
    "a file that changes between chunks is downloaded again from the start",
    "listChildren follows the cursor through every page",
]


def _run(
    command: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=PACKAGE,
        env=env or clean_environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-20000:]}\n--- stderr\n{result.stderr[-20000:]}"


@contextlib.contextmanager
def _package_lock() -> Iterator[None]:
    """One user of clients/typescript at a time (two test runs in one checkout share node_modules and build/)."""
    key = hashlib.sha256(str(PACKAGE).encode()).hexdigest()[:16]
    with Path(tempfile.gettempdir(), f"stowage-ts-client-{key}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install_fingerprint(node: str, npm: str) -> str:
    versions = [_run([tool, "--version"]).stdout.strip() for tool in (node, npm)]
    lock = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    return f"lock {lock}\nnode {versions[0]}\nnpm {versions[1]}\n"


@pytest.fixture(scope="module")
def npm() -> Iterator[str]:
    """npm, with the package's locked dependencies installed; held exclusively while the tests use it."""
    node = require_tool("node", package="nodejs")
    npm = require_tool("npm")
    version = _run([node, "--version"]).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    too_old = None if major and int(major.group(1)) >= MIN_NODE_MAJOR else f"{version} is older than {MIN_NODE_MAJOR}"
    require_capability(f"Node.js {MIN_NODE_MAJOR} or later", too_old)
    with _package_lock():
        fingerprint = _install_fingerprint(node, npm)
        installed = INSTALL_STAMP.read_text() if INSTALL_STAMP.is_file() else None
        if installed != fingerprint:
            result = _run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"])
            assert result.returncode == 0, "npm ci failed:\n" + _output(result)
            INSTALL_STAMP.write_text(fingerprint)
        yield npm


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A fresh server on SQLite; sign-ups and refreshes are not rate-limited (the client tests make many)."""
    process = ServerProcess(
        tmp_path_factory.mktemp("ts-client-server"),
        env={
            "STOWAGE_LOG_LEVEL": "warning",
            "STOWAGE_RATE_LIMIT_AUTH_PER_IP": "100000",
            "STOWAGE_RATE_LIMIT_AUTH_PER_ACCOUNT": "100000",
        },
    )
    try:
        asyncio.run(process.start())
        yield process
    finally:
        asyncio.run(process.stop(timeout=15))


def test_committed_schema_is_generated_from_the_servers_document(npm: str, server: ServerProcess) -> None:
    node = shutil.which("node")
    assert node is not None
    command = [node, "scripts/generate.mjs", "--check", "--url", f"{server.base_url}/openapi.json"]
    result = _run(command)
    assert result.returncode == 0, (
        "clients/typescript/src/schema.d.ts differs from the server's document; regenerate it with "
        "`npm run generate` (in clients/typescript, against a running server) and commit it:\n" + _output(result)
    )
    assert "is current" in result.stdout


def test_package_and_sample_program_type_check_and_are_formatted(npm: str) -> None:
    result = _run([npm, "run", "lint"])
    assert result.returncode == 0, "prettier --check or tsc --noEmit failed:\n" + _output(result)
    # All three type checks ran: the core entry without Node types, the package with its tests, the sample.
    for project in ("tsconfig.core.json", "tsconfig.test.json", "examples/tsconfig.json"):
        assert f"tsc -p {project}" in result.stdout, result.stdout


def test_client_suite_passes_against_a_real_server(npm: str, server: ServerProcess) -> None:
    result = _run([npm, "test"], env=clean_environ({"STOWAGE_URL": server.base_url}))
    assert result.returncode == 0, "the client's tests failed:\n" + _output(result)
    tap = TAP_RESULTS.read_text(encoding="utf-8")
    passed = set(re.findall(r"^ok \d+ - (.+)$", tap, flags=re.MULTILINE))
    failed = re.findall(r"^not ok \d+ - (.+)$", tap, flags=re.MULTILINE)
    assert not failed, failed
    missing = [name for name in REQUIRED_CLIENT_TESTS if name not in passed]
    assert not missing, f"required client tests did not pass (renamed or removed?): {missing}\n" + _output(result)
