"""The README's "A short tour" runs as written against a real server, so the tour cannot rot again.

The shell block(s) of that section are read from README.md (never copied here) and run in one
``bash -euo pipefail`` process started in a folder holding a ``beach.jpg``. Only two things are
rewritten: ``localhost:8000`` becomes the test server's address and ``.venv/bin/stowage`` the installed
entry point; the CLI gets the server's environment, so it creates the administrator in the database
the server uses. A marker is printed before each command, so each step's output is checked on its
own, and the variables the tour sets (``ACCESS``, ``REFRESH``, ``NODE_ID``) are printed at the end and
checked against the server's state.

Every command must fit on one logical line (continuation lines end with a backslash).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import require_tool
from support.server import ServerProcess, stowage_command

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
SERVER_ADDRESS = "localhost:8000"
CLI = ".venv/bin/stowage"
STEP_MARKER = "@@tour step {}@@"
ENV_MARKER = "@@tour variables@@"
ADMIN_EMAIL, ADMIN_PASSPHRASE = "admin@example.com", "a long admin passphrase"
# Recognisable JPEG bytes (the signature is what the server sniffs); longer than the 100-byte range.
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 12

# What the tour promises to show, by a fragment of the command that does it.
REQUIRED_STEPS = [
    f"{CLI} user create {ADMIN_EMAIL} --admin",
    f"{SERVER_ADDRESS}/healthz",
    f"{SERVER_ADDRESS}/readyz",
    f"{SERVER_ADDRESS}/api/v1/info",
    "/api/v1/auth/signup",
    "ACCESS=",
    "REFRESH=",
    f"{SERVER_ADDRESS}/api/v1/me ",
    "/api/v1/auth/refresh",
    "/api/v1/me/tokens",
    "-T beach.jpg localhost:8000/api/v1/content/Photos/2026/beach.jpg",
    "NODE_ID=",
    "/children",
    "range: bytes=0-99",
    "/api/v1/search?",
    "-X PATCH",
    "on_conflict=replace",
    "/versions",
    "/api/v1/recent",
    "-X DELETE",
    f"{SERVER_ADDRESS}/nope",
]


def tour_blocks(readme: str) -> list[str]:
    """The shell code blocks of the "A short tour" section."""
    assert "\n## A short tour\n" in readme, "README.md has no '## A short tour' section"
    section = readme.split("\n## A short tour\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def tour_commands(blocks: list[str]) -> list[str]:
    """Logical command lines: continuation lines joined, blank lines and whole-line comments dropped."""
    commands: list[str] = []
    current = ""
    for block in blocks:
        for line in block.splitlines():
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            current += line + "\n"
            if not line.endswith("\\"):
                commands.append(current)
                current = ""
        assert not current, f"a tour command ends in a line continuation: {current!r}"
    return commands


def tour_script(commands: list[str], port: int) -> str:
    """The commands as one script, each after its marker, with the two rewrites applied."""
    lines = []
    for number, command in enumerate(commands):
        lines.append(f"printf '\\n%s\\n' {shlex.quote(STEP_MARKER.format(number))}")
        lines.append(command)
    variables = '"$ACCESS" "$REFRESH" "$NODE_ID"'
    lines.append(f"printf '\\n%s\\n%s\\n%s\\n%s\\n' {shlex.quote(ENV_MARKER)} {variables}")
    script = "\n".join(lines) + "\n"
    return script.replace(SERVER_ADDRESS, f"127.0.0.1:{port}").replace(CLI, shlex.join(stowage_command()))


def step_outputs(stdout: str, count: int) -> tuple[list[str], list[str]]:
    """Each step's stdout, and the lines printed after the variables marker."""
    head, _, variables = stdout.partition(f"\n{ENV_MARKER}\n")
    outputs: list[str] = []
    for number in range(count):
        marker = f"{STEP_MARKER.format(number)}\n"
        assert marker in head, f"step {number} never ran"
        after = head.split(marker, 1)[1]
        outputs.append(after.split(f"\n{STEP_MARKER.format(number + 1)}\n", 1)[0])
    return outputs, variables.splitlines()


class Tour:
    """The commands and what each printed, found by a fragment of the command."""

    def __init__(self, commands: list[str], outputs: list[str]) -> None:
        self.commands = commands
        self.outputs = outputs

    def output(self, fragment: str) -> str:
        matches = [out for command, out in zip(self.commands, self.outputs, strict=True) if fragment in command]
        assert len(matches) == 1, f"expected one tour command with {fragment!r}, found {len(matches)}"
        return matches[0].strip()

    def json(self, fragment: str) -> Any:
        return json.loads(self.output(fragment))


