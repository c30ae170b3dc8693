"""What image facts cost a folder listing: one folder of N photos listed in pages of 100 and 1000.

    .venv/bin/python bench/listing_facts.py                          # 1000 JPEGs, SQLite
    .venv/bin/python bench/listing_facts.py --files 1000 --repeat 50 --json /tmp/listing.json
    .venv/bin/python bench/listing_facts.py --backend postgresql     # the local server's test database

Runs the application in this process (its lifespan and ASGI app through httpx, no network, no
server): signs up a user, uploads N small distinct JPEGs with EXIF capture times into one folder with
raw PUTs, waits until their facts are computed (when the build has image facts), then times
``GET /api/v1/nodes/{folder}/children`` — the whole request: authentication, SQL, rows into the
API's shape, JSON. Each size is fetched twice to warm up, then ``--repeat`` times; the report gives
the median and fastest in milliseconds and whether items carry ``image``.

The script uses only the HTTP API, so the same file measures a build without image facts: put that
build's ``src`` first on ``PYTHONPATH`` (e.g. ``git archive main src | tar -x -C /tmp/main``, then
``PYTHONPATH=/tmp/main/src``) and compare. Check ``/tmp/bench.lock`` first (the machine is shared).
"""

# A command-line script: it prints its report.
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from PIL import Image

import stowage
from stowage.app import create_app, litestar_of
from stowage.config import load_settings

POSTGRES_URL = os.environ.get("STOWAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def photo(index: int) -> bytes:
    """A distinct 64x48 JPEG with a capture time (EXIF DateTimeOriginal)."""
    picture = Image.new("RGB", (64, 48), (index % 256, (index // 256) % 256, 90))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = f"20{10 + index % 15}:0{1 + index % 9}:1{index % 10} 12:00:00"
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=80, exif=exif.tobytes())
    return out.getvalue()


async def _timed(client: httpx.AsyncClient, url: str, headers: dict[str, str], repeat: int) -> tuple[list[float], Any]:
    body: Any = None
    for _ in range(2):
        if (await client.get(url, headers=headers)).status_code != 200:
            return [], None  # an order this build does not have
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = await client.get(url, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
        body = response.json()
    return times, body


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="stowage-listing-"))
    env = {"STOWAGE_DATA_DIR": str(data_dir), "STOWAGE_LOG_LEVEL": "warning", "STOWAGE_METRICS_ENABLED": "false"}
    schema = None
    if args.backend == "postgresql":
        schema = f"bench_{secrets.token_hex(4)}"
        env |= {"STOWAGE_DATABASE_URL": POSTGRES_URL, "STOWAGE_DATABASE_SCHEMA": schema}
    app = create_app(load_settings(env))
    inner = litestar_of(app)
    report: dict[str, Any] = {"stowage": str(Path(stowage.__file__).parent), "backend": args.backend}
    try:
        async with (
            inner.lifespan(),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench.local") as client,
        ):
            signed = await client.post(
                "/api/v1/auth/signup",
                json={"email": "bench@example.com", "password": "a long and unusual bench passphrase 42"},
            )
            assert signed.status_code == 201, signed.text
            headers = {"Authorization": f"Bearer {signed.json()['access_token']}"}
            folder = await client.post("/api/v1/folders", json={"path": "photos"}, headers=headers)
            folder_id = folder.json()["id"]
            start = time.perf_counter()
            for index in range(args.files):
                stored = await client.put(
                    f"/api/v1/nodes/{folder_id}/children/IMG_{index:05d}.jpg", content=photo(index), headers=headers
                )
                assert stored.status_code == 201, stored.text
            facts = getattr(inner.state.runtime.files, "facts", None)
            if facts is not None:
                await facts.idle()
            report["upload_and_facts_s"] = round(time.perf_counter() - start, 1)
            for limit in (100, 1000):
                for sort in ("name", "taken_at"):
                    url = f"/api/v1/nodes/{folder_id}/children?limit={limit}&sort={sort}"
                    times, body = await _timed(client, url, headers, args.repeat)
                    if body is None:
                        continue
                    items = body["items"]
                    report[f"limit={limit} sort={sort}"] = {
                        "median_ms": round(statistics.median(times), 2),
                        "min_ms": round(min(times), 2),
                        "items": len(items),
                        "with_image": sum("image" in item for item in items),
                    }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if schema is not None:
            connection = await asyncpg.connect(POSTGRES_URL)
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await connection.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
