"""The layer rules of ``docs/architecture.md``, checked on the source: every import between Stowage's
top-level packages must be allowed by ``MAY_IMPORT``, and only front ends, ``app.py`` and
``http/responses.py`` may import Litestar (ruff's TID251 checks the same; this test also names the
package rule it breaks). Adding a package means adding its row here and in the docs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stowage"

_FOUNDATION = {"errors", "config", "rules", "observability", "policy", "__init__"}
_INFRASTRUCTURE = {"db", "blobs", "ratelimit", "mail"}

# Who may import whom (besides itself). Lower layers never import higher ones: domain packages never
# import a front end, the HTTP package imports no service, and nothing but the composition roots
# (app, cli) sees every layer.
MAY_IMPORT: dict[str, set[str]] = {
    "__init__": set(),
    "errors": set(),
    "rules": {"errors"},
    "policy": {"errors"},
    "config": {"errors", "rules"},
    "observability": {"errors", "config", "__init__"},
    "db": {"errors", "config", "observability"},
    "blobs": {"errors", "config", "observability"},
    "ratelimit": {"errors", "config", "observability"},
    "mail": {"errors", "config", "observability"},
    # Shared HTTP: header syntax, download planning, responses. No domain, no front end.
    "http": {"errors", "blobs"},
    # Domain packages: services, repositories, schemas.
    "files": _FOUNDATION | _INFRASTRUCTURE | {"images"},  # image facts and GPS removal use the pure library
    "accounts": _FOUNDATION | _INFRASTRUCTURE | {"files"},  # deleting an account releases its files
    "system": _FOUNDATION | {"db"},
    "maintenance": _FOUNDATION | _INFRASTRUCTURE | {"files"},  # gc also spares cached image derivatives
    "uploads": _FOUNDATION | _INFRASTRUCTURE | {"files"},  # resumable uploads end in the files write path
    # Shares build on the tree (and find recipients among accounts); the tree reads grants itself.
    "sharing": _FOUNDATION | _INFRASTRUCTURE | {"files", "accounts"},
    # Pure image processing (pyvips, pillow-heif): no database, no blob store, no web framework.
    "images": {"errors", "config"},
    # Image derivatives of stored files and their cache (the read path opens the source).
    "media": _FOUNDATION | _INFRASTRUCTURE | {"files", "images"},
    "runtime": _FOUNDATION | _INFRASTRUCTURE | {"files", "accounts", "system", "uploads", "sharing", "media"},
    # Front ends: REST and the protocol adapters, side by side (a protocol does not import REST).
    "api": _FOUNDATION
    | _INFRASTRUCTURE
    | {"http", "files", "accounts", "system", "maintenance", "sharing", "runtime", "media", "images"},
    "protocols": _FOUNDATION | _INFRASTRUCTURE | {"http", "files", "accounts", "system", "uploads", "runtime"},
    # Composition roots.
    "app": _FOUNDATION
    | _INFRASTRUCTURE
    | {"http", "files", "accounts", "system", "maintenance", "uploads", "sharing", "runtime", "api", "protocols"}
    | {"media", "images"},
    "cli": _FOUNDATION | _INFRASTRUCTURE | {"files", "accounts", "system", "maintenance", "runtime", "app"},
    "__main__": {"cli"},
}
LITESTAR_ALLOWED = ("api/", "protocols/", "app.py", "http/responses.py")


def _imports(relative: str, source: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=relative)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "stowage":
                found += [(node.lineno, f"stowage.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _check_module(relative: str, source: str) -> list[str]:
    """The broken rules of one module, given its path below ``src/stowage`` and its text."""
    package = relative.split("/", 1)[0].removesuffix(".py")
    if package not in MAY_IMPORT:
        return [f"{relative}: package {package!r} has no row in MAY_IMPORT (add it, and to the docs)"]
    problems: list[str] = []
    for line, module in _imports(relative, source):
        parts = module.split(".")
        if parts[0] == "litestar" and not relative.startswith(LITESTAR_ALLOWED):
            problems.append(f"{relative}:{line} imports {module}: only front ends may import Litestar")
        if parts[0] != "stowage" or len(parts) < 2:
            continue
        target = "__init__" if parts[1] == "__version__" else parts[1]
        if target != package and target not in MAY_IMPORT[package]:
            problems.append(f"{relative}:{line} imports {module}: {package} may not import {target}")
    return problems


def test_every_import_follows_the_layer_rules() -> None:
    problems: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        problems += _check_module(path.relative_to(SRC).as_posix(), path.read_text(encoding="utf-8"))
    assert problems == []


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("files/_probe.py", "from stowage.api.deps import Caller\n", "files may not import api"),
        ("http/_probe.py", "from stowage.files.services import FileServices\n", "http may not import files"),
        ("files/_probe.py", "from litestar import Request\n", "only front ends may import Litestar"),
        ("db/_probe.py", "import stowage.accounts.repository\n", "db may not import accounts"),
        ("protocols/tus/_probe.py", "from stowage.api.problems import status_for\n", "protocols may not import api"),
        ("newthing.py", "x = 1\n", "has no row in MAY_IMPORT"),
    ],
)
def test_the_check_catches_an_import_going_the_wrong_way(relative: str, source: str, expected: str) -> None:
    problems = _check_module(relative, source)
    assert len(problems) == 1
    assert expected in problems[0]


def test_allowed_imports_pass_the_check() -> None:
    assert _check_module("api/_probe.py", "from litestar import Request\nfrom stowage.files import schemas\n") == []
    assert _check_module("files/_probe.py", "from stowage.blobs import BlobStore\n") == []


MAX_MODULE_LINES = 500


def test_no_module_is_over_the_size_limit() -> None:
    """Small modules with one job: a module past 500 lines is split by what its parts do (issue 10)."""
    too_long = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines (split them): {too_long}"