def test_tour_is_extracted_from_the_readme_and_covers_every_step() -> None:
    commands = tour_commands(tour_blocks(README.read_text(encoding="utf-8")))
    for fragment in REQUIRED_STEPS:
        assert any(fragment in command for command in commands), f"the tour lost its step {fragment!r}"
    # The test rewrites exactly these two; a tour that stops using them would run against nothing.
    assert any(SERVER_ADDRESS in command for command in commands)
    assert any(CLI in command for command in commands)


async def test_readme_tour_runs_as_written(settings_env: dict[str, str], tmp_path: Path) -> None:
    require_tool("curl")
    require_tool("jq")
    readme = README.read_text(encoding="utf-8")
    commands = tour_commands(tour_blocks(readme))
    assert commands, "the tour has no shell commands"

    server = ServerProcess(tmp_path / "server", env=settings_env)
    await server.start()
    try:
        workdir = tmp_path / "clone"
        workdir.mkdir()
        (workdir / "beach.jpg").write_bytes(PHOTO)
        result = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-euo", "pipefail", "-c", tour_script(commands, server.port)],
            cwd=workdir,
            env={**server.env, "STOWAGE_LOG_LEVEL": "warning"},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        ran = result.stdout.count("@@tour step")
        failed = commands[ran - 1].strip() if ran else "nothing ran"
        if ran == len(commands):
            failed += " (or ACCESS, REFRESH or NODE_ID was never set)"
        assert result.returncode == 0, f"tour step {ran - 1} failed: {failed}\n{result.stdout}\n{result.stderr}"
        outputs, variables = step_outputs(result.stdout, len(commands))
        tour = Tour(commands, outputs)

        created = tour.output("user create")
        assert f"created admin {ADMIN_EMAIL}" in created
        assert ADMIN_PASSPHRASE not in created + result.stderr
        assert tour.json("/healthz") == {"status": "ok"}
        assert tour.json("/readyz")["status"] == "ready"
        info = tour.json("/api/v1/info")
        assert (info["name"], info["api_version"]) == ("Stowage", "v1")
        me = tour.json("/api/v1/me ")
        assert (me["email"], me["role"]) == ("ann@example.com", "user")
        assert tour.output("/children").splitlines() == ["beach.jpg"]
        assert (workdir / "part").read_bytes() == PHOTO[:100]
        assert tour.output("/api/v1/search?").splitlines() == ["beach.jpg"]
        patched = tour.json("-X PATCH")
        assert patched == {"name": "beach.jpg", "starred": True, "metadata": {"album": "Summer"}}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", tour.output("on_conflict=replace"))
        assert tour.output("/versions") == "2"
        assert "beach.jpg" in tour.output("/api/v1/recent").splitlines()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", tour.output("-X DELETE"))
        problem = tour.json("/nope")
        assert (problem["type"], problem["title"], problem["status"]) == (
            "urn:stowage:problem:not-found",
            "Not found",
            404,
        )
        assert problem["detail"].startswith("No resource at /nope")
        assert re.fullmatch(r"[0-9a-f]{32}", problem["request_id"])

        access, refresh, node_id = variables
        assert access.count(".") == 2, "ACCESS holds a JWT"
        assert refresh.startswith("srt_")
        await _assert_server_state(server, access, node_id)
    finally:
        await server.stop()


async def _assert_server_state(server: ServerProcess, access: str, node_id: str) -> None:
    """What the tour did, read back over HTTP with the tour's own (refreshed) access token."""
    headers = {"authorization": f"Bearer {access}"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        trashed = await client.get(f"/api/v1/nodes/{node_id}", headers=headers)
        assert trashed.status_code == 404, "a trashed file is not found by id"
        trash = (await client.get("/api/v1/trash", headers=headers)).json()
        assert [item["id"] for item in trash["items"]] == [node_id]
        node = trash["items"][0]
        assert (node["name"], node["size"], node["media_type"]) == ("beach.jpg", len(PHOTO), "image/jpeg")
        assert (node["starred"], node["metadata"]) == (True, {"album": "Summer"})
        assert node["trashed_at"] is not None
        tokens = (await client.get("/api/v1/me/tokens", headers=headers)).json()
        assert [(t["name"], t["scopes"]) for t in tokens] == [("backup script", ["read"])]
        admin = await client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSPHRASE})
        assert admin.status_code == 200, admin.text
        assert admin.json()["user"]["role"] == "admin"
