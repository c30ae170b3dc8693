"""Fill one Stowage folder with many tiny files, for the listing benchmark (bench/run.sh, extra J2).

    STOWAGE_TOKEN=stp_... .venv/bin/python bench/populate.py --base-url http://127.0.0.1:8000 \
        --folder bench/listing --count 10000

Uploads ``--count`` files ``f-00000``, ``f-00001``, ... with raw ``PUT /api/v1/content/<folder>/<name>``
(missing folders are created by the first one), ``--concurrency`` requests at a time on one
keep-alive pool. Every body is different (it carries the file's number), so no two files share a
blob. Any non-2xx answer stops the script with the status and body: a listing measured over a
half-filled folder would be wrong without anyone noticing. When all are in, it checks that the
folder lists ``--count`` files and prints the folder's id (the only line on stdout).

The token comes from ``STOWAGE_TOKEN`` rather than the command line, so it is not visible in ``ps``.
Only loopback servers are accepted: this is a load generator.
"""

# A command-line script: its output is the folder id, its progress goes to stderr.
# ruff: noqa: T201

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from urllib.parse import quote, urlsplit

import httpx


class UploadFailed(Exception):
    pass


async def populate(base_url: str, token: str, folder: str, count: int, concurrency: int) -> str:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/octet-stream"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    prefix = "/api/v1/content/" + quote(folder.strip("/")) + "/"
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:

        async def put(i: int) -> dict[str, object]:
            name = f"f-{i:05d}"
            response = await client.put(prefix + name, content=f"listing file {i}\n".encode())
            if not response.is_success:
                raise UploadFailed(f"PUT {prefix}{name} -> {response.status_code}: {response.text[:500]}")
            body: dict[str, object] = response.json()
            return body

        # The first upload creates the folder; the others then only add files to it.
        first = await put(0)
        folder_id = str(first["parent_id"])
        queue = iter(range(1, count))

        async def worker() -> None:
            for i in queue:  # one shared iterator: each number is taken by exactly one worker
                await put(i)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        print(
            f"populate: {count} files in {folder} in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.0f}/s)",
            file=sys.stderr,
        )

        # The folder must now hold exactly `count` files: read its totals.
        info = await client.get(f"/api/v1/nodes/{folder_id}")
        if not info.is_success:
            raise UploadFailed(f"GET /api/v1/nodes/{folder_id} -> {info.status_code}: {info.text[:500]}")
        files = info.json().get("files")
        if files != count:
            raise UploadFailed(f"{folder} holds {files} files, expected {count}")
        return folder_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000 (loopback only)")
    parser.add_argument("--folder", default="bench/listing", help="folder path (created if missing)")
    parser.add_argument("--count", type=int, default=10000, help="number of files (default 10000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    args = parser.parse_args()
    token = os.environ.get("STOWAGE_TOKEN", "")
    if not token:
        parser.error("set STOWAGE_TOKEN to a personal access token with the write scope")
    host = urlsplit(args.base_url).hostname or ""
    if not (host.startswith("127.") or host in {"localhost", "::1"}):
        parser.error("--base-url must be a loopback address")
    if args.count < 1 or args.concurrency < 1:
        parser.error("--count and --concurrency must be at least 1")
    try:
        folder_id = asyncio.run(populate(args.base_url, token, args.folder, args.count, args.concurrency))
    except (UploadFailed, httpx.HTTPError) as exc:
        print(f"populate: FAILED: {exc}", file=sys.stderr)
        return 1
    print(folder_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
